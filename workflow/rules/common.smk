# Helpers shared by every stage: configuration look-ups, parse-time checks, file paths
# and the lists of target files. Plain functions only (no lambdas), so that every input
# function has a name in error messages and in `snakemake --list-rules`.

import hashlib
import importlib.util
import json
import math
import os
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


def config_key(path):
    """'spectra.variants.hess[0]' for the path ['spectra', 'variants', 'hess', 0]."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in path
    ).lstrip(".")


# Where the workflow lives, found from this file (workflow/rules/common.smk), not from
# the working directory: the workflow runs with `-d <elsewhere>` and as a `module:` of
# another workflow (workflow.basedir is then the host's folder; current_basedir is
# this file's own at parse time).
WORKFLOW_ROOT = Path(str(workflow.current_basedir)).resolve().parents[1]
SCHEMA_PATH = WORKFLOW_ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Software deployment: by default every rule runs with the interpreter that runs
# Snakemake (the project's .venv, `make install`); with `--sdm conda` each rule runs in
# this environment instead (README, "Software deployment"). Relative to the rule files.
CONDA_ENV = "../envs/hessian-spectrum.yaml"


def describe_schema(schema, root):
    """A schema alternative in words: 'null', 'an integer >= 1', 'one of auto'..."""
    while "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return "null"
    if kind in ("integer", "number"):
        words = ["an integer" if kind == "integer" else "a number"]
        for key, sign in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        ):
            if key in schema:
                words.append(f"{sign} {schema[key]}")
        return " ".join(words)
    if kind == "array":
        items = schema.get("items")
        return "a list" + (f" of ({describe_schema(items, root)})" if items else "")
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"a mapping data set -> ({describe_schema(values, root)})"
        return "a mapping"
    if kind == "string":
        return "a string"
    return schema.get("description", "another value")


def config_error(error):
    """A schema violation raised by validate() as one line naming the config key.

    For a choice between alternatives (oneOf) the message lists what is allowed,
    unless one alternative got deeper into the value (e.g. a mapping whose entry
    is wrong): then that entry's error says most."""
    cause = error.__context__  # validate() raises while handling the ValidationError
    if not isinstance(cause, jsonschema.ValidationError):
        return error
    while cause.context:
        deepest = max(cause.context, key=error_depth)
        if error_depth(deepest) > error_depth(cause):
            cause = deepest
            continue
        import yaml

        root = yaml.safe_load(SCHEMA_PATH.read_text())
        allowed = " or ".join(describe_schema(s, root) for s in cause.validator_value)
        key = config_key(cause.absolute_path)
        where = f"Config key '{key}'" if key else "Config"
        return WorkflowError(
            f"{where}: {cause.instance!r} is not allowed; expected {allowed}"
        )
    key = config_key(cause.absolute_path)
    where = f"Config key '{key}'" if key else "Config"
    return WorkflowError(f"{where}: {cause.message}")


