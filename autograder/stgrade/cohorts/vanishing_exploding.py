"""Lesson 01's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions, the blank student submits the
student notebook untouched, and the partial student gets one exercise right, one wrong in a way
the catalogue names, leaves one unanswered and misses nested layers in the fourth — which earns
the groups of cases it passes (partial credit per group).
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "01_vanishing_exploding"

_SLOPE_LOG10 = '''\
def log_grad_slope(weight_std, width, activation, preact_var=1.0):
    """The right gain, but the slope in log10 instead of the natural log."""
    if activation == "linear":
        mean_square = 1.0
    elif activation == "relu":
        mean_square = 0.5
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(120)
        z = math.sqrt(preact_var) * nodes
        s = 1 / (1 + np.exp(-z))
        fprime = s * (1 - s) if activation == "sigmoid" else 1 - np.tanh(z) ** 2
        mean_square = np.sum(weights * fprime**2) / math.sqrt(2 * math.pi)
    return 0.5 * math.log10(width * weight_std**2 * mean_square)
'''

_MONITOR_TOP_LEVEL = '''\
def grad_norm_monitor(model, low=1e-4, high=1e2):
    """Right norms and flags, but only for the model's top-level children (nested layers missed)."""
    norms = [m.weight.grad.norm().item() for m in model.children() if isinstance(m, torch.nn.Linear)]
    flags = ["vanishing" if n < low else "exploding" if n > high else "ok" for n in norms]
    return np.array(norms), flags
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 10, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 5.5, "backprop_grad_norms right (3); log_grad_slope in log10 fails every check "
                                       "(0, the feedback names the base of the log); jacobian_singular_values not "
                                       "attempted (0); grad_norm_monitor misses Linear layers nested in "
                                       "Sequentials: visible checks (1) and 3 of the 4 hidden groups (1.5)"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    return {
        "perfect": src.with_answers(good),
        "blank": src.release,
        "partial": src.with_answers({"backprop_grad_norms": good["backprop_grad_norms"],
                                     "log_grad_slope": _SLOPE_LOG10,
                                     "grad_norm_monitor": _MONITOR_TOP_LEVEL}),
    }
