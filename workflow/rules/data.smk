# Stage 1: a class-balanced subsample of the training set per (dataset, n).
# Indices are nested in n for a fixed seed (hs.data.subsample_balanced).


rule subsample:
    input:
        script=script_file("subsample"),
        code=library_sources("data"),
    output:
        f"{RESULTS}/subsamples/{{dataset}}/n{{n}}.npz",
    log:
        f"{LOGS}/subsample/{{dataset}}/n{{n}}.log",
    conda:
        CONDA_ENV
    params:
        data_root=data_root_option,
        seed=config["subsample_seed"],
        download=download_option,
    shell:
        "python {input.script} --dataset {wildcards.dataset}"
        " {params.data_root} {params.download}"
        " --n-per-class {wildcards.n} --seed {params.seed} --out {output}"
        " > {log} 2>&1"
