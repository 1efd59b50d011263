"""Lesson 03's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions and the blank student submits the
student notebook untouched. The partial student gets the fans and the gains right, makes one of the
lesson's catalogued mistakes in each of five exercises, and leaves the last two unanswered; every
point of their total is accounted for in ``EXPECTED``.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "03_initialization"

# Exercise 3 "truncating" by wrap-around: torch.fmod(randn, 2)·σ. The visible cases (normal, uniform)
# pass; the hidden group of distributions fails on the large truncated case (the share within ±σ/2
# and the variance tell it from a truncated normal).
_SCALING_FMOD = '''\
def variance_scaling_(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None):
    """Var = scale/n; the truncated normal by torch.fmod."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"bad mode {mode!r}")
    if distribution not in ("normal", "truncated_normal", "uniform"):
        raise ValueError(f"bad distribution {distribution!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    with torch.no_grad():
        if distribution == "uniform":
            return tensor.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std, generator=generator)
        if distribution == "normal":
            return tensor.normal_(0.0, std, generator=generator)
        z = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
        return tensor.copy_(torch.fmod(z, 2.0) * std / 0.87962566103423978)
'''

# Exercise 4 with Keras's normals untruncated: the visible HeNormal case fails (its group), and the
# hidden Keras group; PyTorch's Kaiming and Xavier and the ValueErrors pass.
_MAPPING_UNTRUNCATED = '''\
def as_variance_scaling(initializer, **kwargs):
    """Keras's normals taken as plain normals."""
    keras = {"GlorotUniform": (1.0, "fan_avg", "uniform"), "GlorotNormal": (1.0, "fan_avg", "normal"),
             "HeUniform": (2.0, "fan_in", "uniform"), "HeNormal": (2.0, "fan_in", "normal"),
             "LecunUniform": (1.0, "fan_in", "uniform"), "LecunNormal": (1.0, "fan_in", "normal")}
    if initializer in keras:
        return keras[initializer]
    distribution = "uniform" if initializer.endswith("uniform") else "normal"
    if initializer in ("xavier_uniform", "xavier_normal"):
        return kwargs.get("gain", 1.0) ** 2, "fan_avg", distribution
    if initializer in ("kaiming_uniform", "kaiming_normal"):
        mode = kwargs.get("mode", "fan_in").lower()
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"bad mode {mode!r}")
        return calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0)) ** 2, mode, distribution
    if initializer == "nn.Linear":
        return 1 / 3, "fan_in", "uniform"
    raise ValueError(initializer)
'''

# Exercise 5 without the sign correction: orthogonal (visible cases pass) but not Haar (the hidden
# group "Haar distributed" fails; the other hidden groups pass).
_ORTHOGONAL_NO_SIGN = '''\
def orthogonal_(tensor, gain=1.0, generator=None):
    """Q of a QR decomposition, without the sign correction."""
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with torch.no_grad():
        a = tensor.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
        if rows < cols:
            a = a.T
        q, _ = torch.linalg.qr(a)
        if rows < cols:
            q = q.T
        tensor.view_as(q).copy_(q)
        tensor.mul_(gain)
    return tensor
'''

# Exercise 6 propagating Var[h] instead of E[h²]: right for linear nets (mean 0), wrong wherever ReLU
# or leaky_relu outputs have a mean — every group but the linear one.
_PREDICT_VARIANCE = '''\
def predict_layer_stds(widths, weight_vars, nonlinearity="relu", param=None, input_var=1.0, output_grad_var=1.0):
    """The recursion with Var[h] where E[h²] belongs."""
    slope = {"linear": 1.0, "relu": 0.0}.get(nonlinearity, 0.01 if param is None else param)
    keep = (1 + slope**2) / 2
    act_std, var = [], input_var
    for fan_in, var_w in zip(widths[:-1], weight_vars):
        q = fan_in * var_w * var
        var = keep * q - (1 - slope) ** 2 * q / (2 * math.pi)
        act_std.append(math.sqrt(var))
    grad_var = [output_grad_var]
    for layer in range(len(weight_vars) - 1, 0, -1):
        grad_var.insert(0, widths[layer + 1] * weight_vars[layer] * keep * grad_var[0])
    return act_std, [math.sqrt(v) for v in grad_var]
'''

# Exercise 7 by the activations' own scale: it names a layer after (or before) the bad one whenever
# the bad layer's scale is inherited downstream — the visible case among them.
_BUG_BY_ACTIVATIONS = '''\
def find_init_bug(model, x):
    """The layer whose output std is farthest from the median output std."""
    stds = []
    hooks = [m.register_forward_hook(lambda m, i, o: stds.append(o.std().item()))
             for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    logs = np.log(stds)
    index = int(np.argmax(np.abs(logs - np.median(logs))))
    return index, "too small" if logs[index] < np.median(logs) else "too large"
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 27, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 14.87, "fan_in_and_fan_out, calculate_gain right (3 + 3); variance_scaling_ "
                                         "truncating by torch.fmod loses the hidden distributions group (1 + 1.6); "
                                         "as_variance_scaling with Keras's normals untruncated loses the Keras "
                                         "group (0.67 + 1.5); orthogonal_ without the sign correction loses only "
                                         "the Haar group (1 + 1.6); predict_layer_stds with Var[h] for E[h²] keeps "
                                         "only the linear groups (0.5 + 0.5); find_init_bug by the activations' "
                                         "scale keeps one hidden group (0 + 0.5); init_model_ and "
                                         "init_output_layer_ not attempted"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    partial = {gid: good[gid] for gid in ("fan_in_and_fan_out", "calculate_gain")}
    partial.update({"variance_scaling": _SCALING_FMOD, "as_variance_scaling": _MAPPING_UNTRUNCATED,
                    "orthogonal": _ORTHOGONAL_NO_SIGN, "predict_layer_stds": _PREDICT_VARIANCE,
                    "find_init_bug": _BUG_BY_ACTIVATIONS})
    return {"perfect": src.with_answers(good), "blank": src.release, "partial": src.with_answers(partial)}
