"""Lesson 00's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions and the blank student submits the
student notebook untouched. The partial student gets ``rel_error`` right, probes a copy of x
in ``numerical_gradient``, lists frozen parameters with a norm of 0 in ``grad_norms_per_layer``,
logs makemore's ``lr * grad`` as the update in ``train_and_log`` and leaves ``ActivationStats``
unanswered; every point of their total is accounted for in ``EXPECTED``.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "00_diagnostics"

# Centred differences on a copy of x: f that reads x through a closure never sees the probes. Only
# the in-place group fails, on every seed (forward differences, the mistake used before, passed the
# float32 group on 54 of 60 hidden seeds and failed it on 6: the demo's expected total then depended
# on the grading secret, and a fresh clone's demo failed with 4.76 for 5.51).
_PROBES_A_COPY = '''\
def numerical_gradient(f, x, h=1e-5):
    """Centred differences in float64 -- on a copy of x."""
    point = np.array(x, dtype=np.float64)
    grad = np.zeros(point.shape)
    for i in np.ndindex(point.shape):
        old = point[i]
        point[i] = old + h
        f_plus = float(f(point))
        point[i] = old - h
        f_minus = float(f(point))
        point[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad
'''

# A frozen or unused parameter reported with norm 0: the groups without such parameters pass.
_NORMS_WITH_ZEROS = '''\
def grad_norms_per_layer(model):
    """Every parameter, 0.0 where there is no gradient."""
    return {name: 0.0 if p.grad is None else p.grad.norm().item() for name, p in model.named_parameters()}
'''

# makemore's formula: right for plain SGD only. The cases with plain SGD pass, those with Adam,
# momentum or weight decay do not.
_LR_TIMES_GRAD = '''\
def train_and_log(model, optimizer, loss_fn, batches):
    """The update taken as lr * grad, as in makemore."""
    lr = optimizer.param_groups[0]["lr"]
    watched = {n: p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    losses, ratios = [], {n: [] for n in watched}
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        for n, p in watched.items():
            ratios[n].append(math.log10((lr * p.grad.std() / p.detach().std()).item()))
    return losses, ratios
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 14, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 7.51, "rel_error right (2); numerical_gradient probing a copy of x fails "
                                        "only the group where f reads x through a closure: 3 of 4 visible groups "
                                        "(0.75) and 3 of 4 hidden (2.25); grad_norms_per_layer reporting frozen parameters as 0 fails the "
                                        "group about them: 1 of 2 visible (0.5), 2 of 3 hidden (0.67); "
                                        "train_and_log with lr * grad fails wherever the optimizer is not plain "
                                        "SGD: 2 of 3 visible (0.67), 1 of 3 hidden (0.67); ActivationStats not "
                                        "attempted (0)"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    return {
        "perfect": src.with_answers(good),
        "blank": src.release,
        "partial": src.with_answers({"rel_error": good["rel_error"], "numerical_gradient": _PROBES_A_COPY,
                                     "grad_norms_per_layer": _NORMS_WITH_ZEROS, "train_and_log": _LR_TIMES_GRAD}),
    }
