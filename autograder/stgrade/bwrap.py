"""The grading kernel's sandbox: a bubblewrap (``bwrap``) command line, and a check that it works.

bubblewrap is the established tool (Flatpak's sandbox) that builds the kernel's world; no
namespace code is written here. :func:`command` returns the argv that runs the kernel:

- user namespace with uid/gid 65534 inside, no capabilities (bounding set empty too), no
  new privileges, nested user namespaces disabled (``--disable-userns``);
- its own PID namespace and /proc (it sees only its own processes: no grader, no worker, no
  classmate's kernel), IPC, UTS and cgroup namespaces, and an empty network namespace (only
  loopback, nobody listening): the grader talks to it over ZeroMQ Unix sockets in its scratch;
- a private /dev (null, zero, urandom, …), a private size-capped /tmp and /dev/shm;
- read-only: /usr, the Python installation and the virtual environment, the ``stabletrain``
  package **without** its answer keys (every reference module, every ``*_mutants.py``, every
  lesson's lab module, every ``__pycache__``, replaced by stubs), torch **without**
  ``torch/nn/utils/clip_grad.py`` (a stub whose functions raise), and of ``stgrade`` only the
  kernel launcher. The virtual environment, ``stabletrain`` and the launcher appear under
  :data:`INSIDE` (``/opt/stgrade``), not where they are outside: a checkout in ``/home/ta/course``
  shows the kernel neither /home nor its own path;
- writable: its scratch folder only (bound at the same path it has outside); the kernel starts in
  ``/`` and the launcher moves into the scratch folder once it has set up (:mod:`stgrade.kernel`).

Nothing else of the machine is there: not the submissions, not OUT, not ``solutions/``, not
``tests/``, not the checkout (no path of it), not a classmate's scratch, not /sys, not /home or
/root (only a Python installation that lives there, such as pyenv's, at its own path).
The sandbox dies with the process that started it (``--die-with-parent``), and everything in its
PID namespace dies with its first process.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: where the kernel reads its connection file inside the sandbox (bound read-only from outside)
CONNECTION_FILE = "/run/stgrade/connection.json"
STUBS = Path(__file__).with_name("stubs")
SANDBOX_UID = 65534

#: where the virtual environment (``venv``), and ``stabletrain`` and the launcher (``lib``) appear inside
INSIDE = Path("/opt/stgrade")

#: files of /etc that the interpreter and its libraries read; nothing else of /etc is visible
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf", "fonts")


def executable() -> str | None:
    return shutil.which("bwrap")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} not found")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _covered(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def lab_modules() -> list[Path]:
    """The lessons' lab modules (``stabletrain/lessons/*.py`` but its ``__init__``)."""
    return sorted(p for p in (_package_dir("stabletrain") / "lessons").glob("*.py") if p.name != "__init__.py")


@functools.lru_cache(maxsize=1)
def hidden_files() -> tuple[tuple[str, str], ...]:
    """``(path, stub)`` for every answer-key file the kernel must not see: stabletrain's reference
    modules and mutant catalogues, the compiled copies of all of stabletrain, torch's clip_grad.py
    and its compiled copies. The stub is a file bound read-only over the original."""
    from stabletrain.exercises.guard import reference_modules

    removed, empty = str(STUBS / "answer_key_removed.py"), str(STUBS / "empty")
    pkg = _package_dir("stabletrain")
    found: list[tuple[str, str]] = []
    for name in reference_modules():
        path = pkg / f"{name}.py"
        if path.exists():
            found.append((str(path), removed))
    for path in sorted(pkg.rglob("*_mutants.py")):
        found.append((str(path), removed))
    for path in lab_modules():  # the lessons' experiments hold the lessons' formulas
        found.append((str(path), str(STUBS / "lab_removed.py")))
    torch_utils = _package_dir("torch") / "nn" / "utils"
    found.append((str(torch_utils / "clip_grad.py"), str(STUBS / "torch_clip_grad.py")))
    for path in sorted(glob.glob(str(torch_utils / "__pycache__" / "clip_grad.*.pyc"))):
        found.append((path, empty))
    return tuple(found)


