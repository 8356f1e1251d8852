# Stage 4: the aggregated, self-describing NetCDF files (schemas in docs/CONTRACTS.md),
# rebuilt from the per-job files, which stay the source of truth.
#
# update(): Snakemake keeps the previous aggregate while the job runs (instead of
# deleting it first) and restores it when the job fails, e.g. on an input that cannot
# be read; the job writes the new one atomically. Damaged inputs are moved aside
# before (intact_inputs, common.smk) and regenerated in the same run.
#
# scripts/aggregate.py reads its input paths from a listing file (aggregate_listing,
# common.smk): at the paper's scale (tens of thousands of files) they exceed the
# length limit of one shell command line. CONFIG_DIGEST (common.smk) reaches the
# command as a resource, not a param: params are a rerun trigger and resources are not,
# so the file records the configuration of the run that last wrote it, and a change of
# the config that leaves the file's content alone (figure options, cache budget) does
# not rewrite it. These are local rules: the string resource is never submitted.
# shell, not run: Snakemake 9.27 restores an update() output after a failed shell
# job, but not after a failed run: job.


rule aggregate_spectra:
    input:
        script=script_file("aggregate"),
        spectra=intact_inputs(spectral_outputs, f"{RESULTS}/spectra.nc"),
        code=library_sources("results"),
    output:
        update(f"{RESULTS}/spectra.nc"),
    log:
        f"{LOGS}/aggregate/spectra.log",
    conda:
        CONDA_ENV
    resources:
        config_digest=CONFIG_DIGEST,
    params:
        listing=aggregate_listing("spectra", "spectra"),
    shell:
        "python {input.script} spectra --out {output} --inputs-from {params.listing}"
        " --config-digest {resources.config_digest}"
        " > {log} 2>&1 && rm -f {output}.previous"


rule aggregate_training:
    input:
        script=script_file("aggregate"),
        runs=intact_inputs(training_outputs, f"{RESULTS}/training.nc"),
        selected=intact_inputs(selection_outputs, f"{RESULTS}/training.nc"),
        code=library_sources("results"),
    output:
        update(f"{RESULTS}/training.nc"),
    log:
        f"{LOGS}/aggregate/training.log",
    conda:
        CONDA_ENV
    resources:
        config_digest=CONFIG_DIGEST,
    params:
        listing=aggregate_listing("training", "runs selected"),
    shell:
        "python {input.script} training --out {output} --inputs-from {params.listing}"
        " --config-digest {resources.config_digest}"
        " > {log} 2>&1 && rm -f {output}.previous"


rule aggregate_decomposition:
    input:
        script=script_file("aggregate"),
        decomposition=intact_inputs(
            decomposition_outputs, f"{RESULTS}/decomposition.nc"
        ),
        code=library_sources("results"),
    output:
        update(f"{RESULTS}/decomposition.nc"),
    log:
        f"{LOGS}/aggregate/decomposition.log",
    conda:
        CONDA_ENV
    resources:
        config_digest=CONFIG_DIGEST,
    params:
        listing=aggregate_listing("decomposition", "decomposition"),
    shell:
        "python {input.script} decomposition --out {output} --inputs-from {params.listing}"
        " --config-digest {resources.config_digest}"
        " > {log} 2>&1 && rm -f {output}.previous"


rule aggregate_selfcheck:
    input:
        script=script_file("aggregate"),
        cases=intact_inputs(selfcheck_outputs, f"{RESULTS}/selfcheck.nc"),
        code=library_sources("results"),
    output:
        update(f"{RESULTS}/selfcheck.nc"),
    log:
        f"{LOGS}/aggregate/selfcheck.log",
    conda:
        CONDA_ENV
    resources:
        config_digest=CONFIG_DIGEST,
    params:
        listing=aggregate_listing("selfcheck", "cases"),
    shell:
        "python {input.script} selfcheck --out {output} --inputs-from {params.listing}"
        " --config-digest {resources.config_digest}"
        " > {log} 2>&1 && rm -f {output}.previous"
