"""Offline lecture decks of every lesson: ``make slides`` (``python -m stgrade.slides``).

For each lesson two decks are written, each from its notebook run in a fresh kernel:

- ``slides/<id>/student.html``: from the student notebook (``course/``): exercise stubs, no
  solution code, no hidden tests. An unanswered exercise's check says so in one line.
- ``slides/<id>/instructor.html``: from the instructor notebook (``solutions/``): each exercise's
  slide shows the student's stub, and one press swaps in the solution. Instructor notes (cells
  tagged ``instructor``) are speaker notes.

What is on a slide and what goes to the speaker notes (press ``S``) is decided by
:mod:`stgrade.deckplan`, from the lesson's cells, tags and metadata (``docs/LESSON_STANDARD.md`` §9).

Nothing is loaded from the network when a deck is shown: reveal.js and MathJax (pinned, with their
licences, ``presenting/vendor/``) are copied next to the decks (``slides/vendor/``). ipywidgets
explorers cannot run without a kernel, so each is replaced by a static explorer: the builder moves
the explorer's controls through every setting in the kernel (at most ``MAX_FRAMES`` settings: a
slider with many positions is drawn at fewer of them), saves each picture, and the deck's controls
(HTML sliders and drop-downs) look the pictures up. Every explorer is drawn, however long it takes,
once: its pictures are kept in a cache (``.cache/deck-explorers/``) that the next deck or run with
the same code uses. Only an explorer whose controls cannot be stepped through (a text box, a
button) says on its slide that it is live in JupyterLab, and shows its starting picture.

After the decks, ``make slides`` photographs every slide (Chromium, when installed) into one sheet
per deck, ``slides/<id>/<variant>-sheet.png``, for a quick look at all of them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import itertools
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import SlidesExporter

from . import deckplan
from .course import REPO_ROOT, lesson_ids

PRESENTING = REPO_ROOT / "presenting"
VENDOR = PRESENTING / "vendor"
TEMPLATES = PRESENTING / "templates"
ASSETS = TEMPLATES / "deck" / "assets"
DEFAULT_OUT = REPO_ROOT / "slides"
VARIANTS = ("student", "instructor")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: settings an explorer is drawn at, at most (its sliders are thinned to fit; at least 3 positions each)
MAX_FRAMES = 200
#: explorers' pictures are drawn at this many dots per inch at least: 12-pt text is 16 px, 12 pt on
#: a 1280×720 slide shown at 96 px per inch
EXPLORER_DPI = 96
#: explorers drawn once are kept here (their settings and pictures), keyed by everything they depend on
CACHE_ENV = "STABLETRAIN_DECK_CACHE"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "deck-explorers"
#: part of every cache key: raise it when the way explorers are drawn changes
CACHE_VERSION = 1

# --- code run inside the lesson's kernel -----------------------------------------------------------

#: Figures get alternative text: a figure's label (``fig.set_label``), else its titles. Installed
#: before the notebook runs; IPython's formatters may return (data, metadata).
KERNEL_SETUP = r"""
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

def _st_install_explorer_dpi(dpi):
    # Explorers draw their pictures with stabletrain.style.canvas_png; in a deck they are drawn at
    # no less than ``dpi``, so that 12-pt text is 12 pt on a 1280x720 slide, and in the course style
    # (tick labels made at a redraw, when the limits change, are 12 pt too). Each picture's figure
    # width and smallest font are kept, for the deck tests.
    try:
        from stabletrain import style
    except ImportError:
        return
    if getattr(style.canvas_png, "_st_deck", False):
        return
    import hashlib
    original, drawn = style.canvas_png, {}
    def canvas_png(canvas):
        fig = canvas.figure
        if fig.dpi < dpi:
            fig.set_dpi(dpi)
        with style.course_style():  # ticks made at a redraw get the course's sizes too
            data = original(canvas)
        key = hashlib.sha1(data).hexdigest()[:16]
        if key not in drawn:
            sizes = style.font_sizes(fig)
            drawn[key] = {"width_in": round(fig.get_figwidth(), 3), "min_pt": min(sizes) if sizes else 0}
        return data
    canvas_png._st_deck, canvas_png.drawn = True, drawn
    style.canvas_png = canvas_png
