# Stage 3: spectral densities of the selected run per (epoch, split), one NetCDF per
# operator and variant (paper Section C.2):
#   plain     LanczosApproxSpec(M, K, n_vec, kappa), normalised by Algorithm 4 with
#             the bounds read off the same M-step run (margin tau)
#   deflated  the same on the rank-C deflated operator (SubspaceIteration(C, T) up to
#             the residual tolerance subspace_tol), the C deflated eigenvalues kept
#             as outliers with their residuals and convergence flags
#   log       the density of log10(|lambda| + eps) (Lanczos with M_log iterations),
#             on the rank-C deflated operator for the operators in spectra.log_deflate
#             (Figure 7 plots the log spectrum of the deflated train G).
# One job computes Hess, G and H with every variant configured for each
# (spectra.variants, one list or per operator): they share the checkpoint, the data
# and the start-up of a job, the variants of one operator share its deflation (one
# subspace iteration for the deflated and the deflated log spectrum), and more jobs
# would make the paper's DAG slower to build.
# The winning run is known only after selection: the job reads its checkpoint path
# from selected.json; selected.json depends on every candidate run, so retraining any
# of them reruns the spectra.


# rule spectrum: the variants of spectra.variants, at every setting; rule
# spectrum_focus: those of spectra.focus_variants not already among them, at the
# focus setting only (so the two rules never write the same file).
for _name, _key in (("spectrum", "variants"), ("spectrum_focus", "focus_variants")):
    if not spectrum_operators(_key):
        continue

    rule:
        name:
            _name
        input:
            script=script_file("spectrum"),
            selected=checked_selected,
            subsample=SUBSAMPLE,
            code=SPECTRAL_CODE + library_sources("curvature", "_cache"),
        output:
            spectrum_outputs(_key),
        log:
            f"{LOGS}/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/{{split}}/"
            f"{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/{{split}}/"
            f"{_name}.tsv"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            cache=CACHE_RESOURCE,
        params:
            launch=spectral_launch(),
            data_root=data_root_option,
            batch_size=spectral_batch_option,
            max_test=cap_option("--max-test", config["spectra"]["max_test"]),
            operators=" ".join(spectrum_operators(_key)),
            variants=spectrum_variant_options(_key),
            options=spectral_options(spectrum_all_variants(_key)),
            outdir=f"{SPECTRUM_DIR}/{{split}}",
        shell:
            "OMP_NUM_THREADS={threads} {params.launch} {input.script}"
            " --selected {input.selected} --epoch {wildcards.epoch}"
            " --dataset {wildcards.dataset} {params.data_root}"
            " --subsample {input.subsample} --split {wildcards.split}"
            " {params.max_test} {params.batch_size}"
            " --operators {params.operators} {params.variants} {params.options}"
            " --cache {resources.cache}"
            " --device auto --outdir {params.outdir} > {log} 2>&1"


# The members of G and G minus one member (Figure 1), train split only: one job per
# selected run and epoch (the members share G's class statistics).
rule decomposition_spectra:
    input:
        script=script_file("spectrum"),
        selected=checked_selected,
        subsample=SUBSAMPLE,
        code=SPECTRAL_CODE + library_sources("decomposition", "_cache"),
    output:
        expand(
            f"{RESULTS}/spectra/{{{{dataset}}}}/{{{{arch}}}}/n{{{{n}}}}/e{{{{epoch}}}}/"
            "train/{operator}_{variant}.nc",
            operator=config["decomposition"]["operators"],
            variant=config["decomposition"]["variants"],
        ),
    log:
        f"{LOGS}/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/train/decomposition.log",
    benchmark:
        (
            f"{RESULTS}/benchmarks/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/"
            "train/decomposition.tsv"
        )
    conda:
        CONDA_ENV
    threads: 1
    resources:
        cache=CACHE_RESOURCE,
    params:
        launch=spectral_launch(),
        data_root=data_root_option,
        batch_size=spectral_batch_option,
        operators=" ".join(config["decomposition"]["operators"]),
        options=spectral_options(config["decomposition"]["variants"]),
        outdir=f"{SPECTRUM_DIR}/train",
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} {input.script}"
        " --selected {input.selected} --epoch {wildcards.epoch}"
        " --dataset {wildcards.dataset} {params.data_root} {params.batch_size}"
        " --subsample {input.subsample} --split train"
        " --operators {params.operators} {params.options}"
        " --cache {resources.cache}"
        " --device auto --outdir {params.outdir} > {log} 2>&1"
