"""From an executed lesson notebook to the slides of its lecture deck.

A lesson is written to be read; a deck is given. :func:`plan` walks the notebook's cells and
decides, slide by slide, what the audience sees and what goes to the speaker notes. The defaults
below make a lecture deck out of any lesson written to the lesson standard; cell tags and cell
metadata (``docs/LESSON_STANDARD.md`` §9) let the author decide otherwise.

Defaults:

- A heading (``#``, ``##``, ``###``) starts a slide with that title; ``##`` starts a new column
  of the deck (a section), the others a slide under it. A cell whose ``slideshow.slide_type`` is
  ``slide`` or ``subslide`` starts a slide too (under the current title).
- From the prose, the slide keeps the **lead** (the first sentence after the heading), the
  sentence that introduces a formula, list, table or code block, **display formulas**, **tables**,
  **lists** (top level; an item longer than a line is cut at its first clause) and short code
  blocks (at most :data:`MAX_FENCE_LINES` lines). Everything else is prose: it goes, with the
  whole text of the slide, to the speaker notes.
- A paragraph that starts with ``**Question`` is a slide of its own.
- A figure is a slide of its own: the figure, as large as fits, and its one-line takeaway (the
  cell's ``deck.takeaway``, else the figure's alternative text).
- An explorer is a slide of its own.
- An exercise is a slide of its own: the function's code (the docstring cut to its first line),
  and the check's one line under it. The instructor deck shows the stub, and one press swaps in
  the solution (without the ``### BEGIN/END SOLUTION`` markers).
- Other code is folded (a "code" line the lecturer can open); its printed output is shown.
- Cells tagged ``instructor`` (instructor deck) are speaker notes.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

import nbformat
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from .release import INSTRUCTOR_TAG

#: cell tags an author may set (``tags=[...]`` in the jupytext header of a cell)
TAG_SKIP = "deck-skip"  # not in the deck
TAG_SLIDE = "deck-slide"  # starts a new slide
TAG_NOTES = "deck-notes"  # markdown: all of it to the speaker notes
TAG_KEEP = "deck-keep"  # markdown: all of it on the slide, as written
TAG_CODE = "deck-code"  # code: shown open on the slide
TAG_NO_CODE = "deck-no-code"  # code: not shown at all (its outputs are)
TAG_NO_OUTPUT = "deck-no-output"  # code: its outputs are left out
TAGS = (TAG_SKIP, TAG_SLIDE, TAG_NOTES, TAG_KEEP, TAG_CODE, TAG_NO_CODE, TAG_NO_OUTPUT)
#: cell metadata ``deck`` keys: ``takeaway`` (the line under the cell's figure) and ``title``
#: (the title of the slide the cell starts)
METADATA_KEYS = ("takeaway", "title")

#: a list item longer than this (characters of its source) is cut at its first clause
MAX_ITEM_CHARS = 100
#: a fenced code block in the prose stays on the slide up to this many lines
MAX_FENCE_LINES = 12
#: a lead shorter than this (characters) takes the next sentence too
MIN_LEAD_CHARS = 60
#: printed output shown under a figure up to this many lines (longer: folded)
MAX_TEXT_UNDER_FIGURE = 4

_MD = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin, allow_space=True, double_inline=True)
_ABBREVIATIONS = ("e.g", "i.e", "et al", "cf", "vs", "Fig", "Eq", "Sec", "approx", "resp", "etc")


@dataclass
class Slide:
    """One slide: its title, what is shown (cells of the deck notebook) and its speaker notes."""

    title: str
    kind: str = "text"  # title, text, figure, explorer, exercise, question
    section: bool = False  # starts a new column of the deck (a ``##`` heading)
    cells: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_markdown(self, text: str, role: str = "text") -> None:
        text = text.strip()
        if text:
            cell = nbformat.v4.new_markdown_cell(text)
            cell.metadata["tags"] = [f"st-{role}"]
            self.cells.append(cell)

    @property
    def empty(self) -> bool:
        return not self.cells


# --- markdown ------------------------------------------------------------------------------------

def _mask(text: str) -> str:
    """``text`` with math, code spans and link targets blanked out (same length), so that
    punctuation inside them is not taken for a sentence or clause boundary."""
    def blank(m):
        return m.group(0)[0] + "\0" * (len(m.group(0)) - 2) + m.group(0)[-1]

    text = re.sub(r"\$\$.+?\$\$|\$[^$]+\$|`[^`]*`|\]\([^)]*\)", blank, text, flags=re.S)
    return text


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph (the whole paragraph when it has one sentence)."""
    masked = _mask(text)
    for m in re.finditer(r"[.?!](\*\*)?(?=\s+[\"'(*`$A-Z0-9\\])", masked):
        before = masked[:m.start()].rstrip()
        if any(before.endswith(a) for a in _ABBREVIATIONS) or re.search(r"\b[A-Z]$", before):
            continue
        return text[:m.end()].strip()
    return text.strip()


