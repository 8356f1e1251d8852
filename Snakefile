# hessian-spectrum workflow: subsample -> train -> select -> spectra -> NetCDF -> figures.
#
#   .venv/bin/snakemake --profile profiles/local                   # embedded default
#   .venv/bin/snakemake --profile profiles/slurm --configfile config/paper.yaml
#
# Every stage lives in workflow/rules/<stage>.smk; helpers (plain functions) in
# workflow/rules/common.smk. Per-job files under results/ are the source of truth;
# results/*.nc and results/figures/ are rebuilt from them.

from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The default configuration, found next to this file (not in the working directory):
# the workflow runs with `-d <elsewhere>` and as a module of another workflow.
configfile: Path(str(workflow.current_basedir)) / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


# common.smk validates the config against workflow/schemas/config.schema.yaml
# (snakemake.utils.validate) and checks the epochs, before any rule is defined.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/decomposition.smk"
include: "workflow/rules/selfcheck.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/findings.smk"


# The default target: aggregated NetCDF files and every configured figure.
rule all:
    default_target: True
    input:
        final_outputs(),


# Cheap bookkeeping runs on the submitting host, never as cluster jobs.
localrules:
    all,
    select_learning_rate,
    aggregate_spectra,
    aggregate_training,
    aggregate_decomposition,
    aggregate_selfcheck,
    findings,
    fig1,
    fig2,
    fig3,
    fig4,
    fig5,
    fig6,
    fig7,
    fig8,
    fig9,
    fig10,
