"""Answer keys out of reach of a grading kernel (issue 7, point 4).

Removed from the sandbox's view: stabletrain's reference modules, the mutant catalogues, their
compiled copies and torch's clip_grad.py — every route to them (re-import, runpy, the .pyc, the
solutions folder) finds a stub or nothing. What torch's own layers need (torch.nn.init) stays and
is caught while check() runs, whatever route reached it. Each test has a control showing the
route works when the protection is off.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from _sandbox_support import ROOT, output, require_sandbox
from stgrade.sandbox import Limits, SandboxKernel

ROUTES = {
    "runpy on torch's clip_grad.py": (
        "import runpy, torch, os\n"
        "g = runpy.run_path(os.path.join(os.path.dirname(torch.__file__), 'nn', 'utils', 'clip_grad.py'))\n"
        "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3) * 10\n"
        "print(float(g['clip_grad_norm_']([p], 1.0)))\n"),
    "the compiled clip_grad.pyc": (
        "import glob, os, torch, importlib.machinery as m\n"
        "path = glob.glob(os.path.join(os.path.dirname(torch.__file__), 'nn', 'utils', '__pycache__', 'clip_grad.*.pyc'))[0]\n"
        "mod = m.SourcelessFileLoader('cg', path).load_module()\n"
        "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3) * 10\n"
        "print(float(mod.clip_grad_norm_([p], 1.0)))\n"),
    "re-importing stabletrain.clipping": (
        "import sys, importlib\nsys.modules.pop('stabletrain.clipping', None)\n"
        "print(importlib.import_module('stabletrain.clipping').clip_grad_norm_)\n"),
    "runpy on the reference file": (
        "import runpy, stabletrain, os\n"
        "print(runpy.run_path(os.path.join(os.path.dirname(stabletrain.__file__), 'clipping.py'))['clip_grad_norm_'])\n"),
    "a helper in the mutant catalogue": (
        "import importlib\nprint(importlib.import_module('stabletrain.exercises.clipping_mutants').NORM)\n"),
    "exec of the defs in solutions/": (
        f"src = open({str(ROOT / 'solutions' / '04_gradient_clipping' / '04_gradient_clipping.py')!r}).read()\n"
        "print(len(src))\n"),
}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    require_sandbox()
    with SandboxKernel(tmp_path_factory.mktemp("scratch"), Limits(cell_seconds=20)) as k:
        yield k


@pytest.fixture(scope="module")
def open_kernel(tmp_path_factory):
    with SandboxKernel(tmp_path_factory.mktemp("open"), Limits(cell_seconds=20, sandbox="off")) as k:
        yield k


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_removed_answer_keys_cannot_be_reached(kernel, route):
    text = output(kernel, ROUTES[route])
    assert "[error:" in text, f"{route} reached an answer key in the sandbox: {text}"


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_each_route_reaches_the_answer_key_without_the_sandbox(open_kernel, route):
    """The control: without the sandbox every route reaches the answer key (re-importing
    stabletrain.clipping too: the in-kernel guard does not stop that route, the view does)."""
    text = output(open_kernel, ROUTES[route])
    assert "[error:" not in text, f"{route}: {text}"


# -- torch.nn.init: stays (nn.Linear needs it), caught while check() runs --------------------------
WATCH_PROBE = r'''
import os, sys, tempfile, runpy
os.environ["STABLETRAIN_CAPTURE_SEED"] = "7"
import torch
from stabletrain.exercises import guard, plain
from stabletrain.exercises.check import check
check_module = sys.modules["stabletrain.exercises.check"]  # the package's `check` attribute is the function
captured = {}  # check() publishes its result on the kernel's output channel; here, keep it
check_module.publish_result = lambda exercise, level, outputs: captured.__setitem__("outputs", outputs)
guard.KEY_OWNERS["torch.nn.init"] = "clipping"  # pretend: torch.nn.init is this exercise's answer key
guard.install()
init = torch.nn.init
fresh = runpy.run_path(init.__file__)  # a copy of torch/nn/init.py with new code objects

def honest(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    ps = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    grads = [p.grad for p in ps if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if norm_type == float("inf"):
        total = torch.stack([g.abs().max() for g in grads]).max()
    else:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError("non-finite")
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total

def using(side_effect):
    def fn(*args, **kwargs):
        side_effect()
        return honest(*args, **kwargs)
    return fn

routes = {
    "honest": honest,
    "alias": using(lambda: init.kaiming_uniform_(torch.empty(2, 2))),
    "closure": using((lambda f: lambda: f(torch.empty(2, 2)))(init.xavier_uniform_)),
    "via nn.Linear": using(lambda: torch.nn.Linear(2, 2)),
    "runpy copy": using(lambda: fresh["kaiming_normal_"](torch.empty(2, 2))),
    "tracer off": using(lambda: (sys.settrace(None), init.calculate_gain("relu"))),
    "subprocess": using(lambda: __import__("subprocess").run(["true"])),
    "gc": using(lambda: __import__("gc").get_objects()),
}
for name, fn in routes.items():
    check(fn, "clip_grad_norm_", level="hidden")
    outputs = captured.pop("outputs")
    used = [o.get("raised") for o in outputs if isinstance(o, dict)]
    print(name, "VOID" if "AnswerKeyUsed" in used else "ok", used.count("AnswerKeyUsed"), "/", len(outputs),
          (outputs[0].get("message", "")[:120] if isinstance(outputs[0], dict) else ""))
'''


def test_torch_init_reached_by_any_route_during_check_voids_the_exercise(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SCRATCH": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", WATCH_PROBE], capture_output=True, text=True, env=env, timeout=120)
    lines = {line.split()[0] if not line.startswith(("via", "runpy", "tracer")) else " ".join(line.split()[:2]): line
             for line in done.stdout.splitlines()}
    assert done.returncode == 0, done.stderr[-2000:]
    assert " ok " in lines["honest"] + " ", lines
    for route in ("alias", "closure", "via nn.Linear", "runpy copy", "tracer off", "subprocess", "gc"):
        assert "VOID" in lines[route], f"{route} was not caught: {textwrap.shorten(done.stdout, 2000)}"


def test_torch_layers_still_work_in_the_sandbox(kernel):
    text = output(kernel, "import torch\nlayer = torch.nn.Linear(3, 4)\nprint(float(layer.weight.abs().sum()) > 0)\n"
                          "print(torch.nn.BatchNorm1d(4)(torch.randn(5, 4)).shape)")
    assert text.split() == ["True", "torch.Size([5,", "4])"], text


def test_lesson_modules_load_no_answer_key_when_imported():
    """A lesson's lab module imports its answer keys lazily (inside functions), like the exercise
    modules, so that its import works in a grading kernel where the answer keys are stubs."""
    import pkgutil

    import stabletrain.lessons
    from stabletrain.exercises.guard import reference_modules

    code = ("import sys, importlib\n"
            f"for name in {[m.name for m in pkgutil.iter_modules(stabletrain.lessons.__path__)]!r}:\n"
            "    importlib.import_module('stabletrain.lessons.' + name)\n"
            "print(' '.join(m for m in sys.modules if m.startswith('stabletrain')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    leaked = [m for m in loaded if m.removeprefix("stabletrain.") in reference_modules() or m.endswith("_mutants")]
    assert not leaked, f"importing the lesson modules loaded answer keys: {leaked}"
