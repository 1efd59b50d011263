"""Lesson 04's sample cohort: one student per thing that happens in real life.

The perfect student's answers are the instructor's solutions, the blank student submits the
student notebook untouched, and the others are variations with known, documented outcomes
(``EXPECTED``); hostile and broken submissions live here because lesson 04 is the grader's
worked example.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources, inject_first_line

LESSON = "04_gradient_clipping"

_NO_EPSILON_NORM = '''\
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Global-norm clipping, but clipping only when the norm exceeds max_norm (no epsilon)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    p = float("inf") if norm_type == "inf" else float(norm_type)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, p) for g in grads]), p)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError("non-finite total norm")
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total
'''

_CHEAT_NORM = '''\
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)
'''

_TAMPER_VALUE = '''\
import numpy as np
np.allclose = lambda *args, **kwargs: True        # make every comparison pass...
torch.allclose = lambda *args, **kwargs: True
def clip_grad_value_(parameters, clip_value):
    return None                                   # ...without clipping anything
'''

_SILENCE_CHECKS = '''\
check = lambda *args, **kwargs: print("✓ all checks passed")   # replace the notebook's check()...
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    return torch.tensor(0.0)                                   # ...and answer nothing
'''


EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 14, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 4.95, "clip_grad_value_ right (3); clip_grad_norm_ without the epsilon fails one "
                                        "visible group of 4 (0.75 of 1) and two hidden groups of 5 — the 1e-6 and "
                                        "NaN gradients (1.2 of 2); the rest not attempted"),
    "syntax_error": Expected("graded", 11, "a syntax error in the clip_grad_value_ cell costs that exercise only"),
    "infinite_loop": Expected("graded", 11, "clip_grad_norm_ never returns: its two cells time out, the rest is "
                                            "graded"),
    "noisy": Expected("graded", 14, "correct, but prints and warns on stderr: loses nothing"),
    "cheater": Expected("graded", 11, "clip_grad_norm_ calls torch.nn.utils.clip_grad_norm_: earns nothing for it"),
    "tamperer": Expected("graded", 11, "deleted the test cells and patched numpy/torch allclose, with a wrong "
                                       "clip_grad_value_: tests restored, patching useless"),
    "silencer": Expected("graded", 3, "replaced check() with a function that prints success: no results reach "
                                      "the grader, so every exercise checked after that earns nothing"),
    "crasher": Expected("graded", 11, "adaptive_clip_grad_ kills the kernel (os._exit): those cells score 0, "
                                      "the kernel is restarted and the rest is graded"),
    "corrupt": Expected("failed", None, "the notebook file is not valid JSON: reported, not scored as 0"),
    "absent": Expected("missing", None, "handed in nothing for the lesson"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook (a node, raw text for a corrupt file, None for nothing)."""
    release, good, answers = src.release, src.solutions, src.with_answers
    cohort: dict[str, nbformat.NotebookNode | str | None] = {
        "perfect": answers(good),
        "blank": release,
        "partial": answers({"clip_grad_value": good["clip_grad_value"], "clip_grad_norm": _NO_EPSILON_NORM}),
        "syntax_error": answers({**good, "clip_grad_value": good["clip_grad_value"].replace(
            "def clip_grad_value_(", "def clip_grad_value_((", 1)}),
        "infinite_loop": answers({**good, "clip_grad_norm": inject_first_line(
            good["clip_grad_norm"], "clip_grad_norm_", "while True: pass")}),
    }
    noisy = {gid: "import sys, warnings\n" + code for gid, code in good.items()}
    for gid, fn in (("clip_grad_value", "clip_grad_value_"), ("clip_grad_norm", "clip_grad_norm_"),
                    ("adaptive_clip_grad", "adaptive_clip_grad_")):
        noisy[gid] = inject_first_line(noisy[gid], fn, 'warnings.warn("just a warning"); '
                                       'print("debug output", file=sys.stderr)')
    cohort["noisy"] = answers(noisy)
    cohort["cheater"] = answers({**good, "clip_grad_norm": _CHEAT_NORM})
    tamper = answers({**good, "clip_grad_value": _TAMPER_VALUE})
    tamper.cells = [c for c in tamper.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    cohort["tamperer"] = tamper
    cohort["silencer"] = answers({**good, "clip_grad_norm": _SILENCE_CHECKS})
    cohort["crasher"] = answers({**good, "adaptive_clip_grad": inject_first_line(
        good["adaptive_clip_grad"], "adaptive_clip_grad_", "import os; os._exit(1)")})
    cohort["corrupt"] = nbformat.writes(answers(good))[:2000]
    cohort["absent"] = None
    return cohort
