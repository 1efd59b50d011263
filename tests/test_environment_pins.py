"""pyproject.toml, environment.yml and requirements/lock.txt pin the same versions, and the lock installs on
every Python that pyproject.toml, the README and the Makefile name."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)\s*", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def _pyproject():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    unpinned = [d for d in deps if "==" not in d]
    assert not unpinned, f"unpinned dependencies in pyproject.toml: {unpinned}"
    return _pins(deps)


def test_environment_yml_pins_match_pyproject():
    conda = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert conda == _pyproject()


def test_lock_file_agrees_with_pyproject():
    lock = _pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    for name, version in _pyproject().items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"


def test_torch_is_pinned_to_the_course_version():
    assert _pyproject()["torch"] == "2.13.0"


# -- the lock installs on every Python the README names ---------------------------------------------
def _supported_range() -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, first unsupported) minor version, from pyproject.toml's requires-python."""
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.search(r">=\s*(\d+)\.(\d+)", spec)
    high = re.search(r"<\s*(\d+)\.(\d+)", spec)
    assert low and high, f"requires-python should be '>=3.X, <3.Y', found {spec!r}"
    return (int(low[1]), int(low[2])), (int(high[1]), int(high[2]))


def _versions_to_resolve() -> list[str]:
    """The lowest release of each supported minor version, and Debian 12's python3 (3.11.2)."""
    (major, low), (_, high) = _supported_range()
    return [f"{major}.{low}.0", "3.11.2", *(f"{major}.{minor}" for minor in range(low + 1, high))]


def test_readme_makefile_and_pyproject_name_the_same_pythons():
    (major, low), (_, high) = _supported_range()
    readme = (ROOT / "README.md").read_text()
    assert f"Python {major}.{low} to {major}.{high - 1}" in readme, "the README's requirement is not pyproject's range"
    makefile = (ROOT / "Makefile").read_text()
    assert f"({major}, {low}) <= v < ({major}, {high})" in makefile, "the Makefile checks another range"


def _network_problem(stderr: str) -> bool:
    return any(s in stderr for s in ("Failed to fetch", "error sending request", "dns error", "Connect",
                                     "timed out", "Network is unreachable", "offline"))


def _resolve(pythons, *extra: str) -> dict[str, tuple[int, str, str]]:
    """python -> (exit code, stdout, stderr) of uv resolving the lock for it; all at once."""
    from uv import find_uv_bin

    procs = {python: subprocess.Popen(
        [find_uv_bin(), "pip", "compile", "pyproject.toml", "--extra", "dev", "--constraint", "requirements/lock.txt",
         "--python-version", python, "--only-binary", ":all:", "--no-header", "--no-annotate", "--quiet",
         "--color", "never", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for python in pythons}
    try:
        outputs = {python: proc.communicate(timeout=300) for python, proc in procs.items()}
        return {python: (procs[python].returncode, *out) for python, out in outputs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def resolutions():
    """First from uv's cache alone (``--offline``: about 1.5 s per Python once the metadata of the pinned
    versions is cached, and a pinned version's metadata does not change), then from the index for every
    Python the cache could not answer (5-40 s of waiting on this machine's link, about 1 s of CPU each)."""
    found = _resolve(_versions_to_resolve(), "--offline")
    found.update(_resolve([p for p, (code, _, _) in found.items() if code != 0]))
    return found


@pytest.mark.xdist_group("lock")
@pytest.mark.parametrize("python", _versions_to_resolve())
def test_the_lock_resolves_for_every_supported_python(resolutions, python):
    """uv resolves pyproject.toml's dependencies (dev included) with requirements/lock.txt as constraints, for
    this platform, wheels only, as that Python would: every pin must be chosen. uv fetches only metadata; pip's
    --dry-run downloads every wheel (torch's is 500 MB) and took 25-80 s per Python here."""
    code, stdout, stderr = resolutions[python]
    if code != 0 and "No solution found" not in stderr and _network_problem(stderr):
        reason = f"the package index cannot be reached to resolve the lock for Python {python}: {stderr[-300:]}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert code == 0, f"requirements/lock.txt does not install on Python {python}:\n{stderr[-3000:]}"
    lock = _pins((ROOT / "requirements/lock.txt").read_text().splitlines())
    chosen = _pins(stdout.splitlines())
    differ = {n: (v, chosen.get(n)) for n, v in lock.items() if chosen.get(n, v) != v}
    assert not differ, f"Python {python} resolves other versions than the lock (lock, resolved): {differ}"