def hidden_dirs() -> tuple[str, ...]:
    """Folders replaced by an empty read-only tmpfs: every ``__pycache__`` of stabletrain (compiled
    answer keys load without their source). Each package gets one now if it has none, so that a
    ``.pyc`` the grader writes later cannot appear in a running sandbox."""
    pkg = _package_dir("stabletrain")
    for init in pkg.rglob("__init__.py"):
        try:
            (init.parent / "__pycache__").mkdir(exist_ok=True)
        except OSError:  # a read-only installation: nobody writes .pyc files there either
            pass
    return tuple(sorted(str(p) for p in pkg.rglob("__pycache__") if p.is_dir()))


def _read_only_roots() -> list[Path]:
    """What the kernel may read: system libraries, the interpreter, the virtual environment."""
    roots: list[Path] = []
    for candidate in ("/usr", sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix,
                      *(p for p in sys.path if "site-packages" in p or "dist-packages" in p)):
        path = Path(candidate).resolve()
        if path.is_dir() and not _covered(path, roots):
            roots = [r for r in roots if not _covered(r, [path])] + [path]
    return roots


@functools.lru_cache(maxsize=1)
def _relocated() -> tuple[tuple[Path, Path], ...]:
    """``(outside, inside)`` for what appears under :data:`INSIDE`: the virtual environment, and
    ``stabletrain`` and ``stgrade`` when they live outside it (an editable install: the checkout)."""
    moved: list[tuple[Path, Path]] = []
    venv = Path(sys.prefix).resolve()
    if sys.prefix != sys.base_prefix and not _covered(venv, [Path("/usr")]):
        moved.append((venv, INSIDE / "venv"))
    for name in ("stabletrain", "stgrade"):
        package = _package_dir(name)
        if not any(_covered(package, [outside]) for outside, _ in moved):
            moved.append((package, INSIDE / "lib" / name))
    return tuple(moved)


def inside(path: str | Path) -> str:
    """Where ``path`` (outside) is in the sandbox's view."""
    path = Path(path)
    for outside, there in _relocated():
        for candidate in (path, path.resolve()):
            if _covered(candidate, [outside]):
                return str(there / candidate.relative_to(outside))
    return str(path)


def python() -> str:
    """This interpreter's path inside the sandbox (a virtual environment's ``bin/python``, unresolved:
    the link is what makes it that environment's interpreter)."""
    prefix = Path(sys.prefix)
    if sys.prefix != sys.base_prefix and _covered(Path(sys.executable), [prefix]):
        return inside(Path(sys.prefix).resolve() / Path(sys.executable).relative_to(prefix))
    return inside(sys.executable)


