"""Pieces of the grading pipeline on their own: discovery, the static scan, the sandboxed kernel."""

from __future__ import annotations

import io
import os
import queue
import time
import zipfile
from pathlib import Path

import pytest

from _sandbox_support import require_cgroup, require_sandbox
from stgrade.course import parse_checks
from stgrade.discover import discover
from stgrade.kernel import CELL_END_MIME
from stgrade.sandbox import Limits, SandboxKernel
from stgrade.scan import problems

LESSONS = ["04_gradient_clipping", "05_batch_norm"]


def _touch(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_discover_nbgrader_layout_marks_missing_lessons(tmp_path):
    _touch(tmp_path / "ann" / "04_gradient_clipping" / "04_gradient_clipping.ipynb")
    _touch(tmp_path / "ann" / "05_batch_norm" / "whatever.ipynb")
    _touch(tmp_path / "bob" / "04_gradient_clipping" / "04_gradient_clipping.ipynb")
    (tmp_path / "cy").mkdir()
    subs, warnings = discover(tmp_path, LESSONS, tmp_path / "work")
    by = {(s.student, s.lesson): s for s in subs}
    assert set(by) == {(s, lsn) for s in ("ann", "bob", "cy") for lsn in LESSONS}
    assert by[("ann", "05_batch_norm")].path.name == "whatever.ipynb"
    assert by[("bob", "05_batch_norm")].path is None and by[("cy", "04_gradient_clipping")].path is None
    assert warnings == []


def test_discover_prefers_the_lesson_notebook_and_reports_ambiguity(tmp_path):
    _touch(tmp_path / "ann" / "04_gradient_clipping" / "scratch.ipynb")
    _touch(tmp_path / "ann" / "04_gradient_clipping" / "04_gradient_clipping.ipynb")
    _touch(tmp_path / "bob" / "04_gradient_clipping" / "a.ipynb")
    _touch(tmp_path / "bob" / "04_gradient_clipping" / "b.ipynb")
    _touch(tmp_path / "bob" / "99_unknown" / "x.ipynb")
    subs, warnings = discover(tmp_path, LESSONS, tmp_path / "work")
    by = {s.student: s for s in subs}
    assert by["ann"].path.name == "04_gradient_clipping.ipynb"
    assert by["bob"].path is None and "2 notebooks" in by["bob"].problem
    assert any("99_unknown" in w for w in warnings)


def test_discover_lms_files_and_zips(tmp_path):
    inbox = tmp_path / "inbox"
    _touch(inbox / "s123_04_gradient_clipping.ipynb")
    with zipfile.ZipFile(inbox / "s456.zip", "w") as zf:
        zf.writestr("folder/04_gradient_clipping.ipynb", "{}")
    (inbox / "broken.zip").write_text("not a zip")
    _touch(inbox / "notes.ipynb")
    subs, warnings = discover(inbox, LESSONS, tmp_path / "work")
    by = {s.student: s for s in subs}
    assert by["s123"].path.name == "s123_04_gradient_clipping.ipynb"
    assert by["s456"].path.read_text() == "{}"
    assert by["broken"].path is None and "zip" in by["broken"].problem
    assert any("notes.ipynb" in w for w in warnings)


def test_overlapping_members_are_found_without_false_alarms():
    """A zip whose members share their data is a bomb on every Python, patched for CVE-2024-0450 or not;
    an honest zip (stored and deflated members, folders, empty and non-ASCII names) is not."""
    from stgrade.discover import _overlapping

    honest = io.BytesIO()
    with zipfile.ZipFile(honest, "w") as zf:
        zf.writestr("folder/", "")
        zf.writestr("empty.txt", "")
        zf.writestr("ä/04_gradient_clipping.ipynb", "{}" * 500, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("b.ipynb", "{}", compress_type=zipfile.ZIP_STORED)
    assert _overlapping(zipfile.ZipFile(honest).infolist()) is None
    infos = zipfile.ZipFile(honest).infolist()
    infos[3].header_offset = infos[2].header_offset + 31  # inside the previous member's deflated data
    assert "b.ipynb starts inside" in _overlapping(infos)


def test_discover_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "nope", LESSONS, tmp_path)


@pytest.mark.parametrize(("source", "flagged"), [
    ("def f(p):\n    return torch.nn.utils.clip_grad_norm_(p, 1.0)", "torch.nn.utils"),
    ("from torch.nn.utils import clip_grad_norm_", "torch.nn.utils"),
    ("import stabletrain\nf = stabletrain.clip_grad_norm_", "stabletrain"),
    ("import importlib", "importlib"),
    ("exec('x = 1')", "exec"),
    ("def f():\n    return g.__wrapped__", "__wrapped__"),
    ("import sys\nsys.modules['torch']", "sys.modules"),
    ("from torch import nn\nnn.init.xavier_uniform_(w)", "nn.init"),
    ("import torch.nn.utils as U\nf = getattr(U, 'clip_grad_norm_')", "clip_grad_norm_"),
    ("from torch.nn.utils import *", "*"),
    ("import runpy\ng = runpy.run_path(torch.nn.utils.__file__)", "runpy"),
    ("import sys\ndef f(p, m):\n    sys.settrace(None)", "settrace"),
    ("import subprocess", "subprocess"),
    ("def f():\n    return f.__closure__[0].cell_contents", "cell_contents"),
    ("import os\nos.kill(1, 9)", "kill"),
])
def test_scan_flags_ways_around_the_exercise(source, flagged):
    assert any(flagged in p for p in problems(source)), problems(source)


@pytest.mark.parametrize("source", [
    "def clip_grad_norm_(parameters, max_norm):\n    return torch.linalg.vector_norm(parameters[0].grad)",
    "import math\nimport torch\nx = torch.nn.functional.relu(torch.ones(2))",
    "def f(:\n  pass",  # a syntax error is reported when the cell runs, not here
    "from torch.nn.utils import parameters_to_vector\ndef n(ps):\n    return parameters_to_vector(ps).norm()",
    "def clip_grad_norm_(parameters, max_norm):\n    return clip_grad_value_(parameters, max_norm)",
])
def test_scan_accepts_ordinary_code(source):
    assert problems(source) == []


def test_parse_checks_reads_the_calls():
    checks = parse_checks('check(f, "clip_grad_norm_")\ncheck(f, "clip_grad_norm_", level="hidden")')
    assert [(c.function, c.exercise, c.level) for c in checks] == [
        ("f", "clip_grad_norm_", "visible"), ("f", "clip_grad_norm_", "hidden")]
    with pytest.raises(ValueError, match="check"):
        parse_checks('check("f", name)')


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    limits = Limits(cell_seconds=3, interrupt_grace_seconds=2, memory_bytes=3 * 1024**3, output_chars=2000)
    with SandboxKernel(tmp_path_factory.mktemp("scratch"), limits) as k:
        yield k


def test_sandbox_runs_cells_and_ignores_stderr(kernel):
    run = kernel.run("import sys, warnings\nwarnings.warn('careful')\nprint('out'); sys.stderr.write('err')\nx = 41")
    assert run.status == "ok" and run.ename is None
    assert kernel.run("print(x + 1)").outputs[0]["text"] == "42\n"


def test_sandbox_reports_errors_without_dying(kernel):
    run = kernel.run("1 / 0")
    assert (run.status, run.ename) == ("error", "ZeroDivisionError")
    assert kernel.alive()


def test_sandbox_interrupts_an_infinite_loop(kernel):
    run = kernel.run("while True:\n    pass")
    assert run.status == "timeout" and "time limit" in run.evalue
    assert kernel.run("print('still here')").status == "ok"


def test_sandbox_caps_output(kernel):
    run = kernel.run("for i in range(10000):\n    print('spam' * 10)")
    assert run.status == "ok"
    assert sum(len(o.get("text", "")) for o in run.outputs) < 3000
    assert "dropped" in run.outputs[-1]["text"]


def test_sandbox_memory_cap_gives_memory_error(kernel):
    run = kernel.run("import numpy as np\na = np.ones(2 * 1024**3)")  # 16 GiB
    assert run.ename == "MemoryError"


def test_sandbox_working_directory_is_the_scratch_folder(kernel):
    run = kernel.run("import os; print(os.getcwd() == os.environ['HOME'])")
    assert run.outputs[0]["text"].strip() == "True"


def _text(run) -> str:
    return "".join(o.get("text", "") for o in run.outputs)


def test_run_cells_gives_each_cell_its_own_outputs_status_and_state(kernel):
    runs = kernel.run_cells(["print('a')", "z = 7\nprint('b')", "1 / 0", "print(z * 6)", "z"], time.monotonic() + 60)
    assert [r.status for r in runs] == ["ok", "ok", "error", "ok", "ok"]
    assert [_text(r) for r in runs[:2]] == ["a\n", "b\n"] and runs[2].ename == "ZeroDivisionError"
    assert _text(runs[3]) == "42\n" and runs[4].outputs[0]["data"]["text/plain"] == "7"


def test_run_cells_times_out_one_cell_and_goes_on(kernel):
    runs = kernel.run_cells(["while True:\n    pass", "print('after')"], time.monotonic() + 60)
    assert runs[0].status == "timeout" and "time limit of 3 s" in runs[0].evalue
    assert runs[1].status == "ok" and _text(runs[1]) == "after\n"


def test_run_cells_stops_at_the_deadline(kernel):
    runs = kernel.run_cells(["import time\ntime.sleep(30)", "print('never')"], time.monotonic() + 1)
    assert len(runs) == 1 and runs[0].status == "timeout"
    assert kernel.run("print('usable')").status == "ok"


def test_a_forged_end_mark_does_not_end_a_cell(kernel):
    forge = ("from IPython.display import publish_display_data\n"
             f"publish_display_data({{{CELL_END_MIME!r}: '1'}})\nprint('mine')")
    runs = kernel.run_cells([forge, "print('second')"], time.monotonic() + 60)
    assert [_text(r) for r in runs] == ["mine\n", "second\n"]


def test_run_cells_returns_early_when_a_cell_breaks_the_loop(tmp_path):
    with SandboxKernel(tmp_path, Limits(cell_seconds=5)) as k:
        breaker = "get_ipython().display_pub.session = None  # no end mark can be sent any more"
        runs = k.run_cells([breaker, "print('next')"], time.monotonic() + 60)
        assert len(runs) == 1 and runs[0].status == "error"  # the loop's error, after the cell
        assert _text(k.run_cells(["print('next')"], time.monotonic() + 60)[0]) == "next\n"


def test_run_cells_reports_a_dead_kernel_no_later_than_the_cell_that_killed_it(tmp_path):
    """A dying kernel can lose the end marks of cells that had finished: the death is reported at
    the first cell without one (the grader then reruns from there one cell per request)."""
    with SandboxKernel(tmp_path, Limits(cell_seconds=5)) as k:
        runs = k.run_cells(["y = 1", "import os; os._exit(3)", "print('lost')"], time.monotonic() + 60)
        assert len(runs) in (1, 2) and runs[-1].status == "died" and all(r.status == "ok" for r in runs[:-1])


class _ScriptedKernel:
    """Stands in for a kernel client and manager: iopub messages from a script of (delay, message)."""

    def __init__(self, script):
        self.script, self.interrupts = list(script), 0

    def execute(self, code, **_):
        return "batch"

    def get_iopub_msg(self, timeout):
        if not self.script:
            raise queue.Empty
        delay, msg = self.script[0]
        if delay > timeout:
            self.script[0] = (delay - timeout, msg)
            time.sleep(timeout)
            raise queue.Empty
        time.sleep(delay)
        self.script.pop(0)
        return {"parent_header": {"msg_id": "batch"}, **msg}

    def interrupt_kernel(self):
        self.interrupts += 1

    def is_alive(self):
        return True


def _mark(i):
    return {"msg_type": "display_data", "content": {"data": {CELL_END_MIME: str(i)}, "metadata": {}}}


def test_an_interrupt_that_lands_after_a_cell_ended_times_out_the_next_cell(tmp_path):
    """C code that holds the GIL keeps the kernel from sending the previous cell's end mark: that
    cell's clock runs out, but the interrupt stops the cell that was running."""
    kernel = SandboxKernel(tmp_path, Limits(cell_seconds=0.3, interrupt_grace_seconds=5))
    error = {"msg_type": "error", "content": {"ename": "KeyboardInterrupt", "evalue": "", "traceback": []}}
    kernel.kc = kernel.km = fake = _ScriptedKernel([
        (0.8, _mark(0)), (0.0, error), (0.0, _mark(1)),
        (0.0, {"msg_type": "status", "content": {"execution_state": "idle"}})])
    runs = kernel.run_cells(["print('quick')", "sum(range(10**10))"], time.monotonic() + 60)
    assert fake.interrupts == 1 and [r.status for r in runs] == ["ok", "timeout"]


def test_a_kernel_finds_matplotlibs_font_list_ready(tmp_path):
    """Searching the fonts again took about 0.1 s of every submission's setup cell."""
    code = ("import logging, io\nlog = io.StringIO()\nlogger = logging.getLogger('matplotlib.font_manager')\n"
            "logger.addHandler(logging.StreamHandler(log)); logger.setLevel(logging.DEBUG)\n"
            "import matplotlib.font_manager\nprint(log.getvalue())")
    with SandboxKernel(tmp_path, Limits(cell_seconds=20)) as k:
        text = _text(k.run(code))
    assert "Using fontManager instance from" in text and "generated new fontManager" not in text, text


def test_the_collector_skips_the_kernels_start_and_setup_and_runs_for_student_code(tmp_path):
    """Its full passes over the objects of the kernel's imports cost about 0.4 s of every
    submission and freed almost nothing. None runs before the setup's end (its imports' objects are
    frozen then); after it, the collector frees cyclic garbage as usual."""
    probe = "import gc; print(gc.isenabled(), gc.get_stats()[2]['collections'], gc.get_freeze_count() > 0)"
    student = ("import gc, weakref\nclass Cycle: pass\nc = Cycle(); c.me = c; freed = []\n"
               "weakref.finalize(c, freed.append, 1); del c  # garbage only the collector can free\n"
               "keep = [[] for _ in range(10_000)]  # enough new objects for a pass\n"
               "print(gc.isenabled(), len(freed), gc.get_freeze_count() > 0)")
    with SandboxKernel(tmp_path, Limits(cell_seconds=20)) as k:
        runs = k.run_cells([probe, "import matplotlib.pyplot, torch", probe, student], time.monotonic() + 60, setup=3)
        assert [_text(r).split() for r in runs[::2]] == [["False", "0", "True"], ["False", "0", "True"]]
        assert _text(runs[3]).split() == ["True", "1", "True"]
        k.restart()
        assert _text(k.run(probe)).split()[0] == "True"  # a request that is not run_cells's: on from the start


def test_sandbox_survives_os_exit(tmp_path):
    with SandboxKernel(tmp_path, Limits(cell_seconds=5)) as k:
        k.run("y = 1")
        run = k.run("import os; os._exit(3)")
        assert run.status == "died" and "died" in run.evalue
        k.restart()
        assert k.run("print('back')").outputs[0]["text"] == "back\n"


def test_sandbox_has_no_network_and_writes_only_to_scratch(kernel, tmp_path_factory):
    require_sandbox()  # bubblewrap's namespaces need no root
    outside = tmp_path_factory.mktemp("outside") / "x.txt"
    code = (
        "import socket\n"
        "try:\n    socket.create_connection(('127.0.0.1', 22), timeout=2); print('net: open')\n"
        "except OSError:\n    print('net: blocked')\n"
        f"try:\n    open({str(outside)!r}, 'w').write('x'); print('outside: written')\n"
        "except OSError:\n    print('outside: blocked')\n"
        "open('inside.txt', 'w').write('x'); print('inside: written')\n"
    )
    run = kernel.run(code)
    text = "".join(o.get("text", "") for o in run.outputs)
    assert text.split("\n")[:3] == ["net: blocked", "outside: blocked", "inside: written"], text
    assert not outside.exists()


def test_sandbox_stops_a_fork_bomb_and_kills_what_it_left(tmp_path):
    require_cgroup()  # the pids cgroup: root, a delegated cgroup or a systemd user scope
    with SandboxKernel(tmp_path, Limits(cell_seconds=10, max_processes=64)) as k:
        assert k.cgroup is not None
        run = k.run("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                    "            time.sleep(600)\n            os._exit(0)\n        n += 1\n"
                    "except OSError:\n    print('stopped at', n)")
        assert run.status == "ok" and "stopped at" in run.outputs[0]["text"]
        cgroup = k.cgroup
        assert len(cgroup.pids()) >= 40
    assert not cgroup.path.exists()


def test_scan_allows_model_modules_but_flags_sys_modules():
    from stgrade import scan

    assert scan.problems("def f(model):\n    return [m for m in model.modules()]\n") == []
    assert scan.problems("import sys\nsys.modules.pop('stabletrain.clipping')\n") == ["uses sys.modules"]


def test_a_change_to_the_grading_code_changes_the_result_key(monkeypatch):
    """A fixed exercise or grader must regrade on the next run, not reuse the old result."""
    from stgrade import grading
    from stgrade.course import load_lesson
    from stgrade.sandbox import Limits

    lesson = load_lesson("04_gradient_clipping")
    before = grading.submission_key(b"{}", lesson, 1, Limits())
    assert before == grading.submission_key(b"{}", lesson, 1, Limits())
    monkeypatch.setattr(grading, "code_fingerprint", lambda: "another version of the code")
    assert grading.submission_key(b"{}", lesson, 1, Limits()) != before


def test_cpu_seconds_are_read_from_cgroup_v1_and_v2_and_unknown_without_accounting(tmp_path):
    from stgrade.cgroup import SubmissionCgroup

    assert SubmissionCgroup({}).cpu_seconds() is None
    assert SubmissionCgroup({"cpuacct": tmp_path}).cpu_seconds() is None  # no cpuacct.usage to read
    (tmp_path / "cpuacct.usage").write_text("2500000000\n")  # v1: nanoseconds
    v1 = SubmissionCgroup({"cpu": tmp_path / "cpu", "cpuacct": tmp_path})
    assert v1.cpu_seconds() == 2.5 and v1.controllers == ["cpu"]  # cpuacct counts, it does not limit
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert SubmissionCgroup({"unified": v2}).cpu_seconds() == 1.5
    kernel = SandboxKernel(tmp_path / "scratch", Limits())
    assert kernel.cpu_seconds is None  # never started: nothing counted


def test_start_and_stop_seconds_count_a_failed_starts_own_cleanup_once(tmp_path, monkeypatch):
    kernel = SandboxKernel(tmp_path / "scratch", Limits())
    monkeypatch.setattr(kernel, "_shutdown", lambda: time.sleep(0.1))

    def failing_start():
        time.sleep(0.1)
        kernel.shutdown()  # as _start does when the kernel does not come up
        raise RuntimeError("no kernel")

    monkeypatch.setattr(kernel, "_start", failing_start)
    with pytest.raises(RuntimeError):
        kernel.start()
    assert 0.2 <= kernel.start_stop_seconds < 0.29, kernel.start_stop_seconds  # not 0.3: the shutdown once
    kernel.shutdown()
    assert 0.3 <= kernel.start_stop_seconds < 0.39, kernel.start_stop_seconds
