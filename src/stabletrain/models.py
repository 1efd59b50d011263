"""Small models for the lessons' experiments, and a training loop that records what went on.

- :func:`make_mlp` builds deep MLPs — plain or residual, with or without normalization — with a
  chosen activation, initialization and weight scale, and readable layer names for hooks and plots.
- :class:`ExplodingRNN` is a tiny tanh RNN whose recurrent weight is a scaled orthogonal matrix;
  a scale above 1 makes its gradients explode over long sequences.
- :func:`train_steps` runs a fixed number of optimizer steps with optional gradient clipping and
  returns the loss and the global gradient norm at every step.

Initialization uses ``torch.nn.init`` directly (the lessons' own initializers live in
``stabletrain.init``; pass one as ``init=`` to use it).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from stabletrain.diagnostics import TrainingRecorder

__all__ = [
    "ACTIVATION_NAMES",
    "ResidualBlock",
    "make_mlp",
    "ExplodingRNN",
    "TrainResult",
    "train_steps",
]

InitSpec = Literal["xavier", "kaiming", "lecun", "orthogonal"] | Callable[[Tensor], Any] | None
NormSpec = Literal["batch", "layer"] | Callable[[int], nn.Module] | None

#: activation name -> (module factory, nonlinearity name for ``torch.nn.init.calculate_gain``).
#: ELU, GELU and SiLU have no gain in PyTorch; they are ReLU-like, so they get ReLU's √2.
_ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "tanh": (nn.Tanh, "tanh"),
    "sigmoid": (nn.Sigmoid, "sigmoid"),
    "relu": (nn.ReLU, "relu"),
    "leaky_relu": (nn.LeakyReLU, "leaky_relu"),
    "elu": (nn.ELU, "relu"),
    "gelu": (nn.GELU, "relu"),
    "silu": (nn.SiLU, "relu"),
    "identity": (nn.Identity, "linear"),
}
#: the activation names :func:`make_mlp` accepts.
ACTIVATION_NAMES: tuple[str, ...] = tuple(_ACTIVATIONS)
_LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default negative slope
_INIT_NAMES = ("xavier", "kaiming", "lecun", "orthogonal")


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Draw from ``torch.manual_seed(seed)`` inside, leaving the global RNG as it was; no-op for None."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _activation(name: str) -> tuple[Callable[[], nn.Module], str]:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATION_NAMES}")
    return _ACTIVATIONS[name]


def _norm_factory(norm: NormSpec) -> Callable[[int], nn.Module] | None:
    if norm is None or callable(norm):
        return norm
    if norm == "batch":
        return nn.BatchNorm1d
    if norm == "layer":
        return nn.LayerNorm
    raise ValueError(f"unknown norm {norm!r}; expected None, 'batch', 'layer' or a callable(width)")


def _init_weight_(weight: Tensor, init: InitSpec, nonlinearity: str) -> None:
    """Initialise one Linear weight in place; ``nonlinearity`` is what follows the layer."""
    a = _LEAKY_SLOPE if nonlinearity == "leaky_relu" else 0.0
    if callable(init):
        init(weight)
    elif init == "xavier":
        nn.init.xavier_normal_(weight)
    elif init == "kaiming":
        nn.init.kaiming_normal_(weight, a=a, mode="fan_in", nonlinearity=nonlinearity)
    elif init == "lecun":
        nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="linear")
    elif init == "orthogonal":
        nn.init.orthogonal_(weight, gain=nn.init.calculate_gain(nonlinearity, a))
    else:
        raise ValueError(f"unknown init {init!r}; expected None, one of {_INIT_NAMES} or a callable")


class ResidualBlock(nn.Module):
    r"""One residual MLP block of constant width.

    With branch :math:`f(x) = \phi(W x + b)` and residual scale :math:`\alpha`:

    - no norm: :math:`x + \alpha f(x)`;
    - pre-norm (``pre_norm=True``): :math:`x + \alpha f(\mathrm{norm}(x))` — the stream itself is
      never normalized, so its variance grows with depth (by about :math:`\alpha^2 \operatorname{Var} f`
      per block); :math:`\alpha = 1/\sqrt{L}` keeps it bounded;
    - post-norm (``pre_norm=False``): :math:`\mathrm{norm}(x + \alpha f(x))`.

    Submodules, in call order: ``norm`` (pre-norm), ``fc``, ``act``, ``norm`` (post-norm).
    Shapes: ``(N, width) -> (N, width)``.
    """

    def __init__(
        self,
        width: int,
        activation: str = "tanh",
        norm: NormSpec = None,
        pre_norm: bool = True,
        residual_scale: float = 1.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        make_act, _ = _activation(activation)
        make_norm = _norm_factory(norm)
        self.pre_norm = pre_norm
        self.residual_scale = residual_scale
        if make_norm is not None and pre_norm:
            self.norm = make_norm(width)
        self.fc = nn.Linear(width, width, bias=bias)
        self.act = make_act()
        if make_norm is not None and not pre_norm:
            self.norm = make_norm(width)
        self.has_norm = make_norm is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.has_norm and self.pre_norm:
            return x + self.residual_scale * self.act(self.fc(self.norm(x)))
        out = x + self.residual_scale * self.act(self.fc(x))
        return self.norm(out) if self.has_norm else out


def make_mlp(
    in_features: int,
    hidden: int,
    depth: int,
    out_features: int,
    activation: str = "tanh",
    init: InitSpec = None,
    norm: NormSpec = None,
    residual: bool = False,
    weight_scale: float | None = None,
    bias: bool = True,
    seed: int | None = None,
    *,
    pre_norm: bool = True,
    residual_scale: float = 1.0,
) -> nn.Sequential:
    r"""A deep MLP with ``depth`` hidden layers of width ``hidden``, as an ``nn.Sequential``.

    Plain (``residual=False``), layer names in order::

        fc1 [norm1] act1  fc2 [norm2] act2  ...  fc{depth} [norm{depth}] act{depth}  out

    i.e. :math:`h_l = \phi(\mathrm{norm}(W_l h_{l-1} + b_l))` with the norm between the Linear and
    the activation, and a final Linear ``out`` (no activation). ``depth + 1`` Linear layers in all.

    Residual (``residual=True``)::

        embed  block1 ... block{depth}  out

    ``embed`` is a Linear ``in_features -> hidden``; each ``block{l}`` is a :class:`ResidualBlock`
    (``x + residual_scale * act(fc(norm(x)))`` with ``pre_norm=True``, else
    ``norm(x + residual_scale * act(fc(x)))``); ``out`` is a Linear ``hidden -> out_features``.

    Arguments:
        activation: one of :data:`ACTIVATION_NAMES`.
        init: applied to every Linear weight (biases are then set to 0). ``None`` keeps PyTorch's
            default (:math:`U(\pm 1/\sqrt{\text{fan\_in}})`, Var :math:`= 1/(3\,\text{fan\_in})`, biases
            too). ``"xavier"``: :math:`\mathcal N(0, 2/(\text{fan\_in}+\text{fan\_out}))`.
            ``"kaiming"``: :math:`\mathcal N(0, g^2/\text{fan\_in})` with the gain :math:`g` of the
            nonlinearity that follows the layer (5/3 tanh, √2 ReLU-like, 1 sigmoid; 1 for ``embed``
            and ``out``). ``"lecun"``: :math:`\mathcal N(0, 1/\text{fan\_in})`. ``"orthogonal"``:
            gain times an orthogonal matrix. A callable ``init(weight)`` initialises in place.
        norm: ``"batch"`` (``nn.BatchNorm1d``), ``"layer"`` (``nn.LayerNorm``) or a callable
            ``width -> nn.Module`` (e.g. the lessons' own ``BatchNorm1d``).
        weight_scale: multiplies every Linear weight after ``init`` (the weight-scale axis of the
            lesson sweeps); ``None`` leaves the weights as initialised.
        seed: if given, parameters are drawn after ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng``, so the global RNG is unchanged.
        pre_norm, residual_scale: residual blocks only, see :class:`ResidualBlock`.

    Shapes: ``(N, in_features) -> (N, out_features)``.
    """
    for name, value in (("in_features", in_features), ("hidden", hidden), ("out_features", out_features)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    if depth < 1:
        raise ValueError(f"depth (number of hidden layers) must be >= 1, got {depth!r}")
    if weight_scale is not None and not math.isfinite(weight_scale):
        raise ValueError(f"weight_scale must be finite, got {weight_scale!r}")
    make_act, gain_name = _activation(activation)
    make_norm = _norm_factory(norm)
    if init is not None and not callable(init) and init not in _INIT_NAMES:
        raise ValueError(f"unknown init {init!r}; expected None, one of {_INIT_NAMES} or a callable")

    with _seeded(seed):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        # (Linear, name of the nonlinearity that follows it) for the initializer's gain
        linears: list[tuple[nn.Linear, str]] = []
        if residual:
            layers["embed"] = nn.Linear(in_features, hidden, bias=bias)
            linears.append((layers["embed"], "linear"))
            for l in range(1, depth + 1):
                block = ResidualBlock(hidden, activation, norm, pre_norm, residual_scale, bias)
                layers[f"block{l}"] = block
                linears.append((block.fc, gain_name))
        else:
            width = in_features
            for l in range(1, depth + 1):
                layers[f"fc{l}"] = nn.Linear(width, hidden, bias=bias)
                linears.append((layers[f"fc{l}"], gain_name))
                if make_norm is not None:
                    layers[f"norm{l}"] = make_norm(hidden)
                layers[f"act{l}"] = make_act()
                width = hidden
        layers["out"] = nn.Linear(hidden, out_features, bias=bias)
        linears.append((layers["out"], "linear"))

        with torch.no_grad():
            for linear, nonlinearity in linears:
                if init is not None:
                    _init_weight_(linear.weight, init, nonlinearity)
                    if linear.bias is not None:
                        linear.bias.zero_()
                if weight_scale is not None:
                    linear.weight.mul_(weight_scale)
    return nn.Sequential(layers)


class ExplodingRNN(nn.Module):
    r"""A vanilla tanh RNN whose recurrent matrix is ``recurrent_scale`` times an orthogonal matrix.

    .. math::
        h_0 = 0,\qquad h_t = \tanh(W_x x_t + b + s\,Q\,h_{t-1}),\qquad \hat y = W_o h_T + b_o,

    with :math:`Q` orthogonal (all singular values 1) and :math:`s` = ``recurrent_scale``. Back
    through time the gradient is multiplied by :math:`\operatorname{diag}(1 - h_t^2)\, sQ` at every
    step: for :math:`s < 1` it vanishes geometrically in :math:`T`; for :math:`s` well above 1 the
    dynamics turn chaotic and the gradient norm grows exponentially with :math:`T` (with
    ``hidden_size=32`` and :math:`s = 3`, several thousand times from :math:`T = 10` to 40 on the
    adding problem). A high learning rate blows up even :math:`s = 1`: on the adding problem with
    :math:`T = 30`, ``hidden_size=32`` and SGD at learning rate 0.5 (batches of 64), the loss
    diverges within about 15 steps without clipping and stays finite with ``clip=1.0``.

    Submodules: ``input`` (Linear ``input_size -> hidden_size``), ``recurrent`` (Linear
    ``hidden_size -> hidden_size``, no bias), ``act`` (``nn.Tanh``, called once per time step) and
    ``readout`` (Linear ``hidden_size -> output_size``).

    Shapes: ``x`` is ``(N, T, input_size)``, the output is ``(N, output_size)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        recurrent_scale: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if not (math.isfinite(recurrent_scale) and recurrent_scale > 0):
            raise ValueError(f"recurrent_scale must be a finite number > 0, got {recurrent_scale!r}")
        self.recurrent_scale = recurrent_scale
        with _seeded(seed):
            self.input = nn.Linear(input_size, hidden_size)
            self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
            self.act = nn.Tanh()
            self.readout = nn.Linear(hidden_size, output_size)
            with torch.no_grad():
                nn.init.orthogonal_(self.recurrent.weight, gain=recurrent_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[2] != self.input.in_features:
            raise ValueError(
                f"expected x of shape (N, T, {self.input.in_features}), got {tuple(x.shape)}"
            )
        drive = self.input(x)  # (N, T, H): the input contribution of every step at once
        h = x.new_zeros(x.shape[0], self.recurrent.in_features)
        for t in range(x.shape[1]):
            h = self.act(drive[:, t] + self.recurrent(h))
        return self.readout(h)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_steps` measured, one entry per step (NaN after a divergence).

    - ``losses``: the training loss at each step, shape ``(steps,)``.
    - ``grad_norms``: the global 2-norm of all gradients before clipping, ``(steps,)``.
    - ``clipped_grad_norms``: the same norm after clipping — what the optimizer used; equal to
      ``grad_norms`` without clipping. ``clipped_grad_norms < grad_norms`` marks clipped steps.
    - ``diverged_at``: the first step whose loss was not finite (training stopped there), or None.
    """

    losses: np.ndarray
    grad_norms: np.ndarray
    clipped_grad_norms: np.ndarray
    diverged_at: int | None


def _global_grad_norm(params: list[nn.Parameter]) -> float:
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
    if not norms:
        return 0.0
    return torch.linalg.vector_norm(torch.stack(norms)).item()


def train_steps(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    clip: float | Callable[[list[nn.Parameter]], Any] | None = None,
    recorder: TrainingRecorder | None = None,
    *,
    batch_size: int | None = None,
    seed: int = 0,
) -> TrainResult:
    r"""Run ``steps`` optimizer steps of ``loss_fn(model(x), y)`` and record loss and gradient norms.

    Each step: forward, backward, record the global gradient norm :math:`\|g\|_2` (over every
    parameter with a gradient), clip, record the norm again, then ``optimizer.step()`` (wrapped in
    ``recorder.before_step()``/``recorder.after_step(loss)`` when a
    :class:`~stabletrain.diagnostics.TrainingRecorder` is given, so it sees the clipped gradients).

    Arguments:
        data: ``(x, y)``; every step uses all of it, or a random minibatch of ``batch_size`` rows
            drawn without replacement from a generator seeded with ``seed``.
        clip: ``None``; a number ``max_norm`` for ``torch.nn.utils.clip_grad_norm_``; or a callable
            that clips the gradients of the list of parameters in place (e.g. the lessons' own
            ``clip_grad_value_`` via ``functools.partial``).

    When the loss is not finite the step is not taken and training stops; the remaining entries are
    NaN and ``diverged_at`` holds the step. The model is put in training mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    x, y = data
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree on the number of samples: {x.shape[0]} vs {y.shape[0]}")
    if batch_size is not None and not 1 <= batch_size <= x.shape[0]:
        raise ValueError(f"batch_size must be in [1, {x.shape[0]}], got {batch_size!r}")
    if clip is not None and not callable(clip) and not clip >= 0:
        raise ValueError(f"clip must be None, a max_norm >= 0 or a callable, got {clip!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(seed)
    losses = np.full(steps, np.nan)
    norms = np.full(steps, np.nan)
    clipped_norms = np.full(steps, np.nan)
    diverged_at = None

    model.train()
    for step in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = torch.randperm(x.shape[0], generator=generator)[:batch_size]
            xb, yb = x[idx], y[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        losses[step] = loss.item()
        if not math.isfinite(losses[step]):
            diverged_at = step
            break
        loss.backward()
        norms[step] = _global_grad_norm(params)
        if callable(clip):
            clip(params)
        elif clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        clipped_norms[step] = _global_grad_norm(params) if clip is not None else norms[step]
        if recorder is not None:
            recorder.before_step()
        optimizer.step()
        if recorder is not None:
            recorder.after_step(losses[step])
    return TrainResult(losses, norms, clipped_norms, diverged_at)
