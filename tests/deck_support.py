"""The decks of `make slides`, built once per test session and shared by the tests and the xdist
workers: the first test that needs a deck builds it under a file lock, in a folder all workers of
the session share; the others wait for it and open the same files. Explorers come from the
builder's cache (`.cache/deck-explorers/`), so a student and an instructor deck draw them once.

STABLETRAIN_SLIDES=<folder> (e.g. slides/ after `make slides`) uses the decks found there.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from stgrade.slides import build_deck, install_assets


def _session_root(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker of it sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def deck_folder(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("STABLETRAIN_SLIDES")
    folder = Path(prebuilt) if prebuilt else _session_root(tmp_path_factory) / "decks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def deck(deck_folder):
    """deck(lesson, variant) -> path of its HTML, built on first use in this session."""
    from filelock import FileLock

    def get(lesson: str, variant: str) -> Path:
        target = deck_folder / lesson / f"{variant}.html"
        with FileLock(str(deck_folder / f".{lesson}-{variant}.lock")):
            if not target.exists():
                build_deck(lesson, variant, deck_folder)
        with FileLock(str(deck_folder / ".vendor.lock")):
            if not (deck_folder / "vendor" / "stabletrain" / "deck.js").exists():
                install_assets(deck_folder)
        return target

    return get


def executed(deck_path: Path) -> nbformat.NotebookNode | None:
    path = deck_path.with_suffix(".ipynb")
    return nbformat.read(path, as_version=4) if path.exists() else None
