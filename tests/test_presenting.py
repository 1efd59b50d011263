"""Presenting without a browser: JupyterLab's saves keep the lesson's .py, `make lab` as root and
not, the vendored deck assets, and the deck builder's static explorers on small notebooks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from stgrade import slides
from stgrade.course import REPO_ROOT, lesson_ids

LESSONS = lesson_ids()


def _jupyterlab_save(root: Path, path: str, edit=None) -> None:
    """Open and save a notebook as JupyterLab does (jupytext's contents manager, repo config)."""
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(root_dir=str(root))

    async def roundtrip():
        model = await manager.get(path, content=True)
        if edit:
            edit(model["content"])
        await manager.save(model, path)

    asyncio.run(roundtrip())


@pytest.fixture
def checkout(tmp_path):
    shutil.copy(REPO_ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return tmp_path


@pytest.mark.parametrize("lesson", LESSONS)
def test_saving_in_jupyterlab_leaves_the_lessons_py_unchanged(lesson, checkout):
    py = checkout / "solutions" / lesson / f"{lesson}.py"
    before = py.read_text()
    _jupyterlab_save(checkout, f"solutions/{lesson}/{lesson}.ipynb")
    assert py.read_text() == before, "saving the notebook unchanged rewrote its .py"

    def edit(nb):
        first = next(c for c in nb.cells if c.cell_type == "markdown")
        first.source += "\n\nAn added sentence."

    _jupyterlab_save(checkout, f"solutions/{lesson}/{lesson}.ipynb", edit)
    after = py.read_text()
    assert "# An added sentence." in after
    import difflib

    changed = [ln for ln in difflib.ndiff(before.splitlines(), after.splitlines()) if ln[:1] in "+-"]
    assert changed == ["+ #", "+ # An added sentence."], f"only the edited cell may change: {changed}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_jupyterlab_opens_a_lesson_whose_ipynb_is_newer_than_its_py(lesson, checkout):
    """After `make release` (or a checkout) the .ipynb may be newer, and list cell metadata in
    another order than the .py: JupyterLab still opens it, from the .py, and keeps the .py."""
    folder = checkout / "solutions" / lesson
    py, ipynb = folder / f"{lesson}.py", folder / f"{lesson}.ipynb"
    before = py.read_text()
    nb = nbformat.read(ipynb, as_version=4)
    nb.cells[0].metadata = dict(reversed(list(nb.cells[0].metadata.items())) or [("tags", [])])
    nb.cells[0].metadata.setdefault("tags", [])
    nbformat.write(nb, ipynb)
    stamp = py.stat().st_mtime
    os.utime(ipynb, (stamp + 3600, stamp + 3600))
    _jupyterlab_save(checkout, f"solutions/{lesson}/{lesson}.ipynb")
    assert py.read_text() == before


@pytest.mark.parametrize("lesson", LESSONS)
def test_saving_a_student_notebook_writes_no_py_next_to_it(lesson, checkout):
    _jupyterlab_save(checkout, f"course/{lesson}/{lesson}.ipynb")
    assert sorted(p.name for p in (checkout / "course" / lesson).iterdir() if not p.name.startswith(".")) == [
        f"{lesson}.ipynb"]


def _make_lab_command(fake_uid: str | None) -> str:
    env = dict(os.environ)
    if fake_uid is not None:
        fake = Path(env.get("TMPDIR", "/tmp")) / f"fake-id-{os.getpid()}"
        fake.mkdir(exist_ok=True)
        (fake / "id").write_text(f"#!/bin/sh\necho {fake_uid}\n")
        (fake / "id").chmod(0o755)
        env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "lab"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if "jupyter lab" in ln][-1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_adds_allow_root_only_for_root():
    assert "--allow-root" in _make_lab_command("0")
    assert "--allow-root" not in _make_lab_command("1000")
    assert "--ServerApp.root_dir=." in _make_lab_command("1000")


def test_vendored_assets_are_pinned_with_their_licences():
    vendor = slides.VENDOR
    readme = (vendor / "README.md").read_text()
    for name, version in (("reveal.js", "5.2.1"), ("mathjax", "3.2.2")):
        assert (vendor / name / "LICENSE").exists(), f"{name} needs its licence next to it"
        assert f"| {name} | {version} |" in readme
        assert f"{name}@{version}" in (vendor / "fetch.sh").read_text()
    assert (vendor / "reveal.js/dist/theme/fonts/source-sans-pro/LICENSE").exists()
    for path in ("reveal.js/dist/reveal.js", "reveal.js/plugin/notes/notes.js", "mathjax/tex-chtml-full.js",
                 "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"):
        assert (vendor / path).exists(), path


def test_deck_template_loads_nothing_from_the_network():
    for path in [*slides.TEMPLATES.rglob("*.j2"), *slides.ASSETS.iterdir()]:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), f"{path} loads from the network"
        assert "url(http" not in text and "import(" not in text, path


TOY = [
    ("code", "import ipywidgets as W\nfrom matplotlib.figure import Figure\nimport io\n"
             "def png(k, s):\n    fig = Figure(figsize=(2, 1)); ax = fig.subplots(); ax.plot([0, 1], [0, k * s])\n"
             "    buf = io.BytesIO(); fig.savefig(buf, format='png'); return buf.getvalue()"),
    ("code", "kind = W.Dropdown(options=[('flat', 0), ('steep', 1)], value=1, description='kind')\n"
             "scale = W.SelectionSlider(options=[('1', 1), ('2', 2), ('3', 3)], value=2, description='scale')\n"
             "image = W.Image(format='png'); note = W.HTML()\n"
             "def update(_=None):\n    scale.disabled = kind.value == 0\n"
             "    image.value = png(kind.value, scale.value); note.value = f'<b>{kind.value}, {scale.value}</b>'\n"
             "kind.observe(update, 'value'); scale.observe(update, 'value'); update()\n"
             "W.VBox([W.HBox([kind, scale]), image, note])"),
    ("code", "W.interactive(lambda n: print('n =', n), n=W.IntSlider(min=0, max=3, value=1, description='n'))"),
    ("code", "W.VBox([W.Text(value='free text'), W.HTML('<i>needs a kernel</i>')])"),
    ("markdown", "# Toy\n\n$\\text{max\\_norm}$"),
]


@pytest.mark.slow
def test_static_explorers_are_drawn_for_every_setting(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                for kind, src in TOY]
    stats = slides.execute(nb, tmp_path, tmp_path / "frames", timeout=120)
    assert stats["explorers"] == 3 and stats["live_only"] == 1
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "text/html" in o.get("data", {})
             and "st-explorer" in o["data"]["text/html"]]
    image, printed, text = (v["data"]["text/html"] for v in views)
    data = json.loads(re.search(r'class="st-explorer-data">(.*?)</script>', image).group(1))
    assert len(data["frames"]) == 6 and data["labels"] == [["flat", "steep"], ["1", "2", "3"]]
    # flat: the disabled scale slider does not matter, one picture for all three of its positions
    assert len({tuple(data["frames"][f"0,{s}"]) for s in range(3)}) == 1
    assert data["disabled"] == {"0,0": [1], "0,1": [1], "0,2": [1]}
    assert len({tuple(data["frames"][f"1,{s}"]) for s in range(3)}) == 3
    assert all((tmp_path / src).exists() for src in data["leaves"][0])
    assert 'selected>steep' in image and 'value="1"' in image  # where the notebook left the controls
    printed_data = json.loads(re.search(r'class="st-explorer-data">(.*?)</script>', printed).group(1))
    assert [printed_data["leaves"][0][printed_data["frames"][str(n)][0]] for n in range(4)] == [
        f"<pre>n = {n}\n</pre>" for n in range(4)]
    assert "st-live-only" in text and "live in JupyterLab" in text and "Text" in text


