"""Progress lines for long calls (``progress=`` of the estimators).

Every long library call -- :func:`~.density.lanczos_approx_spec`,
:func:`~.density.log_spectrum`, :func:`~.lanczos.fast_lanczos`,
:func:`~.subspace.subspace_iteration`, the traces and Gram of
:class:`~.decomposition.GDecomposition` -- takes ``progress``:

- ``False`` (the default): silent;
- ``True``: lines on the ``hessian_spectrum`` logger at INFO level, such as
  ``lanczos: step 64/128 (50%), 31.2 s elapsed, about 31 s left``, at most one
  every :data:`INTERVAL` seconds plus the first and a closing one.  When neither
  that logger nor the root logger has a handler, one writing to stderr is added, so
  the lines show in a plain script and in a workflow job's log without any set-up;
- a callable ``f(what, done, total, elapsed_s)``: called at every step (a progress
  bar of your own, a notebook widget).

Why ``logging`` and not tqdm: the workflow's jobs write their stderr to log files,
where a redrawn bar leaves carriage-return debris and one line per redraw; logging
gives whole, time-stamped lines, is silenced or redirected with the standard
``logging`` configuration, and adds no dependency.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "INTERVAL", "logger"]

logger = logging.getLogger("hessian_spectrum")

INTERVAL = 10.0
"""Seconds between two progress lines of one call (the first and last always show)."""

FORMAT = "%(asctime)s %(message)s"


def _ensure_handler() -> None:
    """A stderr handler on the package logger when logging is not configured."""
    if logger.handlers or logging.getLogger().handlers:
        if logger.level == logging.NOTSET and logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(FORMAT, "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime  # UTC, as the job logs' header and footer
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Progress:
    """Reports ``done`` of ``total`` units of one call (see the module docstring)."""

    def __init__(
        self,
        what: str,
        total: int,
        progress: bool | Callable[..., Any] | None | Progress,
        unit: str = "step",
    ):
        if isinstance(progress, Progress):  # a nested call under its caller's name
            what = f"{progress.what} / {what}"
            progress = progress.progress
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                f"progress must be True, False or a callable f(what, done, total, "
                f"elapsed_s), got {progress!r}"
            )
        self.what, self.total, self.unit = what, int(total), unit
        self.progress = progress
        self.start = time.perf_counter()
        self._last = -float("inf")
        if progress is True:
            _ensure_handler()

    def __bool__(self) -> bool:
        return bool(self.progress)

    def update(self, done: int, note: str = "") -> None:
        """``done`` units finished (``note``: a short status, e.g. a residual)."""
        if not self.progress:
            return
        elapsed = time.perf_counter() - self.start
        if callable(self.progress) and self.progress is not True:
            self.progress(self.what, int(done), self.total, elapsed)
            return
        now = time.perf_counter()
        if not (done <= 1 or now - self._last >= INTERVAL):
            return
        self._last = now
        text = f"{self.what}: {self.unit} {done}/{self.total}"
        if self.total:
            text += f" ({100 * done / self.total:.0f}%)"
        text += f", {elapsed:.1f} s elapsed"
        if 0 < done < self.total:
            text += f", about {elapsed * (self.total - done) / done:.0f} s left"
        if note:
            text += f", {note}"
        logger.info(text)

    def finish(self, done: int | None = None, note: str = "") -> None:
        """The call ended (early stops included): one closing line."""
        if not self.progress:
            return
        done = self.total if done is None else done
        if callable(self.progress) and self.progress is not True:
            elapsed = time.perf_counter() - self.start
            self.progress(self.what, int(done), self.total, elapsed)
            return
        elapsed = time.perf_counter() - self.start
        text = f"{self.what}: done, {done} {self.unit}s in {elapsed:.1f} s"
        if note:
            text += f", {note}"
        logger.info(text)
