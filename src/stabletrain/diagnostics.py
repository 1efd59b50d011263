"""Diagnostics of a network in training: activation statistics, gradient norms, update sizes.

These are the measurements behind the four diagnostic plots of lesson 00 (after Karpathy's makemore
part 3 and fast.ai's hooks): per-layer activation histograms with their saturated and dead
fractions, per-layer gradient norms, the grad:data ratio and the update:data ratio over steps.

Conventions used throughout:

- *std* is the population standard deviation (``correction=0``, numpy's default).
- Parameters are named as in ``model.named_parameters()`` (``"fc1.weight"``, ``"out.bias"``, ...);
  layers as in ``model.named_modules()`` (``"act1"``, ``"block3.act"``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "ACTIVATION_TYPES",
    "LayerRecord",
    "ActivationStats",
    "grad_norms_per_layer",
    "update_to_data_ratio",
    "TrainingRecorder",
    "train_and_log",
]

#: the modules :class:`ActivationStats` watches by default.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.Sigmoid,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
)
# outputs in [0, 1]: mapped to [-1, 1] by 2h - 1 before the saturation test
_UNIT_INTERVAL_TYPES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)
# default histogram ranges; other modules get (-4, 4)
_DEFAULT_RANGES: tuple[tuple[tuple[type[nn.Module], ...], tuple[float, float]], ...] = (
    ((nn.Tanh, nn.Hardtanh, nn.Softsign), (-1.0, 1.0)),
    (_UNIT_INTERVAL_TYPES, (0.0, 1.0)),
    ((nn.ReLU, nn.ReLU6), (0.0, 4.0)),
)
_WIDE_RANGE = (-4.0, 4.0)

StatField = Literal["mean", "std", "saturated", "dead"]


@dataclass(frozen=True)
class LayerRecord:
    """Statistics of one layer's output in one forward call.

    ``counts`` are the histogram counts over the bin ``edges`` (``len(edges) == len(counts) + 1``),
    both None when histograms are off; values outside the edges are not counted.
    """

    name: str
    kind: str
    mean: float
    std: float
    saturated: float
    dead: float
    counts: np.ndarray | None
    edges: np.ndarray | None


class ActivationStats:
    r"""Forward hooks that record statistics of chosen layers' outputs at every forward call.

    For a layer output :math:`h` of shape ``(N, *unit_shape)`` (batch first; every element of
    ``unit_shape`` is a *unit*):

    - ``mean``, ``std``: over all elements of :math:`h` (population std);
    - ``saturated``: the fraction of elements with :math:`|h| >` ``saturation_threshold`` — the
      tanh-like flat regions where :math:`\tanh'(z) = 1 - h^2 < 1 - 0.97^2 \approx 0.06`. Outputs of
      ``nn.Sigmoid``/``nn.Hardsigmoid`` lie in [0, 1] and are mapped to :math:`2h - 1` first. For
      unbounded activations (ReLU, GELU, ...) the number only counts large outputs;
    - ``dead``: the fraction of units whose output is :math:`\le 0` for *every* sample in the batch
      — for ReLU such a unit passes no gradient to its weights on this batch. For activations that
      are not ReLU-like the number has no such meaning;
    - ``counts``: histogram counts over fixed bins (the same every call, so histograms can be
      stacked over training steps into a heat map).

    Arguments:
        model: the network whose submodules are watched.
        layer_types: a module class or a sequence of them to watch (default
            :data:`ACTIVATION_TYPES`; ``nn.Linear`` gives pre-activations), or a predicate
            ``(name, module) -> bool``. No matching module raises ValueError.
        saturation_threshold: in (0, 1).
        keep_histograms: record ``counts``/``edges``.
        bins: number of equal-width histogram bins.
        hist_range: ``(low, high)`` of the bins for every layer; ``None`` picks per module type:
            (-1, 1) for tanh-like, (0, 1) for sigmoid-like, (0, 4) for ReLU, (-4, 4) otherwise.

    ``history[name]`` is the list of records of layer ``name``, one per call, in call order; a
    module that is called several times per forward pass (an RNN cell) adds one record per call.
    Use as a context manager to remove the hooks on exit, or call :meth:`remove`.
    """

    def __init__(
        self,
        model: nn.Module,
        layer_types: type[nn.Module]
        | Sequence[type[nn.Module]]
        | Callable[[str, nn.Module], bool] = ACTIVATION_TYPES,
        saturation_threshold: float = 0.97,
        keep_histograms: bool = True,
        bins: int = 50,
        hist_range: tuple[float, float] | None = None,
    ) -> None:
        if not 0.0 < saturation_threshold < 1.0:
            raise ValueError(f"saturation_threshold must be in (0, 1), got {saturation_threshold!r}")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins!r}")
        if hist_range is not None and not hist_range[0] < hist_range[1]:
            raise ValueError(f"hist_range must be (low, high) with low < high, got {hist_range!r}")
        if isinstance(layer_types, type):
            layer_types = (layer_types,)
        if callable(layer_types):
            chosen = [(n, m) for n, m in model.named_modules() if layer_types(n, m)]
        else:
            types = tuple(layer_types)
            chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
        if not chosen:
            raise ValueError(
                f"no module of {type(model).__name__} matches layer_types={layer_types!r}"
            )
        self.saturation_threshold = saturation_threshold
        self.keep_histograms = keep_histograms
        self.bins = bins
        self.names: list[str] = [name or type(module).__name__ for name, module in chosen]
        self._ranges: dict[str, tuple[float, float]] = {}
        self.edges: dict[str, np.ndarray] = {}
        self.history: dict[str, list[LayerRecord]] = {name: [] for name in self.names}
        self._handles = []
        for name, (_, module) in zip(self.names, chosen):
            low, high = hist_range if hist_range is not None else _default_range(module)
            self._ranges[name] = (low, high)
            self.edges[name] = np.linspace(low, high, bins + 1)
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"ActivationStats can only watch tensor outputs; layer {name!r} "
                    f"({type(module).__name__}) returned {type(output).__name__}"
                )
            self.history[name].append(self._record(name, module, output.detach()))

        return hook

    def _record(self, name: str, module: nn.Module, h: Tensor) -> LayerRecord:
        if h.ndim < 2 or h.numel() == 0:
            raise ValueError(
                f"layer {name!r} produced an output of shape {tuple(h.shape)}; "
                "ActivationStats needs a non-empty (N, *units) output"
            )
        centred = 2.0 * h - 1.0 if isinstance(module, _UNIT_INTERVAL_TYPES) else h
        saturated = (centred.abs() > self.saturation_threshold).float().mean().item()
        dead = (h.reshape(h.shape[0], -1) <= 0).all(dim=0).float().mean().item()
        counts = edges = None
        if self.keep_histograms:
            values = h.float().numpy(force=True).ravel()
            values = values[np.isfinite(values)]
            counts = np.histogram(values, bins=self.bins, range=self._ranges[name])[0]
            edges = self.edges[name]
        return LayerRecord(
            name=name,
            kind=type(module).__name__,
            mean=h.mean().item(),
            std=h.std(correction=0).item(),
            saturated=saturated,
            dead=dead,
            counts=counts,
            edges=edges,
        )

    @property
    def stats(self) -> list[LayerRecord]:
        """The latest record of every layer that has run, in layer order."""
        return [self.history[name][-1] for name in self.names if self.history[name]]

    def series(self, field: StatField) -> dict[str, np.ndarray]:
        """``{layer name: array of field over calls}``, e.g. ``series("dead")`` over training."""
        if field not in ("mean", "std", "saturated", "dead"):
            raise ValueError(f"field must be 'mean', 'std', 'saturated' or 'dead', got {field!r}")
        return {
            name: np.array([getattr(r, field) for r in self.history[name]], dtype=float)
            for name in self.names
        }

    def histograms(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` of layer ``name``: counts of shape ``(calls, bins)``, edges ``(bins + 1,)``."""
        if name not in self.history:
            raise KeyError(f"no layer {name!r}; watched layers are {self.names}")
        if not self.keep_histograms:
            raise ValueError("histograms were not kept: create ActivationStats with keep_histograms=True")
        rows = [r.counts for r in self.history[name]]
        counts = np.stack(rows) if rows else np.zeros((0, self.bins), dtype=np.int64)
        return counts, self.edges[name]

    def clear(self) -> None:
        """Forget every record; the hooks stay."""
        for records in self.history.values():
            records.clear()

    def remove(self) -> None:
        """Remove the hooks; the records stay."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ActivationStats:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def _default_range(module: nn.Module) -> tuple[float, float]:
    for types, bounds in _DEFAULT_RANGES:
        if isinstance(module, types):
            return bounds
    return _WIDE_RANGE


def grad_norms_per_layer(model: nn.Module, norm_type: float = 2.0) -> dict[str, float]:
    r"""``{parameter name: \|grad\|_p}`` for every parameter of ``model`` whose ``.grad`` is not None.

    Names come from ``model.named_parameters()`` (``"fc1.weight"``, ``"fc1.bias"``, ...), in that
    order; the norm is over all entries of the gradient tensor,
    :math:`\|g\|_p = (\sum_i |g_i|^p)^{1/p}`, with ``norm_type=float("inf")`` the largest
    :math:`|g_i|`. Parameters without a gradient (frozen, unused, or before the first backward)
    are left out.
    """
    return {
        name: torch.linalg.vector_norm(p.grad.detach(), ord=norm_type).item()
        for name, p in model.named_parameters()
        if p.grad is not None
    }


def _ratio(update: Tensor, data: Tensor, name: str) -> float:
    if update.shape != data.shape:
        raise ValueError(
            f"update{name} has shape {tuple(update.shape)} but data has {tuple(data.shape)}"
        )
    num = update.detach().double().std(correction=0)
    den = data.detach().double().std(correction=0)
    return (num / den).item()


@overload
def update_to_data_ratio(update: Tensor, data: Tensor, log10: bool = False) -> float: ...
@overload
def update_to_data_ratio(
    update: Mapping[str, Tensor], data: Mapping[str, Tensor], log10: bool = False
) -> dict[str, float]: ...
def update_to_data_ratio(
    update: Tensor | Mapping[str, Tensor],
    data: Tensor | Mapping[str, Tensor],
    log10: bool = False,
) -> float | dict[str, float]:
    r"""How big a step is relative to the parameter it changes: :math:`\mathrm{std}(\Delta\theta)/\mathrm{std}(\theta)`.

    ``update`` is the change an optimizer step made, :math:`\Delta\theta = \theta_\text{after} -
    \theta_\text{before}` (for plain SGD, :math:`-\eta\, g`), and ``data`` the parameter after the
    step, as in Karpathy's makemore part 3. Both stds are population stds, so the ratio does not
    depend on the size of the tensor. Its log10 sits near −3 in healthy training: much lower and
    the layer learns too slowly, much higher and the step is large relative to the weights.

    Accepts two tensors of the same shape (returns a float) or two mappings name → tensor with the
    same keys (returns ``{name: ratio}``). With ``log10=True`` the values are
    :math:`\log_{10}` of the ratio. A ``data`` tensor with zero spread (a single element, or a
    constant) gives ``inf``, or ``nan`` when the update has zero spread too.
    """
    if isinstance(update, Tensor) and isinstance(data, Tensor):
        ratio = _ratio(update, data, "")
        return _log10(ratio) if log10 else ratio
    if isinstance(update, Mapping) and isinstance(data, Mapping):
        if update.keys() != data.keys():
            raise ValueError(
                f"update and data need the same names; only in update: {sorted(update.keys() - data.keys())}, "
                f"only in data: {sorted(data.keys() - update.keys())}"
            )
        ratios = {name: _ratio(update[name], data[name], f"[{name!r}]") for name in update}
        return {n: _log10(r) for n, r in ratios.items()} if log10 else ratios
    raise TypeError(
        f"update and data must both be tensors or both mappings of tensors, "
        f"got {type(update).__name__} and {type(data).__name__}"
    )


def _log10(ratio: float) -> float:
    """log10 of a ratio >= 0 without warnings: 0 -> -inf, inf -> inf, nan -> nan."""
    if ratio == 0.0:
        return -math.inf
    return math.log10(ratio) if math.isfinite(ratio) else ratio


def _is_weight_matrix(name: str, p: Tensor) -> bool:
    return p.ndim >= 2


class TrainingRecorder:
    r"""Per-step, per-parameter training diagnostics for the plots over steps.

    Call :meth:`before_step` after ``loss.backward()`` (and after any clipping) and
    :meth:`after_step` after ``optimizer.step()`` — or wrap the step::

        with recorder.step(loss):
            optimizer.step()

    Each step records, for every selected parameter :math:`\theta` with gradient :math:`g`:

    - ``grad_norm[name]``: :math:`\|g\|_2`;
    - ``grad_to_data[name]``: :math:`\mathrm{std}(g)/\mathrm{std}(\theta)` (before the step);
    - ``log10_update_to_data[name]``: :math:`\log_{10}(\mathrm{std}(\Delta\theta)/\mathrm{std}(\theta_\text{after}))`,
      see :func:`update_to_data_ratio`;

    plus ``loss`` (NaN when not given) and ``total_grad_norm``, the global 2-norm over the selected
    parameters. Every attribute is a numpy array of shape ``(steps,)``; a parameter without a
    gradient at some step gets NaN gradient statistics there (and an update:data of -inf if the
    optimizer left it unchanged).

    ``param_filter(name, parameter) -> bool`` selects the parameters; the default keeps weight
    matrices (``ndim >= 2``), the convention of makemore's plots.
    """

    def __init__(
        self,
        model: nn.Module,
        param_filter: Callable[[str, Tensor], bool] = _is_weight_matrix,
    ) -> None:
        self.params: dict[str, nn.Parameter] = {
            name: p for name, p in model.named_parameters() if p.requires_grad and param_filter(name, p)
        }
        if not self.params:
            raise ValueError(f"param_filter selects no trainable parameter of {type(model).__name__}")
        self.names: list[str] = list(self.params)
        self._loss: list[float] = []
        self._grad_norm: dict[str, list[float]] = {name: [] for name in self.names}
        self._grad_to_data: dict[str, list[float]] = {name: [] for name in self.names}
        self._log10_update: dict[str, list[float]] = {name: [] for name in self.names}
        # (grad norms, grad:data ratios, parameters before the step) between the two calls
        self._pending: tuple[dict[str, float], dict[str, float], dict[str, Tensor]] | None = None

    def before_step(self) -> None:
        """Record the gradient statistics and snapshot the parameters; call before ``optimizer.step()``."""
        if self._pending is not None:
            raise RuntimeError("before_step() called twice without after_step() in between")
        norms, ratios = {}, {}
        for name, p in self.params.items():
            if p.grad is None:
                norms[name] = ratios[name] = math.nan
            else:
                norms[name] = torch.linalg.vector_norm(p.grad.detach()).item()
                ratios[name] = _ratio(p.grad, p, f"[{name!r}]")
        before = {name: p.detach().clone() for name, p in self.params.items()}
        self._pending = (norms, ratios, before)

    def after_step(self, loss: float | Tensor | None = None) -> None:
        """Record the update:data ratios, the pending gradient statistics and ``loss``; call after ``optimizer.step()``."""
        if self._pending is None:
            raise RuntimeError("after_step() called without a matching before_step()")
        norms, ratios, before = self._pending
        self._pending = None
        for name, p in self.params.items():
            self._grad_norm[name].append(norms[name])
            self._grad_to_data[name].append(ratios[name])
            self._log10_update[name].append(_log10(_ratio(p.detach() - before[name], p, f"[{name!r}]")))
        if isinstance(loss, Tensor):
            loss = loss.detach().item()
        self._loss.append(math.nan if loss is None else float(loss))

    @contextmanager
    def step(self, loss: float | Tensor | None = None) -> Iterator[None]:
        """``before_step()`` on entry, ``after_step(loss)`` on exit; an exception discards the step."""
        self.before_step()
        try:
            yield
        except BaseException:
            self._pending = None
            raise
        self.after_step(loss)

    @property
    def steps(self) -> int:
        """Number of completed steps."""
        return len(self._loss)

    @property
    def loss(self) -> np.ndarray:
        return np.array(self._loss, dtype=float)

    @property
    def grad_norm(self) -> dict[str, np.ndarray]:
        return self._arrays(self._grad_norm)

    @property
    def grad_to_data(self) -> dict[str, np.ndarray]:
        return self._arrays(self._grad_to_data)

    @property
    def log10_update_to_data(self) -> dict[str, np.ndarray]:
        return self._arrays(self._log10_update)

    @property
    def total_grad_norm(self) -> np.ndarray:
        """Global 2-norm over the selected parameters per step; missing gradients count as 0."""
        if self.steps == 0:
            return np.zeros(0)
        norms = np.stack(list(self.grad_norm.values()))
        return np.sqrt(np.nansum(norms**2, axis=0))

    @staticmethod
    def _arrays(series: dict[str, list[float]]) -> dict[str, np.ndarray]:
        return {name: np.array(values, dtype=float) for name, values in series.items()}


def train_and_log(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    batches: Sequence[tuple[Tensor, Tensor]],
) -> tuple[list[float], dict[str, list[float]]]:
    r"""Train ``model`` for one optimizer step per ``(x, y)`` of ``batches``, logging the loss and the
    update:data ratio of every weight matrix at every step.

    Each step: ``optimizer.zero_grad()``, ``loss = loss_fn(model(x), y)``, ``loss.backward()``,
    ``optimizer.step()``. The update is what the step did, :math:`\Delta W = W_\text{after} -
    W_\text{before}` (for plain SGD :math:`-\eta g`; with momentum, Adam or weight decay it is not),
    and its ratio is :func:`update_to_data_ratio` with ``log10=True``:
    :math:`\log_{10}(\mathrm{std}(\Delta W)/\mathrm{std}(W_\text{after}))`.

    Returns ``(losses, ratios)``: the loss of every step (computed before its update) as floats,
    and ``{name: [log10 ratio per step]}`` for every parameter that requires a gradient and has
    two or more dimensions (weight matrices; biases start at zero, where the ratio is undefined),
    named as in ``model.named_parameters()``.
    """
    recorder = TrainingRecorder(model)
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        with recorder.step(loss):
            optimizer.step()
    ratios = recorder.log10_update_to_data
    return [float(v) for v in recorder.loss], {name: [float(v) for v in ratios[name]] for name in recorder.names}
