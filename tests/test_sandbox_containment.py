"""Containment of a grading kernel: one test per escape class of issue 7 and per protection.

Each attack is a hostile cell from tests/adversarial/containment/, run in a real grading kernel;
the test checks what the cell reports *and*, from outside, that nothing happened. The attacks that
are harmless when they succeed are also run with the sandbox off, to show that the test catches
the escape when the protection is removed (``test_*_escapes_without_the_sandbox``).

Without bubblewrap (or, for the cgroup tests, without root, a cgroup delegated to the user or a
systemd user session) these tests skip with the reason — except under CI=true, where they fail: CI
must never skip them. The scratch size cap needs neither: its test runs the kernel from a process
that starts as the grader's workers do (in a user namespace of its own where it is not root).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from _sandbox_support import (ROOT, attack, in_a_worker, output, processes_with, require_cgroup, require_sandbox,
                              verdict)
from stgrade import bwrap
from stgrade.sandbox import Limits, SandboxKernel

LIMITS = Limits(cell_seconds=20, interrupt_grace_seconds=3, memory_bytes=3 * 1024**3, scratch_bytes=64 * 1024**2,
                shm_bytes=16 * 1024**2, max_processes=64)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    require_sandbox()
    with SandboxKernel(tmp_path_factory.mktemp("scratch"), LIMITS) as k:
        yield k


@pytest.fixture(scope="module")
def open_kernel(tmp_path_factory):
    """The same kernel without the sandbox: what the attacks achieve when the protection is removed."""
    with SandboxKernel(tmp_path_factory.mktemp("scratch-open"), Limits(cell_seconds=20, sandbox="off")) as k:
        yield k


# -- the protections themselves -------------------------------------------------------------------
def test_no_capabilities_no_new_privileges_and_nobody(kernel):
    text = output(kernel, "import os\nstatus = open('/proc/self/status').read()\n"
                          "print({l.split(':')[0]: l.split()[1] for l in status.splitlines() if l.startswith(('Cap', 'NoNew'))})\n"
                          "print(os.getuid(), os.getgid())")
    caps, ids = text.strip().splitlines()
    fields = eval(caps)  # noqa: S307 - our own output
    assert all(int(fields[k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")), fields
    assert fields["NoNewPrivs"] == "1" and ids == "65534 65534"


def test_own_pid_namespace_sees_only_itself(kernel):
    text = output(kernel, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    pids = eval(text)  # noqa: S307
    assert max(pids) < 100 and os.getpid() not in pids, pids


def test_view_holds_no_checkout_submissions_or_answer_keys(kernel, tmp_path):
    """No path of the checkout appears, not even the folders above what the kernel needs from it (the
    virtual environment and stabletrain appear under /opt/stgrade), and no path of anybody's home
    except a Python installation that lives there (pyenv's), at its own path; no variable names the checkout."""
    base = Path(sys.base_prefix).resolve()
    paths = [ROOT, ROOT / "solutions", ROOT / "tests", ROOT / "course", ROOT / "autograder" / "stgrade" / "grading.py",
             ROOT / "autograder" / "stgrade" / "cohorts", ROOT / "README.md", ROOT / "src", Path(sys.prefix).resolve(),
             Path("/etc/shadow"), Path("/sys/fs/cgroup"), tmp_path]
    paths += [p for p in (Path("/home"), Path.home()) if p not in base.parents]
    paths += [p for p in Path.home().iterdir() if p != base and p not in base.parents]
    code = f"import os\nprint([p for p in {[str(p) for p in paths]!r} if os.path.exists(p)])"
    assert output(kernel, code).strip() == "[]"
    shown = output(kernel, "import os\nprint(sorted(os.listdir('/opt/stgrade/lib')), sorted(os.listdir('/opt/stgrade/lib/stgrade')),\n"
                           "      [k for k, v in os.environ.items() if " + repr(str(ROOT)) + " in v])")
    assert shown.split("\n")[0] == "['stabletrain', 'stgrade'] ['__init__.py', 'kernel.py'] []", shown
    text = output(kernel, "import importlib, torch\nfor m, name in (('stabletrain.clipping', 'clip_grad_norm_'),\n"
                          "                ('stabletrain.exercises.clipping_mutants', 'NORM')):\n"
                          "    try:\n        getattr(importlib.import_module(m), name); print('LOADED', m)\n"
                          "    except (ImportError, AttributeError):\n        print('hidden', m)\n"
                          "print(open(torch.nn.utils.clip_grad.__file__).read().count('def _removed'))")
    assert "LOADED" not in text and text.strip().endswith("1"), text


def test_private_tmp_and_shm_are_capped_and_left_nowhere(kernel):
    marker = f"stgrade-test-{uuid.uuid4().hex}"
    text = output(kernel, attack("dev_shm", marker=marker, cap=16 * 1024**2))
    assert verdict(text).startswith("CONTAINED"), text
    assert not Path("/dev/shm", marker).exists() and not Path("/tmp", marker).exists()


# -- escape classes ------------------------------------------------------------------------------
def test_writing_outside_scratch_via_proc_root(kernel, tmp_path):
    target = tmp_path / "outside.txt"
    text = output(kernel, attack("proc_root_write", grader_pid=os.getpid(), target=str(target)))
    assert verdict(text) == "CONTAINED" and not target.exists(), text


def test_writing_outside_scratch_escapes_without_the_sandbox(open_kernel, tmp_path):
    target = tmp_path / "outside.txt"
    text = output(open_kernel, attack("proc_root_write", grader_pid=os.getpid(), target=str(target)))
    assert verdict(text).startswith("ESCAPED") and target.exists()


def test_remounting_read_write(kernel):
    venv = Path(sys.prefix).resolve()
    text = output(kernel, attack("remount_rw", venv=bwrap.inside(venv)))  # where the kernel sees it
    assert verdict(text).startswith("CONTAINED") and not Path(venv, "pwned.txt").exists(), text


def test_setns_into_the_graders_namespaces(kernel):
    text = output(kernel, attack("setns_grader", grader_pid=os.getpid()))
    assert verdict(text) == "CONTAINED", text


def _listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    return server


def _connected(server) -> bool:
    try:
        server.accept()[0].close()
        return True
    except OSError:
        return False


def test_tcp_to_localhost(kernel):
    server = _listener()
    text = output(kernel, attack("tcp_localhost", port=server.getsockname()[1]))
    assert verdict(text).startswith("CONTAINED") and not _connected(server), text
    server.close()


def test_tcp_to_localhost_escapes_without_the_sandbox(open_kernel):
    server = _listener()
    text = output(open_kernel, attack("tcp_localhost", port=server.getsockname()[1]))
    assert verdict(text).startswith("ESCAPED") and _connected(server)
    server.close()


def test_writing_the_checkouts_sources(kernel, tmp_path):
    victims = [ROOT / "src" / "stabletrain" / "exercises" / "check.py", ROOT / "src" / "stabletrain" / "models.py",
               ROOT / "solutions" / "04_gradient_clipping" / "04_gradient_clipping.py", tmp_path / "classmate.ipynb"]
    (tmp_path / "classmate.ipynb").write_text("{}")
    before = {p: p.read_bytes() for p in victims if p.exists()}
    text = output(kernel, attack("write_src", paths=[str(p) for p in victims]))
    assert verdict(text) == "CONTAINED", text
    assert {p: p.read_bytes() for p in before} == before


def test_writing_the_checkout_escapes_without_the_sandbox(open_kernel, tmp_path):
    victim = tmp_path / "classmate.ipynb"
    victim.write_text("{}")
    assert verdict(output(open_kernel, attack("write_src", paths=[str(victim)]))).startswith("ESCAPED")


@pytest.fixture
def bystanders():
    """Stand-ins for a grader worker and the grader: if a signal reached them, we would see it."""
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _kernel_processes(k: SandboxKernel) -> list[int]:
    """The process that started ``k`` (bubblewrap, or the shell before it) and everything below it."""
    top = psutil.Process(k.km.provisioner.process.pid)
    return [top.pid] + [p.pid for p in top.children(recursive=True)]


def test_killing_a_classmates_kernel_a_worker_or_stopping_the_grader(kernel, tmp_path, bystanders):
    with SandboxKernel(tmp_path / "classmate", LIMITS) as classmate:
        targets = [p.pid for p in bystanders] + _kernel_processes(classmate)
        text = output(kernel, attack("kill_others", pids=targets) + "\nimport os\ntry:\n    os.kill(-1, 0)\n"
                      "except OSError:\n    pass\n")
        assert verdict(text) == "CONTAINED", text
        assert all(p.poll() is None and _state(p.pid) != "T" for p in bystanders)
        assert output(classmate, "print('still here')").strip() == "still here"


def test_signals_reach_other_processes_without_the_sandbox(open_kernel, bystanders):
    victim = bystanders[0]
    verdict(output(open_kernel, attack("kill_others", pids=[victim.pid])))
    victim.wait(timeout=5)
    assert victim.returncode is not None


def test_raising_pids_max_or_leaving_the_cgroup(kernel):
    require_cgroup()
    kernel.cgroup.pids()  # a systemd scope's cgroup is found once its kernel runs
    before = (kernel.cgroup.paths["pids"] / "pids.max").read_text() if "pids" in kernel.cgroup.paths else None
    text = output(kernel, attack("raise_pids_max"))
    assert verdict(text).startswith("CONTAINED"), text
    if before is not None:
        assert (kernel.cgroup.paths["pids"] / "pids.max").read_text() == before


def test_a_daemon_does_not_outlive_the_kernel(tmp_path):
    require_sandbox()
    marker = f"stgrade-daemon-{uuid.uuid4().hex}"
    with SandboxKernel(tmp_path, LIMITS) as k:
        output(k, attack("daemon", marker=marker))
        time.sleep(0.5)
        assert len(processes_with(marker)) >= 2  # they did start
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == []


def test_children_together_above_the_memory_cap(tmp_path):
    require_sandbox()
    require_cgroup()
    limits = Limits(cell_seconds=30, memory_bytes=1536 * 1024**2)
    with SandboxKernel(tmp_path, limits) as k:
        assert "memory" in k.cgroup.controllers
        text = output(k, attack("memory_children", **MEMORY_ATTACK))
        assert verdict(text).startswith("CONTAINED"), text
        assert k.cgroup.memory_peak() is None or k.cgroup.memory_peak() <= limits.memory_bytes


MEMORY_ATTACK = {"children": 3, "each": 600 * 1024**2}


def test_children_hold_more_than_the_cap_without_the_cgroup():
    """The control: each child alone is under the per-process rlimit, so only the cgroup stops them."""
    code = attack("memory_children", **MEMORY_ATTACK)
    done = subprocess.run([sys.executable, "-c", "import resource\n"
                           f"resource.setrlimit(resource.RLIMIT_AS, ({1536 * 1024**2}, {1536 * 1024**2}))\n" + code],
                          capture_output=True, text=True, timeout=60)
    assert verdict(done.stdout).startswith("ESCAPED"), done.stdout + done.stderr


def test_two_gigabytes_written_to_scratch(tmp_path):
    """As the grader grades: the kernel is started by a worker (root, or in a user namespace of its own)."""
    require_sandbox()
    ran = in_a_worker(tmp_path / "scratch", attack("fill_scratch", cap=LIMITS.scratch_bytes), cell_seconds=60,
                      scratch_bytes=LIMITS.scratch_bytes)
    assert ran["entered"] and ran["protections"]["scratch_size_cap"], ran
    assert verdict(ran["text"]).startswith("CONTAINED"), ran
    assert not any((tmp_path / "scratch").iterdir())  # the tmpfs went with the worker; nothing landed below it


def test_cpu_is_capped_per_submission(kernel):
    require_cgroup()
    assert "cpu" in kernel.cgroup.controllers
    quota = kernel.cgroup.paths.get("cpu")
    if quota is not None:
        assert int((quota / "cpu.cfs_quota_us").read_text()) == int(LIMITS.cpus * 100_000)


def test_a_fork_bomb_stops_inside_the_submission(tmp_path):
    require_sandbox()
    require_cgroup()
    with SandboxKernel(tmp_path, Limits(cell_seconds=15, max_processes=48)) as k:
        text = output(k, "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                         "            time.sleep(600)\n            os._exit(0)\n        n += 1\n"
                         "except OSError:\n    print('stopped at', n)")
        assert "stopped at" in text
        cgroups = list(k.cgroup.paths.values())
    assert not any(p.exists() for p in cgroups)


def test_interrupt_reaches_the_kernel_inside_its_pid_namespace(kernel):
    run = kernel.run("while True:\n    pass", timeout=2)
    assert run.status == "timeout"
    assert output(kernel, "print('back')").strip() == "back"


def test_untrusted_grading_refuses_without_a_sandbox(tmp_path, monkeypatch):
    from stgrade import bwrap, cli

    monkeypatch.setattr(bwrap, "probe", lambda: "bubblewrap (bwrap) is not installed")
    (tmp_path / "subs").mkdir()
    assert cli.main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert not (tmp_path / "out").exists()
    with pytest.raises(RuntimeError, match="sandbox cannot be set up"):
        SandboxKernel(tmp_path / "s", Limits()).start()


def test_interrupted_runs_leave_no_cgroups(tmp_path):
    """A grader killed with SIGKILL cannot clean up; the next one removes what it left."""
    require_cgroup()
    from stgrade import cgroup

    child = subprocess.Popen([sys.executable, "-c", "from stgrade.cgroup import SubmissionCgroup as C\n"
                              "c = C.create(1 << 30, 64, 1.0)\nprint(c.path, flush=True)\nimport time; time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    left = Path(child.stdout.readline().strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert left.exists()
    fresh = cgroup.SubmissionCgroup.create(1 << 30, 64, 1.0)
    fresh.remove()
    assert not left.exists()


def test_the_kernels_cpu_time_is_counted_across_a_restart(tmp_path):
    """A submission's cost in CPU: what its kernels used, counted by their cgroups (busy cells in
    a kernel that was restarted included)."""
    require_sandbox()
    require_cgroup()
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass"
    k = SandboxKernel(tmp_path, Limits(cell_seconds=20))
    started = time.monotonic()
    with k:
        assert k.run(busy, timeout=20).status == "ok"
        k.restart()
        assert k.run(busy, timeout=20).status == "ok"
    elapsed = time.monotonic() - started
    assert k.cpu_seconds is not None and 1.0 <= k.cpu_seconds < 30, k.cpu_seconds
    # two starts and two stops, counted in wall-clock seconds; the busy cells' second is not among them
    assert 0.2 < k.start_stop_seconds <= elapsed - 1.0, (k.start_stop_seconds, elapsed)
