"""pyproject.toml, environment.yml and requirements/lock.txt pin the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
