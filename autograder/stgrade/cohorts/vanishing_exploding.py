"""Lesson 01's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions, the blank student submits the
student notebook untouched, and the partial student gets one exercise right, one wrong in a way
the catalogue names, leaves one unanswered, and in the fourth calls ``model.zero_grad()`` inside
the monitor — the grader's training loop survives it, names the mistake, and gives the groups of
cases it passes (partial credit per group).
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

_MONITOR_ZERO_GRAD = '''\
def grad_norm_monitor(model, low=1e-4, high=1e2):
    """Right norms and flags, but it 'cleans up' with model.zero_grad() after reading."""
    norms = []
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            norms.append(0.0 if module.weight.grad is None else module.weight.grad.norm().item())
    flags = ["vanishing" if n < low else "ok" if n <= high else "exploding" for n in norms]
    model.zero_grad()
    return np.array(norms), flags
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 10, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 5.6, "backprop_grad_norms right (3); log_grad_slope in log10 fails every check "
                                       "(0, the feedback names the base of the log); jacobian_singular_values not "
                                       "attempted (0); grad_norm_monitor calls model.zero_grad() after reading: "
                                       "visible checks (1) and 4 of the 5 hidden groups (1.6), the feedback says "
                                       "the monitor cleared the gradients"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    return {
        "perfect": src.with_answers(good),
        "blank": src.release,
        "partial": src.with_answers({"backprop_grad_norms": good["backprop_grad_norms"],
                                     "log_grad_slope": _SLOPE_LOG10,
                                     "grad_norm_monitor": _MONITOR_ZERO_GRAD}),
    }
