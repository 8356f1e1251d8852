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
        data_root=config["data_root"],
        seed=config["subsample_seed"],
        download="--download" if config["download"] else "",
    shell:
        "python scripts/subsample.py --dataset {wildcards.dataset}"
        " --data-root {params.data_root} {params.download}"
        " --n-per-class {wildcards.n} --seed {params.seed} --out {output}"
        " > {log} 2>&1"
