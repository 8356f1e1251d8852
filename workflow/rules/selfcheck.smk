# Figure 8: the spectral estimators against exact eigendecompositions of synthetic
# matrices (paper Appendix B, Figure 8a: spectrum; 8b: log spectrum).


rule selfcheck:
    input:
        code=library_sources(
            "operators", "lanczos", "density", "validation", "results"
        ),
    output:
        f"{RESULTS}/selfcheck/{{case}}.nc",
    log:
        f"{LOGS}/selfcheck/{{case}}.log",
    params:
        options=selfcheck_options,
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python scripts/selfcheck.py --case {wildcards.case}"
        " {params.options} --out {output} > {log} 2>&1"
