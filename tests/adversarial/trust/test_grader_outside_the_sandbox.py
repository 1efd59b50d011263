"""The grader, outside the sandbox, never acts on what the kernel left (issue 21).

- **Confused deputy.** Between kernel restarts the grader (root, outside bubblewrap) used to write
  into the student's scratch folder, where a symlink the kernel planted turned the write into a
  write anywhere on the host. A restarted kernel now gets a fresh world the kernel cannot have
  prepared; the kernel's sockets are moved out of its reach before any student code runs.
- **Launcher shadowing.** A ``stgrade/kernel.py`` in the kernel's home ran instead of the launcher
  (no answer-key guard, no RLIMIT_AS). The launcher is now started by its absolute path with
  ``-s -P`` from ``/``: nothing the kernel can write is on its import path before it ran.
- **A restart always gives a working kernel.** IPython startup files, a full home and a deleted
  ``~/.ipython`` left by the previous kernel cost the cell that crashed, not the submission.

Each test fails when its protection is removed (checked once by reverting it: the font list lands
in the planted folder; the planted launcher runs; the startup file kills every restart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

from _sandbox_support import output, require, require_sandbox
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, load_lesson
from stgrade.grading import grade_submission
from stgrade.sandbox import Limits, SandboxKernel

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

LIMITS = Limits(cell_seconds=20, notebook_seconds=200, scratch_bytes=64 * 1024**2)
LESSON = "04_gradient_clipping"

PLANT = '''
import os, shutil
shutil.rmtree(".mpl", ignore_errors=True)
os.symlink({victim!r}, ".mpl")  # where the grader seeded matplotlib's font list on a restart
print(sorted(os.listdir(".")))
'''


def test_a_restart_gets_a_fresh_world_and_the_grader_follows_no_link_left_in_the_old_one(tmp_path):
    require_sandbox()
    victim = tmp_path / "victim"
    victim.mkdir()
    with SandboxKernel(tmp_path / "scratch", LIMITS) as k:
        first_home = k.home
        assert ".mpl" in output(k, PLANT.format(victim=str(victim)))
        run = k.run("import os; os._exit(1)")
        assert run.status == "died"
        k.restart()
        assert list(victim.iterdir()) == [], "the grader wrote through a link the kernel planted"
        assert k.home != first_home and not first_home.exists()
        assert not os.path.islink(k.home / ".mpl") and output(k, "print(6 * 7)").strip() == "42"


def test_the_kernels_sockets_are_out_of_its_reach(tmp_path):
    require_sandbox()
    with SandboxKernel(tmp_path / "scratch", LIMITS) as k:
        sockets = k._world / "s"
        text = output(k, f"import os\nprint([n for n in os.listdir('.') if n.startswith('.k')], "
                         f"os.path.exists({str(sockets)!r}))")
        assert text.split() == ["[]", "False"], text
        assert sorted(p.name for p in sockets.iterdir()) and all(p.is_socket() for p in sockets.iterdir())
        # whatever the kernel plants where its sockets were, the grader still talks to it
        output(k, "import os\nfor i in range(1, 6):\n    try:\n        os.symlink('/run/dbus/system_bus_socket', "
                  "f'.k-{i}')\n    except OSError:\n        pass")
        assert output(k, "print(6 * 7)").strip() == "42"


EVIL_LAUNCHER = '''\
import os, sys
open(os.path.join(os.environ["STGRADE_HOME"], "SHADOW_RAN"), "w").close()
from ipykernel.kernelapp import IPKernelApp
app = IPKernelApp.instance()
load = app.load_connection_info
app.load_connection_info = lambda info: load({**info, "ip": os.environ.get("STGRADE_SOCKETS", info["ip"])})
app.write_connection_file = lambda: None
app.initialize(); os.chdir(os.environ["STGRADE_HOME"]); app.start()
'''


def test_a_launcher_planted_in_the_home_never_runs(tmp_path, monkeypatch):
    require_sandbox()
    original = SandboxKernel._new_world

    def prepared_by_the_kernel(self):  # the worst case: a home the kernel could have written
        original(self)
        for folder in (self.home / "stgrade", self.home / ".local" / "lib"):
            folder.mkdir(parents=True)
        (self.home / "stgrade" / "__init__.py").write_text("")
        (self.home / "stgrade" / "kernel.py").write_text(EVIL_LAUNCHER)

    monkeypatch.setattr(SandboxKernel, "_new_world", prepared_by_the_kernel)
    with SandboxKernel(tmp_path / "scratch", LIMITS) as k:
        text = output(k, "import resource, torch\nprint('AS', resource.getrlimit(resource.RLIMIT_AS)[0])\n"
                         "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
                         "try:\n    torch.nn.utils.clip_grad_norm_([p], 1.0); print('REACHED')\n"
                         "except Exception as exc:\n    print(type(exc).__name__)")
        assert not (k.home / "SHADOW_RAN").exists()
        assert "REACHED" not in text and "AnswerKeyUnavailable" in text, text
        assert f"AS {LIMITS.memory_bytes}" in text, text


CRASH_AND_LITTER = '''\
import os, pathlib
home = pathlib.Path.home()
startup = home / ".ipython" / "profile_default" / "startup"
startup.mkdir(parents=True, exist_ok=True)
(startup / "00-die.py").write_text("import os; os._exit(3)\\n")
try:
    with open(home / "fill.bin", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
except OSError:
    pass
os._exit(1)
'''


#: grades one notebook in a fresh process that starts as the grader's workers do (stgrade.workers): in a
#: user namespace of its own when it is not root, where it may mount the home's size-capped tmpfs
GRADE_AS_A_WORKER = """
import json, sys
from pathlib import Path
from stgrade import userns
capped = userns.enter()
from stgrade.grading import grade_submission
from stgrade.sandbox import Limits
path, out, limits = Path(sys.argv[1]), Path(sys.argv[2]), Limits(**json.loads(sys.argv[3]))
r = grade_submission("litter", path.stem, path, out, limits, seed=3)
print(json.dumps({"capped": capped, "status": r.status, "reason": r.reason, "total": r.total,
                  "cells": [[c.grade_id, c.points, c.max_points, c.message] for c in r.cells]}))
"""


def test_a_crash_that_litters_the_home_costs_only_its_cell(tmp_path):
    require_sandbox()
    from stgrade import userns

    require(None if userns.possible() else "the home's size cap needs root or a user namespace of the grader's own, "
            "which this machine does not allow")
    src = lesson_sources(LESSON, REPO_ROOT)
    good = src.solutions
    nb = src.with_answers({**good, "clip_grad_value": CRASH_AND_LITTER + "\n" + good["clip_grad_value"]})
    path = tmp_path / f"{LESSON}.ipynb"
    nbformat.write(nb, path)
    limits = {"cell_seconds": LIMITS.cell_seconds, "notebook_seconds": LIMITS.notebook_seconds,
              "scratch_bytes": LIMITS.scratch_bytes}
    done = subprocess.run([sys.executable, "-c", GRADE_AS_A_WORKER, str(path), str(tmp_path / "out"), json.dumps(limits)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.splitlines()[-1])
    assert r["capped"] and r["status"] == "graded", r
    lost = {grade_id for grade_id, points, max_points, _ in r["cells"] if points < max_points}
    assert lost == {"clip_grad_value_visible", "clip_grad_value_hidden"}, r["cells"]
    assert r["total"] == load_lesson(LESSON).max_points - sum(m for g, _, m, _ in r["cells"] if g in lost)
