"""SGD training as in the paper, resumable checkpoints, and learning-rate selection.

Training (paper, Appendix C.1): SGD with momentum 0.9, weight decay 5e-4, batch
size 128; the initial learning rate is divided by 10 at 1/3 and 2/3 of the epochs
(``MultiStepLR``).  No augmentation; each epoch visits the training set in a fresh
random order drawn from a dedicated ``torch.Generator`` seeded with ``seed``.  After
every epoch the model is evaluated in eval mode on the full training set and the
test set (mean cross-entropy and misclassification rate).

Checkpoints (format fixed in ``docs/CONTRACTS.md``) are dicts of tensors and plain
Python values, read with ``torch.load(weights_only=True)``; nothing else is ever
unpickled.  They hold the model, optimiser and scheduler states and every random
state (torch CPU and CUDA, numpy, python ``random`` and the data-order generator),
so that a run resumed from a checkpoint continues exactly where it stopped: on the
CPU the final weights equal those of an uninterrupted run bit for bit.  Files are
written atomically (temporary file in the same directory, fsync, ``os.replace``).

Resume design: ``epoch_<E>.pt`` is written at every configured checkpoint epoch (the
workflow always includes the last epoch), and a rolling ``last.pt`` every
``resume_every`` epochs; ``last.pt`` is removed when the run finishes, so a finished
run directory holds only its declared outputs.  On start, ``train`` checks every
checkpoint already in ``outdir`` whole (a damaged one is moved aside to
``<name>.corrupt`` and produced again), refuses one of a different run (model, data,
learning rate, seed, optimiser settings) and resumes from the newest usable state at
or before the first checkpoint epoch still missing (the last epoch counts as missing
unless it is a checkpoint), so that a checkpoint epoch added later is produced too;
when the final state is already there it trains only up to the last missing
checkpoint.  A run with more or fewer epochs is the same run up to the first
milestone on which the two learning-rate schedules disagree (the milestones sit at
1/3 and 2/3 of the epochs), so it continues from the newest checkpoint before that.

Divergence: a non-finite training loss (any batch, or the epoch's evaluated train
or test loss) stops the run.  ``history.json`` gets ``"diverged": true`` and the
records of the epochs completed before it; every checkpoint epoch not reached is
still written -- as a *placeholder* holding the last finite state (the end of the
last completed epoch, or the initial weights), with ``"diverged": True``,
``"epoch"`` the epoch of the state it holds and ``"diverged_epoch"`` the epoch in
which the loss blew up -- so that a workflow's declared outputs exist.
:func:`load_model` refuses placeholders; :func:`select_best` never picks a
diverged run.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._functional import resolve_device
from .models import build_model

__all__ = [
    "TrainResult",
    "train",
    "publish_run",
    "load_checkpoint",
    "load_model",
    "load_selected",
    "SelectedRun",
    "select_best",
    "write_json",
    "CHECKPOINT_KEYS",
]

CHECKPOINT_KEYS = (
    "model_spec",
    "model_state",
    "optimizer_state",
    "scheduler_state",
    "rng_state",
    "epoch",
    "history",
)
MODEL_SPEC_KEYS = ("arch", "in_channels", "num_classes", "width", "input_size")
# Settings that must agree between a checkpoint and the run resuming from it (the
# number of epochs may differ: see _schedule_agrees).
_RUN_IDENTITY = (
    "model_spec",
    "lr",
    "seed",
    "batch_size",
    "momentum",
    "weight_decay",
    "n_train",
    "train_labels_sha",
)
_CKPT_NAME = re.compile(r"^epoch_(\d+)\.pt$")
LAST = "last.pt"
HISTORY = "history.json"


@dataclass
class TrainResult:
    """The trained model (eval mode, on ``device``) and the history dict written to
    ``history.json`` (``config``, ``records``, ``diverged``)."""

    model: nn.Module
    history: dict

    @property
    def diverged(self) -> bool:
        return bool(self.history["diverged"])


# -- files -----------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write via a temporary file in the same directory, fsync, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as JSON (strict: NaN/Inf are refused)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    _atomic_write(Path(path), lambda f: f.write(text), mode="w")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a checkpoint (``torch.load(weights_only=True)``, on CPU).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the
    path for a corrupt, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(err).__name__}: {err})"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {path} lacks the entries {', '.join(missing)}")
    spec = ckpt["model_spec"]
    if not isinstance(spec, dict) or any(k not in spec for k in MODEL_SPEC_KEYS):
        raise ValueError(
            f"checkpoint {path}: model_spec must hold {', '.join(MODEL_SPEC_KEYS)}"
        )
    return ckpt


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the network stored in checkpoint ``path``, in eval mode on ``device``.

    Placeholders written for a diverged run (``"diverged": True``) are refused.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("diverged", False):
        raise ValueError(
            f"checkpoint {path} is a placeholder of a run that diverged in epoch "
            f"{ckpt.get('diverged_epoch')}; it holds no trained model"
        )
    spec = ckpt["model_spec"]
    model = build_model(**{k: spec[k] for k in MODEL_SPEC_KEYS})
    model.load_state_dict(ckpt["model_state"])
    return model.to(resolve_device(device)).eval()


@dataclass(frozen=True)
class SelectedRun:
    """The winning run of a learning-rate selection, at one checkpoint epoch."""

    model: nn.Module  # in eval mode
    run: Path  # the run's directory
    lr: float
    arch: str


def load_selected(
    selected: str | os.PathLike, epoch: int, device: str | torch.device = "cpu"
) -> SelectedRun:
    """The winner of ``selected.json`` (written from :func:`select_best`): its model at
    checkpoint ``epoch`` on ``device``, its run directory, learning rate and
    architecture (from the run's ``history.json``)."""
    winner = json.loads(Path(selected).read_text())["winner"]
    run = Path(winner["run"])
    history = json.loads((run / "history.json").read_text())
    model = load_model(run / f"epoch_{epoch}.pt", device=device)
    return SelectedRun(
        model=model, run=run, lr=float(winner["lr"]), arch=history["config"]["arch"]
    )


# -- random states as tensors and plain lists (weights_only-loadable) ------------------


def _rng_state(data_order: torch.Generator) -> dict:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": py_version,
            "state": list(py_internal),
            "gauss": py_gauss,
        },
        "data_order": data_order.get_state(),
    }


