"""Lesson 02's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions and the blank student submits the
student notebook untouched. The partial student makes three of the lesson's catalogued mistakes
and leaves two exercises unanswered; every point of their total is accounted for in ``EXPECTED``
(a cell scores its points times the share of its groups whose cases all pass).
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "02_activations"

# Exercise 1 with the textbook sigmoid: e^(−z) overflows at z = −1000 and the slope is nan there. The
# group "sigmoid and tanh" fails (the visible worked example already shows it); the kinks, GELU/SiLU
# and dtype groups pass: 3 of 4 groups in both cells.
_ACTIVATION_NAIVE_SIGMOID = '''\
def activation_and_grad(name, z):
    """(f(z), f'(z)); the sigmoid straight from its definition."""
    z = np.asarray(z)
    dtype = z.dtype
    if name == "sigmoid":
        e = np.exp(-z)
        return (1 / (1 + e)).astype(dtype), (e / (1 + e) ** 2).astype(dtype)
    if name == "tanh":
        t = np.tanh(z)
        return t, (1 - t * t).astype(dtype)
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(dtype)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z).astype(dtype), np.where(z > 0, 1.0, 0.01).astype(dtype)
    if name == "elu":
        neg = np.minimum(z, 0)
        return np.where(z > 0, z, np.expm1(neg)).astype(dtype), np.where(z > 0, 1.0, np.exp(neg)).astype(dtype)
    x = z.astype(np.float64)
    if name == "gelu":
        cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
        return (x * cdf).astype(dtype), (cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)).astype(dtype)
    if name == "gelu_tanh":
        c = math.sqrt(2 / math.pi)
        xc = np.clip(x, -1e6, 1e6)
        t = np.tanh(c * (xc + 0.044715 * xc ** 3))
        slope = 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * c * (1 + 3 * 0.044715 * xc * xc)
        return (0.5 * x * (1 + t)).astype(dtype), slope.astype(dtype)
    if name == "silu":
        s = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
        return (x * s).astype(dtype), (s * (1 + x * (1 - s))).astype(dtype)
    raise ValueError(f"unknown activation {name!r}")
'''

# Exercise 4 calling second_moment with the variance q instead of the std √q. Right at q = 1 (the
# visible ReLU case and the hidden sigmoid one), wrong elsewhere: visible 1 of 2 groups, hidden 0 of 2.
_GAIN_Q_AS_SIGMA = '''\
def variance_preserving_gain(activation, second_moment, q=1.0):
    return math.sqrt(q / second_moment(activation, q))
'''

# Exercise 5 with z < 0 for "off": a unit whose pre-activation is exactly 0 on every example (zero
# weights and bias) is missed. Visible: the definition group fails (2 of 3 groups pass); hidden: the
# definition group and the model-kinds group (a Leaky ReLU net with a zero row) fail (1 of 3).
_COUNT_STRICT = '''\
def count_dead_neurons(model, data):
    dead = []
    def hook(module, inputs, output):
        dead.append((inputs[0] < 0).all(dim=0))
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        with torch.no_grad():
            model(data)
    finally:
        for h in handles:
            h.remove()
    return int(sum(int(d.sum()) for d in dead))
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 17, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 6.84, "activation_and_grad with the textbook sigmoid, nan at z = −1000 (0.75 + "
                                        "2.25); saturation_fraction right (1 + 1); variance_preserving_gain "
                                        "passing q as the std (0.5 + 0); count_dead_neurons with z < 0 (0.67 + "
                                        "0.67, each cell rounded to 0.01); second_moment and recycle_dead_units_ "
                                        "not attempted"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    partial = {"activation_and_grad": _ACTIVATION_NAIVE_SIGMOID, "saturation_fraction": good["saturation_fraction"],
               "variance_preserving_gain": _GAIN_Q_AS_SIGMA, "count_dead_neurons": _COUNT_STRICT}
    return {"perfect": src.with_answers(good), "blank": src.release, "partial": src.with_answers(partial)}
