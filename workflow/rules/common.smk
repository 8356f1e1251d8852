# Helpers shared by every stage: configuration look-ups, parse-time checks, file paths
# and the lists of target files. Plain functions only (no lambdas), so that every input
# function has a name in error messages and in `snakemake --list-rules`.

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# ---------------------------------------------------------------------------------
# Validation at parse time: the schema (with defaults for omitted keys), then the
# checks it cannot express (check_config, at the end of this file). Errors name the
# config key, e.g. "Config key 'spectra.num_iters': 1 is less than the minimum of 2".
# ---------------------------------------------------------------------------------
def error_depth(error):
    return len(error.absolute_path)


def config_error(error):
    """A schema violation raised by validate() as one line naming the config key."""
    cause = error.__context__  # validate() raises while handling the ValidationError
    if not isinstance(cause, jsonschema.ValidationError):
        return error
    while cause.context:  # oneOf: the alternative that got deepest says most
        cause = max(cause.context, key=error_depth)
    key = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in cause.absolute_path
    ).lstrip(".")
    where = f"Config key '{key}'" if key else "Config"
    return WorkflowError(f"{where}: {cause.message}")


try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as error:
    raise config_error(error) from None


# Scripts run with the interpreter that runs Snakemake (the project's .venv): its
# folder goes first on PATH, also inside SLURM jobs (they start that interpreter by its
# path and parse this file again).
VENV_BIN = str(Path(sys.executable).parent)
os.environ.update(PATH=os.pathsep.join([VENV_BIN, os.environ.get("PATH", "")]))

CURVATURE_OPERATORS = ["hess", "G", "H"]
DECOMPOSITION_OPERATORS = ["A1", "A2", "B1", "B2", "G-A1", "G-A2", "G-B1", "G-B2"]
SPLITS = ["train", "test"]
VARIANTS = ["plain", "deflated", "log"]
FIGURE_KINDS = [f"fig{i}" for i in range(1, 11)]
DATASETS = config["datasets"]


wildcard_constraints:
    dataset="[a-z0-9_]+",
    arch="[a-z0-9_]+",
    n="[0-9]+",
    lr="[0-9.eE+-]+",
    epoch="[0-9]+",
    split="train|test",
    operator="|".join(
        sorted(CURVATURE_OPERATORS + DECOMPOSITION_OPERATORS, key=len, reverse=True)
    ),
    variant="|".join(VARIANTS),
    case="fig8a|fig8b",


# ---------------------------------------------------------------------------------
# Configuration look-ups
# ---------------------------------------------------------------------------------
def per_dataset(key, dataset):
    """The value of a key that is either one value for all data sets or a mapping
    data set -> value (e.g. 200 epochs for MNIST, 350 for CIFAR; paper Section C.1)."""
    value = config
    for part in key.split("."):
        value = value[part]
    if isinstance(value, dict):
        if dataset not in value:
            raise WorkflowError(
                f"Config key '{key}' is a mapping without an entry for data set "
                f"'{dataset}' (listed in 'datasets')."
            )
        return value[dataset]
    return value


def lr_label(lr):
    """The learning rate as it appears in paths, e.g. 0.05 -> 'lr0.05'; the train
    job reads the rate back from the path."""
    return format(float(lr), "g")


def sample_sizes(dataset):
    """Training examples per class (CIFAR100 holds only 500 per class)."""
    return sorted(set(per_dataset("sample_sizes", dataset)))


def training_epochs(dataset):
    return int(per_dataset("training.epochs", dataset))


def checkpoint_epochs(dataset):
    """Epochs after which a checkpoint is saved; the last epoch always is."""
    epochs = set(per_dataset("training.checkpoint_epochs", dataset))
    return sorted(epochs | {training_epochs(dataset)})


def spectral_epochs(dataset):
    """Checkpoint epochs whose spectra are computed (default: all of them)."""
    value = config["spectra"]["epochs"]
    if value is None:
        return checkpoint_epochs(dataset)
    return sorted(set(per_dataset("spectra.epochs", dataset)))