def _set_rng_state(state: dict, data_order: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    data_order.set_state(state["data_order"])


# -- the loop --------------------------------------------------------------------------


def _milestones(epochs: int) -> list[int]:
    """Epochs after which the learning rate drops tenfold: 1/3 and 2/3 of the run."""
    return sorted(
        {m for m in (round(epochs / 3), round(2 * epochs / 3)) if 0 < m < epochs}
    )


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a trailing batch of one sample joins the
    previous batch (BatchNorm cannot normalise a single sample in training mode)."""
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


@torch.no_grad()
def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean cross-entropy and misclassification rate, eval mode."""
    model.eval()
    loss, wrong = 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        wrong += (logits.argmax(dim=1) != target).sum().item()
    return loss / x.shape[0], wrong / x.shape[0]


def _progress(epochs: int, rec: dict) -> str:
    return (
        f"epoch {rec['epoch']:>4d}/{epochs} lr {rec['lr']:.3e} "
        f"train_loss {rec['train_loss']:.4f} train_error {rec['train_error']:.4f} "
        f"test_loss {rec['test_loss']:.4f} test_error {rec['test_error']:.4f} "
        f"{_duration(rec['seconds'])}"
    )


def _duration(seconds: float) -> str:
    """``12.3 ms`` below a second (tiny runs take milliseconds per epoch), else
    ``4.56 s``."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _labels_sha(y: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(y.cpu().to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def _checkpoint_files(outdir: Path) -> dict[int, Path]:
    found = {}
    for p in outdir.iterdir() if outdir.is_dir() else ():
        m = _CKPT_NAME.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def _check_same_run(path: Path, ckpt: dict, config: dict) -> None:
    stored = ckpt.get("config", {})
    for key in _RUN_IDENTITY:
        if stored.get(key) != config[key]:
            raise ValueError(
                f"checkpoint {path} belongs to a different run ({key} = "
                f"{stored.get(key)!r} there, {config[key]!r} now); use another output "
                f"directory or remove its checkpoints"
            )


def _schedule_agrees(ckpt: dict, config: dict) -> bool:
    """Whether the run of ``config`` passes through the state of ``ckpt``: the same
    run (see :data:`_RUN_IDENTITY`) whose learning rate was the same in every epoch
    up to the checkpoint's. A run with more (or fewer) epochs has other milestones
    (1/3 and 2/3 of the epochs), so it shares the checkpoints before the first
    milestone on which the two schedules disagree."""
    epoch = int(ckpt["epoch"])
    if epoch > config["epochs"]:
        return False
    old = [m for m in ckpt.get("config", {}).get("milestones", []) if m <= epoch]
    new = [m for m in config["milestones"] if m <= epoch]
    return old == new


def _usable_checkpoints(
    outdir: Path, config: dict, log: Callable[[str], None] | None
) -> dict[int, Path]:
    """The checkpoints in ``outdir`` this run can keep or resume from, by epoch.

    Each one is checked whole (zip CRCs, then read): a damaged file is moved aside to
    ``<name>.corrupt`` and counts as missing, so that it is produced again; one of
    the same run with another schedule beyond its epoch counts as missing (it is
    overwritten when the epoch comes); one of a different run is an error.
    """
    from . import integrity

    usable: dict[int, Path] = {}
    files = sorted(_checkpoint_files(outdir).items())
    last = outdir / LAST
    if last.is_file():
        files.append((-1, last))
    for epoch, path in files:
        found = integrity.defect(path, deep=True)
        ckpt = None
        if found is None:
            try:
                ckpt = load_checkpoint(path)
            except ValueError as err:
                found = str(err)
        if ckpt is None:
            moved = integrity.quarantine(path)
            if log is not None:
                log(f"{path} is damaged ({found}); moved aside to {moved.name}")
            continue
        _check_same_run(path, ckpt, config)
        if not _schedule_agrees(ckpt, config):
            if log is not None:
                log(
                    f"not using {path}: epoch {ckpt['epoch']} of a schedule with "
                    f"milestones {ckpt['config'].get('milestones')}, this run has "
                    f"{config['milestones']}"
                )
            continue
        if epoch == -1:
            epoch = -int(ckpt["epoch"]) - 1  # last.pt: kept apart from epoch files
        usable[epoch] = path
    return usable


def _plan(usable: dict[int, Path], checkpoint_epochs: list[int], epochs: int):
    """``(resume path or None, resume epoch, stop epoch)``: the newest usable state at
    or before the first missing checkpoint (or ``last.pt`` when newer), and the last
    epoch still to produce (``epochs`` when the final state is missing)."""
    wanted = sorted(set(checkpoint_epochs) | {epochs})
    missing = [e for e in wanted if e not in usable]
    if not missing:
        return usable[epochs], epochs, epochs
    limit = min(missing)
    states = {e: p for e, p in usable.items() if 0 < e <= limit}
    for key, path in usable.items():
        if key < 0 and -key - 1 <= limit:  # last.pt at epoch -key - 1
            states.setdefault(-key - 1, path)
    if not states:
        return None, 0, max(missing)
    start = max(states)
    return states[start], start, max(missing)


def train(
    model_spec: Mapping[str, Any],
    train_data: Sequence[torch.Tensor],
    test_data: Sequence[torch.Tensor],
    *,
    lr: float,
    epochs: int,
    seed: int = 0,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    checkpoint_epochs: Iterable[int] = (),
    outdir: str | os.PathLike | None = None,
    resume_every: int | None = 1,
    device: str | torch.device = "auto",
    eval_batch_size: int = 1024,
    config: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = _stderr,
) -> TrainResult:
    """Train ``build_model(**model_spec)`` with SGD as in the paper (Appendix C.1).

    ``model_spec`` holds ``arch``, ``in_channels``, ``num_classes`` and optionally
    ``width`` (1.0) and ``input_size`` (32).  ``train_data`` / ``test_data`` are
    pairs ``(x, y)`` (e.g. :class:`~hessian_spectrum.data.ImageData`).  The global
    torch, numpy and python generators are seeded with ``seed`` (model
    initialisation) and the data order comes from its own generator seeded with
    ``seed``.

    With ``outdir``: writes ``epoch_<E>.pt`` for each of ``checkpoint_epochs``,
    a rolling ``last.pt`` every ``resume_every`` epochs (``None``: never; removed at
    the end) and ``history.json``; resumes from the checkpoints already there (see
    the module docstring).  ``config`` adds entries (data set name, subset file, ...)
    to the history's ``config``.  ``log`` receives one progress line per epoch
    (``None``: silent).
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got lr={lr}")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs}")
    checkpoint_epochs = sorted({int(e) for e in checkpoint_epochs})
    bad = [e for e in checkpoint_epochs if not 1 <= e <= epochs]
    if bad:
        raise ValueError(f"checkpoint epochs {bad} lie outside 1..{epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if resume_every is not None and resume_every < 1:
        raise ValueError(f"resume_every must be positive or None, got {resume_every}")
    spec = {"width": 1.0, "input_size": 32, **dict(model_spec)}
    spec = {
        "arch": str(spec["arch"]),
        "in_channels": int(spec["in_channels"]),
        "num_classes": int(spec["num_classes"]),
        "width": float(spec["width"]),
        "input_size": int(spec["input_size"]),
    }
    x_train, y_train = train_data
    x_test, y_test = test_data
    dev = resolve_device(device)
    run_config = {
        **dict(config or {}),
        "model_spec": spec,
        "lr": float(lr),
        "epochs": int(epochs),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "milestones": _milestones(epochs),
        "checkpoint_epochs": checkpoint_epochs,
        "n_train": int(y_train.shape[0]),
        "n_test": int(y_test.shape[0]),
        "train_labels_sha": _labels_sha(y_train),
    }

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    data_order = torch.Generator().manual_seed(seed)
    model = build_model(**spec).to(dev)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=run_config["milestones"], gamma=0.1
    )
    records: list[dict] = []

    def snapshot(epoch: int) -> dict:
        """A self-contained checkpoint of the current state (copies, on CPU)."""
        return {
            "model_spec": spec,
            "model_state": _cpu_copy(model.state_dict()),
            "optimizer_state": _cpu_copy(optimizer.state_dict()),
            "scheduler_state": copy.deepcopy(scheduler.state_dict()),
            "rng_state": _rng_state(data_order),
            "epoch": epoch,
            "history": list(records),
            "config": run_config,
            "diverged": False,
        }

    def save(ckpt: dict, name: str) -> None:
        _atomic_write(out / name, lambda f: torch.save(ckpt, f))

    out = Path(outdir) if outdir is not None else None
    last_good = None  # the state at the end of the last completed epoch
    diverged_epoch = None
    stop = epochs  # the last epoch to train
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        usable = _usable_checkpoints(out, run_config, log)
        path, start, stop = _plan(usable, checkpoint_epochs, epochs)
        if path is not None:
            last_good = load_checkpoint(path)
            model.load_state_dict(last_good["model_state"])
            optimizer.load_state_dict(last_good["optimizer_state"])
            scheduler.load_state_dict(last_good["scheduler_state"])
            # A run with more epochs shares this state but not the later milestones.
            scheduler.milestones = Counter(run_config["milestones"])
            _set_rng_state(last_good["rng_state"], data_order)
            records = list(last_good["history"])
            if last_good.get("diverged", False):
                diverged_epoch = int(last_good["diverged_epoch"])
            if log is not None:
                log(f"resuming from epoch {last_good['epoch']} ({path})")
        if stop < epochs and log is not None:
            log(
                f"the final state (epoch {epochs}) is already there: training "
                f"only up to epoch {stop}, for the missing checkpoints"
            )
    if last_good is None:
        last_good = snapshot(0)

    xtr, ytr = x_train.to(dev), y_train.to(dev)
    xte, yte = x_test.to(dev), y_test.to(dev)
    epoch = int(last_good["epoch"])
    while diverged_epoch is None and epoch < stop:
        tic = time.perf_counter()
        epoch_lr = optimizer.param_groups[0]["lr"]
        model.train()
        finite = True
        for idx in _batches(
            torch.randperm(xtr.shape[0], generator=data_order), batch_size
        ):
            idx = idx.to(dev)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            if not torch.isfinite(loss):
                finite = False
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if finite:
            scheduler.step()
            train_loss, train_error = _evaluate(model, xtr, ytr, eval_batch_size)
            test_loss, test_error = _evaluate(model, xte, yte, eval_batch_size)
            finite = math.isfinite(train_loss) and math.isfinite(test_loss)
        if not finite:
            diverged_epoch = epoch + 1
            break
        epoch += 1
        records.append(
            {
                "epoch": epoch,
                "lr": epoch_lr,
                "train_loss": train_loss,
                "train_error": train_error,
                "test_loss": test_loss,
                "test_error": test_error,
                "seconds": time.perf_counter() - tic,
            }
        )
        last_good = snapshot(epoch)
        if out is not None:
            if epoch in checkpoint_epochs:
                save(last_good, f"epoch_{epoch}.pt")
            elif resume_every is not None and epoch % resume_every == 0:
                save(last_good, LAST)
        if log is not None:
            log(_progress(epochs, records[-1]))

    if diverged_epoch is None and epoch < epochs:
        # Trained up to ``stop`` for missing checkpoints only: the same run's final
        # state is on disk (_plan), bit-identical to what the remaining epochs give.
        last_good = load_checkpoint(out / f"epoch_{epochs}.pt")
        model.load_state_dict(last_good["model_state"])
        records = list(last_good["history"])
        if last_good.get("diverged", False):
            diverged_epoch = int(last_good["diverged_epoch"])
    diverged = diverged_epoch is not None
    if diverged:
        if log is not None:
            log(f"diverged: non-finite loss in epoch {diverged_epoch}; stopping")
        # Hand back (and store in the placeholders) the last finite state.
        model.load_state_dict(last_good["model_state"])
        if out is not None:
            placeholder = {
                **last_good,
                "diverged": True,
                "diverged_epoch": diverged_epoch,
            }
            for e in checkpoint_epochs:
                if e >= diverged_epoch:
                    save(placeholder, f"epoch_{e}.pt")
    history = {
        "config": {k: v for k, v in run_config.items() if k != "train_labels_sha"},
        "records": records,
        "diverged": diverged,
    }
    if diverged:
        history["diverged_epoch"] = diverged_epoch
    if out is not None:
        write_json(out / HISTORY, history)
        (out / LAST).unlink(missing_ok=True)
    return TrainResult(model=model.eval(), history=history)


