"""Run a lesson's experiment under every arithmetic the claims tests cover, once per test session.

A sentence in a lesson is a claim about networks, not about one machine's rounding
(docs/LESSON_STANDARD.md, "Claims hold on any machine"). So every claims test checks its sentence
on more runs than the notebook shows:

========== ============================================== ===========================================
variant    arithmetic                                     seeds
========== ============================================== ===========================================
native     the kernels torch picks on this CPU            the lesson's and :data:`HELD_BACK_SEEDS`
avx2       ``ATEN_CPU_CAPABILITY=avx2``, MKL held to AVX2  the lesson's
default    ``ATEN_CPU_CAPABILITY=default`` (no vector      the lesson's
           kernels) and MKL's generic code path
jitter     native, initial weights × (1 + 1e-6·ε)         the lesson's
========== ============================================== ===========================================

``ATEN_CPU_CAPABILITY`` is read once, when torch is imported, so the avx2 and default variants run
in a subprocess. ``MKL_CBWR=COMPATIBLE`` moves MKL's matrix products off the vector code path the
CPU would pick (on an AMD CPU ``ATEN_CPU_CAPABILITY`` alone leaves MKL's products unchanged).

:func:`compute` caches each result on disk for the whole test session, shared by the xdist
workers (one computes, the other waits and loads), so a lesson's experiment runs once per variant.
Set ``STABLETRAIN_CLAIMS_CACHE`` to a folder to keep the results between sessions while you work on
a lesson; the key holds a hash of every source file of ``stabletrain``, so a change to the package
recomputes.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from stabletrain.perturb import JITTER

__all__ = ["CACHE_ENV", "ENVIRONMENTS", "HELD_BACK_SEEDS", "JITTER", "LESSON_SEEDS", "Run", "VARIANTS",
           "compute", "cpu_capability", "runs"]

LESSON_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""The seeds the notebooks show (each lab's ``SEEDS``)."""

HELD_BACK_SEEDS: tuple[int, ...] = tuple(range(5, 15))
"""Seeds no notebook shows: a claim tuned to the lesson's seeds fails here."""

ENVIRONMENTS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}

VARIANTS: tuple[str, ...] = ("native", "avx2", "default", "jitter")

CACHE_ENV = "STABLETRAIN_CLAIMS_CACHE"

_ROOT = Path(__file__).resolve().parent.parent
_PACKAGE = _ROOT / "src" / "stabletrain"

_WORKER = """
import pickle, sys
import torch
from stabletrain.threads import single_thread
target, args_path, out_path = sys.argv[1:4]
with open(args_path, "rb") as f:
    kwargs = pickle.load(f)
module, _, name = target.partition(":")
fn = __import__(module, fromlist=[name])
for part in name.split("."):
    fn = getattr(fn, part)
with single_thread():
    result = fn(**kwargs)
with open(out_path, "wb") as f:
    pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
"""


@dataclass(frozen=True)
class Run:
    """One computed experiment: which arithmetic, which seeds, and what the lab function returned."""

    variant: str
    seeds: tuple[int, ...]
    result: Any

    @property
    def label(self) -> str:
        return f"{self.variant} (seeds {self.seeds[0]}–{self.seeds[-1]})"


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    folder = os.environ.get(CACHE_ENV)
    if not folder:  # outside pytest's session hook (a script): a private folder for this process
        folder = tempfile.mkdtemp(prefix="stabletrain-claims-")
        os.environ[CACHE_ENV] = folder
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _resolve(target: str) -> Callable[..., Any]:
    module, sep, name = target.partition(":")
    if not sep or not name:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _run_in_subprocess(target: str, environment: str, kwargs: dict[str, Any], folder: Path, key: str) -> Any:
    args_path = folder / f"{key}.args.pkl"
    out_path = folder / f"{key}.out.pkl"
    with open(args_path, "wb") as f:
        pickle.dump(kwargs, f, protocol=pickle.HIGHEST_PROTOCOL)
    env = dict(os.environ)
    for name in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR"):
        env.pop(name, None)  # the variant decides, not what the session was started with
    env.update(ENVIRONMENTS[environment])
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    done = subprocess.run([sys.executable, "-c", _WORKER, target, str(args_path), str(out_path)],
                          env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{target} under the {environment} arithmetic ({ENVIRONMENTS[environment]}) failed "
                           f"with exit code {done.returncode}:\n{done.stderr[-4000:]}")
    with open(out_path, "rb") as f:
        return pickle.load(f)


def compute(target: str, environment: str = "native", **kwargs: Any) -> Any:
    """``target(**kwargs)`` under an arithmetic of :data:`ENVIRONMENTS`, computed once per session.

    Args:
        target: ``"stabletrain.lessons.clipping_lab:run_experiment"``; it must return something
            picklable (the labs' dataclasses of numpy arrays are).
        environment: ``"native"`` runs in this process; ``"avx2"`` and ``"default"`` in a subprocess
            with their environment variables.
        kwargs: passed on; part of the cache key by their ``repr``.
    """
    if environment not in ENVIRONMENTS:
        raise ValueError(f"environment must be one of {sorted(ENVIRONMENTS)}, got {environment!r}")
    folder = _cache_dir()
    key = hashlib.sha256(repr((_source_hash(), target, environment, sorted(kwargs.items()))).encode()).hexdigest()[:24]
    result_path = folder / f"{key}.pkl"
    with FileLock(str(folder / f"{key}.lock")):
        if result_path.exists():
            with open(result_path, "rb") as f:
                return pickle.load(f)
        if environment == "native":
            from stabletrain.threads import single_thread

            with single_thread():
                result = _resolve(target)(**kwargs)
        else:
            result = _run_in_subprocess(target, environment, kwargs, folder, key)
        tmp = result_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(result_path)
        return result


def runs(target: str, *, seeds_arg: str = "seeds", jitter_arg: str = "jitter",
         lesson_seeds: Sequence[int] = LESSON_SEEDS, held_back_seeds: Sequence[int] = HELD_BACK_SEEDS,
         **kwargs: Any) -> list[Run]:
    """The experiment under every variant of :data:`VARIANTS` (see the module's table).

    ``target`` takes the seeds as ``seeds_arg`` (a tuple of ints) and the relative jitter of the
    initial weights as ``jitter_arg`` (a float, 0 for none). Returns one :class:`Run` per variant,
    the native one first, over the lesson's and the held-back seeds.
    """
    lesson, held = tuple(lesson_seeds), tuple(held_back_seeds)
    out = [Run("native", lesson + held, compute(target, "native", **{seeds_arg: lesson + held}, **kwargs))]
    for environment in ("avx2", "default"):
        out.append(Run(environment, lesson, compute(target, environment, **{seeds_arg: lesson}, **kwargs)))
    out.append(Run("jitter", lesson, compute(target, "native", **{seeds_arg: lesson, jitter_arg: JITTER}, **kwargs)))
    return out


def cpu_capability(environment: str) -> str:
    """What ``torch.backends.cpu.get_cpu_capability()`` says under an arithmetic (for the tests of this module)."""
    return compute("torch.backends.cpu:get_cpu_capability", environment)