def test_instructor_deck_notebook_swaps_stubs_and_turns_instructor_notes_into_speaker_notes():
    nb = nbformat.v4.new_notebook()
    solution = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    solution.metadata = {"nbgrader": {"solution": True, "grade_id": "f"}, "slideshow": {"slide_type": "fragment"}}
    hidden = nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\ncheck(f, 'f', level='hidden')\n### END HIDDEN TESTS")
    hidden.metadata = {"nbgrader": {"grade": True, "points": 1}, "slideshow": {"slide_type": "-"}}
    note = nbformat.v4.new_markdown_cell("The answer is 1.")
    note.metadata = {"tags": ["instructor"], "slideshow": {"slide_type": "skip"}}
    nb.cells = [solution, hidden, note]
    slides._prepare(nb, "instructor", {"f": "def f():\n    raise NotImplementedError()"})
    assert solution.metadata["deck"]["stub"].endswith("raise NotImplementedError()")
    assert hidden.metadata["slideshow"]["slide_type"] == "skip"
    assert note.metadata["slideshow"]["slide_type"] == "notes"


def test_student_deck_keeps_going_past_a_check_that_stops_at_a_stub():
    nb = nbformat.v4.new_notebook()
    test = nbformat.v4.new_code_cell("assert f() == 1\ncheck(f, 'f')")
    test.metadata = {"nbgrader": {"grade": True, "points": 1}}
    nb.cells = [test]
    slides._prepare(nb, "student", {})
    assert "raises-exception" in test.metadata["tags"]
    test.outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=["..."])]
    slides._tidy_errors(nb)
    assert [o.output_type for o in test.outputs] == ["stream"] and "not answered yet" in test.outputs[0].text
    assert "raises-exception" not in test.metadata["tags"]