def publish_run(
    state_dir: str | os.PathLike,
    outdir: str | os.PathLike,
    checkpoint_epochs: Iterable[int],
) -> list[Path]:
    """Give ``outdir`` the finished run of ``state_dir``: ``epoch_<E>.pt`` for each of
    ``checkpoint_epochs`` and ``history.json``, as hard links (copies where the two
    folders lie on different file systems); return the files written.

    The workflow trains in a state folder that Snakemake does not manage and publishes
    into the declared output: Snakemake deletes a ``directory()`` output before it
    reruns the job (after a kill, a time limit or a new checkpoint epoch), which would
    take every checkpoint with it; the state folder keeps them to resume from.
    """
    import shutil

    state, out = Path(state_dir), Path(outdir)
    names = [f"epoch_{int(e)}.pt" for e in sorted(set(checkpoint_epochs))] + [HISTORY]
    missing = [n for n in names if not (state / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{state} lacks {', '.join(missing)}: train first")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        target = out / name
        tmp = out / f".{name}.publish"
        tmp.unlink(missing_ok=True)
        try:
            os.link(state / name, tmp)
        except OSError:
            shutil.copy2(state / name, tmp)
        os.replace(tmp, target)
        written.append(target)
    return written


def _cpu_copy(obj: Any) -> Any:
    """Deep copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu_copy(v) for v in obj)
    return obj


# -- learning-rate selection -----------------------------------------------------------


def select_best(histories: Mapping[str, Mapping] | Sequence[Mapping]) -> dict:
    """Pick the learning rate with the best final-epoch test error (Appendix C.1).

    ``histories`` maps a run's name (``scripts/select_lr.py`` uses the directory holding
    its ``history.json``, where its checkpoints are) to its history dict; a plain
    sequence is named by position.  Ties go to the smaller learning rate; diverged
    runs never win; a run that stopped before its last epoch without diverging is
    an error.  Returns the ``selected.json`` dict: ``{"winner": {"lr", "run"},
    "table": [{"lr", "final_test_error", "diverged", "run"}, ...]}`` (table sorted by
    learning rate).
    """
    if not isinstance(histories, Mapping):
        histories = {str(i): h for i, h in enumerate(histories)}
    if not histories:
        raise ValueError("no runs to select from")
    table = []
    for run, h in histories.items():
        cfg, records = h["config"], h["records"]
        diverged = bool(h["diverged"])
        if not diverged and (not records or records[-1]["epoch"] != cfg["epochs"]):
            done = records[-1]["epoch"] if records else 0
            raise ValueError(
                f"run {run} is incomplete: {done} of {cfg['epochs']} epochs recorded"
            )
        table.append(
            {
                "lr": float(cfg["lr"]),
                "final_test_error": (
                    None if diverged else float(records[-1]["test_error"])
                ),
                "diverged": diverged,
                "run": str(run),
            }
        )
    table.sort(key=lambda r: (r["lr"], r["run"]))
    finished = [r for r in table if not r["diverged"]]
    if not finished:
        raise ValueError(
            f"all {len(table)} runs diverged (learning rates "
            f"{', '.join(format(r['lr'], 'g') for r in table)}); nothing to select"
        )
    best = min(finished, key=lambda r: (r["final_test_error"], r["lr"]))
    return {"winner": {"lr": best["lr"], "run": best["run"]}, "table": table}