def operator_variants(operator, key="variants"):
    """Variants computed for one of Hess, G, H at every setting (`spectra.variants`:
    one list for all, or a mapping operator -> list), or at the focus setting only
    (`key="focus_variants"`, a mapping; the variants not already computed at every
    setting, none for an operator not in `spectra.operators`)."""
    variants = config["spectra"][key]
    if isinstance(variants, dict):
        variants = variants.get(operator, [])
    if key == "focus_variants":  # those not computed everywhere anyway
        if operator not in config["spectra"]["operators"]:
            return []
        return [v for v in variants if v not in operator_variants(operator)]
    return list(variants)


def uses_focus():
    """Does the configuration compute anything at the focus setting only?"""
    spectra = config["spectra"]
    return bool(
        spectra["focus_splits"]
        or any(spectra["focus_variants"].values())
        or config["decomposition"]["focus_only"]
    )


def focus_setting():
    """(dataset, arch, n, epoch) of `figures.focus`, missing keys filled in: the
    first data set and arch, the largest sample size, the last spectral epoch."""
    focus = config["figures"]["focus"]
    dataset = focus.get("dataset", DATASETS[0])
    arch = focus.get("arch", config["archs"][0])
    n = focus.get("sample_size", sample_sizes(dataset)[-1])
    epoch = focus.get("epoch", spectral_epochs(dataset)[-1])
    return dataset, arch, n, epoch


def check_config():
    """Parse-time checks the schema cannot express; each error names its key."""
    variants = config["spectra"]["variants"]
    if isinstance(variants, dict):
        for operator in config["spectra"]["operators"]:
            if operator not in variants:
                raise WorkflowError(
                    f"Config key 'spectra.variants' is a mapping without an entry "
                    f"for operator '{operator}' (listed in 'spectra.operators')."
                )
    for split in config["spectra"]["focus_splits"]:
        if split not in config["spectra"]["splits"]:
            raise WorkflowError(
                f"Config key 'spectra.focus_splits': '{split}' is not in "
                "'spectra.splits'."
            )
    for dataset in DATASETS:
        sample_sizes(dataset)
        last = training_epochs(dataset)
        for epoch in per_dataset("training.checkpoint_epochs", dataset):
            if epoch > last:
                raise WorkflowError(
                    f"Config key 'training.checkpoint_epochs' ({dataset}): epoch "
                    f"{epoch} is beyond 'training.epochs' = {last}."
                )
        if config["spectra"]["epochs"] is not None:
            for epoch in per_dataset("spectra.epochs", dataset):
                if epoch > last:
                    raise WorkflowError(
                        f"Config key 'spectra.epochs' ({dataset}): epoch {epoch} is "
                        f"beyond 'training.epochs' = {last}."
                    )
                if epoch not in checkpoint_epochs(dataset):
                    raise WorkflowError(
                        f"Config key 'spectra.epochs' ({dataset}): epoch {epoch} is "
                        f"not in 'training.checkpoint_epochs' (no checkpoint saved)."
                    )
    for lr in config["training"]["learning_rates"]:
        if float(lr_label(lr)) != float(lr):
            raise WorkflowError(
                f"Config key 'training.learning_rates': {lr} has more than 6 "
                "significant digits (paths name the rate with 6)."
            )
    if uses_focus():
        focus = focus_setting()
        if focus not in settings_tuples():
            raise WorkflowError(
                "Config key 'figures.focus': the focus setting "
                f"{dict(zip(('dataset', 'arch', 'sample_size', 'epoch'), focus))} is "
                "not a computed setting (see 'datasets', 'archs', 'sample_sizes', "
                "'spectra.epochs'); 'spectra.focus_splits', 'spectra.focus_variants' "
                "and 'decomposition.focus_only' compute there."
            )
    for kind in figure_kinds():
        selection = figure_selection(kind)
        if "dataset" in selection and selection["dataset"] not in DATASETS:
            raise WorkflowError(
                f"Config key 'figures.select' ({kind}): data set "
                f"'{selection['dataset']}' is not in 'datasets'."
            )
        if "arch" in selection and selection["arch"] not in config["archs"]:
            raise WorkflowError(
                f"Config key 'figures.select' ({kind}): arch '{selection['arch']}' "
                "is not in 'archs'."
            )
        sizes = set()
        for dataset in [selection["dataset"]] if "dataset" in selection else DATASETS:
            sizes |= set(sample_sizes(dataset))
        if "sample_size" in selection and selection["sample_size"] not in sizes:
            raise WorkflowError(
                f"Config key 'figures.select' ({kind}): sample size "
                f"{selection['sample_size']} is not in 'sample_sizes'."
            )
        if "epoch" in selection and "dataset" in selection:
            if selection["epoch"] not in spectral_epochs(selection["dataset"]):
                raise WorkflowError(
                    f"Config key 'figures.select' ({kind}): epoch "
                    f"{selection['epoch']} has no spectra (see 'spectra.epochs')."
                )
    if "fig7" in figure_kinds() and not config["decomposition"]["hierarchy"]:
        raise WorkflowError(
            "Config key 'figures.kinds': fig7 needs 'decomposition.hierarchy: true'."
        )
    if "fig1" in figure_kinds() and not config["decomposition"]["operators"]:
        raise WorkflowError(
            "Config key 'figures.kinds': fig1 needs 'decomposition.operators'."
        )
    if "fig8" in figure_kinds() and not config["selfcheck"]["enabled"]:
        raise WorkflowError(
            "Config key 'figures.kinds': fig8 needs 'selfcheck.enabled: true'."
        )
