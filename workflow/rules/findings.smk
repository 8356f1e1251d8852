# Stage 6: which of the paper's findings this run reproduces, each decided by a stated
# rule over the aggregated results (hessian_spectrum.findings): results/findings.csv
# (in the report) and results/findings.md.


rule findings:
    input:
        unpack(findings_inputs),
        script=script_file("findings"),
        code=library_sources("findings", "features", "powerlaw"),
    output:
        csv=report(
            f"{RESULTS}/findings.csv",
            caption="../report/findings.rst",
            category="Findings",
        ),
        md=f"{RESULTS}/findings.md",
    log:
        f"{LOGS}/findings.log",
    conda:
        CONDA_ENV
    params:
        options=findings_options,
    shell:
        "python {input.script} {params.options}"
        " --csv {output.csv} --md {output.md} > {log} 2>&1"
