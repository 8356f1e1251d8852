# Stage 3: spectral densities of the selected run per (epoch, split, operator), one
# NetCDF per variant (paper Section C.2):
#   plain     Normalization(M0 = 32, tau) + LanczosApproxSpec(M, K, n_vec, kappa)
#   deflated  the same on the rank-C deflated operator (SubspaceIteration(C, T)),
#             the C deflated eigenvalues kept as outliers
#   log       the density of log10(|lambda| + eps) (Lanczos with M_log iterations),
#             on the rank-C deflated operator for the operators in spectra.log_deflate
#             (Figure 7 plots the log spectrum of the deflated train G).
# One job computes every configured variant of one operator: the variants share the
# checkpoint, the data and the operator, and one job per variant would make the
# paper's DAG too large to build quickly (docs/workflow.md).
# The winning run is known only after selection: the job reads its checkpoint path
# from selected.json; selected.json depends on every candidate run, so retraining any
# of them reruns the spectra.


SPECTRUM_DIR = f"{RESULTS}/spectra/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}"


rule spectrum:
    input:
        selected=SELECTED,
        subsample=SUBSAMPLE,
        code=SPECTRAL_CODE + library_sources("curvature", "_cache"),
    output:
        expand(
            f"{RESULTS}/spectra/{{{{dataset}}}}/{{{{arch}}}}/n{{{{n}}}}/e{{{{epoch}}}}/"
            "{{split}}/{{operator}}_{variant}.nc",
            variant=config["spectra"]["variants"],
        ),
    log:
        f"{LOGS}/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/{{split}}/{{operator}}.log",
    wildcard_constraints:
        operator="hess|G|H",
    params:
        data_root=config["data_root"],
        max_test=cap_option("--max-test", config["spectra"]["max_test"]),
        options=spectral_options("spectra"),
        outdir=f"{SPECTRUM_DIR}/{{split}}",
    threads: 1
    resources:
        cache=CACHE_RESOURCE,
    shell:
        "OMP_NUM_THREADS={threads} python scripts/spectrum.py"
        " --selected {input.selected} --epoch {wildcards.epoch}"
        " --dataset {wildcards.dataset} --data-root {params.data_root}"
        " --subsample {input.subsample} --split {wildcards.split}"
        " {params.max_test}"
        " --operators {wildcards.operator} {params.options}"
        " --cache {resources.cache}"
        " --device auto --outdir {params.outdir} > {log} 2>&1"


# The members of G and G minus one member (Figure 1), train split only: one job per
# selected run and epoch (the members share G's class statistics).
rule decomposition_spectra:
    input:
        selected=SELECTED,
        subsample=SUBSAMPLE,
        code=SPECTRAL_CODE + library_sources("decomposition"),
    output:
        expand(
            f"{RESULTS}/spectra/{{{{dataset}}}}/{{{{arch}}}}/n{{{{n}}}}/e{{{{epoch}}}}/"
            "train/{operator}_{variant}.nc",
            operator=config["decomposition"]["operators"],
            variant=config["decomposition"]["variants"],
        ),
    log:
        f"{LOGS}/spectrum/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}/train/decomposition.log",
    params:
        data_root=config["data_root"],
        operators=" ".join(config["decomposition"]["operators"]),
        options=spectral_options("decomposition"),
        outdir=f"{SPECTRUM_DIR}/train",
    threads: 1
    resources:
        cache=CACHE_RESOURCE,  # unused here: see CACHE_RESOURCE
    shell:
        "OMP_NUM_THREADS={threads} python scripts/spectrum.py"
        " --selected {input.selected} --epoch {wildcards.epoch}"
        " --dataset {wildcards.dataset} --data-root {params.data_root}"
        " --subsample {input.subsample} --split train"
        " --operators {params.operators} {params.options}"
        " --device auto --outdir {params.outdir} > {log} 2>&1"