# ---------------------------------------------------------------------------------
# Library sources as inputs: editing a module that a script imports must recompute
# the results that depend on it (Snakemake tracks rule code and params, not imports).
# The package is located without importing it (importing would load torch).
# ---------------------------------------------------------------------------------
def _package_dir():
    spec = importlib.util.find_spec("hessian_spectrum")
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError(
            "The package hessian_spectrum is not installed: run `make install`."
        )
    return Path(list(spec.submodule_search_locations)[0])


PACKAGE_DIR = _package_dir()


def library_sources(*modules):
    """Source files of the named library modules (those that exist)."""
    paths = [PACKAGE_DIR / f"{module}.py" for module in modules]
    return [str(path) for path in paths if path.exists()]


# ---------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------
RESULTS = "results"
LOGS = "results/logs"


def run_dir(dataset, arch, n, lr):
    return f"{RESULTS}/runs/{dataset}/{arch}/n{n}/lr{lr_label(lr)}"


def candidate_runs(wildcards):
    """Run folders of every learning rate for one (dataset, arch, n)."""
    return [
        run_dir(wildcards.dataset, wildcards.arch, wildcards.n, lr)
        for lr in config["training"]["learning_rates"]
    ]


def selected_path(dataset, arch, n):
    return f"{RESULTS}/runs/{dataset}/{arch}/n{n}/selected.json"


def cap_option(flag, cap):
    """`--max-test N`, or nothing for the whole split (cap null)."""
    return "" if cap is None else f"{flag} {cap}"


# Patterns (not functions: thousands of jobs at the paper's scale build faster).
SELECTED = f"{RESULTS}/runs/{{dataset}}/{{arch}}/n{{n}}/selected.json"
SUBSAMPLE = f"{RESULTS}/subsamples/{{dataset}}/n{{n}}.npz"


def settings_tuples():
    """Every (dataset, arch, n, epoch) whose spectra are computed."""
    return [
        (dataset, arch, n, epoch)
        for dataset in DATASETS
        for arch in config["archs"]
        for n in sample_sizes(dataset)
        for epoch in spectral_epochs(dataset)
    ]


def spectrum_path(dataset, arch, n, epoch, split, operator, variant):
    return (
        f"{RESULTS}/spectra/{dataset}/{arch}/n{n}/e{epoch}/{split}/"
        f"{operator}_{variant}.nc"
    )


def spectral_outputs():
    """Per-job spectral NetCDF files the configuration asks for: every configured
    split, operator and variant at every setting, except the focus-only parts
    (`spectra.focus_splits`, `decomposition.focus_only`) away from the focus."""
    spectra = config["spectra"]
    decomposition = config["decomposition"]
    focus = focus_setting() if uses_focus() else None
    paths = []
    for setting in settings_tuples():
        at_focus = setting == focus
        for split in spectra["splits"]:
            if split in spectra["focus_splits"] and not at_focus:
                continue
            for operator in spectra["operators"]:
                variants = operator_variants(operator)
                if at_focus:
                    variants += operator_variants(operator, "focus_variants")
                for variant in variants:
                    paths.append(spectrum_path(*setting, split, operator, variant))
        if decomposition["focus_only"] and not at_focus:
            continue
        for operator in decomposition["operators"]:
            for variant in decomposition["variants"]:
                paths.append(spectrum_path(*setting, "train", operator, variant))
    return paths


