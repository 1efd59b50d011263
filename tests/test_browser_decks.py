"""The offline decks of `make slides`, opened from disk in a real (headless) Chromium.

For every lesson and both decks: no request fails (everything is next to the deck: no network),
no console error, reveal.js runs, every slide is reachable and its content fits or scrolls, code
does not run off the right edge, figures are shown at their own size, every formula is typeset
by MathJax without errors (and `\\text{max\\_norm}` without a stray backslash), the static explorers
answer their controls, the student deck has no solution code and no hidden tests, and the
instructor deck swaps each stub for its solution with one click.

Decks are built once per lesson (two notebook runs); without Chromium or Playwright the tests are
skipped with the reason, and fail instead when CI=true.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from browser_support import PageLog, browser, chromium  # noqa: F401 (fixtures)
from stgrade.course import REPO_ROOT, lesson_ids
from stgrade.slides import VARIANTS, build, install_assets

#: one xdist group per lesson: its decks are built once, on the worker that runs its tests
LESSONS = [pytest.param(lesson, marks=pytest.mark.xdist_group(f"decks-{lesson}")) for lesson in lesson_ids()]
VIEWPORT = {"width": 1280, "height": 720}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def decks(tmp_path_factory, chromium):
    """lesson -> folder of its decks, built on first use (once per module and worker). With
    STABLETRAIN_SLIDES=<folder> (e.g. slides/ after `make slides`) decks found there are used."""
    prebuilt = os.environ.get("STABLETRAIN_SLIDES")
    out = Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("slides")
    built: dict[str, Path] = {}

    def get(lesson):
        if lesson not in built:
            if not all((out / lesson / f"{v}.html").exists() for v in VARIANTS):
                build([lesson], out, quiet=True, jobs=2)
            else:
                install_assets(out)
            built[lesson] = out / lesson
        return built[lesson]

    return get


def _open(browser, path):
    page = browser.new_page(viewport=VIEWPORT)
    log = PageLog(page)
    page.goto(path.as_uri())
    page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=30_000)
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("MathJax.startup.promise")
    return page, log


SLIDE_CHECK = r"""
() => {
  const slide = Reveal.getCurrentSlide();
  const rect = slide.getBoundingClientRect();
  const style = getComputedStyle(slide);
  const problems = [];
  if (rect.width < 100 || rect.height < 100 || style.display === 'none' || style.visibility === 'hidden')
    problems.push(`slide not visible (${rect.width}x${rect.height}, display ${style.display})`);
  if (slide.scrollHeight > slide.clientHeight + 2 && !['auto', 'scroll'].includes(style.overflowY))
    problems.push(`content ${slide.scrollHeight}px tall in a ${slide.clientHeight}px slide that does not scroll`);
  slide.scrollTop = slide.scrollHeight;
  const bottom = slide.getBoundingClientRect().bottom;
  const last = Array.from(slide.querySelectorAll('.jp-Cell')).pop();
  if (last && last.getBoundingClientRect().bottom > bottom + 4 && style.overflowY === 'hidden')
    problems.push('the last cell cannot be reached');
  slide.scrollTop = 0;
  for (const pre of slide.querySelectorAll('.jp-InputArea pre, .jp-OutputArea-output pre')) {
    const box = pre.closest('.jp-OutputArea-output') || pre;
    if (pre.scrollWidth > pre.clientWidth + 2 && getComputedStyle(box).overflowX === 'visible')
      problems.push(`code runs off the right edge: ${pre.textContent.slice(0, 60)}`);
    if (pre.getBoundingClientRect().right > rect.right + 2 && getComputedStyle(box).overflowX === 'visible')
      problems.push(`code wider than the slide: ${pre.textContent.slice(0, 60)}`);
  }
  for (const img of slide.querySelectorAll('img')) {
    if (!img.complete || img.naturalWidth === 0) { problems.push(`image not loaded: ${img.src.slice(0, 80)}`); continue; }
    const shown = img.getBoundingClientRect().width;
    if (shown < img.naturalWidth - 1) problems.push(`figure shrunk to ${shown}px of its ${img.naturalWidth}px`);
    if (!img.alt) problems.push('figure without alternative text');
  }
  return problems;
}
"""


@pytest.mark.parametrize("variant", ["student", "instructor"])
@pytest.mark.parametrize("lesson", LESSONS)
def test_deck_works_offline(lesson, variant, decks, browser):
    page, log = _open(browser, decks(lesson) / f"{variant}.html")
    total = page.evaluate("Reveal.getTotalSlides()")
    assert total >= 5, f"{lesson} {variant}: only {total} slides"
    problems = []
    for (h, v) in page.evaluate("Reveal.getSlides().map(s => [Reveal.getIndices(s).h, Reveal.getIndices(s).v || 0])"):
        page.evaluate(f"Reveal.slide({h}, {v}, 1000)")  # every fragment shown
        problems += [f"slide {h}.{v}: {p}" for p in page.evaluate(SLIDE_CHECK)]
    assert not problems, "\n".join(problems)
    math = page.evaluate(r"""() => {
        const items = Array.from(MathJax.startup.document.math);
        const mml = items.map(m => MathJax.startup.toMML(m.root));
        return {count: items.length,
                errors: mml.filter(s => s.includes('merror')).length,
                backslash_text: mml.filter(s => /<mtext[^>]*>[^<]*\\/.test(s)).map(s => s.slice(0, 200))};
    }""")
    assert math["count"] > 10, f"only {math['count']} formulas typeset"
    assert math["errors"] == 0, f"{math['errors']} formulas with TeX errors"
    assert not math["backslash_text"], f"\\text with a stray backslash: {math['backslash_text']}"
    untypeset = page.evaluate(r"""() => Array.from(document.querySelectorAll('.jp-RenderedMarkdown'))
        .map(e => { const c = e.cloneNode(true); c.querySelectorAll('mjx-container, code, pre').forEach(x => x.remove());
                    return c.textContent; })
        .filter(t => /\$[^$\s][^$]*\$|\\\(|\\\[|\\frac|\\sum/.test(t)).map(t => t.slice(0, 120))""")
    assert not untypeset, f"raw TeX left on the slides: {untypeset}"
    assert not log.failed, f"failed requests (a deck must need no network): {log.failed}"
    assert not log.errors, f"console errors: {log.errors}"
    page.close()


def _solution_lines(lesson):
    nb = nbformat.read(REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    lines = []
    for cell in nb.cells:
        m = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S)
        if m:
            lines += [ln.strip() for ln in m.group(1).splitlines() if len(ln.strip()) > 15]
    return lines


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_deck_has_no_solutions_and_instructor_deck_reveals_them(lesson, decks, browser):
    folder = decks(lesson)
    student = (folder / "student.html").read_text()
    solution = _solution_lines(lesson)
    assert solution, "no solution code found in the instructor notebook"
    import html as _html

    text = _html.unescape(re.sub(r"<[^>]+>", "", student))
    # a solution line the student notebook itself shows elsewhere (prose, an experiment, a worked
    # example such as `with torch.no_grad():`) is no leak; any other one is
    released = (REPO_ROOT / "course" / lesson / f"{lesson}.ipynb").read_text()
    released_text = "\n".join(c.source for c in nbformat.reads(released, as_version=4).cells).replace("`", "")
    leaked = [ln for ln in solution if ln in text and ln not in released_text]
    assert not leaked, f"solution code in the student deck: {leaked}"
    # students are told to run check(fn, name, level="hidden") themselves, so that may appear; the
    # hidden test cells' markers may not
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{marker!r} in the student deck"
    assert "NotImplementedError" in text, "the student deck should show the exercise stubs"

    page, log = _open(browser, folder / "instructor.html")
    swaps = page.evaluate("document.querySelectorAll('.st-solution').length")
    assert swaps == len([c for c in _solution_cells(lesson)]), "every exercise needs its stub/solution swap"
    first = page.evaluate("""() => { const s = document.querySelector('.st-solution').closest('section');
                                     const i = Reveal.getIndices(s); return [i.h, i.v || 0]; }""")
    page.evaluate(f"Reveal.slide({first[0]}, {first[1]}, -1)")
    shown = page.evaluate("""() => { const s = document.querySelector('.st-solution');
        const o = e => getComputedStyle(e).opacity; return [o(s.querySelector('.st-stub')), o(s.querySelector('.st-answer'))]; }""")
    assert shown == ["1", "0"], f"before the click the stub shows, not the solution: opacities {shown}"
    fragments = page.evaluate("""() => Number(document.querySelector('.st-solution .st-answer').dataset.fragmentIndex)""")
    page.evaluate(f"Reveal.slide({first[0]}, {first[1]}, {fragments})")
    page.wait_for_timeout(400)
    shown = page.evaluate("""() => { const s = document.querySelector('.st-solution');
        const o = e => getComputedStyle(e).opacity; return [o(s.querySelector('.st-stub')), o(s.querySelector('.st-answer'))]; }""")
    assert shown == ["0", "1"], f"one click swaps the stub for the solution: opacities {shown}"
    assert not log.errors and not log.failed, (log.errors, log.failed)
    page.close()


def _solution_cells(lesson):
    nb = nbformat.read(REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


EXPLORER_STATE = """(root) => Array.from(root.querySelectorAll('[data-leaf]'))
    .map(l => l.tagName === 'IMG' ? l.getAttribute('src') : l.innerHTML).join('|')"""


@pytest.mark.parametrize("lesson", LESSONS)
def test_static_explorers_answer_their_controls(lesson, decks, browser):
    """Each control of each explorer changes the picture (in some setting of the drop-downs) within 1 s."""
    page, log = _open(browser, decks(lesson) / "student.html")
    explorers = page.locator(".st-explorer")
    live_only = page.locator(".st-explorer.st-live-only")
    for k in range(live_only.count()):
        assert "live in JupyterLab" in live_only.nth(k).inner_text()
    static = page.locator(".st-explorer[data-static]")
    assert explorers.count() == static.count() + live_only.count()
    for k in range(static.count()):
        root = static.nth(k)
        section = root.evaluate("r => { const i = Reveal.getIndices(r.closest('section')); return [i.h, i.v || 0]; }")
        page.evaluate(f"Reveal.slide({section[0]}, {section[1]}, 1000)")
        controls = root.locator("[data-control]")
        selects = root.locator("select[data-control]")
        for c in range(controls.count()):
            control = controls.nth(c)
            contexts = [None] + [(s, o) for s in range(selects.count())
                                 for o in range(selects.nth(s).locator("option").count())]
            changed = False
            for context in contexts:
                if context is not None:
                    sel = selects.nth(context[0])
                    if sel.get_attribute("data-control") == control.get_attribute("data-control"):
                        continue
                    sel.select_option(index=context[1])
                if control.is_disabled():  # as in the notebook: this setting does not use the control
                    continue
                before = root.evaluate(EXPLORER_STATE)
                if control.evaluate("e => e.tagName") == "SELECT":
                    n = control.locator("option").count()
                    current = int(control.input_value())
                    control.select_option(index=(current + 1) % n)
                else:
                    top = int(control.get_attribute("max"))
                    current = int(control.input_value())
                    control.fill(str(current + 1 if current < top else current - 1))
                try:
                    page.wait_for_function(f"([r, before]) => ({EXPLORER_STATE})(r) !== before",
                                           arg=[root.element_handle(), before], timeout=1000)
                    changed = True
                    break
                except Exception:
                    continue
            label = control.evaluate("e => e.closest('label').innerText")
            assert changed, f"explorer {k}: moving {label!r} never changes the picture"
        for img in root.locator("img").all():  # the last control moved may have swapped a frame in just now
            try:
                page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle(), timeout=3000)
            except Exception:
                raise AssertionError(f"an explorer frame did not load within 3 s: {img.get_attribute('src')[:80]}")
    assert not log.errors and not log.failed, (log.errors, log.failed)
    page.close()
