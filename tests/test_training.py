"""SGD training, exact resumption, divergence, checkpoints, selection and the CLIs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hessian_spectrum.data import ImageData, load_dataset, subsample_balanced
from hessian_spectrum.models import build_model
from hessian_spectrum.training import (
    _batches,
    _evaluate,
    _milestones,
    load_checkpoint,
    load_model,
    publish_run,
    select_best,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
MLP = {"arch": "mlp", "in_channels": 1, "num_classes": 10, "width": 0.25}
# tiny VGG11: covers BatchNorm running statistics and momentum buffers
VGG = {"arch": "vgg11", "in_channels": 1, "num_classes": 10, "width": 1 / 16}


@pytest.fixture(scope="module")
def data() -> tuple[ImageData, ImageData]:
    train_pool = load_dataset("mnist_embedded", split="train")
    test = load_dataset("mnist_embedded", split="test")
    return train_pool.subset(subsample_balanced(train_pool.y, 20, seed=0)), test.capped(
        100
    )


def _script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"_script_{name}", ROOT / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_short_run_lowers_the_training_loss(data):
    train_set, test_set = data
    torch.manual_seed(0)
    initial = build_model(**MLP)
    loss0, _ = _evaluate(initial, train_set.x, train_set.y, 1024)
    lines = []
    result = train(
        MLP, train_set, test_set, lr=0.1, epochs=3, batch_size=32, log=lines.append
    )
    records = result.history["records"]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train_loss"] < 0.8 * loss0
    assert records[-1]["train_error"] < 0.5
    np.testing.assert_allclose([r["lr"] for r in records], [0.1, 0.01, 0.001])
    assert len(lines) == 3 and "train_loss" in lines[0] and "test_error" in lines[0]
    assert not result.diverged and not result.model.training


def test_milestones_and_singleton_batches():
    assert _milestones(200) == [67, 133] and _milestones(350) == [117, 233]
    assert _milestones(3) == [1, 2] and _milestones(1) == []
    sizes = [len(b) for b in _batches(torch.arange(257), 128)]
    assert sizes == [128, 129]  # BatchNorm cannot train on a batch of one


class _Interrupt(Exception):
    pass


def _interrupt_after(epoch: int):
    def log(line: str) -> None:
        if line.startswith(f"epoch {epoch:>4d}/"):
            raise _Interrupt

    return log


@pytest.mark.parametrize("resume_every", [1, None])
def test_resumed_training_equals_uninterrupted_bit_for_bit(
    data, tmp_path, resume_every
):
    train_set, test_set = data
    kwargs = dict(lr=0.02, epochs=4, seed=1, batch_size=32, checkpoint_epochs=[2])
    full = train(VGG, train_set, test_set, outdir=tmp_path / "full", log=None, **kwargs)

    out = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        train(
            VGG,
            train_set,
            test_set,
            outdir=out,
            resume_every=resume_every,
            log=_interrupt_after(3),
            **kwargs,
        )
    assert (out / "last.pt").exists() == (resume_every is not None)
    lines = []
    resumed = train(
        VGG,
        train_set,
        test_set,
        outdir=out,
        resume_every=resume_every,
        log=lines.append,
        **kwargs,
    )
    assert (
        lines[0].startswith("resuming from")
        and ("epoch 3" if resume_every else "epoch 2") in lines[0]
    )
    assert _same_weights(full.model, resumed.model)
    assert _without_seconds(full.history["records"]) == _without_seconds(
        resumed.history["records"]
    )
    # declared outputs only: the rolling last.pt is gone once the run is done
    assert sorted(p.name for p in out.iterdir()) == ["epoch_2.pt", "history.json"]
    history = json.loads((out / "history.json").read_text())
    assert history["diverged"] is False and len(history["records"]) == 4
    assert history["config"]["lr"] == 0.02 and history["config"][
        "checkpoint_epochs"
    ] == [2]


def test_checkpoint_contents_and_load_model(data, tmp_path):
    train_set, test_set = data
    result = train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=2,
        checkpoint_epochs=[1, 2],
        outdir=tmp_path,
        log=None,
    )
    ckpt = torch.load(tmp_path / "epoch_2.pt", weights_only=True)
    assert (
        ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["diverged"] is False
    )
    assert ckpt["model_spec"] == {**MLP, "input_size": 32}
    assert set(ckpt["rng_state"]) == {"torch", "cuda", "numpy", "python", "data_order"}
    model = load_model(tmp_path / "epoch_2.pt")
    assert not model.training and _same_weights(model, result.model)
    # rerunning a finished run reproduces its outputs without training again
    lines = []
    again = train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=2,
        checkpoint_epochs=[1, 2],
        outdir=tmp_path,
        log=lines.append,
    )
    assert len(lines) == 1 and _same_weights(again.model, result.model)


def test_divergence_writes_flagged_outputs(data, tmp_path):
    train_set, test_set = data
    x = train_set.x.clone()
    x[5] = float("nan")
    poisoned = ImageData(x, train_set.y, num_classes=10, name="poisoned", split="train")
    result = train(
        MLP,
        poisoned,
        test_set,
        lr=0.05,
        epochs=3,
        checkpoint_epochs=[1, 3],
        outdir=tmp_path,
        log=None,
    )
    assert result.diverged and result.history["diverged_epoch"] == 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["diverged"] is True and history["records"] == []
    for e in (1, 3):
        ckpt = load_checkpoint(tmp_path / f"epoch_{e}.pt")
        assert ckpt["diverged"] is True and ckpt["epoch"] == 0
        assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())
    with pytest.raises(ValueError, match="diverged"):
        load_model(tmp_path / "epoch_3.pt")
    assert not (tmp_path / "last.pt").exists()
    # a rerun finds the placeholders and reproduces the outputs without training
    lines = []
    again = train(
        MLP,
        poisoned,
        test_set,
        lr=0.05,
        epochs=3,
        checkpoint_epochs=[1, 3],
        outdir=tmp_path,
        log=lines.append,
    )
    assert again.diverged and lines[0].startswith("resuming from")
    assert json.loads((tmp_path / "history.json").read_text()) == history


def test_corrupt_or_truncated_checkpoint_is_named(data, tmp_path):
    train_set, test_set = data
    train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=1,
        checkpoint_epochs=[1],
        outdir=tmp_path,
        log=None,
    )
    path = tmp_path / "epoch_1.pt"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=f"{path}.*corrupt or truncated"):
        load_checkpoint(path)
    # Resuming checks every checkpoint whole: the damaged one is moved aside (kept,
    # not overwritten) and produced again, equal to the original.
    lines = []
    again = train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=1,
        checkpoint_epochs=[1],
        outdir=tmp_path,
        log=lines.append,
    )
    aside = tmp_path / "epoch_1.pt.corrupt"
    assert aside.read_bytes() == blob[: len(blob) // 2]
    assert "damaged" in lines[0] and "epoch_1.pt" in lines[0]
    assert _same_weights(again.model, load_model(path))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path)
    torch.save({"epoch": 1}, path)
    with pytest.raises(ValueError, match="lacks the entries model_spec"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_added_checkpoint_epoch_trains_only_up_to_it(data, tmp_path):
    """A checkpoint epoch added to a finished run is produced by resuming from the
    checkpoint before it; the final state is kept, not trained again."""
    train_set, test_set = data
    kwargs = dict(lr=0.05, epochs=6, batch_size=32, log=None)
    train(MLP, train_set, test_set, checkpoint_epochs=[1, 6], outdir=tmp_path, **kwargs)
    final = tmp_path / "epoch_6.pt"
    stamp = final.stat().st_mtime_ns
    lines = []
    run = train(
        MLP,
        train_set,
        test_set,
        checkpoint_epochs=[1, 4, 6],
        outdir=tmp_path,
        **{**kwargs, "log": lines.append},
    )
    assert lines[0].startswith("resuming from epoch 1")
    assert "training only up to epoch 4" in lines[1]
    assert sum(line.startswith("epoch ") for line in lines) == 3  # epochs 2, 3, 4
    assert final.stat().st_mtime_ns == stamp
    fresh = train(
        MLP,
        train_set,
        test_set,
        checkpoint_epochs=[1, 4, 6],
        outdir=tmp_path / "fresh",
        **kwargs,
    )
    assert _same_weights(
        load_model(tmp_path / "epoch_4.pt"), load_model(tmp_path / "fresh/epoch_4.pt")
    )
    assert _same_weights(run.model, fresh.model)
    assert _without_seconds(run.history["records"]) == _without_seconds(
        fresh.history["records"]
    )


def test_more_epochs_continue_before_the_first_milestone_that_differs(data, tmp_path):
    """30 epochs (milestones 10, 20) then 33 (11, 22): the schedules agree up to
    epoch 10, so the longer run resumes from the checkpoint at epoch 9 and skips the
    one at 15; it ends equal to a fresh 33-epoch run."""
    train_set, test_set = data
    kwargs = dict(lr=0.05, batch_size=64, log=None)
    train(
        MLP,
        train_set,
        test_set,
        epochs=30,
        checkpoint_epochs=[5, 9, 15, 30],
        outdir=tmp_path,
        **kwargs,
    )
    lines = []
    longer = train(
        MLP,
        train_set,
        test_set,
        epochs=33,
        checkpoint_epochs=[5, 9, 15, 33],
        outdir=tmp_path,
        **{**kwargs, "log": lines.append},
    )
    assert any("not using" in line and "epoch_15.pt" in line for line in lines)
    assert any(line.startswith("resuming from epoch 9") for line in lines)
    fresh = train(
        MLP,
        train_set,
        test_set,
        epochs=33,
        checkpoint_epochs=[5, 9, 15, 33],
        outdir=tmp_path / "fresh",
        **kwargs,
    )
    assert _same_weights(longer.model, fresh.model)
    assert _without_seconds(longer.history["records"]) == _without_seconds(
        fresh.history["records"]
    )
    assert longer.history["config"]["milestones"] == [11, 22]


def test_publish_run_links_the_declared_files(data, tmp_path):
    train_set, test_set = data
    state, out = tmp_path / "state", tmp_path / "out"
    train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=2,
        checkpoint_epochs=[1, 2],
        outdir=state,
        log=None,
    )
    written = publish_run(state, out, [1, 2])
    assert sorted(p.name for p in out.iterdir()) == [
        "epoch_1.pt",
        "epoch_2.pt",
        "history.json",
    ]
    assert all(p.stat().st_ino == (state / p.name).stat().st_ino for p in written)
    with pytest.raises(FileNotFoundError, match="epoch_3.pt"):
        publish_run(state, out, [3])


def test_checkpoint_of_another_run_is_not_overwritten(data, tmp_path):
    train_set, test_set = data
    train(
        MLP,
        train_set,
        test_set,
        lr=0.05,
        epochs=1,
        checkpoint_epochs=[1],
        outdir=tmp_path,
        log=None,
    )
    before = (tmp_path / "epoch_1.pt").read_bytes()
    with pytest.raises(ValueError, match="different run .*lr"):
        train(
            MLP,
            train_set,
            test_set,
            lr=0.1,
            epochs=1,
            checkpoint_epochs=[1],
            outdir=tmp_path,
            log=None,
        )
    assert (tmp_path / "epoch_1.pt").read_bytes() == before


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_bad_learning_rate_is_named_before_any_work(data, tmp_path, lr):
    train_set, test_set = data
    with pytest.raises(ValueError, match=f"lr={lr}"):
        train(MLP, train_set, test_set, lr=lr, epochs=1, outdir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- selection ----------------------------------------------------------------------


def _history(lr, errors, diverged=False, epochs=None):
    records = [{"epoch": i + 1, "test_error": e} for i, e in enumerate(errors)]
    return {
        "config": {"lr": lr, "epochs": epochs or len(errors)},
        "records": records,
        "diverged": diverged,
    }


def test_select_best_picks_final_test_error_smaller_lr_on_ties():
    runs = {
        "a": _history(0.1, [0.5, 0.2]),
        "b": _history(0.01, [0.1, 0.3]),  # best early, not at the end
        "c": _history(0.05, [0.4, 0.2]),  # ties with a: smaller lr wins
        "d": _history(1.0, [0.05], diverged=True, epochs=2),
    }
    selected = select_best(runs)
    assert selected["winner"] == {"lr": 0.05, "run": "c"}
    assert [r["lr"] for r in selected["table"]] == [0.01, 0.05, 0.1, 1.0]
    assert selected["table"][-1] == {
        "lr": 1.0,
        "final_test_error": None,
        "diverged": True,
        "run": "d",
    }


def test_select_best_refuses_all_diverged_and_incomplete():
    with pytest.raises(ValueError, match="all 2 runs diverged"):
        select_best([_history(1.0, [], True, 3), _history(2.0, [0.1], True, 3)])
    with pytest.raises(ValueError, match="run x is incomplete: 1 of 3"):
        select_best({"x": _history(0.1, [0.1], epochs=3)})


# -- command-line scripts ------------------------------------------------------------


def test_scripts_subsample_train_select(tmp_path):
    subset = tmp_path / "subset.npz"
    _script("subsample").main(
        [
            "--dataset",
            "mnist_embedded",
            "--n-per-class",
            "10",
            "--seed",
            "2",
            "--out",
            str(subset),
        ]
    )
    with np.load(subset) as f:
        assert f["indices"].shape == (100,) and str(f["dataset"]) == "mnist_embedded"
        assert int(f["n_per_class"]) == 10 and int(f["seed"]) == 2
    train_main = _script("train").main
    histories = []
    for lr in ("0.05", "0.01"):
        out = tmp_path / f"lr{lr}"
        train_main(
            [
                "--dataset",
                "mnist_embedded",
                "--subset",
                str(subset),
                "--arch",
                "mlp",
                "--width",
                "0.25",
                "--lr",
                lr,
                "--epochs",
                "2",
                "--checkpoint-epochs",
                "1",
                "2",
                "--max-test",
                "50",
                "--device",
                "cpu",
                "--outdir",
                str(out),
            ]
        )
        assert sorted(p.name for p in out.iterdir()) == [
            "epoch_1.pt",
            "epoch_2.pt",
            "history.json",
        ]
        history = json.loads((out / "history.json").read_text())
        assert (
            history["config"]["n_per_class"] == 10 and history["config"]["n_test"] == 50
        )
        histories.append(str(out / "history.json"))
    selected = tmp_path / "selected.json"
    _script("select_lr").main(["--histories", *histories, "--out", str(selected)])
    result = json.loads(selected.read_text())
    assert result["winner"]["run"] in {
        str(tmp_path / "lr0.05"),
        str(tmp_path / "lr0.01"),
    }
    assert len(result["table"]) == 2
    # what the spectrum and decomposition scripts load from it
    from hessian_spectrum.training import load_selected

    winner = load_selected(selected, 2, device="cpu")
    assert str(winner.run) == result["winner"]["run"]
    assert winner.lr == float(result["winner"]["lr"]) and winner.arch == "mlp"
    assert not winner.model.training


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--lr", "0"], "--lr must be a positive number, got 0.0"),
        (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
        (["--lr", "0.1", "--arch", "vgg16"], "invalid choice: 'vgg16'"),
        (["--lr", "0.1", "--dataset", "svhn"], "invalid choice: 'svhn'"),
        (["--lr", "0.1", "--checkpoint-epochs", "9"], "outside 1..2"),
    ],
)
def test_train_script_rejects_bad_input_before_work(tmp_path, capsys, argv, message):
    base = {
        "--dataset": "mnist_embedded",
        "--arch": "mlp",
        "--epochs": "2",
        "--outdir": str(tmp_path / "out"),
    }
    for i in range(0, len(argv), 2):
        base[argv[i]] = argv[i + 1]
    args = [a for kv in base.items() for a in kv]
    with pytest.raises(SystemExit):
        _script("train").main(args)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_subsample_script_too_many_per_class_writes_nothing(tmp_path):
    out = tmp_path / "subset.npz"
    with pytest.raises(
        ValueError, match="n_per_class=401 exceeds the 400 examples of class 0"
    ):
        _script("subsample").main(
            ["--dataset", "mnist_embedded", "--n-per-class", "401", "--out", str(out)]
        )
    assert list(tmp_path.iterdir()) == []


def test_select_script_all_diverged_writes_nothing(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(_history(1.0, [], True, 2)))
    with pytest.raises(ValueError, match="diverged"):
        _script("select_lr").main(
            ["--histories", str(path), "--out", str(tmp_path / "selected.json")]
        )
    assert not (tmp_path / "selected.json").exists()


@pytest.mark.slow
def test_scripts_run_as_files(tmp_path):
    """The CLIs run as ``python scripts/x.py`` (scripts/ is then sys.path[0])."""
    history = tmp_path / "run" / "history.json"
    history.parent.mkdir()
    history.write_text(json.dumps(_history(0.1, [0.3])))
    commands = [
        ["train.py", "--help"],
        ["select_lr.py", "--histories", str(history), "--out", str(tmp_path / "s")],
    ]
    for name, *args in commands:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / name), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "s").read_text())["winner"]["lr"] == 0.1