def non_finite_numbers(value, path=()):
    """(key, value) of every NaN or infinity in the configuration: JSON Schema's
    number type admits them, and a NaN passes every minimum and maximum."""
    if isinstance(value, float) and not math.isfinite(value):
        yield config_key(path), value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite_numbers(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from non_finite_numbers(item, (*path, index))


for _key, _value in non_finite_numbers(config):
    raise WorkflowError(
        f"Config key '{_key}': {_value} is not a finite number (NaN and infinity are "
        "refused everywhere)."
    )

try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as error:
    raise config_error(error) from None

# Recorded as config_digest in the aggregated NetCDF files (aggregate.smk), the same
# digest as hessian_spectrum.provenance.config_digest(config).
CONFIG_DIGEST = (
    "sha256:"
    + hashlib.sha256(
        json.dumps(config, sort_keys=True, default=str, separators=(",", ":")).encode()
    ).hexdigest()
)


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
        largest = catalog.TRAIN_PER_CLASS[dataset]
        too_many = [n for n in sample_sizes(dataset) if n > largest]
        if too_many:
            raise WorkflowError(
                f"Config key 'sample_sizes' ({dataset}): {too_many[0]} per class is "
                f"more than the {largest} examples of the smallest class of its "
                "training split."
            )
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
    """The library the scripts import: the one of this workflow's own source tree
    (src/hessian_spectrum, put first on PYTHONPATH below, so that an installed copy
    of another version cannot stand in for it and a conda environment needs only the
    dependencies), else the installed package (a deployment of the workflow files
    alone). Located without importing it (importing would load torch)."""
    here = WORKFLOW_ROOT / "src" / "hessian_spectrum"
    if (here / "__init__.py").exists():
        return here, True
    spec = importlib.util.find_spec("hessian_spectrum")
    if spec is None or not spec.submodule_search_locations:
        raise WorkflowError(
            f"The library hessian_spectrum is neither in the workflow's folder ({here}) "
            "nor installed: run `make install`."
        )
    return Path(list(spec.submodule_search_locations)[0]), False


PACKAGE_DIR, _OWN_SOURCE = _package_dir()
if _OWN_SOURCE:
    os.environ.update(
        PYTHONPATH=os.pathsep.join(
            [str(PACKAGE_DIR.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]
        )
    )


def light_module(name):
    """A library module that imports the standard library only, loaded from its file:
    importing the package would import torch, seconds at every parse and in every
    cluster job."""
    spec = importlib.util.spec_from_file_location(
        f"_hessian_spectrum_{name}", PACKAGE_DIR / f"{name}.py"
    )
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


integrity = light_module("integrity")
catalog = light_module("catalog")


def script_file(name):
    """scripts/<name>.py of this workflow, an input of the rules that run it: an edit
    of the script reruns its jobs, and the rule finds it wherever the working
    directory is."""
    return str(WORKFLOW_ROOT / "scripts" / f"{name}.py")


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
# Integrity: damaged files are moved aside while the DAG is built, so that this run
# regenerates them (hessian_spectrum.integrity). Every job writes atomically, so
# damage comes from outside (a truncating copy, a full disk, an editor); without
# these checks a damaged file keeps its timestamp and looks up to date.
# ---------------------------------------------------------------------------------
def report_damage(line):
    print(f"hessian-spectrum: {line}", file=sys.stderr, flush=True)


PREVIOUS_SUFFIX = ".previous"


def retire(paths):
    """Move aggregates aside to ``<name>.previous`` (kept until their successor is
    written: the aggregate_* rules) so that they are made again: Snakemake does not
    regenerate a missing intermediate file while what is made from it is up to date,
    but rule all asks for every aggregate."""
    for path in paths:
        if os.path.exists(path):
            os.replace(path, path + PREVIOUS_SUFFIX)
            report_damage(
                f"{path} is to be made again (kept as {path}{PREVIOUS_SUFFIX})"
            )


def intact(paths, consumer_outputs=()):
    """``paths`` after moving aside (``<path>.corrupt``) the damaged ones among them;
    if any was, the aggregates made from them (``consumer_outputs``) are retired, so
    that this run makes the damaged files and the aggregates again."""
    if integrity.check_files(paths, log=report_damage):
        retire(consumer_outputs)
    return paths


def intact_inputs(paths_function, consumer_output):
    """An input function giving ``paths_function()`` checked by intact()."""

    def inputs(wildcards):
        return intact(paths_function(), [consumer_output])

    inputs.__name__ = f"intact_{paths_function.__name__}"
    return inputs


def checked_selected(wildcards):
    """selected.json of a spectral job, with the checkpoint the job will read: a
    damaged checkpoint moves its whole run folder aside (and retires training.nc,
    made from it), so that the run is trained again (it resumes from its state
    folder: rule train) and selected anew, and the spectra follow."""
    path = SELECTED.format(
        dataset=wildcards.dataset, arch=wildcards.arch, n=wildcards.n
    )
    intact([path])
    if os.path.isfile(path):
        with open(path) as handle:
            winner = json.load(handle)["winner"]["run"]
        ckpt_path = os.path.join(winner, f"epoch_{wildcards.epoch}.pt")
        found = integrity.defect(ckpt_path)
        if found is not None and os.path.isdir(winner):
            moved = integrity.quarantine(winner)
            report_damage(
                f"{ckpt_path} is damaged ({found}); moved its run aside to {moved}, "
                "to be trained and selected again"
            )
            retire([f"{RESULTS}/training.nc"])
    return path


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
class CostOnly:
    """A job option that changes what a job costs, never what it computes (batch
    sizes, downloading, the data root of the embedded data set).

    Snakemake's params rerun trigger compares the params of builtin types only (a
    value of another type is "unrepresentable" and left out:
    snakemake.persistence._serialize_param), so a change of a CostOnly param reruns
    nothing, while shell commands see its text. tests/test_workflow.py holds this
    to dry runs."""

    def __init__(self, text):
        self.text = str(text)

    def __str__(self):
        return self.text

    def __format__(self, spec):
        return format(self.text, spec)


def data_root_option(wildcards):
    """--data-root for the jobs that read a data set: a rerun trigger for the
    torchvision data sets (another root may hold other files), not for the embedded
    set, which ignores it."""
    option = f"--data-root {config['data_root']}"
    return CostOnly(option) if wildcards.dataset == "mnist_embedded" else option


def download_option(wildcards):
    """--download lets torchvision fetch missing files: cost only."""
    return CostOnly("--download" if config["download"] else "")


def spectral_batch_option(wildcards):
    """--batch-size of the spectral jobs: samples per chunk of a product, cost only
    (the chunks' sums differ at round-off, as on another device)."""
    return CostOnly(f"--batch-size {config['spectra']['batch_size']}")


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


def train_state_dir(wildcards):
    """Where a run trains and resumes (the train rule): one folder per run identity, so
    that a change of seed, batch size, width or test cap starts a fresh run while
    more epochs or checkpoints continue the existing one."""
    import hashlib
    import json

    run = training_params(wildcards)
    identity = {k: run[k] for k in ("batch_size", "width", "seed", "max_test")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return (
        f"{RESULTS}/train_state/{wildcards.dataset}/{wildcards.arch}/n{wildcards.n}/"
        f"lr{wildcards.lr}/{digest[:12]}"
    )


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


# The modules whose code decides what a spectral job computes. Left out on purpose:
# _progress and provenance (log lines and file metadata, not numbers).
SPECTRAL_CODE = library_sources(
    "data",
    "models",
    "training",
    "_functional",
    "_distributed",
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


def aggregate_listing(kind, keys):
    """A params function writing the input paths of an aggregation job (the named
    inputs ``keys``), one per line, to results/logs/aggregate/<kind>.inputs, and
    giving that path (scripts/aggregate.py --inputs-from)."""

    def listing(wildcards, input):
        paths = []
        for key in keys.split():
            value = getattr(input, key)
            paths += [value] if isinstance(value, str) else list(value)
        path = f"{LOGS}/aggregate/{kind}.inputs"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("\n".join(paths) + "\n")
        return path

    listing.__name__ = f"aggregate_listing_{kind}"
    return listing


check_config()
# A damaged aggregate is moved aside here and made again (rule all asks for it).
integrity.check_files(aggregate_outputs(), log=report_damage)


# ---------------------------------------------------------------------------------
# Spectral jobs (spectra.smk): the files of one job and its variant options
# ---------------------------------------------------------------------------------
SPECTRUM_DIR = f"{RESULTS}/spectra/{{dataset}}/{{arch}}/n{{n}}/e{{epoch}}"


def spectrum_outputs(key):
    """Every configured operator with its variants (`spectra.<key>`), one split."""
    return [
        f"{SPECTRUM_DIR}/{{split}}/{operator}_{variant}.nc"
        for operator in config["spectra"]["operators"]
        for variant in operator_variants(operator, key)
    ]


def spectrum_operators(key):
    return [op for op in config["spectra"]["operators"] if operator_variants(op, key)]


def spectrum_variant_options(key):
    """--variants-of OPERATOR=V1,V2 for each operator (`spectra.<key>`)."""
    return " ".join(
        f"--variants-of {operator}={','.join(operator_variants(operator, key))}"
        for operator in spectrum_operators(key)
    )


def spectrum_all_variants(key):
    found = {v for op in spectrum_operators(key) for v in operator_variants(op, key)}
    return sorted(found) or ["plain"]


def spectral_launch():
    """How a spectral job starts its script: `python`, or `torchrun` with
    `spectra.processes` processes on this node (data-parallel products)."""
    n = config["spectra"]["processes"]
    if n == 1:
        return "python"
    return f"torchrun --standalone --nproc-per-node {n}"