_st_install_explorer_dpi(%(dpi)r)
del _st_install_explorer_dpi
"""

#: Describe an explorer (controls and what they drive) and set its controls to given positions.
KERNEL_EXPLORER = r'''
def _st_explorer(model_id, folder, positions=None, limit=None):
    import hashlib, json, os
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
            state = {"kind": "image", "file": name if data else ""}
            try:
                from stabletrain import style
                state.update(getattr(style.canvas_png, "drawn", {}).get(name.split(".")[0], {}))
            except ImportError:
                pass
            return state
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
        frames = {",".join(map(str, key)): state for key, state in every_setting(0, []).items()}
        visit(start)
        print(json.dumps(frames))
        return
    print(json.dumps(visit(positions)))
'''


# --- preparing the notebook of each variant ------------------------------------------------------

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


def _prepare(nb: nbformat.NotebookNode, variant: str) -> None:
    """Before the run: in the student deck, a check that stops at an unanswered exercise lets the
    notebook go on (its one line is on the slide)."""
    if variant != "student":
        return
    for cell in nb.cells:
        if _is_test(cell):
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "raises-exception"]


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

    def json(self, source: str):
        return json.loads(self.run(source).strip().splitlines()[-1])


def _output_leaf(client: NotebookClient, model_id: str, frames: Path) -> dict:
    """The picture an Output widget holds now (nbclient keeps its outputs)."""
    state = client.widget_state.get(model_id, {})
    parts = []
    for out in state.get("outputs", []):
        data = out.get("data", {})
        if "image/png" in data:
            raw = base64.b64decode(data["image/png"])
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


#: the lab modules (stabletrain.lessons.*) the notebook's kernel has loaded
KERNEL_MODULES = r"""
import json as _st_json, sys as _st_sys
print(_st_json.dumps(sorted({m.__file__ for n, m in list(_st_sys.modules.items())
                             if n.startswith("stabletrain.lessons.") and getattr(m, "__file__", None)})))
"""


def _source_hash(labs: list[str]) -> str:
    """What an explorer's pictures depend on besides the notebook: the lesson's lab modules and the
    package's own modules (reference implementations, style, plots), not the grading code
    (``stabletrain.exercises``: explorers use the reference implementation) nor other lessons' labs.
    The same for a lesson's student and instructor deck, which load different grading modules."""
    package = REPO_ROOT / "src" / "stabletrain"
    files = sorted(package.glob("*.py")) + sorted(Path(name) for name in labs)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (a file next to a cache entry), across processes."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


