# Stage 1: a class-balanced subsample of the training set per (dataset, n).
# Indices are nested in n for a fixed seed (hs.data.subsample_balanced).


rule subsample:
    input:
        code=library_sources("data"),
    output:
        f"{RESULTS}/subsamples/{{dataset}}/n{{n}}.npz",
    log:
        f"{LOGS}/subsample/{{dataset}}/n{{n}}.log",
    params:
        data_root=data_root_option,
        seed=config["subsample_seed"],
        download=download_option,
    shell:
        "python scripts/subsample.py --dataset {wildcards.dataset}"
        " {params.data_root} {params.download}"
        " --n-per-class {wildcards.n} --seed {params.seed} --out {output}"
        " > {log} 2>&1"
