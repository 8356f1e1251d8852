"""A model as a function of one flat parameter vector, and the data it is evaluated on.

Private building blocks shared by :mod:`curvature` and :mod:`decomposition`:

- :class:`FlatModel` turns an ``nn.Module`` into ``theta -> logits`` over a flat
  parameter vector of length ``p`` (parameters that require grad, in
  ``named_parameters`` order), with forward-mode (``J V``) and reverse-mode
  (``J^T U``) products over a batch for ``k`` vectors at once (``torch.func.vmap``).
- :class:`Batches` turns "a pair of tensors" or "any re-iterable of ``(x, y)``
  batches" into one re-iterable of batches on a device, and knows the sample count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vmap


def _load_jvp_decompositions() -> None:
    """Import torch's forward-mode decompositions now, without their warning.

    torch loads ``torch._decomp.decompositions_for_jvp`` on the first forward-mode
    product, and that module builds its tables with ``torch.jit.script``, which
    torch 2.14 deprecates with a ``FutureWarning`` -- torch's own code path, not
    ours, printed at the head of every spectral job's log.  The warning is silenced
    for that one import only; a user's own ``torch.jit.script`` still warns.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*torch\.jit\.script.* is deprecated",
            category=FutureWarning,
        )
        try:
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        except ImportError:  # a torch without the module: nothing to silence
            pass


_load_jvp_decompositions()

__all__ = ["FlatModel", "Batches", "resolve_device", "check_eval_mode"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` (or ``None``) means CUDA when present, else CPU; a bare ``"cuda"``
    becomes the current CUDA device with its index."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        # "cuda" means the current device; name it, so that it compares equal to
        # the device of the tensors made on it (cuda:0 != cuda)
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def check_eval_mode(model: nn.Module) -> None:
    """Refuse BatchNorm or dropout modules in train mode (paper Section C.3).

    In train mode they make every product random or batch-dependent (and would update
    BatchNorm's running statistics): the curvature is defined for the eval-mode network.
    """
    bad = [
        f"{name or '<root>'} ({type(m).__name__})"
        for name, m in model.named_modules()
        if m.training
        and isinstance(
            m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
        )
    ]
    if bad:
        raise ValueError(
            f"model has BatchNorm/Dropout modules in training mode: {', '.join(bad)}; "
            "in train mode they make the curvature random or batch-dependent: "
            "call model.eval() first"
        )


class FlatModel:
    """``theta (p,) -> f(x; theta)`` for a fixed module, its buffers frozen.

    The module itself is not modified; parameters are read once (detached) at
    construction, so build a new ``FlatModel`` after the weights change.
    """

    def __init__(self, model: nn.Module, device: torch.device):
        self.model = model.to(device)
        self.device = device
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no parameters that require grad")
        self.names = [n for n, _ in named]
        self.params = {n: p.detach() for n, p in named}
        self.frozen = {
            n: p.detach() for n, p in model.named_parameters() if not p.requires_grad
        }
        self.buffers = dict(model.named_buffers())
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.p = sum(self.numels)
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1:
            raise ValueError(f"model parameters mix dtypes {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()

    # -- flat <-> dict ---------------------------------------------------------------
    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Dict of per-parameter tensors -> ``(p,)``."""
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def flatten_block(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Dict of ``(k, *shape)`` tensors -> ``(p, k)``."""
        k = tensors[self.names[0]].shape[0]
        return torch.cat([tensors[n].reshape(k, -1) for n in self.names], dim=1).T

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(p,)`` -> dict of per-parameter tensors (views)."""
        parts = torch.split(vec, self.numels)
        return {
            n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def unflatten_block(self, V: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(p, k)`` -> dict of ``(k, *shape)`` tensors."""
        k = V.shape[1]
        parts = torch.split(V.T, self.numels, dim=1)
        return {
            n: t.reshape(k, *s)
            for n, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def theta(self) -> torch.Tensor:
        """The current parameters as a flat vector."""
        return self.flatten(self.params)

    # -- the function and its derivatives ----------------------------------------------
    def logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``f(x; params)`` with the module's buffers (eval-mode BatchNorm stats)."""
        return functional_call(
            self.model, ({**params, **self.frozen}, self.buffers), (x,)
        )

    def jvp_logits(
        self, x: torch.Tensor, V: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward mode: logits ``z`` (b, C) and ``J V`` (k, b, C) for ``V`` (p, k)."""

        def f(params):
            return self.logits(params, x)

        def one(tangent):
            return jvp(f, (self.params,), (tangent,))

        z, JV = vmap(one, out_dims=(None, 0))(self.unflatten_block(V))
        return z, JV


class Batches:
    """One re-iterable view of a data set as ``(x, y)`` batches on a device.

    ``data`` is either a pair ``(X, Y)`` of tensors (split into ``batch_size`` chunks)
    or any re-iterable of ``(x, y)`` batches (a ``DataLoader``, a list).  NumPy arrays
    stand for tensors anywhere (``torch.from_numpy``: no copy; floating inputs are
    cast to the model's dtype at each product, as tensors are).  A one-shot iterator
    (a generator) is refused: every product passes over the data again.
    """

    def __init__(
        self, data: Any, batch_size: int, device: torch.device, allow_empty=False
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device
        data = _numpy_to_torch(data)
        if _is_tensor_pair(data):
            X, Y = data
            if X.shape[0] != Y.shape[0]:
                raise ValueError(
                    "inputs and labels disagree in length: "
                    f"{X.shape[0]} vs {Y.shape[0]}"
                )
            self._pair = (X, Y)
            self._iterable = None
        else:
            if isinstance(data, Iterator):
                raise TypeError(
                    "data must be re-iterable (a DataLoader, a list of (x, y) batches "
                    "or a pair of tensors), not a one-shot iterator or generator"
                )
            if not isinstance(data, Iterable):
                raise TypeError(
                    f"data must be a pair of tensors or an iterable of (x, y) batches, "
                    f"got {type(data).__name__}"
                )
            self._pair = None
            self._iterable = data
        self.num_samples = sum(int(y.shape[0]) for _, y in self._raw())
        if self.num_samples == 0 and not allow_empty:
            raise ValueError("data set is empty: it holds no samples")

    def _raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._pair is not None:
            X, Y = self._pair
            for start in range(0, X.shape[0], self.batch_size):
                yield (
                    X[start : start + self.batch_size],
                    Y[start : start + self.batch_size],
                )
        else:
            for batch in self._iterable:
                if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                    raise TypeError(
                        f"each batch must be an (x, y) pair, got {type(batch).__name__}"
                    )
                yield _as_tensor(batch[0]), _as_tensor(batch[1])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self._raw():
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
            )


def _as_tensor(a: Any) -> Any:
    """A NumPy array as a tensor (sharing memory); anything else unchanged."""
    if isinstance(a, np.ndarray):
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise TypeError(
                f"NumPy data must be numeric (bool, integer or float), got dtype "
                f"{a.dtype}"
            )
        return torch.from_numpy(np.ascontiguousarray(a))
    return a


def _numpy_to_torch(data: Any) -> Any:
    """A pair ``(X, Y)`` with NumPy members as a pair of tensors."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and any(isinstance(t, np.ndarray) for t in data)
    ):
        X, Y = (_as_tensor(t) for t in data)
        if isinstance(X, torch.Tensor) and isinstance(Y, torch.Tensor):
            if Y.ndim != 1:
                raise ValueError(
                    f"labels must be a 1-d array of class indices, got shape "
                    f"{tuple(Y.shape)}"
                )
            return X, Y
    return data


def _is_tensor_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
        and data[0].ndim >= 1
        and data[1].ndim == 1
    )