class _ExplorerCache:
    """Explorers drawn once, kept across decks and runs: their settings table and pictures, under a
    key made of everything the pictures depend on (the source of the lesson's lab modules and of the
    package's top-level modules, the drawing code, the notebook's code up to the explorer, its controls, the frame cap
    and the dpi)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder else None
        self.hits = 0

    def key(self, *parts) -> str:
        return hashlib.sha256(json.dumps([CACHE_VERSION, *parts], sort_keys=True).encode()).hexdigest()[:24]

    @contextlib.contextmanager
    def entry(self, key: str):
        if self.folder is None:
            yield None
            return
        with _locked(self.folder / f"{key}.lock"):
            yield self.folder / key

    def load(self, entry: Path | None, frames: Path) -> dict | None:
        if entry is None or not (entry / "settings.json").exists():
            return None
        settings = json.loads((entry / "settings.json").read_text())
        for picture in entry.iterdir():
            if picture.name != "settings.json" and not (frames / picture.name).exists():
                shutil.copy2(picture, frames / picture.name)
        self.hits += 1
        return settings

    def store(self, entry: Path | None, settings: dict, frames: Path) -> None:
        if entry is None:
            return
        tmp = entry.with_name(entry.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        text = json.dumps(settings)
        for name in set(re.findall(r"[0-9a-f]{16}\.(?:png|jpeg|jpg|gif|svg)", text)):
            if (frames / name).exists():
                shutil.copy2(frames / name, tmp / name)
        (tmp / "settings.json").write_text(text)
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)


def _explorer_html(kernel: _Kernel, model_id: str, frames: Path, max_frames: int,
                   cache: _ExplorerCache | None = None, context: str = "", sources: str = "") -> tuple[str, int]:
    """A static explorer standing in for the widget; and how many settings it has."""
    folder = json.dumps(str(frames))
    info = kernel.json(f"_st_explorer({model_id!r}, {folder}, limit={max_frames})")
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
        got = kernel.json(f"_st_explorer({model_id!r}, {folder}, {list(positions)!r})")
        leaves = [(_output_leaf(kernel.client, leaf_id, frames) if s["kind"] == "output" else s)
                  for s, leaf_id in zip(got["leaves"], info["leaf_ids"])]
        return {"leaves": leaves, "disabled": got["disabled"]}

    if reason:
        return _live_only_html(_leaves_html(frame(start)["leaves"]), reason), 1
    cache = cache or _ExplorerCache(None)
    description = {k: info[k] for k in ("controls", "leaves", "thinned")}
    drawing = hashlib.sha256((KERNEL_SETUP + KERNEL_EXPLORER).encode()).hexdigest()
    key = cache.key(sources, drawing, context, description, max_frames, EXPLORER_DPI)
    with cache.entry(key) as entry:
        settings = cache.load(entry, frames)
        if settings is None:
            if "Output" in info["leaves"]:  # nbclient holds an Output widget's pictures: one request each
                settings = {",".join(map(str, p)): frame(p) for p in itertools.product(*(range(n) for n in counts))}
                kernel.run(f"_st_explorer({model_id!r}, {folder}, {start!r})")  # back where the notebook left it
            else:
                settings = kernel.json(f"_st_explorer({model_id!r}, {folder}, 'all')")
            cache.store(entry, settings, frames)
    return _static_explorer_html(info, settings, start, total), total


def _static_explorer_html(info: dict, settings: dict, start: list[int], total: int) -> str:
    controls = info["controls"]
    contents: list[list[str]] = [[] for _ in info["leaves"]]
    pictures: list[dict] = [{} for _ in info["leaves"]]
    table, disabled_at = {}, {}
    for key, state in settings.items():
        row = []
        for i, leaf in enumerate(state["leaves"]):
            value = f"frames/{leaf['file']}" if leaf["kind"] == "image" else leaf["html"]
            if value not in contents[i]:
                contents[i].append(value)
            row.append(contents[i].index(value))
            if leaf["kind"] == "image" and "width_in" in leaf and not pictures[i]:
                pictures[i] = {"width_in": leaf["width_in"], "min_pt": leaf["min_pt"]}
        table[key] = row
        if any(state["disabled"]):
            disabled_at[key] = [i for i, d in enumerate(state["disabled"]) if d]
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
            size = "".join(f' data-{k.replace("_", "-")}="{v}"' for k, v in pictures[i].items())
            parts.append(f'<img class="st-leaf-image" data-leaf="{i}"{size} src="{html.escape(value)}" alt="explorer figure">')
        else:
            parts.append(f'<div class="st-leaf-html" data-leaf="{i}">{value}</div>')
    drawn = (f"{total} settings (its sliders in coarser steps than in JupyterLab)" if info.get("thinned")
             else f"all {total} settings")
    parts.append(f'<p class="st-explorer-note">Drawn in advance for {drawn}: move the controls. '
                 'In JupyterLab it runs live.</p>')
    data = {"labels": [c["values"] for c in controls], "leaves": contents, "frames": table, "disabled": disabled_at}
    parts.append('<script type="application/json" class="st-explorer-data">'
                 + json.dumps(data).replace("</", "<\\/") + "</script></div>")
    return "".join(parts)


def _leaves_html(states: list[dict]) -> str:
    return "".join(f'<img src="frames/{s["file"]}" alt="explorer figure">' if s["kind"] == "image" else
                   f'<div class="st-leaf-html">{s["html"]}</div>' for s in states)


def _live_only_html(inner: str, reason: str) -> str:
    return ('<div class="st-explorer st-live-only">' + inner +
            '<p class="st-explorer-note">This explorer is live in JupyterLab only (<code>make lab</code>): '
            f'{html.escape(reason)}. Shown here: its starting picture.</p></div>')


def _context(nb: nbformat.NotebookNode, upto: int) -> str:
    """The code an explorer's pictures depend on: the notebook's code cells up to it, without the
    exercises and their checks (explorers use the reference implementation), so that the student and
    the instructor deck share their pictures."""
    code = [c.source for c in nb.cells[:upto + 1] if c.cell_type == "code" and not _is_solution(c) and not _is_test(c)]
    return hashlib.sha256("\n\0".join(code).encode()).hexdigest()


def execute(nb: nbformat.NotebookNode, cwd: Path, frames: Path, *, timeout: int = 300,
            max_frames: int = MAX_FRAMES, cache: Path | None | str = "default",
            snapshot: Path | None = None) -> dict:
    """Run ``nb`` top to bottom in a fresh kernel; replace each explorer by a static one.

    Every explorer with at most ``max_frames`` settings is drawn, however long it takes (once: the
    pictures are kept in ``cache``, by default :data:`DEFAULT_CACHE` or ``$STABLETRAIN_DECK_CACHE``;
    None keeps nothing). With ``snapshot``, the notebook as it ran (before its explorers are
    replaced) is written there. Returns statistics: seconds, explorers, settings, cache hits."""
    frames.mkdir(parents=True, exist_ok=True)
    if cache == "default":
        cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    explorers = _ExplorerCache(cache)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(cwd)}})
    started = time.monotonic()
    stats = {"explorers": 0, "frames": 0, "live_only": 0}
    with client.setup_kernel():
        kernel = _Kernel(client)
        kernel.run(KERNEL_SETUP % {"dpi": EXPLORER_DPI})
        for index, cell in enumerate(list(nb.cells)):
            client.execute_cell(cell, index)
        stats["run_s"] = round(time.monotonic() - started, 2)
        if snapshot is not None:
            nbformat.write(nb, snapshot)
        kernel.run(KERNEL_EXPLORER)
        sources = _source_hash(kernel.json(KERNEL_MODULES))
        for index, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                view = out.get("data", {}).get(WIDGET_VIEW)
                if not view:
                    continue
                explorer, drawn = _explorer_html(kernel, view["model_id"], frames, max_frames, explorers,
                                                 _context(nb, index), sources)
                out["data"] = {"text/html": explorer}
                stats["explorers"] += 1
                stats["frames"] += drawn
                stats["live_only"] += "st-live-only" in explorer
    nb.metadata.pop("widgets", None)
    stats["cached"] = explorers.hits
    stats["explorer_s"] = round(time.monotonic() - started - stats["run_s"], 2)
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


def render(nb: nbformat.NotebookNode, variant: str, title: str, stubs: dict[str, str] | None = None,
           vendor: str = "../vendor") -> str:
    """The deck's HTML, from its executed notebook (:mod:`stgrade.deckplan` decides the slides)."""
    deck = deckplan.deck_notebook(deckplan.plan(nb, variant, stubs), title)
    exporter = SlidesExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="deck")
    body, _ = exporter.from_notebook_node(deck, resources={
        "deck": {"vendor": vendor, "variant": variant, "title": f"{title} ({variant})"}})
    return body


