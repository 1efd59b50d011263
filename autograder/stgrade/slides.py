"""Offline slide decks of every lesson: ``make slides`` (``python -m stgrade.slides``).

For each lesson two decks are written, each executed in its own kernel so that every figure and
printout is on its slide:

- ``slides/<id>/student.html``: the student notebook (``course/``): exercise stubs, no solution
  code, no hidden tests. An unanswered exercise's check says so in one line, and the experiments
  below it run (they use the reference implementation).
- ``slides/<id>/instructor.html``: the instructor notebook (``solutions/``): each exercise's cell
  shows the student's stub, and the next click swaps in the solution. Instructor notes (cells tagged
  ``instructor``) become reveal.js speaker notes (press ``S``).

Nothing is loaded from the network when a deck is shown: reveal.js and MathJax (pinned, with their
licences, ``presenting/vendor/``) are copied next to the decks (``slides/vendor/``). ipywidgets
explorers cannot run without a kernel, so each is replaced by a static explorer: the builder moves
the explorer's controls through every setting in the kernel (at most ``MAX_FRAMES`` settings: a
slider with many positions is drawn at fewer of them), saves each picture, and the deck's controls
(HTML sliders and drop-downs) look the pictures up. An explorer whose controls cannot be stepped
through, or whose settings take longer than ``EXPLORER_SECONDS`` to draw, says on the slide that
it is live in JupyterLab, and shows its starting picture.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import html
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import SlidesExporter

from .course import REPO_ROOT, lesson_ids
from .release import INSTRUCTOR_TAG

PRESENTING = REPO_ROOT / "presenting"
VENDOR = PRESENTING / "vendor"
TEMPLATES = PRESENTING / "templates"
ASSETS = TEMPLATES / "deck" / "assets"
DEFAULT_OUT = REPO_ROOT / "slides"
VARIANTS = ("student", "instructor")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: settings an explorer is drawn at, at most (its sliders are thinned to fit; at least 3 positions each)
MAX_FRAMES = 200
#: an explorer whose settings take longer than this to draw is shown as "live in JupyterLab" instead
EXPLORER_SECONDS = 60.0

# --- code run inside the lesson's kernel -----------------------------------------------------------

#: Figures get alternative text: a figure's label (``fig.set_label``), else its titles. Installed
#: before the notebook runs; IPython's formatters may return (data, metadata).
KERNEL_SETUP = r'''
def _st_install_alt_text():
    import IPython.core.pylabtools as pylabtools
    original = pylabtools.print_figure
    if getattr(original, "_st_alt", False):
        return
    def describe(fig):
        if fig.get_label():
            return fig.get_label()
        parts = []
        suptitle = getattr(fig, "_suptitle", None)
        if suptitle is not None and suptitle.get_text():
            parts.append(suptitle.get_text())
        parts += [ax.get_title() for ax in fig.axes if ax.get_title()]
        return "; ".join(parts) or "figure"
    def print_figure(fig, fmt="png", *args, **kwargs):
        data = original(fig, fmt, *args, **kwargs)
        if fmt == "png" and data:
            return data, {"alt": describe(fig)}
        return data
    print_figure._st_alt = True
    pylabtools.print_figure = print_figure
_st_install_alt_text()
del _st_install_alt_text
'''

#: Describe an explorer (controls and what they drive) and set its controls to given positions.
KERNEL_EXPLORER = r'''
def _st_explorer(model_id, folder, positions=None, limit=None, seconds=None):
    import hashlib, json, os, time
    import ipywidgets as W
    from ipywidgets.widgets.widget import _instances

    def walk(widget, controls, leaves, unsupported):
        if isinstance(widget, W.Box):
            for child in widget.children:
                walk(child, controls, leaves, unsupported)
        elif isinstance(widget, (W.Image, W.HTML, W.HTMLMath, W.Label, W.Output)):
            leaves.append(widget)
        elif hasattr(widget, "_options_values") and not isinstance(widget.value, tuple):
            controls.append(widget)
        elif isinstance(widget, (W.IntSlider, W.FloatSlider, W.FloatLogSlider, W.Checkbox, W.ToggleButton)):
            controls.append(widget)
        elif isinstance(widget, W.DOMWidget):
            unsupported.append(type(widget).__name__)

    def choices(control):
        if hasattr(control, "_options_values"):
            return list(control._options_values), [str(l) for l in control._options_labels]
        if isinstance(control, (W.Checkbox, W.ToggleButton)):
            return [False, True], ["off", "on"]
        if isinstance(control, W.FloatLogSlider):
            n = int(round((control.max - control.min) / control.step)) + 1
            values = [control.base ** (control.min + i * control.step) for i in range(n)] if 0 < n <= 101 else []
        else:
            n = int(round((control.max - control.min) / control.step)) + 1
            values = [control.min + i * control.step for i in range(n)] if 0 < n <= 101 else []
            if isinstance(control, W.IntSlider):
                values = [int(v) for v in values]
        fmt = getattr(control, "readout_format", "") or ""
        fmt = fmt if fmt and not fmt.startswith(".") or isinstance(control, W.IntSlider) else (fmt or ".3g")
        try:
            labels = [format(v, fmt) for v in values]
        except (ValueError, TypeError):
            labels = [f"{v:g}" for v in values]
        return values, labels

    def position(control, values):
        """Where the control is, among ``values`` (all its positions, or the thinned ones)."""
        if hasattr(control, "_options_values") and len(values) == len(control._options_values):
            return control.index
        for i, value in enumerate(values):
            if value is control.value or value == control.value:
                return i
        try:
            return min(range(len(values)), key=lambda i: abs(values[i] - control.value)) if values else 0
        except TypeError:
            return 0

    def leaf_state(leaf):
        if isinstance(leaf, W.Image):
            data = bytes(leaf.value)
            name = hashlib.sha1(data).hexdigest()[:16] + "." + (leaf.format or "png")
            path = os.path.join(folder, name)
            if data and not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
            return {"kind": "image", "file": name if data else ""}
        if isinstance(leaf, W.Output):
            return {"kind": "output"}
        if isinstance(leaf, (W.HTML, W.HTMLMath)):
            return {"kind": "html", "html": leaf.value}
        if isinstance(leaf, W.Label):
            return {"kind": "html", "html": __import__("html").escape(str(leaf.value))}
        text = f"{getattr(leaf, 'description', '')} {leaf.value}".strip()
        return {"kind": "html", "html": __import__("html").escape(text)}

    root = _instances.get(model_id)
    if root is None:
        print(json.dumps({"error": "the widget is not in the kernel any more"}))
        return
    controls, leaves, unsupported = [], [], []
    walk(root, controls, leaves, unsupported)
    def thinned(control, values, labels, keep):
        """``keep`` evenly spaced positions of a slider, its ends and its current position among them."""
        n, now = len(values), position(control, values)
        picked = sorted({round(i * (n - 1) / (keep - 1)) for i in range(keep)} | {now})
        return [values[i] for i in picked], [labels[i] for i in picked]

    tables = _st_explorer.__dict__.setdefault("tables", {})
    if positions is None:
        # A slider with many positions is drawn at fewer of them, until the settings fit in ``limit``.
        table = [choices(c) for c in controls]
        sliders = (W.IntSlider, W.FloatSlider, W.FloatLogSlider, W.SelectionSlider)
        def total():
            n = 1
            for values, _labels in table:
                n *= max(len(values), 1)
            return n
        thinned_any = False
        while limit and total() > limit:
            candidates = [i for i, c in enumerate(controls) if isinstance(c, sliders) and len(table[i][0]) > 3]
            if not candidates:
                break
            i = max(candidates, key=lambda i: len(table[i][0]))
            table[i] = thinned(controls[i], *table[i], max(3, len(table[i][0]) // 2))
            thinned_any = True
        tables[model_id] = table
    table = tables.get(model_id) or [choices(c) for c in controls]
    if positions is None:
        print(json.dumps({
            "controls": [{"description": c.description, "kind": type(c).__name__, "values": labels,
                          "position": position(c, values), "count": len(values)}
                         for c, (values, labels) in zip(controls, table)],
            "leaves": [type(l).__name__ for l in leaves],
            "leaf_ids": [l.model_id for l in leaves],
            "thinned": thinned_any,
            "unsupported": unsupported}))
        return
    def visit(positions):
        for control, (values, _labels), i in zip(controls, table, positions):
            if position(control, values) != i:
                control.value = values[i]
        return {"leaves": [leaf_state(l) for l in leaves],
                "disabled": [bool(getattr(c, "disabled", False)) for c in controls]}

    def every_setting(depth, prefix):
        """Every setting from control ``depth`` on; a control that is disabled (given the ones before
        it) does not change the picture, so it is drawn at one position and stands for all."""
        if depth == len(controls):
            # give up early when the settings left would not be drawn in time at the pace so far
            spent, drawn[0] = time.monotonic() - started, drawn[0] + 1
            if seconds and drawn[0] > 5 and spent + spent / (drawn[0] - 1) * (upper - drawn[0]) > seconds * 1.5:
                raise TimeoutError
            if seconds and spent > seconds:
                raise TimeoutError
            return {tuple(prefix): visit(prefix)}
        for control, (values, _labels), i in zip(controls, table, prefix):
            if position(control, values) != i:
                control.value = values[i]
        control, (values, _labels) = controls[depth], table[depth]
        found = {}
        if getattr(control, "disabled", False):
            for key, state in every_setting(depth + 1, prefix + [position(control, values)]).items():
                for j in range(len(values)):
                    found[key[:depth] + (j,) + key[depth + 1:]] = state
            return found
        for j in range(len(values)):
            found.update(every_setting(depth + 1, prefix + [j]))
        return found

    if positions == "all":  # every setting, in one go (explorers whose pictures the kernel holds)
        start = [position(c, values) for c, (values, _labels) in zip(controls, table)]
        started, drawn, upper = time.monotonic(), [0], 1
        for values, _labels in table:
            upper *= max(len(values), 1)
        try:
            frames = {",".join(map(str, key)): state for key, state in every_setting(0, []).items()}
        except TimeoutError:
            frames = {"timeout": True}
        visit(start)
        print(json.dumps(frames))
        return
    print(json.dumps(visit(positions)))
'''


# --- preparing the notebook of each variant ------------------------------------------------------

def _slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def _set_slide_type(cell, slide_type: str) -> None:
    cell.metadata.setdefault("slideshow", {})["slide_type"] = slide_type


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def _is_solution(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("solution")) and cell.cell_type == "code"


def notebook_for(lesson_id: str, variant: str, root: Path = REPO_ROOT) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook a deck is made from, and the folder it runs in."""
    if variant == "student":
        path = root / "course" / lesson_id / f"{lesson_id}.ipynb"
    elif variant == "instructor":
        path = root / "solutions" / lesson_id / f"{lesson_id}.ipynb"
    else:
        raise ValueError(f"unknown deck variant {variant!r}; expected one of {VARIANTS}")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make release`")
    return nbformat.read(path, as_version=4), path.parent


def _stubs(lesson_id: str, root: Path) -> dict[str, str]:
    path = root / "course" / lesson_id / f"{lesson_id}.ipynb"
    if not path.exists():
        return {}
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if _is_solution(c) and c.metadata.get("nbgrader", {}).get("grade_id")}


def _prepare(nb: nbformat.NotebookNode, variant: str, stubs: dict[str, str]) -> None:
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if variant == "student" and _is_test(cell):
            # an unanswered exercise may still stop a check before check() reports it: keep going
            cell.metadata["tags"] = [*tags, "raises-exception"]
        if variant == "instructor":
            if INSTRUCTOR_TAG in tags:
                _set_slide_type(cell, "notes")
            if _is_solution(cell):
                grade_id = cell.metadata["nbgrader"].get("grade_id")
                if grade_id in stubs:
                    cell.metadata["deck"] = {"stub": stubs[grade_id]}
            if _is_test(cell) and "BEGIN HIDDEN TESTS" in cell.source:
                _set_slide_type(cell, "skip")


def _tidy_errors(nb: nbformat.NotebookNode) -> None:
    """A check that stopped at an unanswered exercise: one line, not a traceback."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.output_type == "error":
                text = f"{out.ename}: {out.evalue}" if out.evalue else out.ename
                if out.ename == "NotImplementedError":
                    text = "not answered yet (the exercise still raises NotImplementedError)"
                out = nbformat.v4.new_output("stream", name="stdout", text=text + "\n")
            outputs.append(out)
        cell.outputs = outputs
        if "raises-exception" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "raises-exception"]


# --- executing, and turning explorers into static ones -------------------------------------------

class _Kernel:
    """Runs extra code in the kernel of an executing NotebookClient."""

    def __init__(self, client: NotebookClient) -> None:
        self.client = client

    def run(self, source: str) -> str:
        nb = self.client.nb
        cell = nbformat.v4.new_code_cell(source)
        nb.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(nb.cells) - 1, store_history=False)
        finally:
            nb.cells.pop()
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _output_leaf(client: NotebookClient, model_id: str, frames: Path) -> dict:
    """The picture an Output widget holds now (nbclient keeps its outputs)."""
    state = client.widget_state.get(model_id, {})
    parts = []
    for out in state.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            raw = __import__("base64").b64decode(data["image/png"])
            name = hashlib.sha1(raw).hexdigest()[:16] + ".png"
            if not (frames / name).exists():
                (frames / name).write_bytes(raw)
            parts.append(f'<img src="frames/{name}" alt="explorer figure">')
        elif "text/html" in data:
            parts.append("".join(data["text/html"]))
        elif out.get("output_type") == "stream":
            parts.append(f"<pre>{html.escape(''.join(out.get('text', '')))}</pre>")
        elif "text/plain" in data:
            parts.append(f"<pre>{html.escape(''.join(data['text/plain']))}</pre>")
    return {"kind": "html", "html": "".join(parts)}


def _explorer_html(kernel: _Kernel, model_id: str, frames: Path, max_frames: int,
                   seconds: float = EXPLORER_SECONDS) -> tuple[str, int]:
    """A static explorer standing in for the widget; and how many settings were drawn."""
    folder = json.dumps(str(frames))
    info = json.loads(kernel.run(f"_st_explorer({model_id!r}, {folder}, limit={max_frames})").strip().splitlines()[-1])
    if "error" in info:
        return _live_only_html("", info["error"]), 0
    controls = info["controls"]
    counts = [c["count"] for c in controls]
    total = 1
    for n in counts:
        total *= max(n, 1)
    start = [c["position"] for c in controls]
    reason = ""
    if info["unsupported"]:
        reason = f"it has controls that need a kernel ({', '.join(sorted(set(info['unsupported'])))})"
    elif not controls or 0 in counts:
        reason = "its controls cannot be stepped through in advance"
    elif total > max_frames:
        reason = f"it has {total} settings, more than the {max_frames} drawn in advance"

    def frame(positions):
        got = json.loads(kernel.run(f"_st_explorer({model_id!r}, {folder}, {list(positions)!r})").strip().splitlines()[-1])
        leaves = [(_output_leaf(kernel.client, leaf_id, frames) if s["kind"] == "output" else s)
                  for s, leaf_id in zip(got["leaves"], info["leaf_ids"])]
        return leaves, got["disabled"]

    if reason:
        first, _disabled = frame(start)
        return _live_only_html(_leaves_html(first), reason), 1
    contents: list[list[str]] = [[] for _ in info["leaves"]]
    table = {}
    disabled_at = {}
    if "Output" in info["leaves"]:  # nbclient holds an Output widget's pictures: one setting per request
        settings = {",".join(map(str, p)): frame(p) for p in itertools.product(*(range(n) for n in counts))}
        kernel.run(f"_st_explorer({model_id!r}, {folder}, {start!r})")  # back where the notebook left it
    else:
        got = json.loads(kernel.run(f"_st_explorer({model_id!r}, {folder}, 'all', seconds={seconds})")
                         .strip().splitlines()[-1])
        if got.get("timeout"):
            first, _disabled = frame(start)
            return _live_only_html(_leaves_html(first), f"drawing its {total} settings takes longer than {seconds:g} s"), 1
        settings = {key: (value["leaves"], value["disabled"]) for key, value in got.items()}
    for key, (states, disabled) in settings.items():
        row = []
        for i, state in enumerate(states):
            value = f"frames/{state['file']}" if state["kind"] == "image" else state["html"]
            if value not in contents[i]:
                contents[i].append(value)
            row.append(contents[i].index(value))
        table[key] = row
        if any(disabled):
            disabled_at[key] = [i for i, d in enumerate(disabled) if d]
    first = table[",".join(map(str, start))]
    parts = ['<div class="st-explorer" data-static="1">', '<div class="st-controls">']
    for i, c in enumerate(controls):
        label = html.escape(c["description"] or f"control {i + 1}")
        if c["kind"] in ("Dropdown", "Select", "RadioButtons", "ToggleButtons"):
            options = "".join(f'<option value="{j}"{" selected" if j == c["position"] else ""}>{html.escape(v)}</option>'
                              for j, v in enumerate(c["values"]))
            parts.append(f'<label class="st-control"><span>{label}</span><select data-control="{i}">{options}</select></label>')
        else:
            parts.append(f'<label class="st-control"><span>{label}</span><input type="range" data-control="{i}" '
                         f'min="0" max="{c["count"] - 1}" step="1" value="{c["position"]}">'
                         f'<output>{html.escape(c["values"][c["position"]])}</output></label>')
    parts.append("</div>")
    for i, kind in enumerate(info["leaves"]):
        value = contents[i][first[i]]
        if value.startswith("frames/") and kind == "Image":
            parts.append(f'<img class="st-leaf-image" data-leaf="{i}" src="{html.escape(value)}" alt="explorer figure">')
        else:
            parts.append(f'<div class="st-leaf-html" data-leaf="{i}">{value}</div>')
    drawn = (f"{total} settings (its sliders in coarser steps than in JupyterLab)" if info.get("thinned")
             else f"all {total} settings")
    parts.append(f'<p class="st-explorer-note">Explorer drawn in advance for {drawn}: move the controls. '
                 'In JupyterLab it runs live.</p>')
    data = {"labels": [c["values"] for c in controls], "leaves": contents, "frames": table, "disabled": disabled_at}
    parts.append('<script type="application/json" class="st-explorer-data">'
                 + json.dumps(data).replace("</", "<\\/") + "</script></div>")
    return "".join(parts), total


def _leaves_html(states: list[dict]) -> str:
    return "".join(f'<img src="frames/{s["file"]}" alt="explorer figure">' if s["kind"] == "image" else
                   f'<div class="st-leaf-html">{s["html"]}</div>' for s in states)


def _live_only_html(inner: str, reason: str) -> str:
    return ('<div class="st-explorer st-live-only">' + inner +
            '<p class="st-explorer-note">This explorer is live in JupyterLab only (<code>make lab</code>): '
            f'{html.escape(reason)}. Shown here: its starting picture.</p></div>')


def execute(nb: nbformat.NotebookNode, cwd: Path, frames: Path, *, timeout: int = 300,
            max_frames: int = MAX_FRAMES, explorer_seconds: float = EXPLORER_SECONDS) -> dict:
    """Run ``nb`` top to bottom in a fresh kernel; replace each explorer by a static one.

    Returns statistics: seconds, number of explorers and of frames drawn."""
    frames.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    started = time.monotonic()
    stats = {"explorers": 0, "frames": 0, "live_only": 0}
    with client.setup_kernel():
        kernel = _Kernel(client)
        kernel.run(KERNEL_SETUP)
        for index, cell in enumerate(list(nb.cells)):
            client.execute_cell(cell, index)
        stats["run_s"] = round(time.monotonic() - started, 2)
        kernel.run(KERNEL_EXPLORER)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                view = out.get("data", {}).get(WIDGET_VIEW)
                if not view:
                    continue
                explorer, drawn = _explorer_html(kernel, view["model_id"], frames, max_frames, explorer_seconds)
                out["data"] = {"text/html": explorer}
                stats["explorers"] += 1
                stats["frames"] += drawn
                stats["live_only"] += "st-live-only" in explorer
    nb.metadata.pop("widgets", None)
    stats["seconds"] = round(time.monotonic() - started, 2)
    return stats


# --- writing decks ---------------------------------------------------------------------------------

def install_assets(out: Path) -> Path:
    """Copy the vendored libraries and the deck's own scripts to ``out/vendor``."""
    vendor = out / "vendor"
    shutil.copytree(VENDOR, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("fetch.sh"))
    shutil.copytree(ASSETS, vendor / "stabletrain", dirs_exist_ok=True)
    return vendor


def _title(nb: nbformat.NotebookNode, lesson_id: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return lesson_id


def build_deck(lesson_id: str, variant: str, out: Path = DEFAULT_OUT, root: Path = REPO_ROOT,
               timeout: int = 300, max_frames: int = MAX_FRAMES) -> tuple[Path, dict]:
    nb, cwd = notebook_for(lesson_id, variant, root)
    _prepare(nb, variant, _stubs(lesson_id, root) if variant == "instructor" else {})
    folder = out / lesson_id
    stats = execute(nb, cwd, folder / "frames", timeout=timeout, max_frames=max_frames)
    _tidy_errors(nb)
    exporter = SlidesExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="deck")
    title = f"{_title(nb, lesson_id)} ({variant})"
    body, _ = exporter.from_notebook_node(copy.deepcopy(nb), resources={
        "deck": {"vendor": "../vendor", "variant": variant, "title": title}})
    target = folder / f"{variant}.html"
    target.write_text(body)
    return target, stats


INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Stable Training: slides</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}}td,th{{padding:.3em 1em;text-align:left}}</style>
</head><body><h1>Stable Training: slide decks</h1>
<p>Open a deck and press <kbd>F</kbd> for full screen, <kbd>S</kbd> for the speaker view, <kbd>Esc</kbd> for an overview.
No network is needed: everything a deck loads is in <code>vendor/</code>.</p>
<table><tr><th>lesson</th><th>student deck</th><th>instructor deck</th></tr>
{rows}
</table></body></html>
"""


def _build_one(task):
    lesson_id, variant, out, root, kwargs = task
    started = time.monotonic()
    target, stats = build_deck(lesson_id, variant, out, root, **kwargs)
    return target, stats, time.monotonic() - started


def build(lessons: list[str] | None = None, out: Path = DEFAULT_OUT, variants: tuple[str, ...] = VARIANTS,
          root: Path = REPO_ROOT, quiet: bool = False, jobs: int = 1, **kwargs) -> list[Path]:
    """Write the decks of ``lessons`` (default: all) into ``out``; ``jobs`` decks at a time."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    install_assets(out)
    tasks = [(lesson_id, variant, out, root, kwargs) for lesson_id in (lessons or lesson_ids(root))
             for variant in variants]
    if jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(tasks))) as pool:
            results = list(pool.map(_build_one, tasks))
    else:
        results = map(_build_one, tasks)
    written = []
    for target, stats, seconds in results:
        written.append(target)
        if not quiet:
            print(f"{target}: {seconds:.1f} s (notebook {stats['run_s']} s; {stats['explorers']} explorer(s), "
                  f"{stats['frames']} setting(s) drawn, {stats['live_only']} live only)", flush=True)
    rows = "\n".join(
        f'<tr><td>{html.escape(d.name)}</td>'
        + "".join(f'<td><a href="{d.name}/{v}.html">{v}</a></td>' if (d / f"{v}.html").exists() else "<td></td>"
                  for v in VARIANTS) + "</tr>"
        for d in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "vendor"))
    (out / "index.html").write_text(INDEX.format(rows=rows))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stgrade.slides", description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson ids (default: every lesson)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: slides/)")
    parser.add_argument("--variant", choices=VARIANTS, action="append", help="only this deck (repeatable)")
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                        help=f"settings an explorer may have to be drawn in advance (default: {MAX_FRAMES})")
    parser.add_argument("--jobs", "-j", type=int, default=min(2, os.cpu_count() or 1),
                        help="decks built at once, each in its own kernel (default: 2 or the number of cores)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    written = build(args.lessons or None, args.out, tuple(args.variant or VARIANTS), jobs=args.jobs,
                    max_frames=args.max_frames)
    print(f"{len(written)} deck(s) in {time.monotonic() - started:.1f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
