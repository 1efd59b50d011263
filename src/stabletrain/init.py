"""Weight initialization: fans, gains, and the variance-scaling family of initializers.

The answer key of lesson ``03_initialization``. ``calculate_gain``, the Xavier, Kaiming and
orthogonal initializers reproduce ``torch.nn.init`` (torch 2.13); ``fan_in_and_fan_out`` is torch's
``_calculate_fan_in_and_fan_out`` made public (it also takes a shape); ``lecun_normal_`` and
``variance_scaling_`` complete the family, the latter following Keras' ``VarianceScaling``.

Why the variances: for y = W x with W of shape (fan_out, fan_in), independent zero-mean entries,

    Var[y_i] = fan_in · Var[w] · E[x²]            (forward)
    Var[∂L/∂x_j] = fan_out · Var[w] · Var[∂L/∂y]   (backward)

so Var[w] = gain² / fan_in keeps the forward signal's scale and gain² / fan_out the backward
one, where the gain makes up for what the activation f does to the second moment (ReLU halves
it: E[relu(z)²] = Var[z]/2, so gain² = 2).

All random initializers fill ``tensor`` in place without recording autograd history, return the
same tensor object, and take an optional ``generator`` to draw from instead of the global RNG.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

_LINEAR_GAIN_NAMES = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
_KAIMING_MODES = ("fan_in", "fan_out")
_SCALING_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
#: Standard deviation of a standard normal truncated to [-2, 2] (Keras' correction constant).
_TRUNCATED_STD = 0.87962566103423978
#: Truncation point, in standard deviations of the untruncated normal.
_TRUNCATION = 2.0


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    """The recommended gain for an activation, as ``torch.nn.init.calculate_gain``.

    ============================================ =========================
    nonlinearity (case-sensitive)                gain
    ============================================ =========================
    linear, conv{1,2,3}d, conv_transpose{1,2,3}d 1
    sigmoid                                      1
    tanh                                         5/3
    relu                                         √2
    leaky_relu (negative slope s = param)        √(2 / (1 + s²)), s = 0.01 by default
    selu                                         3/4
    ============================================ =========================

    ``param`` is read only for ``leaky_relu``; there it must be an int or float (not a bool).

    Raises:
        ValueError: for an unknown ``nonlinearity`` or a slope that is not a number.
    """
    if nonlinearity in _LINEAR_GAIN_NAMES:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, float) or (isinstance(param, int) and not isinstance(param, bool)):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}")


def fan_in_and_fan_out(tensor_or_shape: Tensor | Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *kernel).

    fan_in = in · ∏kernel, fan_out = out · ∏kernel: the number of inputs each output sums over,
    and the number of outputs each input feeds. Linear (5, 3) → (3, 5); Conv2d (16, 3, 3, 3) →
    (27, 144).

    Args:
        tensor_or_shape: a tensor, a ``torch.Size``, or a tuple/list of ints, with ≥ 2 dims.

    Raises:
        ValueError: for fewer than 2 dimensions.
    """
    shape = tuple(tensor_or_shape.shape if isinstance(tensor_or_shape, Tensor) else tensor_or_shape)
    if len(shape) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for a tensor with fewer than 2 dimensions, "
            f"got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fill_uniform_(tensor: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    """Fill with U(-√3·std, √3·std), whose variance is bound²/3 = std²."""
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def _fill_normal_(tensor: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    """Fill with N(0, std²)."""
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _fill_truncated_normal_(
    tensor: Tensor, std: float, generator: torch.Generator | None
) -> Tensor:
    """Fill with N(0, σ²) truncated to [-2σ, 2σ], σ = std / 0.8796…, so that Var = std².

    Inverse-CDF sampling: u ~ U(Φ(-2), Φ(2)), z = Φ⁻¹(u) = √2 · erfinv(2u - 1), w = σ·z.
    """
    sigma = std / _TRUNCATED_STD
    edge = math.erf(_TRUNCATION / math.sqrt(2.0))  # 2Φ(2) - 1
    with torch.no_grad():
        tensor.uniform_(-edge, edge, generator=generator)
        tensor.erfinv_().mul_(math.sqrt(2.0) * sigma)
        return tensor.clamp_(-_TRUNCATION * sigma, _TRUNCATION * sigma)


def xavier_uniform_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Glorot & Bengio (2010): U(-a, a) with a = gain · √(6 / (fan_in + fan_out)).

    Var[w] = a²/3 = gain² · 2 / (fan_in + fan_out), the compromise between the forward
    (1/fan_in) and backward (1/fan_out) conditions.
    """
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return _fill_uniform_(tensor, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def xavier_normal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Glorot & Bengio (2010): N(0, std²) with std = gain · √(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return _fill_normal_(tensor, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    """std = gain / √fan, fan chosen by ``mode`` (case-insensitive, as in torch)."""
    mode_lower = mode.lower()
    if mode_lower not in _KAIMING_MODES:
        raise ValueError(f"Mode {mode!r} not supported, please use one of {list(_KAIMING_MODES)}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    fan = fan_in if mode_lower == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def _warn_if_empty(tensor: Tensor) -> bool:
    """Warn, as torch's Kaiming initializers do, that filling a zero-element tensor is a no-op."""
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He et al. (2015): U(-b, b) with b = gain · √(3 / fan), Var[w] = gain² / fan.

    ``fan`` is fan_in (``mode="fan_in"``, preserves forward variance) or fan_out (preserves
    backward variance); ``gain = calculate_gain(nonlinearity, a)``, with ``a`` the negative slope
    (read only for leaky_relu). The defaults give U(±√(6/fan_in)). ``nn.Linear`` uses
    a = √5, i.e. b = 1/√fan_in and Var[w] = 1/(3·fan_in). A zero-element tensor warns and is
    returned unchanged.

    Raises:
        ValueError: for a mode other than fan_in/fan_out (any case), or a bad nonlinearity.
    """
    if _warn_if_empty(tensor):
        return tensor
    return _fill_uniform_(tensor, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def kaiming_normal_(
    tensor: Tensor,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """He et al. (2015): N(0, std²), std = gain / √fan; arguments as :func:`kaiming_uniform_`."""
    if _warn_if_empty(tensor):
        return tensor
    return _fill_normal_(tensor, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def lecun_normal_(tensor: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """LeCun et al. (1998): N(0, 1/fan_in) = ``variance_scaling_(tensor, 1.0, "fan_in", "normal")``.

    Var[y] = fan_in · Var[w] · Var[x] = Var[x] for a linear layer; the init SELU networks need.
    """
    return variance_scaling_(tensor, 1.0, "fan_in", "normal", generator=generator)


def orthogonal_(
    tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Saxe et al. (2013): a (semi-)orthogonal matrix drawn uniformly (Haar), times ``gain``.

    The tensor is viewed as a matrix M of shape (rows, cols) = (size(0), numel / size(0)). Draw
    A ~ N(0, 1) of shape (rows, cols), transposed to tall if rows < cols; A = QR; Q ← Q·sign(diag R)
    (which makes Q Haar-distributed rather than biased by the QR sign convention); transpose back;
    M = gain · Q. Then MᵀM = gain²·I (cols × cols) when rows ≥ cols, and MMᵀ = gain²·I
    (rows × rows) otherwise. A zero-element tensor is returned unchanged.

    Raises:
        ValueError: for fewer than 2 dimensions.
    """
    if tensor.ndim < 2:
        raise ValueError(
            f"Only tensors with 2 or more dimensions are supported, got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        return tensor
    rows = tensor.size(0)
    cols = tensor.numel() // rows
    with torch.no_grad():
        a = tensor.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
        if rows < cols:
            a = a.T
        q, r = torch.linalg.qr(a)
        q = q * torch.diagonal(r).sign()
        if rows < cols:
            q = q.T
        tensor.view_as(q).copy_(q)
        tensor.mul_(gain)
    return tensor


def variance_scaling_(
    tensor: Tensor,
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "normal",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The general form: zero-mean weights with Var[w] = scale / n.

    n = fan_in, fan_out, or (fan_in + fan_out)/2 for ``mode`` = "fan_in", "fan_out", "fan_avg".
    ``distribution``:

    - "normal": N(0, scale/n) (untruncated; Keras calls this "untruncated_normal");
    - "truncated_normal": N(0, σ²) cut at ±2σ, σ = √(scale/n) / 0.87962566103423978, the
      correction (std of a unit normal truncated to [-2, 2]) that makes Var[w] exactly scale/n;
    - "uniform": U(-b, b) with b = √(3·scale/n).

    Every scheme in this module is a case of it (g = gain):

    ================================= ========== ========= ================
    initializer                       scale      mode      distribution
    ================================= ========== ========= ================
    xavier_uniform_(w, g)             g²         fan_avg   uniform
    xavier_normal_(w, g)              g²         fan_avg   normal
    kaiming_uniform_(w, a, mode, f)   gain(f,a)² mode      uniform
    kaiming_normal_(w, a, mode, f)    gain(f,a)² mode      normal
    lecun_normal_(w)                  1          fan_in    normal
    ================================= ========== ========= ================

    (xavier: g²/((fan_in+fan_out)/2) = g²·2/(fan_in+fan_out); kaiming: g²/fan.)

    Args:
        tensor: a tensor with ≥ 2 dims, filled in place.
        scale: ≥ 0, the variance numerator.
        mode: "fan_in", "fan_out" or "fan_avg" (exact spelling).
        distribution: "normal", "truncated_normal" or "uniform" (exact spelling).
        generator: the random generator to draw from (default: the global one).

    Raises:
        ValueError: for a negative or non-finite scale, an unknown mode or distribution, fewer
            than 2 dims, or a zero fan.
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite non-negative number, got {scale!r}")
    if mode not in _SCALING_MODES:
        raise ValueError(f"mode must be one of {list(_SCALING_MODES)}, got {mode!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {list(_DISTRIBUTIONS)}, got {distribution!r}"
        )
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    if n == 0:
        raise ValueError(
            f"{mode} is 0 for shape {tuple(tensor.shape)}; the variance scale/n is undefined"
        )
    std = math.sqrt(scale / n)
    if distribution == "uniform":
        return _fill_uniform_(tensor, std, generator)
    if distribution == "truncated_normal":
        return _fill_truncated_normal_(tensor, std, generator)
    return _fill_normal_(tensor, std, generator)


def init_model_(model: torch.nn.Module, nonlinearity: str = "relu") -> torch.nn.Module:
    """Initialise every Linear and Conv layer of ``model`` for the activation ``nonlinearity``.

    Each weight gets N(0, gain²/fan_in) — ``kaiming_normal_(w, mode="fan_in",
    nonlinearity=nonlinearity)`` — except for "selu", which needs LeCun's Var = 1/fan_in (torch's
    ``calculate_gain("selu") = 3/4`` is for other uses; its docs ask for "linear" with SELU). Every
    bias is set to 0. Nested modules are included (``model.modules()``); other layers (norms,
    embeddings) keep their parameters. Returns ``model``.
    """
    gain2 = 1.0 if nonlinearity == "selu" else calculate_gain(nonlinearity) ** 2
    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    for module in model.modules():
        if isinstance(module, layers):
            fan_in, _ = fan_in_and_fan_out(module.weight)
            _fill_normal_(module.weight, math.sqrt(gain2 / fan_in), None)
            if module.bias is not None:
                with torch.no_grad():
                    module.bias.zero_()
    return model


#: Keras's initializers as (scale, mode, distribution) of VarianceScaling (Keras 3)
_KERAS = {
    "GlorotUniform": (1.0, "fan_avg", "uniform"),
    "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
    "HeUniform": (2.0, "fan_in", "uniform"),
    "HeNormal": (2.0, "fan_in", "truncated_normal"),
    "LecunUniform": (1.0, "fan_in", "uniform"),
    "LecunNormal": (1.0, "fan_in", "truncated_normal"),
}


def as_variance_scaling(initializer: str, **kwargs) -> tuple[float, str, str]:
    """The ``(scale, mode, distribution)`` for which ``variance_scaling_`` draws from the same
    distribution as a named initializer.

    PyTorch (with torch's keyword arguments and defaults):

    - ``"xavier_uniform"``, ``"xavier_normal"`` (``gain=1.0``): (gain², "fan_avg", uniform/normal),
      since 2·gain²/(fan_in + fan_out) = gain² / ((fan_in + fan_out)/2);
    - ``"kaiming_uniform"``, ``"kaiming_normal"`` (``a=0, mode="fan_in",
      nonlinearity="leaky_relu"``): (calculate_gain(nonlinearity, a)², mode, uniform/normal); like
      torch, ``mode`` is read in any case ("FAN_OUT" is "fan_out") and anything but fan_in/fan_out
      raises ValueError;
    - ``"nn.Linear"``: the default init of a Linear or Conv weight, kaiming_uniform_ with a = √5:
      (1/3, "fan_in", "uniform").

    Keras (no arguments): GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform,
    LecunNormal; Keras's normal ones are truncated normals.

    Raises:
        ValueError: for any other name (orthogonal init is not a case: its entries are not
            independent), a bad mode, or a bad nonlinearity.
    """
    if initializer in _KERAS:
        if kwargs:
            raise ValueError(f"Keras's {initializer} takes no arguments here, got {sorted(kwargs)}")
        return _KERAS[initializer]
    distribution = "uniform" if initializer.endswith("uniform") else "normal"
    if initializer in ("xavier_uniform", "xavier_normal"):
        gain = kwargs.pop("gain", 1.0)
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)} for {initializer}")
        return float(gain) ** 2, "fan_avg", distribution
    if initializer in ("kaiming_uniform", "kaiming_normal"):
        a = kwargs.pop("a", 0)
        mode = kwargs.pop("mode", "fan_in")
        nonlinearity = kwargs.pop("nonlinearity", "leaky_relu")
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)} for {initializer}")
        if mode.lower() not in _KAIMING_MODES:
            raise ValueError(f"Mode {mode!r} not supported, please use one of {list(_KAIMING_MODES)}")
        return calculate_gain(nonlinearity, a) ** 2, mode.lower(), distribution
    if initializer == "nn.Linear":
        if kwargs:
            raise ValueError(f"unexpected arguments {sorted(kwargs)} for nn.Linear")
        return calculate_gain("leaky_relu", math.sqrt(5)) ** 2, "fan_in", "uniform"
    raise ValueError(f"{initializer!r} is not an initializer of the variance-scaling family")


def find_init_bug(model: torch.nn.Module, x: Tensor) -> tuple[int, str]:
    """Which nn.Linear layer of ``model`` is initialised unlike the others, and how.

    Forward hooks record, for every Linear layer (in the order the forward pass runs them), the
    second moments of its input and its output on the batch ``x``; the layer's *gain* is their
    ratio, E[y²]/E[x²] = fan_in·Var[w] for a zero-mean layer without bias (2 for every Kaiming
    layer of a ReLU net, whatever comes before it). The odd one out is the layer whose log-gain is
    farthest from the median log-gain. Unlike the activations' own scale, which every layer after
    a bad one inherits, the gain points at the layer itself, and unlike the weights' statistics
    it also sees a bad bias.

    Returns:
        (index among the Linear layers, from 0; "too small" or "too large").
    """
    records: list[tuple[float, float]] = []

    def hook(module: torch.nn.Module, inputs: tuple, output: Tensor) -> None:
        records.append((inputs[0].detach().double().pow(2).mean().item(), output.detach().double().pow(2).mean().item()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    log_gains = [math.log(out / max(inp, 1e-300)) for inp, out in records]
    median = sorted(log_gains)[len(log_gains) // 2] if len(log_gains) % 2 else \
        sum(sorted(log_gains)[len(log_gains) // 2 - 1:len(log_gains) // 2 + 1]) / 2
    index = max(range(len(log_gains)), key=lambda i: abs(log_gains[i] - median))
    return index, "too small" if log_gains[index] < median else "too large"


def init_output_layer_(model: torch.nn.Module, y: Tensor) -> torch.nn.Module:
    """Karpathy's "init well" for a classifier: the loss at init is the labels' entropy.

    The output layer (the last nn.Linear of ``model``) gets zero weights, so every input gets the
    same logits, and a bias b_k = ln p_k with p the class frequencies of the labels ``y``
    (C = the layer's out_features classes), so softmax(b) = p: the initial cross-entropy is the
    entropy H(p), ln C for balanced classes, and the first steps are not spent learning the class
    priors. Returns ``model``.
    """
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    counts = torch.bincount(y.flatten().long(), minlength=last.out_features).double()
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.copy_(torch.log(counts / counts.sum()).to(last.bias.dtype))
    return model