def last_sentence(text: str) -> str:
    """The last sentence of a paragraph."""
    rest = text.strip()
    while True:
        head = first_sentence(rest)
        if len(head) >= len(rest):
            return rest
        rest = rest[len(head):].strip()


def shorten_item(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """A list item on a slide: as written when it is short, else cut at its first clause (a colon,
    semicolon, dash or parenthesis; a comma only when that leaves it still too long)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    masked = _mask(text)
    strong = [m.start() for m in re.finditer(r"[:;](?=\s)| [—–](?=\s)| \(", masked) if 20 <= m.start() <= limit]
    if strong:
        cut = strong[0]
    else:
        commas = [m.start() for m in re.finditer(r",\s", masked) if 20 <= m.start() <= limit]
        sentence = first_sentence(text)
        if commas:
            cut = commas[-1]
        elif len(sentence) < len(text):
            return sentence
        else:
            return text
    short = text[:cut].rstrip(" ,;:")
    if short.count("**") % 2:
        short += "**"
    if short.count("(") > short.count(")"):
        short = short[:short.rfind("(")].rstrip()
    return short


def _blocks(source: str) -> list[tuple[str, str, object]]:
    """The top-level blocks of a markdown cell: (kind, source text, extra)."""
    lines = source.splitlines()
    tokens = _MD.parse(source)
    blocks = []
    for i, token in enumerate(tokens):
        if token.level != 0 or token.map is None or token.nesting == -1:
            continue
        text = "\n".join(lines[token.map[0]:token.map[1]])
        if token.type == "heading_open":
            blocks.append(("heading", tokens[i + 1].content, int(token.tag[1])))
        elif token.type == "paragraph_open":
            content = tokens[i + 1].content
            kind = "question" if re.match(r"\*\*Question", content) else "paragraph"
            blocks.append((kind, content, None))
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            items = []
            for j in range(i + 1, len(tokens)):
                t = tokens[j]
                if t.level == 0 and t.type == token.type.replace("_open", "_close"):
                    break
                if t.type == "list_item_open" and t.level == 1:
                    # the item's first paragraph (nested lists are left to the notes)
                    for k in range(j + 1, len(tokens)):
                        if tokens[k].type == "inline":
                            items.append(tokens[k].content)
                            break
                        if tokens[k].type == "list_item_close":
                            break
            start = token.attrs.get("start") if token.type == "ordered_list_open" else None
            blocks.append(("list", text, (token.type == "ordered_list_open", items, start)))
        elif token.type == "math_block":
            blocks.append(("math", text, None))
        elif token.type == "table_open":
            blocks.append(("table", text, None))
        elif token.type in ("fence", "code_block"):
            blocks.append(("fence", text, len(token.content.splitlines())))
        else:
            blocks.append(("other", text, None))
    return blocks


def _list_markdown(ordered: bool, items: list[str], start) -> str:
    first = int(start or 1)
    return "\n".join((f"{first + n}. " if ordered else "- ") + shorten_item(item) for n, item in enumerate(items))


# --- code ----------------------------------------------------------------------------------------

def slide_code(source: str) -> str:
    """An exercise's code as the slide shows it: docstrings cut to their first line, the nbgrader
    markers removed."""
    lines = [ln for ln in source.splitlines() if ln.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
    text = "\n".join(lines)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    cuts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            doc = node.body[0]
            if (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                    and isinstance(doc.value.value, str) and doc.end_lineno > doc.lineno):
                first = doc.value.value.strip().splitlines()[0].strip()
                quote = '"""' if '"""' not in first else "'''"
                cuts.append((doc.lineno, doc.end_lineno, " " * doc.col_offset + f"{quote}{first}{quote}"))
    lines = text.splitlines()
    for start, end, replacement in sorted(cuts, reverse=True):
        lines[start - 1:end] = [replacement]
    return "\n".join(lines)


def _is_solution(cell) -> bool:
    return cell.cell_type == "code" and bool(cell.metadata.get("nbgrader", {}).get("solution"))


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def _text_of(output) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    return "".join(output.get("data", {}).get("text/plain", ""))


def _is_explorer(output) -> bool:
    return "st-explorer" in "".join(output.get("data", {}).get("text/html", ""))


def _code_cell(source: str, outputs: list, code: str, role: str, **deck) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = copy.deepcopy(outputs)
    cell.metadata["deck"] = {"code": code, **{k: v for k, v in deck.items() if v is not None}}
    cell.metadata["tags"] = [f"st-{role}"]
    return cell


def _without(output, alts: list[str]):
    """A printed output without the lines that repeat a figure's alternative text ("Figure: …"):
    the slide shows the figure and its takeaway already. None when nothing is left."""
    if output.get("output_type") != "stream" or not alts:
        return output
    lines = [ln for ln in "".join(output.get("text", "")).splitlines(keepends=True)
             if not any(alt in ln for alt in alts)]
    if not "".join(lines).strip():
        return None
    output = copy.deepcopy(output)
    output["text"] = "".join(lines)
    return output


def _alt(output) -> str:
    meta = output.get("metadata", {})
    return meta.get("image/png", {}).get("alt") or meta.get("alt") or ""


# --- the plan ------------------------------------------------------------------------------------

class _Planner:
    def __init__(self, variant: str, stubs: dict[str, str]) -> None:
        self.variant = variant
        self.stubs = stubs
        self.slides: list[Slide] = []
        self.title = ""
        self.section_title = ""

    @property
    def current(self) -> Slide:
        if not self.slides:
            self.slides.append(Slide(self.title or "", kind="text"))
        return self.slides[-1]

    def new(self, kind: str = "text", title: str | None = None, section: bool = False) -> Slide:
        # a slide that holds nothing yet is reused (a heading right after a slide break)
        if self.slides and self.slides[-1].empty and not self.slides[-1].notes:
            slide = self.slides[-1]
            slide.kind, slide.section = kind, slide.section or section
            if title is not None:
                slide.title = title
            return slide
        slide = Slide(self.title if title is None else title, kind=kind, section=section)
        self.slides.append(slide)
        return slide

    def text_slide(self) -> Slide:
        """The slide that more text or printed output goes on: the current one if it is a text slide."""
        if self.slides and self.current.kind in ("text", "title"):
            return self.current
        return self.new("text")

    # markdown cells
    def markdown(self, cell) -> None:
        tags = cell.metadata.get("tags", [])
        if INSTRUCTOR_TAG in tags:
            self.current.notes.append("**Instructor notes.**\n\n" + _strip_label(cell.source))
            return
        if TAG_NOTES in tags:
            self.current.notes.append(cell.source)
            return
        starts = TAG_SLIDE in tags or cell.metadata.get("slideshow", {}).get("slide_type") in ("slide", "subslide")
        blocks = _blocks(cell.source)
        if starts and (not blocks or blocks[0][0] != "heading"):
            self.new("text", cell.metadata.get("deck", {}).get("title"))
        if TAG_KEEP in tags:
            self._keep(cell.source, blocks)
            return
        lead_pending = not self.slides or self.current.empty
        for n, (kind, text, extra) in enumerate(blocks):
            following = blocks[n + 1][0] if n + 1 < len(blocks) else None
            if kind == "heading":
                level = extra
                title = cell.metadata.get("deck", {}).get("title") if n == 0 else None
                title = title or text
                if level <= 2:
                    self.section_title = title
                self.title = title
                if level <= 3:
                    self.new("title" if level == 1 else "text", title, section=level <= 2)
                    lead_pending = True
                else:
                    self.text_slide().add_markdown(f"**{text}**")
                continue
            if kind == "question":
                slide = self.new("question")
                slide.add_markdown(text, role="question")
                lead_pending = False
                continue
            if kind == "paragraph" and self.slides and self.current.kind != "text" and not self.current.empty \
                    and following not in ("math", "list", "table", "fence"):
                # prose after a figure, an explorer, a question or an exercise: that slide's notes
                self.current.notes.append(text)
                lead_pending = False
                continue
            slide = self.text_slide()
            if slide.empty and kind == "paragraph":
                lead_pending = True
            if kind == "paragraph":
                shown = []
                if lead_pending:
                    lead = first_sentence(text)
                    if len(lead) < MIN_LEAD_CHARS:  # "Backpropagation multiplies." says more with the next one
                        lead = (lead + " " + first_sentence(text[len(lead):].strip())).strip()
                    shown.append(lead)
                if following in ("math", "list", "table", "fence"):
                    intro = last_sentence(text)
                    if intro not in shown and not (shown and shown[0].endswith(intro)):
                        shown.append(("… " if shown else "") + intro)
                if shown:
                    slide.add_markdown(" ".join(shown), role="lead" if lead_pending else "intro")
                slide.notes.append(text)
                lead_pending = False
            elif kind == "math":
                slide.add_markdown(text, role="math")
                slide.notes.append(text)
            elif kind == "list":
                ordered, items, start = extra
                slide.add_markdown(_list_markdown(ordered, items, start), role="list")
                slide.notes.append(text)
                lead_pending = False
            elif kind == "table":
                slide.add_markdown(text, role="table")
                lead_pending = False
            elif kind == "fence":
                if extra <= MAX_FENCE_LINES:
                    slide.add_markdown(text, role="code")
                else:
                    slide.notes.append(text)
            else:
                slide.notes.append(text)

    def _keep(self, source: str, blocks) -> None:
        body = source
        if blocks and blocks[0][0] == "heading":
            kind, text, level = blocks[0]
            self.title = text
            if level <= 2:
                self.section_title = text
            self.new("title" if level == 1 else "text", text, section=level <= 2)
            body = "\n".join(source.splitlines()[1:])
        self.text_slide().add_markdown(body, role="keep")

    # code cells
    def code(self, cell) -> None:
        tags = cell.metadata.get("tags", [])
        deck = cell.metadata.get("deck", {})
        outputs = [] if TAG_NO_OUTPUT in tags else list(cell.get("outputs", []))
        if _is_solution(cell):
            self.exercise(cell)
            return
        if _is_test(cell):
            if "BEGIN HIDDEN TESTS" in cell.source:
                return
            target = self.current if self.current.kind == "exercise" else self.text_slide()
            target.cells.append(_code_cell(cell.source, outputs, "open", role="check"))
            return
        code = "none" if TAG_NO_CODE in tags else ("open" if TAG_CODE in tags else "fold")
        if TAG_SLIDE in tags or cell.metadata.get("slideshow", {}).get("slide_type") in ("slide", "subslide"):
            self.new("text", deck.get("title"))
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        explorers = [o for o in outputs if _is_explorer(o)]
        if explorers:
            slide = self.new("explorer", deck.get("title"))
            slide.cells.append(_code_cell(cell.source, explorers, code, role="explorer"))
            rest = [o for o in outputs if not _is_explorer(o)]
            if rest:
                slide.cells.append(_code_cell("", rest, "none", role="output"))
            return
        if images:
            alts = [_alt(o) for o in images if _alt(o)]
            texts = [t for t in (_without(o, alts) for o in outputs if "image/png" not in o.get("data", {})) if t]
            for n, image in enumerate(images):
                slide = self.new("figure", deck.get("title"))
                slide.cells.append(_code_cell(cell.source if n == 0 else "", [image], code if n == 0 else "none",
                                              role="figure"))
                takeaway = deck.get("takeaway") or _alt(image)
                if isinstance(takeaway, list):  # one per figure of the cell
                    takeaway = takeaway[min(n, len(takeaway) - 1)]
                slide.add_markdown(takeaway, role="takeaway")
            if texts:
                lines = sum(_text_of(o).count("\n") + 1 for o in texts)
                fold = "printed" if lines > MAX_TEXT_UNDER_FIGURE else None
                slide.cells.append(_code_cell("", texts, "none", role="output", fold=fold))
            return
        slide = self.text_slide() if code != "open" or self.current.kind in ("text", "title") else self.new("text")
        slide.cells.append(_code_cell(cell.source, outputs, code, role="code"))

    def exercise(self, cell) -> None:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        slide = self.new("exercise")
        deck = {}
        if self.variant == "instructor" and grade_id in self.stubs:
            deck["stub"] = slide_code(self.stubs[grade_id])
        slide.cells.append(_code_cell(slide_code(cell.source), cell.get("outputs", []), "open", role="exercise", **deck))


def _strip_label(source: str) -> str:
    """Instructor notes without their own "**Instructor notes — …**" label (the notes say it)."""
    return re.sub(r"^\*\*Instructor notes[^*]*\*\*\s*", "", source.strip())


def plan(nb: nbformat.NotebookNode, variant: str, stubs: dict[str, str] | None = None) -> list[Slide]:
    """The slides of a deck, from the executed notebook of its variant."""
    planner = _Planner(variant, stubs or {})
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        slide_type = cell.metadata.get("slideshow", {}).get("slide_type")
        if TAG_SKIP in tags:
            continue
        if slide_type == "skip" and INSTRUCTOR_TAG not in tags:
            continue
        if cell.cell_type == "markdown":
            planner.markdown(cell)
        elif cell.cell_type == "code":
            planner.code(cell)
    slides: list[Slide] = []
    for slide in planner.slides:
        if not slide.empty:
            slides.append(slide)
        elif slides:  # notes without anything to show: the slide before speaks them
            slides[-1].notes += slide.notes
    return slides


def deck_notebook(slides: list[Slide], lesson_title: str) -> nbformat.NotebookNode:
    """The slides as a notebook for nbconvert's reveal.js exporter: one cell per thing shown, the
    slide's first cell carrying the slide (title, kind), the notes as one ``notes`` cell."""
    nb = nbformat.v4.new_notebook()
    section = ""
    for n, slide in enumerate(slides):
        if slide.section or n == 0:
            section = slide.title
        head = nbformat.v4.new_markdown_cell(("# " if slide.kind == "title" else "## ") + slide.title
                                             if slide.title else "")
        head.metadata["slideshow"] = {"slide_type": "slide" if (slide.section or n == 0) else "subslide"}
        head.metadata["tags"] = ["st-heading"]
        head.metadata["deck"] = {"slide": {"kind": slide.kind, "number": n,
                                                             "footer": _footer(lesson_title, section, slide)}}
        nb.cells.append(head)
        for cell in slide.cells:
            cell.metadata.setdefault("slideshow", {"slide_type": "-"})
            nb.cells.append(cell)
        if slide.notes:
            notes = nbformat.v4.new_markdown_cell("\n\n".join(slide.notes))
            notes.metadata["slideshow"] = {"slide_type": "notes"}
            nb.cells.append(notes)
    return nb


def _footer(lesson_title: str, section: str, slide: Slide) -> str:
    if slide.kind == "title":
        return ""
    plain = lambda text: re.sub(r"[`*]|\$", "", text)  # noqa: E731
    return plain(lesson_title if not section or section == lesson_title else f"{lesson_title} · {section}")