def build_deck(lesson_id: str, variant: str, out: Path = DEFAULT_OUT, root: Path = REPO_ROOT,
               timeout: int = 300, max_frames: int = MAX_FRAMES, cache: Path | None | str = "default",
               keep_notebook: bool = False) -> tuple[Path, dict]:
    """Run the lesson's notebook of ``variant`` and write its deck to ``out/<lesson>/<variant>.html``.
    With ``keep_notebook`` the notebook is written next to it as it ran (``<variant>.run.ipynb``,
    every output as the kernel sent it) and as the deck shows it (``<variant>.ipynb``)."""
    nb, cwd = notebook_for(lesson_id, variant, root)
    _prepare(nb, variant)
    folder = out / lesson_id
    folder.mkdir(parents=True, exist_ok=True)
    stats = execute(nb, cwd, folder / "frames", timeout=timeout, max_frames=max_frames, cache=cache,
                    snapshot=folder / f"{variant}.run.ipynb" if keep_notebook else None)
    _tidy_errors(nb)
    stubs = _stubs(lesson_id, root) if variant == "instructor" else {}
    target = folder / f"{variant}.html"
    target.write_text(render(nb, variant, _title(nb, lesson_id), stubs))
    if keep_notebook:
        nbformat.write(nb, folder / f"{variant}.ipynb")
        (folder / f"{variant}.stats.json").write_text(json.dumps(stats))
    return target, stats


INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Stable Training: slides</title>
<style>body{{font-family:sans-serif;max-width:56em;margin:2em auto;line-height:1.5}}td,th{{padding:.3em 1em;text-align:left}}</style>
</head><body><h1>Stable Training: slide decks</h1>
<p>Open a deck and press <kbd>F</kbd> for full screen, <kbd>S</kbd> for the speaker view (notes and the
next slide), <kbd>Esc</kbd> for an overview. A clicker's keys (<kbd>PageDown</kbd>, <kbd>PageUp</kbd>,
<kbd>B</kbd>) work. No network is needed: everything a deck loads is in <code>vendor/</code>.</p>
<table><tr><th>lesson</th><th>student deck</th><th>instructor deck</th><th>all slides at a glance</th></tr>
{rows}
</table></body></html>
"""


def _build_one(task):
    lesson_id, variant, out, root, kwargs = task
    started = time.monotonic()
    target, stats = build_deck(lesson_id, variant, out, root, **kwargs)
    return target, stats, time.monotonic() - started


def write_index(out: Path) -> Path:
    def cell(d: Path, name: str, label: str) -> str:
        return f'<td><a href="{d.name}/{name}">{label}</a></td>' if (d / name).exists() else "<td></td>"

    rows = "\n".join(
        f'<tr><td>{html.escape(d.name)}</td>' + cell(d, "student.html", "student") + cell(d, "instructor.html", "instructor")
        + "<td>" + " ".join(f'<a href="{d.name}/{p.name}">{p.stem.split("-")[0]}</a>' for p in sorted(d.glob("*-sheet.png")))
        + "</td></tr>"
        for d in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in ("vendor",) and not p.name.startswith(".")))
    (out / "index.html").write_text(INDEX.format(rows=rows))
    return out / "index.html"


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
                  f"{stats['frames']} setting(s), {stats['cached']} from the cache, {stats['explorer_s']} s; "
                  f"{stats['live_only']} live only)", flush=True)
    write_index(out)
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
    parser.add_argument("--no-cache", action="store_true", help="draw every explorer again (and keep nothing)")
    parser.add_argument("--no-sheets", action="store_true", help="skip the screenshot sheets (they need Chromium)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    written = build(args.lessons or None, args.out, tuple(args.variant or VARIANTS), jobs=args.jobs,
                    max_frames=args.max_frames, **({"cache": None} if args.no_cache else {}))
    built = time.monotonic() - started
    print(f"{len(written)} deck(s) in {built:.1f} s", flush=True)
    if not args.no_sheets:
        from . import deckshots

        sheets, reason = deckshots.sheets(written)
        if reason:
            print(f"no screenshot sheets: {reason}")
        else:
            print(f"{len(sheets)} screenshot sheet(s) in {time.monotonic() - started - built:.1f} s "
                  f"(slides/<lesson>/<variant>-sheet.png)")
        write_index(args.out)
    print(f"make slides: {time.monotonic() - started:.1f} s in all; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
