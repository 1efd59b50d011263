"""Lesson 03's sample cohort: a perfect, a blank and a partly correct student.

The perfect student's answers are the instructor's solutions and the blank student submits the
student notebook untouched. The partial student gets the deterministic exercises right, makes the
two most common mistakes of the lesson in the initializers, and leaves the rest unanswered; every
point of their total is accounted for in ``EXPECTED``.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "03_initialization"

# Exercise 3 with the √3 forgotten: U(-std, std) has a third of the variance. Visible cases fail.
_XAVIER_UNIFORM_NO_SQRT3 = '''\
def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain·√(2/(fan_in + fan_out)) — the std used as the bound."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)
'''

# Exercise 6 that ignores `mode`: right for fan_in (visible cases and most hidden groups), wrong for
# fan_out. The visible conv case uses mode="fan_out", so it fails there too.
_KAIMING_NORMAL_NO_MODE = '''\
def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, gain²/fan_in) whatever the mode."""
    if mode.lower() not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported")
    fan_in, _ = fan_in_and_fan_out(tensor)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan_in)
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)
'''

# Exercise 7 without the sign correction: orthogonal (visible cases pass) but not Haar (the hidden
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

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 27, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 13.83, "fan_in_and_fan_out, calculate_gain, xavier_normal_ right (3 + 3 + 3); "
                                         "xavier_uniform_ without √3 keeps only the ValueError group (0 + 0.4); "
                                         "kaiming_normal_ ignoring mode loses the fan_out groups (0.5 + 1.33); "
                                         "orthogonal_ without the sign correction loses only the Haar group "
                                         "(1 + 1.6); the rest not attempted"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    partial = {gid: good[gid] for gid in ("fan_in_and_fan_out", "calculate_gain", "xavier_normal")}
    partial.update({"xavier_uniform": _XAVIER_UNIFORM_NO_SQRT3, "kaiming_normal": _KAIMING_NORMAL_NO_MODE,
                    "orthogonal": _ORTHOGONAL_NO_SIGN})
    return {"perfect": src.with_answers(good), "blank": src.release, "partial": src.with_answers(partial)}