#: the device nodes of a zygote's /dev (what ``--dev`` binds)
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def command(scratch: Path, connection_file: str | None, *, tmp_bytes: int, shm_bytes: int,
            zygote: bool = False) -> list[str]:
    """The bwrap argv (up to ``--``) that runs a command in the kernel's sandbox.

    ``connection_file`` is the host path of jupyter_client's connection file (or the
    ``{connection_file}`` placeholder), bound read-only at :data:`CONNECTION_FILE` (None: none).

    ``zygote=True``: the same view for the fork server of :mod:`stgrade.forked` (run by a user
    mapped to 65534 outside, :func:`stgrade.forked.zygote_argv`), which must let each child make
    its own namespaces: the sandbox's user keeps ``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN`` (its loopback) in the sandbox's user namespace,
    user namespaces stay allowed, no ``--uid`` (bubblewrap would nest a second user namespace that
    does not own the mount namespace) and no ``--dev`` (likewise, for devpts): the device nodes are
    bound one by one, and each child mounts its own /dev/pts. Each child drops all of it again
    (:mod:`stgrade.zygote`).
    """
    bwrap = executable()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    scratch = Path(scratch).resolve()
    if zygote:
        argv = [bwrap, "--unshare-all", "--unshare-user", "--cap-add", "CAP_SYS_ADMIN", "--cap-add", "CAP_NET_ADMIN"]
    else:
        argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    argv += ["--die-with-parent", "--new-session",
             "--hostname", "stgrade", "--setenv", "JPY_PARENT_PID", "1"]  # its parent is outside: poll nothing
    # The private /proc, /dev, /dev/shm and /tmp come first: bwrap mounts in order, and the binds
    # below must land on top of them — a checkout or virtual environment that lives under /tmp (a CI
    # clone, say) would otherwise be hidden by the empty /tmp.
    argv += ["--proc", "/proc"]
    if zygote:
        argv += ["--tmpfs", "/dev", "--dir", "/dev/pts", "--symlink", "pts/ptmx", "/dev/ptmx",
                 "--symlink", "/proc/self/fd", "/dev/fd", "--symlink", "/proc/self/fd/0", "/dev/stdin",
                 "--symlink", "/proc/self/fd/1", "/dev/stdout", "--symlink", "/proc/self/fd/2", "/dev/stderr"]
        for device in _DEVICES:
            argv += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    else:
        argv += ["--dev", "/dev"]
    argv += ["--perms", "1777", "--size", str(shm_bytes), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    moved = dict(_relocated())
    for root in _read_only_roots():
        if not any(_covered(root, [outside]) for outside in moved):
            argv += ["--ro-bind", str(root), inside(root)]
    for name in _ETC:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    stabletrain, stgrade = _package_dir("stabletrain"), _package_dir("stgrade")
    for outside, there in moved.items():
        if outside != stgrade:
            argv += ["--ro-bind", str(outside), str(there)]
    if stgrade not in moved:  # installed inside the environment: nothing of it but the launcher
        argv += ["--tmpfs", inside(stgrade)]
    for name in ("__init__.py", "kernel.py", *(("zygote.py",) if zygote else ())):  # the launchers only: not the
        # grader, not the sample cohorts
        argv += ["--ro-bind", str(stgrade / name), inside(stgrade / name)]
    if stgrade not in moved:
        argv += ["--remount-ro", inside(stgrade)]
    for folder in hidden_dirs():
        argv += ["--tmpfs", inside(folder), "--remount-ro", inside(folder)]
    for path, stub in hidden_files():
        argv += ["--ro-bind", stub, inside(path)]
    # The launcher imports stabletrain and stgrade from INSIDE/lib (before an editable install's finder,
    # whose paths do not exist here); no variable names a path outside.
    argv += ["--setenv", "PYTHONPATH", str(INSIDE / "lib"),
             "--setenv", "PATH", ":".join(dict.fromkeys([str(Path(python()).parent), "/usr/local/bin", "/usr/bin", "/bin"]))]
    if INSIDE / "venv" in moved.values():
        argv += ["--setenv", "VIRTUAL_ENV", str(INSIDE / "venv")]
    else:
        argv += ["--unsetenv", "VIRTUAL_ENV"]
    argv += ["--bind", str(scratch), str(scratch)]
    if connection_file is not None:
        argv += ["--ro-bind", connection_file, CONNECTION_FILE]
    argv += ["--remount-ro", "/",
             "--chdir", "/"]  # read-only: the launcher moves into the scratch folder once it has set up
    return argv


@functools.lru_cache(maxsize=1)
def probe() -> str | None:
    """None when the sandbox can be set up here; otherwise why not, in words."""
    bwrap = executable()
    if bwrap is None:
        return ("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (Debian/Ubuntu) "
                "or `dnf install bubblewrap`")
    placeholder = STUBS / "empty"
    try:
        argv = command(Path(STUBS), str(placeholder), tmp_bytes=1 << 20, shm_bytes=1 << 20)
    except Exception as exc:  # the view itself cannot be built
        return f"the sandbox's view cannot be built: {exc}"
    code = "import os, sys; assert os.getuid() == 65534; print('ok')"
    try:
        done = subprocess.run([*argv, "--", python(), "-I", "-S", "-c", code], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "ok":
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bubblewrap cannot create the sandbox here ({why}); user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces) or blocked by "
                "the container")
    return None
