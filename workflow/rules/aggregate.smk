# Stage 4: the aggregated, self-describing NetCDF files (schemas in docs/CONTRACTS.md),
# rebuilt from the per-job files, which stay the source of truth.
#
# scripts/aggregate.py reads its input paths from stdin: at the paper's scale (tens of
# thousands of files) they exceed the length limit of one shell command line.

rule aggregate_spectra:
    input:
        spectra=spectral_outputs(),
        code=library_sources("results"),
    output:
        f"{RESULTS}/spectra.nc",
    log:
        f"{LOGS}/aggregate/spectra.log",
    run:
        run_aggregate("spectra", input.spectra, output[0], log[0])


rule aggregate_training:
    input:
        runs=training_outputs(),
        selected=selection_outputs(),
        code=library_sources("results"),
    output:
        f"{RESULTS}/training.nc",
    log:
        f"{LOGS}/aggregate/training.log",
    run:
        run_aggregate("training", input.runs + input.selected, output[0], log[0])


rule aggregate_decomposition:
    input:
        decomposition=decomposition_outputs(),
        code=library_sources("results"),
    output:
        f"{RESULTS}/decomposition.nc",
    log:
        f"{LOGS}/aggregate/decomposition.log",
    run:
        run_aggregate("decomposition", input.decomposition, output[0], log[0])


rule aggregate_selfcheck:
    input:
        cases=selfcheck_outputs(),
        code=library_sources("results"),
    output:
        f"{RESULTS}/selfcheck.nc",
    log:
        f"{LOGS}/aggregate/selfcheck.log",
    run:
        run_aggregate("selfcheck", input.cases, output[0], log[0])
