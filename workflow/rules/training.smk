# Stage 2: SGD training per (dataset, arch, n, lr), with checkpoints at the configured
# epochs (paper Section C.1), then selection of the learning rate with the best final
# test error per (dataset, arch, n).
#
# A run folder holds epoch_<E>.pt for every checkpoint epoch and history.json. It is
# declared as one directory output because the set of checkpoint epochs depends on the
# data set (e.g. 200 epochs for MNIST, 350 for CIFAR).
#
# Snakemake deletes a directory() output before it reruns the job (after a kill, a
# SLURM time limit, --rerun-incomplete, a new checkpoint epoch or more epochs), so
# the run itself lives in a state folder Snakemake does not manage,
# results/train_state/<dataset>/<arch>/n<n>/lr<lr>/<digest of the run's settings>:
# the job resumes there from its last complete epoch (the log says "resuming from
# epoch K") and hard-links the checkpoints and history.json into the run folder.
# Other settings (seed, batch size, width, test cap) get another state folder.


rule train:
    input:
        script=script_file("train"),
        subsample=SUBSAMPLE,
        code=library_sources("data", "models", "training"),
    output:
        directory(f"{RESULTS}/runs/{{dataset}}/{{arch}}/n{{n}}/lr{{lr}}"),
    log:
        f"{LOGS}/train/{{dataset}}/{{arch}}/n{{n}}/lr{{lr}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{arch}}/n{{n}}/lr{{lr}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        data_root=data_root_option,
        download=download_option,
        run=training_params,
        state=train_state_dir,
    shell:
        "OMP_NUM_THREADS={threads} python {input.script}"
        " --dataset {wildcards.dataset} {params.data_root} {params.download}"
        " --subset {input.subsample} --arch {wildcards.arch} --lr {wildcards.lr}"
        " --epochs {params.run[epochs]} --checkpoint-epochs {params.run[checkpoints]}"
        " --batch-size {params.run[batch_size]} --width {params.run[width]}"
        " --seed {params.run[seed]} {params.run[max_test]} --threads {threads}"
        " --device auto --state-dir {params.state} --outdir {output} > {log} 2>&1"


rule select_learning_rate:
    input:
        script=script_file("select_lr"),
        runs=candidate_runs,
        code=library_sources("training"),
    output:
        f"{RESULTS}/runs/{{dataset}}/{{arch}}/n{{n}}/selected.json",
    log:
        f"{LOGS}/select/{{dataset}}/{{arch}}/n{{n}}.log",
    conda:
        CONDA_ENV
    params:
        histories=candidate_histories,
    shell:
        "python {input.script} --histories {params.histories} --out {output}"
        " > {log} 2>&1"
