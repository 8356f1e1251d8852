# Stage 3b: the Figure 7 quantities of train G per (selected run, epoch): the C^2
# eigenvalues of A1 + A2 + B1 attributed to A1, B1 or A2, the class traces
# Tr(B_{2,c})/n, the eigenvalues of A1 and A2 alone, and the top-C eigenpairs of G:
# read from the deflated train G spectrum where the workflow computes one (the same
# SubspaceIteration(G, C, T)), else computed here.
# Spectra of the members A1, A2, B1, B2 and of G minus one member: rule
# decomposition_spectra in spectra.smk.


rule decomposition:
    input:
        unpack(g_top_input),
        script=script_file("decomposition_job"),
        selected=checked_selected,
        subsample=SUBSAMPLE,
        code=library_sources(
            "data",
            "models",
            "training",
            "_functional",
            "_distributed",
            "operators",
            "decomposition",
            "_cache",
            "subspace",
            "results",
        ),
    output:
        f"{RESULTS}/decomposition/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}.nc",
    log:
        f"{LOGS}/decomposition/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decomposition/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        cache=CACHE_RESOURCE,
    params:
        data_root=data_root_option,
        subspace_iters=config["spectra"]["subspace_iters"],
        seed=config["spectra"]["seed"],
        trace_probes=config["decomposition"]["trace_probes"],
        batch_size=spectral_batch_option,
        subspace_tol=config["spectra"]["subspace_tol"],
        oversample=config["spectra"]["subspace_oversample"],
        g_top=g_top_option,
    shell:
        "OMP_NUM_THREADS={threads} python {input.script}"
        " --selected {input.selected} --epoch {wildcards.epoch}"
        " --dataset {wildcards.dataset} {params.data_root}"
        " --subsample {input.subsample} --subspace-iters {params.subspace_iters}"
        " --trace-probes {params.trace_probes} --seed {params.seed}"
        " {params.batch_size} --subspace-tol {params.subspace_tol}"
        " --subspace-oversample {params.oversample}"
        " {params.g_top} --cache {resources.cache} --device auto --out {output} > {log} 2>&1"
