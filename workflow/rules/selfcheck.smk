# Figure 8: the spectral estimators against exact eigendecompositions of synthetic
# matrices (paper Appendix B, Figure 8a: spectrum; 8b: log spectrum).


rule selfcheck:
    input:
        script=script_file("selfcheck"),
        code=library_sources("operators", "lanczos", "density", "validation", "results"),
    output:
        f"{RESULTS}/selfcheck/{{case}}.nc",
    log:
        f"{LOGS}/selfcheck/{{case}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/selfcheck/{{case}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        options=selfcheck_options,
    shell:
        "OMP_NUM_THREADS={threads} python {input.script} --case {wildcards.case}"
        " {params.options} --out {output} > {log} 2>&1"