def g_top_file(wildcards):
    """The deflated train G spectrum of this setting, if the workflow computes it
    (its outliers are the top-C eigenpairs of G that the decomposition job needs)."""
    spectra = config["spectra"]
    if (
        "G" in spectra["operators"]
        and "train" in spectra["splits"]
        and "train" not in spectra["focus_splits"]
        and "deflated" in operator_variants("G")
    ):
        return spectrum_path(
            wildcards.dataset,
            wildcards.arch,
            wildcards.n,
            wildcards.epoch,
            "train",
            "G",
            "deflated",
        )
    return None


def g_top_input(wildcards):
    path = g_top_file(wildcards)
    return {"g_top": path} if path else {}


def g_top_option(wildcards):
    path = g_top_file(wildcards)
    return f"--g-top-from {path}" if path else ""


def decomposition_outputs():
    """Per-job Figure 7 quantities (one file per selected run and epoch)."""
    if not config["decomposition"]["hierarchy"]:
        return []
    return [
        f"{RESULTS}/decomposition/{dataset}/{arch}/n{n}/e{epoch}.nc"
        for dataset, arch, n, epoch in settings_tuples()
    ]


def training_outputs():
    return [
        run_dir(dataset, arch, n, lr)
        for dataset in DATASETS
        for arch in config["archs"]
        for n in sample_sizes(dataset)
        for lr in config["training"]["learning_rates"]
    ]


def selection_outputs():
    return [
        selected_path(dataset, arch, n)
        for dataset in DATASETS
        for arch in config["archs"]
        for n in sample_sizes(dataset)
    ]


def selfcheck_outputs():
    if not config["selfcheck"]["enabled"]:
        return []
    return [f"{RESULTS}/selfcheck/{case}.nc" for case in ("fig8a", "fig8b")]


def aggregate_outputs():
    paths = [f"{RESULTS}/spectra.nc", f"{RESULTS}/training.nc"]
    if config["decomposition"]["hierarchy"]:
        paths.append(f"{RESULTS}/decomposition.nc")
    if config["selfcheck"]["enabled"]:
        paths.append(f"{RESULTS}/selfcheck.nc")
    return paths


# ---------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------
# Which selection options each figure kind takes (CONTRACTS.md, make_figures.py).
FIGURE_SELECTORS = {
    "fig1": ["dataset", "arch", "sample_size", "epoch"],
    "fig2": ["arch", "sample_size"],
    "fig3": ["dataset", "arch", "sample_size", "epoch"],
    "fig4": ["dataset", "arch", "sample_size", "epoch"],
    "fig5": ["dataset", "arch", "sample_size", "epoch"],
    "fig6": ["dataset", "arch"],
    "fig7": ["dataset", "arch"],
    "fig8": [],
    "fig9": ["arch", "sample_size"],
    "fig10": ["dataset", "arch"],
}


def figure_kinds():
    return list(config["figures"]["kinds"])


def figure_selection(kind):
    """`figures.focus`, overridden by `figures.select.<kind>`, restricted to the
    options the figure kind takes."""
    figures = config["figures"]
    merged = dict(figures["focus"])
    merged.update(figures["select"].get(kind, {}))
    return {key: merged[key] for key in FIGURE_SELECTORS[kind] if key in merged}


def figure_options(kind):
    """Command-line options of make_figures.py for one figure kind."""
    flags = {
        "dataset": "--dataset",
        "arch": "--arch",
        "sample_size": "--sample-size",
        "epoch": "--epoch",
    }
    selection = figure_selection(kind)
    return " ".join(f"{flags[key]} {value}" for key, value in selection.items())


def figure_outputs():
    return [
        f"{RESULTS}/figures/{kind}.{ext}"
        for kind in figure_kinds()
        for ext in ("png", "pdf")
    ]


FINDINGS = [f"{RESULTS}/findings.csv", f"{RESULTS}/findings.md"]


