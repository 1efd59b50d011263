"""A sample cohort for the demo and the tests: one student per thing that happens in real life.

Built from the lesson's own notebooks: the perfect student's answers are the instructor's
solutions, the blank student submits the student notebook untouched, and the others are variations
with known, documented outcomes (``EXPECTED``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .course import REPO_ROOT

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


@dataclass(frozen=True)
class Expected:
    status: str
    total: float | None
    why: str


EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 9, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 4, "clip_grad_value_ right (3); clip_grad_norm_ without the epsilon passes the "
                                     "visible checks (1) but not the hidden ones; AGC not attempted"),
    "syntax_error": Expected("graded", 6, "a syntax error in the clip_grad_value_ cell costs that exercise only"),
    "infinite_loop": Expected("graded", 6, "clip_grad_norm_ never returns: its two cells time out, the rest is graded"),
    "noisy": Expected("graded", 9, "correct, but prints and warns on stderr: loses nothing"),
    "cheater": Expected("graded", 6, "clip_grad_norm_ calls torch.nn.utils.clip_grad_norm_: earns nothing for it"),
    "tamperer": Expected("graded", 6, "deleted the test cells and patched numpy/torch allclose, with a wrong "
                                      "clip_grad_value_: tests restored, patching useless"),
    "silencer": Expected("graded", 3, "replaced check() with a function that prints success: no results reach "
                                      "the grader, so every exercise checked after that earns nothing"),
    "crasher": Expected("graded", 6, "adaptive_clip_grad_ kills the kernel (os._exit): those cells score 0, "
                                     "the kernel is restarted and the rest is graded"),
    "corrupt": Expected("failed", None, "the notebook file is not valid JSON: reported, not scored as 0"),
    "absent": Expected("missing", None, "handed in nothing for the lesson"),
}


def _solution_sources(root: Path) -> dict[str, str]:
    nb = nbformat.read(root / "solutions" / LESSON / f"{LESSON}.ipynb", as_version=4)
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            out[meta["grade_id"]] = re.sub(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|$)", "", cell.source, flags=re.M)
    return out


def _with_answers(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def _inject_first_line(source: str, function: str, line: str) -> str:
    """Insert ``line`` as the first statement of ``function``'s body (after its docstring)."""
    lines = source.splitlines()
    start = next(i for i, text in enumerate(lines) if text.startswith(f"def {function}("))
    i = start + 1
    while not lines[i - 1].rstrip().endswith(":"):
        i += 1
    if lines[i].strip().startswith(('"""', "'''")):
        quote = lines[i].strip()[:3]
        if not (lines[i].strip().endswith(quote) and len(lines[i].strip()) > 3):
            i += 1
            while quote not in lines[i]:
                i += 1
        i += 1
    indent = re.match(r"\s*", lines[i]).group(0) or "    "
    return "\n".join(lines[:i] + [indent + line] + lines[i:])


def build(target: Path, root: Path = REPO_ROOT) -> Path:
    """Write the cohort in nbgrader's layout under ``target/submitted``; return that folder."""
    submitted = target / "submitted"
    if submitted.exists():
        shutil.rmtree(submitted)
    release = nbformat.read(root / "course" / LESSON / f"{LESSON}.ipynb", as_version=4)
    good = _solution_sources(root)

    def save(student: str, nb: nbformat.NotebookNode) -> None:
        path = submitted / student / LESSON / f"{LESSON}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)

    save("perfect", _with_answers(release, good))
    save("blank", release)
    save("partial", _with_answers(release, {"clip_grad_value": good["clip_grad_value"],
                                            "clip_grad_norm": _NO_EPSILON_NORM}))
    save("syntax_error", _with_answers(release, {**good, "clip_grad_value": good["clip_grad_value"].replace(
        "def clip_grad_value_(", "def clip_grad_value_((", 1)}))
    save("infinite_loop", _with_answers(release, {**good, "clip_grad_norm": _inject_first_line(
        good["clip_grad_norm"], "clip_grad_norm_", "while True: pass")}))
    noisy = {gid: "import sys, warnings\n" + src for gid, src in good.items()}
    for gid, fn in (("clip_grad_value", "clip_grad_value_"), ("clip_grad_norm", "clip_grad_norm_"),
                    ("adaptive_clip_grad", "adaptive_clip_grad_")):
        noisy[gid] = _inject_first_line(noisy[gid], fn, 'warnings.warn("just a warning"); '
                                        'print("debug output", file=sys.stderr)')
    save("noisy", _with_answers(release, noisy))
    save("cheater", _with_answers(release, {**good, "clip_grad_norm": _CHEAT_NORM}))
    tamper = _with_answers(release, {**good, "clip_grad_value": _TAMPER_VALUE})
    tamper.cells = [c for c in tamper.cells if not c.metadata.get("nbgrader", {}).get("grade")]
    save("tamperer", tamper)
    save("silencer", _with_answers(release, {**good, "clip_grad_norm": _SILENCE_CHECKS}))
    save("crasher", _with_answers(release, {**good, "adaptive_clip_grad": _inject_first_line(
        good["adaptive_clip_grad"], "adaptive_clip_grad_", "import os; os._exit(1)")}))
    corrupt = submitted / "corrupt" / LESSON / f"{LESSON}.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text(nbformat.writes(_with_answers(release, good))[:2000])
    (submitted / "absent").mkdir(parents=True)
    return submitted
