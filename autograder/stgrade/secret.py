"""The course's grading secret: picks every student's hidden cases and signs stored results.

On first use stgrade creates a random secret in ``autograder/.stgrade-secret`` (owner-only, mode
0600; ignored by git), says where, and uses it from then on; ``--secret`` or ``$STGRADE_SECRET``
override it, and ``$STGRADE_SECRET_FILE`` moves the file. Keep the file: it fixes the hidden cases
of every student, and results signed with another secret are regraded.

Where the secret goes: only into the grader's main process. Workers and kernels get each
student's derived seed (:func:`stgrade.grading.grading_seed`), never the secret; the variable
``STGRADE_SECRET`` is removed from the environment before any worker starts, and its value (and
a ``--secret`` argument) is overwritten in this process's memory, so ``/proc/<pid>/environ`` and
``/proc/<pid>/cmdline`` do not show it. :func:`redact` keeps it out of every message written.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from .course import REPO_ROOT

ENV = "STGRADE_SECRET"
FILE_ENV = "STGRADE_SECRET_FILE"


def default_path() -> Path:
    return Path(os.environ.get(FILE_ENV) or REPO_ROOT / "autograder" / ".stgrade-secret")


@dataclass(frozen=True)
class Secret:
    value: str
    source: str  # "--secret" | "$STGRADE_SECRET" | the file's path

    def describe(self) -> dict:
        """What summary.json records: where the secret came from, never its value."""
        return {"from": self.source, "fingerprint": hashlib.sha256(b"fp\0" + self.value.encode()).hexdigest()[:12]}


def load(explicit: str | None = None, path: Path | None = None, announce=print) -> Secret:
    """The secret to grade with: ``explicit`` (``--secret``), else ``$STGRADE_SECRET``, else the
    course file, created on first use."""
    if explicit:
        return Secret(explicit, "--secret")
    if os.environ.get(ENV):
        return Secret(os.environ[ENV], f"${ENV}")
    path = Path(path or default_path())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileNotFoundError, PermissionError) as exc:
        raise RuntimeError(f"cannot create the grading secret at {path} ({type(exc).__name__}); set {FILE_ENV} "
                           f"to a private file, or {ENV}") from None
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)
            announce(f"stgrade: {path} was readable by others; it is now owner-only (mode 0600)")
        value = path.read_text(encoding="utf-8").strip()
        if len(value) < 16:
            raise ValueError(f"the grading secret in {path} is too short; delete the file to make a new one")
        return Secret(value, str(path))
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    announce(f"stgrade: created a new grading secret in {path} (owner-only). Keep it private and keep it: it "
             "fixes every student's hidden cases, and results are signed with it.")
    return Secret(value, str(path))


def sign(secret: str, data: dict) -> str:
    """HMAC of a result (without its ``signature`` field), so a changed result file is noticed."""
    body = json.dumps({k: v for k, v in data.items() if k != "signature"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(secret.encode(), b"stgrade-result-v1\0" + body.encode(), hashlib.sha256).hexdigest()


def signed(secret: str, data: dict) -> bool:
    return isinstance(data.get("signature"), str) and hmac.compare_digest(data["signature"], sign(secret, data))


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "[secret]") if secret and isinstance(text, str) else text


def hide_from_proc(value: str) -> None:
    """Remove ``$STGRADE_SECRET`` from the environment that child processes inherit, and overwrite
    ``value`` where ``/proc/self/environ`` and ``/proc/self/cmdline`` read it (the memory the
    process started with). Best effort: Linux only; elsewhere only the environment is cleaned."""
    os.environ.pop(ENV, None)
    if not value or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 of proc(5): arg_start..env_end are fields 48..51
        regions = [(int(fields[45]), int(fields[46])), (int(fields[47]), int(fields[48]))]
        needle = value.encode()
        for start, end in regions:
            if not 0 < start < end or end - start > 1 << 22:
                continue
            memory = ctypes.string_at(start, end - start)
            at = memory.find(needle)
            while at >= 0:
                ctypes.memset(start + at, ord("x"), len(needle))
                at = memory.find(needle, at + len(needle))
    except (OSError, ValueError, IndexError):
        pass