def findings_inputs(wildcards):
    """The aggregated results the findings read (those the configuration makes)."""
    inputs = {
        "spectra": f"{RESULTS}/spectra.nc",
        "training": f"{RESULTS}/training.nc",
    }
    if config["decomposition"]["hierarchy"]:
        inputs["decomposition"] = f"{RESULTS}/decomposition.nc"
    if config["selfcheck"]["enabled"]:
        inputs["selfcheck"] = f"{RESULTS}/selfcheck.nc"
    return inputs


def findings_options(wildcards, input):
    options = [f"--{name} {input[name]}" for name in findings_inputs(wildcards)]
    options.append("--focus " + " ".join(map(str, focus_setting())))
    return " ".join(options)


def final_outputs():
    return aggregate_outputs() + figure_outputs() + FINDINGS


# ---------------------------------------------------------------------------------
# Parameters of the jobs (a change of any reruns the jobs that take it)
# ---------------------------------------------------------------------------------
def training_params(wildcards):
    """Every setting a training run depends on (a change retrains)."""
    training = config["training"]
    return {
        "epochs": training_epochs(wildcards.dataset),
        "checkpoints": " ".join(map(str, checkpoint_epochs(wildcards.dataset))),
        "batch_size": training["batch_size"],
        "width": training["width"],
        "seed": training["seed"],
        "max_test": cap_option("--max-test", training["max_test"]),
    }


def candidate_histories(wildcards):
    return [f"{run}/history.json" for run in candidate_runs(wildcards)]


# The linearisation cache of the spectrum jobs (spectra.cache) is a resource, not a
# param: it changes cost, not results, so a new budget reruns nothing.  A string
# resource must have the same value in every job of a group (the SLURM profile groups
# spectrum, decomposition_spectra and decomposition as gpu_spectra), so the rules of
# that group all declare it, used or not.
CACHE_RESOURCE = str(config["spectra"]["cache"])


def spectral_options(variants):
    """The estimator settings for the given variants as options of
    scripts/spectrum.py (as params: a change reruns the spectra)."""
    spectra = config["spectra"]
    options = [
        f"--variants {' '.join(variants)}",
        f"--num-points {spectra['num_points']}",
        f"--num-vectors {spectra['num_vectors']}",
        f"--kappa {spectra['kappa']}",
        f"--seed {spectra['seed']}",
        f"--margin {spectra['margin']}",
        f"--batch-size {spectra['batch_size']}",
    ]
    if "plain" in variants or "deflated" in variants:
        options.append(f"--num-iters {spectra['num_iters']}")
        options.append(f"--smoothing {spectra['smoothing']}")
    if "log" in variants:
        options.append(f"--log-num-iters {spectra['log_num_iters']}")
        options.append(f"--log-eps {spectra['log_eps']}")
        options.append(f"--log-smoothing {spectra['log_smoothing']}")
        if spectra["log_deflate"]:
            options.append(f"--log-deflate {' '.join(spectra['log_deflate'])}")
    if "deflated" in variants or ("log" in variants and spectra["log_deflate"]):
        options.append(f"--subspace-iters {spectra['subspace_iters']}")
        options.append(f"--subspace-tol {spectra['subspace_tol']}")
        options.append(f"--subspace-oversample {spectra['subspace_oversample']}")
    return " ".join(options)


SPECTRAL_CODE = library_sources(
    "data",
    "models",
    "training",
    "_functional",
    "operators",
    "lanczos",
    "density",
    "subspace",
    "results",
)

def selfcheck_options(wildcards):
    selfcheck = config["selfcheck"]
    return (
        f"--num-iters {selfcheck['num_iters']} --num-points {selfcheck['num_points']}"
        f" --log-num-iters {selfcheck['log_num_iters']}"
        f" --num-vectors {selfcheck['num_vectors']} --kappa {selfcheck['kappa']}"
        f" --seed {selfcheck['seed']} --eps {selfcheck['eps']}"
        f" --smoothing {config['spectra']['smoothing']}"
        f" --log-smoothing {config['spectra']['log_smoothing']}"
    )


# scripts/aggregate.py reads its input paths from stdin: at the paper's scale (tens of
# thousands of files) they exceed the length limit of one shell command line.
def run_aggregate(kind, paths, output, log):
    with open(log, "w") as handle:
        subprocess.run(
            ["python", "scripts/aggregate.py", kind, "--out", output, "--inputs-from", "-"],
            input="\n".join(paths) + "\n",
            text=True,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )


check_config()
