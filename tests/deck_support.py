"""Each lesson notebook run once per test session, for the decks and the notebook tests.

A deck is made by running its notebook (`course/` for the student deck, `solutions/` for the
instructor deck) in a fresh kernel and drawing its explorers (stgrade.slides.build_deck). The first
test that needs a deck builds it under a file lock, in a folder that every xdist worker of the
session sees; the others wait for it and use the same files: the deck's HTML for the browser tests
(tests/test_browser_decks.py) and the notebook as it ran, every output as the kernel sent it, for
the Run All tests (tests/test_notebooks.py). Explorers come from the builder's cache
(`.cache/deck-explorers/`), so a lesson's two decks draw them once.

STABLETRAIN_SLIDES=<folder> (e.g. slides/ after `make slides`) makes the browser tests use the decks
found there; the notebook tests still run their notebooks in this session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from stgrade.slides import build_deck, install_assets


def _session_root(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker of it sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _built(folder: Path, lesson: str, variant: str) -> Path:
    """The deck of ``lesson`` and ``variant`` in ``folder``, built there first if it is not."""
    from filelock import FileLock

    target = folder / lesson / f"{variant}.html"
    with FileLock(str(folder / f".{lesson}-{variant}.lock")):
        if not target.exists():
            build_deck(lesson, variant, folder, keep_notebook=True)
    with FileLock(str(folder / ".vendor.lock")):
        if not (folder / "vendor" / "stabletrain" / "deck.js").exists():
            install_assets(folder)
    return target


@pytest.fixture(scope="session")
def session_decks(tmp_path_factory) -> Path:
    folder = _session_root(tmp_path_factory) / "decks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def deck(session_decks):
    """deck(lesson, variant) -> the path of its HTML, built on first use in this session."""
    prebuilt = os.environ.get("STABLETRAIN_SLIDES")

    def get(lesson: str, variant: str) -> Path:
        if prebuilt and (Path(prebuilt) / lesson / f"{variant}.html").exists():
            return Path(prebuilt) / lesson / f"{variant}.html"
        return _built(session_decks, lesson, variant)

    return get


@pytest.fixture(scope="session")
def ran(session_decks):
    """ran(lesson, variant) -> (the notebook as it ran, seconds its cells took), from its deck's build."""

    def get(lesson: str, variant: str) -> tuple[nbformat.NotebookNode, float]:
        target = _built(session_decks, lesson, variant)
        stats = json.loads(target.with_name(f"{variant}.stats.json").read_text())
        return nbformat.read(target.with_name(f"{variant}.run.ipynb"), as_version=4), stats["run_s"]

    return get
