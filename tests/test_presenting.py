"""Presenting without a browser: JupyterLab's saves keep the lesson's .py, `make lab` as root and
not, the vendored deck assets, and the deck builder's static explorers on small notebooks."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from stgrade import deckplan, slides
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
    return [ln for ln in out.replace("\\\n", " ").splitlines() if "jupyter lab" in ln][-1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_adds_allow_root_only_for_root():
    assert "--allow-root" in _make_lab_command("0")
    assert "--allow-root" not in _make_lab_command("1000")
    assert "--ServerApp.root_dir=." in _make_lab_command("1000")
    # offline, and no "get notified about Jupyter news?" popup over the live deck's arrows
    assert "--LabApp.news_url=None" in _make_lab_command("1000")
    assert "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate" in _make_lab_command("1000")


def test_vendored_assets_are_pinned_with_their_licences():
    vendor = slides.VENDOR
    readme = (vendor / "README.md").read_text()
    for name, version in (("reveal.js", "5.2.1"), ("mathjax", "3.2.2")):
        assert (vendor / name / "LICENSE").exists(), f"{name} needs its licence next to it"
        assert f"| {name} | {version} |" in readme
        assert f"{name}@{version}" in (vendor / "fetch.sh").read_text()
    assert (vendor / "reveal.js/dist/theme/fonts/source-sans-pro/LICENSE").exists()
    for path in ("reveal.js/dist/reveal.js", "reveal.js/plugin/notes/notes.js", "mathjax/tex-svg-full.js"):
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
    stats = slides.execute(nb, tmp_path, tmp_path / "frames", timeout=120, cache=tmp_path / "cache")
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


    # drawn once: a second run takes every explorer from the cache
    again = nbformat.v4.new_notebook()
    again.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                   for kind, src in TOY]
    stats = slides.execute(again, tmp_path, tmp_path / "frames2", timeout=120, cache=tmp_path / "cache")
    assert stats["cached"] == 2 and stats["explorers"] == 3
    assert all((tmp_path / "frames2" / Path(src).name).exists() for src in data["leaves"][0])


def _cell(kind, source, **metadata):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    cell.metadata.update(metadata)
    return cell


def _png_output(alt):
    return nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}, metadata={"image/png": {"alt": alt}})


LESSON = [
    _cell("markdown", "# Lesson 9 — Toy\n\nA toy lesson shows how decks are made from a lesson, slide by slide. It has more sentences; they go to the notes."),
    _cell("markdown", "## 1. A formula\n\nThe first sentence stays on the slide, as the lead of its idea. The second goes to the notes. "
                      "By the chain rule, the product is:\n\n$$\n\\prod_t J_t\n$$\n\nMore prose, for the notes only.",
          slideshow={"slide_type": "slide"}),
    _cell("code", "fig = plot()\nfig", slideshow={"slide_type": "subslide"}),
    _cell("markdown", "**Reading the plot.** The prose after a figure is what the lecturer says about it."),
    _cell("markdown", "**Question.** Why does the product explode?"),
    _cell("code", "print(1)", slideshow={"slide_type": "-"}),
    _cell("markdown", "### Exercise 1 — `f` (1 point)\n\nWrite `f`:\n\n- it returns one, always, whatever the input; and this "
                      "item goes on for long enough to be cut at its first clause: the rest is in the notes"),
    _cell("code", 'def f():\n    """Return 1.\n\n    Longer docstring.\n    """\n    ### BEGIN SOLUTION\n    return 1\n'
                  '    ### END SOLUTION', nbgrader={"solution": True, "grade_id": "f"}),
    _cell("code", "check(f, 'f')", nbgrader={"grade": True, "points": 1}),
    _cell("code", "### BEGIN HIDDEN TESTS\ncheck(f, 'f', level='hidden')\n### END HIDDEN TESTS",
          nbgrader={"grade": True, "points": 1}, slideshow={"slide_type": "skip"}),
    _cell("markdown", "**Instructor notes.** The answer is 1.", tags=["instructor"], slideshow={"slide_type": "skip"}),
    _cell("markdown", "## Recap\n\nKept as written.\n\n- one\n- two", tags=["deck-keep"]),
    _cell("markdown", "Only for the notes.", tags=["deck-notes"]),
    _cell("code", "import secret", tags=["deck-skip"]),
]
LESSON[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="Figure: A curve that grows.\n"),
                     _png_output("A curve that grows.")]
LESSON[5].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
LESSON[8].outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ f: all checks passed\n")]


def test_deck_plan_puts_one_idea_on_each_slide_and_the_prose_in_the_notes():
    nb = nbformat.v4.new_notebook()
    nb.cells = copy.deepcopy(LESSON)
    plan = deckplan.plan(nb, "instructor", {"f": 'def f():\n    """Return 1.\n\n    Longer.\n    """\n    raise NotImplementedError()'})
    kinds = [(s.kind, s.title) for s in plan]
    assert kinds == [("title", "Lesson 9 — Toy"), ("text", "1. A formula"), ("figure", "1. A formula"),
                     ("question", "1. A formula"), ("text", "1. A formula"), ("text", "Exercise 1 — `f` (1 point)"),
                     ("exercise", "Exercise 1 — `f` (1 point)"), ("text", "Recap")]
    shown = ["\n".join(c.source for c in s.cells if c.cell_type == "markdown") for s in plan]
    assert shown[0] == "A toy lesson shows how decks are made from a lesson, slide by slide."
    assert "The first sentence stays on the slide, as the lead of its idea." in shown[1] and "By the chain rule" in shown[1] and "\\prod_t" in shown[1]
    assert "The second goes" not in shown[1] and "More prose" not in shown[1]
    assert "More prose, for the notes only." in "\n".join(plan[1].notes)
    assert shown[2] == "A curve that grows."  # the figure's takeaway: its alternative text by default
    assert [c.source for c in plan[2].cells] == ["fig = plot()\nfig", "A curve that grows."]  # not printed again
    assert "what the lecturer says about it" in "\n".join(plan[2].notes)
    assert shown[3].startswith("**Question.**")
    assert [c.metadata["deck"]["code"] for c in plan[3].cells if c.cell_type == "code"] == []
    assert [c.metadata["deck"]["code"] for c in plan[4].cells] == ["fold"]  # printed output: its code folded
    assert "- it returns one, always, whatever the input" == shown[5].splitlines()[-1]
    exercise = plan[6].cells[0]
    assert exercise.source == 'def f():\n    """Return 1."""\n    return 1'  # docstring cut, no markers
    assert exercise.metadata["deck"]["stub"] == 'def f():\n    """Return 1."""\n    raise NotImplementedError()'
    assert plan[6].cells[1].source == "check(f, 'f')"
    assert "The answer is 1." in "\n".join(plan[6].notes)
    assert shown[7] == "Kept as written.\n\n- one\n- two" and "Only for the notes." in plan[7].notes
    assert "secret" not in str(plan) and "HIDDEN" not in str(plan)


def test_deck_plan_takes_the_authors_takeaway_and_tags():
    nb = nbformat.v4.new_notebook()
    nb.cells = copy.deepcopy(LESSON[:3])
    nb.cells[2].metadata["deck"] = {"takeaway": "It **explodes**.", "title": "The product"}
    nb.cells[2].metadata["tags"] = ["deck-code"]
    plan = deckplan.plan(nb, "student")
    figure = plan[-1]
    assert figure.title == "The product" and figure.cells[-1].source == "It **explodes**."
    assert figure.cells[0].metadata["deck"]["code"] == "open"


def test_first_sentence_and_list_items_leave_math_and_code_whole():
    assert deckplan.first_sentence("Take $a. B$ first, e.g. here. Then more.") == "Take $a. B$ first, e.g. here."
    assert deckplan.shorten_item("implement `clip_grad_norm_` exactly as PyTorch does: the global norm of the "
                                 "per-parameter norms, the $10^{-6}$ in the coefficient, and more") == \
        "implement `clip_grad_norm_` exactly as PyTorch does"
    assert deckplan.slide_code("def g(x):\n    'One line.'\n    return x") == "def g(x):\n    'One line.'\n    return x"


def test_student_deck_keeps_going_past_a_check_that_stops_at_a_stub():
    nb = nbformat.v4.new_notebook()
    test = nbformat.v4.new_code_cell("assert f() == 1\ncheck(f, 'f')")
    test.metadata = {"nbgrader": {"grade": True, "points": 1}}
    nb.cells = [test]
    slides._prepare(nb, "student")
    assert "raises-exception" in test.metadata["tags"]
    test.outputs = [nbformat.v4.new_output("error", ename="NotImplementedError", evalue="", traceback=["..."])]
    slides._tidy_errors(nb)
    assert [o.output_type for o in test.outputs] == ["stream"] and "not answered yet" in test.outputs[0].text
    assert "raises-exception" not in test.metadata["tags"]


def test_deck_html_has_slides_notes_and_the_solution_swap():
    nb = nbformat.v4.new_notebook()
    nb.cells = copy.deepcopy(LESSON)
    page = slides.render(nb, "instructor", "Lesson 9 — Toy", {"f": "def f():\n    raise NotImplementedError()"})
    assert page.count('class="st-slide') == 8
    assert page.count('<aside class="notes">') >= 4
    assert 'class="fragment fade-out st-stub"' in page and 'class="fragment st-answer"' in page
    assert "BEGIN SOLUTION" not in page and "HIDDEN" not in page
    assert 'mathjax/tex-svg-full.js' in page and "navigationMode" not in page  # deck.js sets it
