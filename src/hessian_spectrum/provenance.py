"""Where a result came from: versions, git commit, device, configuration digest.

Two users: the NetCDF files (:func:`cf_attributes`, CF-1.10 global attributes written
by :func:`hessian_spectrum.results.write_netcdf`) and the workflow's job logs
(:func:`job_header`, :class:`JobLog`: a time-stamped first line naming the package
and torch versions, the git commit and the device, and a last line with the elapsed
time).

>>> attrs = cf_attributes("Hessian spectra")
>>> attrs["Conventions"], attrs["source"].startswith("hessian-spectrum ")
('CF-1.10', True)
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "REFERENCES",
    "package_version",
    "git_commit",
    "config_digest",
    "cf_attributes",
    "job_header",
    "JobLog",
]

REFERENCES = (
    "Papyan, V. (2019). Measurements of three-level hierarchical structure in the "
    "outliers in the spectrum of deepnet Hessians. ICML 2019, arXiv:1811.07062"
)

_SOURCE_TREE = Path(__file__).resolve().parents[2]  # src/hessian_spectrum -> repo


def package_version() -> str:
    """The installed distribution's version (the module's ``__version__`` if none)."""
    try:
        from importlib.metadata import version

        return version("hessian-spectrum")
    except Exception:  # not installed (source tree on sys.path)
        from . import __version__

        return __version__


@functools.cache
def git_commit() -> str | None:
    """The commit of the source tree this package runs from, ``+dirty`` when its
    tracked files differ from it; ``None`` outside a git checkout (a wheel) or
    without git."""
    if not (_SOURCE_TREE / ".git").exists():
        return None
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(_SOURCE_TREE),
                "describe",
                "--always",
                "--dirty",
                "--abbrev=12",
                "--match=NO-TAGS",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.replace("-dirty", "+dirty") or None


def config_digest(config: Mapping[str, Any]) -> str:
    """``sha256:`` of the configuration as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _source() -> str:
    commit = git_commit()
    text = f"hessian-spectrum {package_version()}"
    if commit:
        text += f" (git {commit})"
    try:
        import torch

        text += f", torch {torch.__version__}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return text + f", python {platform.python_version()}"


def cf_attributes(
    title: str,
    *,
    digest: str | None = None,
    history: str | None = None,
    command: str | None = None,
) -> dict[str, str]:
    """CF-1.10 global attributes for a file written now.

    ``history`` (an earlier file's) gets a new first line ``<UTC time>: <command>``
    (the command line of this process unless ``command``), newest first as the NUG
    asks; ``digest`` (:func:`config_digest`) is kept as ``config_digest``.
    """
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]).strip()
    line = f"{_now()}: {command or 'python'} ({_source().split(',')[0]})"
    attrs = {
        "Conventions": "CF-1.10",
        "title": title,
        "source": _source(),
        "history": line if not history else f"{line}\n{history}",
        "references": REFERENCES,
    }
    if digest:
        attrs["config_digest"] = digest
    return attrs


def _device_text(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = (
            device.index if device.index is not None else torch.cuda.current_device()
        )
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"{device} (torch threads: {torch.get_num_threads()})"


def job_header(name: str, device: Any = None) -> str:
    """The first line of a job's log: time, job, versions, commit, device, host."""
    where = f"; device {_device_text(device)}" if device is not None else ""
    host = f"host {platform.node()} pid {os.getpid()}"
    return f"{_now()} {name} start: {_source()}{where}; {host}"


class JobLog:
    """Context manager around a job: :func:`job_header` on entry, the elapsed time
    on exit (also after an error), both on stderr and flushed at once.

    >>> with JobLog("spectrum", device="cpu"):                    # doctest: +SKIP
    ...     ...
    """

    def __init__(self, name: str, device: Any = None, stream=None):
        self.name, self.device = name, device
        self.stream = stream if stream is not None else sys.stderr

    def __enter__(self) -> JobLog:
        self.start = time.perf_counter()
        print(job_header(self.name, self.device), file=self.stream, flush=True)
        return self

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __exit__(self, kind, err, tb) -> None:
        state = "failed" if kind is not None else "done"
        print(
            f"{_now()} {self.name} {state} after {self.elapsed():.1f} s",
            file=self.stream,
            flush=True,
        )
