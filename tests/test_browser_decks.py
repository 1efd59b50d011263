"""The lecture decks of `make slides`, opened from disk in a real (headless) Chromium with every
network request refused. One test per deck, which opens it once and checks what a lecturer meets:

- it loads offline: no request leaves the disk, none fails, no console error; reveal.js runs and
  every formula is typeset by MathJax, without errors or raw TeX;
- every slide fits 1280×720 and 1024×768, or (rarely) scrolls, and then the clicker keys scroll it;
  no text or figure runs off the slide or sits under reveal.js's arrows and slide number; every
  figure lies inside its slide, width and height, with its alternative text;
- a clicker reaches everything: PageDown, → and Space walk through every slide (scrolling a tall
  one, swapping in each solution in one press), PageUp walks back, B and . black the screen;
- every explorer is drawn (never "live in JupyterLab only" for lack of time), its text at least
  12 pt on the 1280×720 slide, and it answers its controls;
- speaker notes sit in the slide (never in a fragment), so they show on arrival, and their
  formulas are typeset; in the instructor deck of lesson 04 the speaker view (S) shows them;
- the student deck holds no solution code and no hidden tests; in the instructor deck one press
  swaps each stub for its solution, in view, without the ### BEGIN/END SOLUTION markers.

Each deck is built once per session (tests/deck_support.py); without Chromium or Playwright the tests
are skipped with the reason, and fail instead when CI=true.
"""

from __future__ import annotations

import html as _html
import re

import nbformat
import pytest

from browser_support import PageLog, browser, chromium  # noqa: F401 (fixtures)
from deck_support import deck, session_decks  # noqa: F401 (fixtures)
from stgrade.course import REPO_ROOT, lesson_ids

DECKS = [(lesson, variant) for lesson in lesson_ids() for variant in ("student", "instructor")]
#: the keys a presenter's clicker sends (forward, back) and the "black screen" keys
FORWARD = ("PageDown", "ArrowRight", "Space")
BACK = ("PageUp",)
#: 12 pt at 96 px per inch: the smallest text an explorer may show on a 1280×720 slide
MIN_EXPLORER_TEXT_PX = 16.0

pytestmark = pytest.mark.slow


def _open(browser, path, viewport=None):
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 720})
    log = PageLog(page)
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "about:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.context.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function("document.documentElement.dataset.stReady === '1'", timeout=60_000)
    return page, log, outside


#: every slide at arrival: fit, bounds, figures, explorers, notes, the footer band
SLIDES_CHECK = r"""
(minTextPx) => {
  const problems = [], info = {slides: 0, scroll: [], figures: 0, explorers: 0, notes: 0, notesMath: 0, fit: []};
  const box = e => e.getBoundingClientRect();
  const inside = (r, o, tol = 1.5) => r.left >= o.left - tol && r.right <= o.right + tol && r.top >= o.top - tol && r.bottom <= o.bottom + tol;
  const overlaps = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const slide of Reveal.getSlides()) {
    const i = Reveal.getIndices(slide); const at = `slide ${i.h}.${i.v || 0}`;
    Reveal.slide(i.h, i.v || 0, -1);
    info.slides++;
    const frame = slide.querySelector(':scope > .st-frame');
    if (!frame) { problems.push(`${at}: no .st-frame`); continue; }
    const s = box(slide), f = box(frame);
    if (s.width < 100 || s.height < 100) problems.push(`${at}: not visible (${s.width}x${s.height})`);
    if (s.left < -1 || s.top < -1 || s.right > innerWidth + 1 || s.bottom > innerHeight + 1)
      problems.push(`${at}: the slide is not inside the ${innerWidth}x${innerHeight} window`);
    const scrolls = slide.classList.contains('st-scroll');
    info.fit.push(Number(slide.dataset.stFitted || 1));
    if (scrolls) info.scroll.push(at);
    if (frame.scrollHeight > frame.clientHeight + 1 && !scrolls)
      problems.push(`${at}: content ${frame.scrollHeight}px tall in ${frame.clientHeight}px, and it does not scroll`);
    if (frame.scrollWidth > frame.clientWidth + 1) problems.push(`${at}: content wider than the slide`);
    for (const e of frame.querySelectorAll('pre, table, .jp-OutputArea-output, .st-explorer')) {
      if (e.scrollWidth > e.clientWidth + 2 && getComputedStyle(e).overflowX !== 'visible')
        problems.push(`${at}: ${e.tagName.toLowerCase()} wider than its box (scrolls sideways): ${e.textContent.slice(0, 60)}`);
    }
    // nothing shown under reveal.js's arrows or slide number
    const chrome = Array.from(document.querySelectorAll('.reveal .controls button.enabled, .reveal .slide-number'))
      .filter(e => getComputedStyle(e).visibility !== 'hidden' && getComputedStyle(e).display !== 'none').map(box)
      .filter(r => r.width > 0 && r.height > 0);
    const visible = f;
    for (const e of slide.querySelectorAll('.st-frame p, .st-frame li, .st-frame pre, .st-frame img, .st-frame table, .st-frame h1, .st-frame h2, .st-frame summary, .st-frame mjx-container, .st-controls, .st-footer')) {
      if (e.closest('details:not([open]) > :not(summary)')) continue;  // folded away
      const b = box(e);  // the part of it that is painted: the frame clips what scrolls
      const r = e.closest('.st-frame') ? {left: Math.max(b.left, visible.left), right: Math.min(b.right, visible.right),
                                          top: Math.max(b.top, visible.top), bottom: Math.min(b.bottom, visible.bottom)} : b;
      r.width = r.right - r.left; r.height = r.bottom - r.top;
      if (r.width <= 0 || r.height <= 0) continue;
      for (const c of chrome) if (overlaps(r, c)) problems.push(`${at}: ${e.tagName.toLowerCase()} under reveal.js's controls: ${e.textContent.slice(0, 40)}`);
    }
    for (const img of slide.querySelectorAll('img')) {
      if (img.closest('details:not([open])')) continue;
      info.figures++;
      if (!img.complete || img.naturalWidth === 0) { problems.push(`${at}: image not loaded: ${img.src.slice(0, 80)}`); continue; }
      if (!img.alt) problems.push(`${at}: figure without alternative text`);
      for (const pre of slide.querySelectorAll('.st-frame pre'))
        if (img.alt.length > 20 && pre.textContent.includes(img.alt)) problems.push(`${at}: the figure's description printed under it`);
      const r = box(img);
      if (!scrolls && !inside(r, f)) problems.push(`${at}: figure (${Math.round(r.width)}x${Math.round(r.height)}) outside the slide's area`);
      if (r.width > f.width + 1) problems.push(`${at}: figure wider than the slide`);
      if (r.height < 120) problems.push(`${at}: figure squeezed to ${Math.round(r.height)} px high`);
      const inches = Number(img.dataset.widthIn), pt = Number(img.dataset.minPt);
      if (inches && pt && minTextPx) {
        const px = pt / 72 * r.width / inches;
        if (px < minTextPx - 0.05) problems.push(`${at}: explorer text ${px.toFixed(1)} px (${pt} pt drawn ${inches} in wide, shown ${Math.round(r.width)} px): below 12 pt`);
      }
    }
    for (const e of slide.querySelectorAll('.st-explorer')) {
      info.explorers++;
      if (e.classList.contains('st-live-only') && /settings|longer|time/.test(e.textContent))
        problems.push(`${at}: an explorer was not drawn: ${e.textContent.slice(0, 160)}`);
    }
    for (const aside of slide.querySelectorAll('aside.notes')) {
      info.notes++;
      if (aside.closest('.fragment')) problems.push(`${at}: speaker notes inside a fragment (hidden until it shows)`);
      for (const svg of aside.querySelectorAll('mjx-container svg')) {
        info.notesMath++;
        if (!(parseFloat(svg.getAttribute('width')) > 0) || !svg.querySelector('use, path'))
          problems.push(`${at}: a formula in the notes is not drawn`);
      }
    }
  }
  Reveal.slide(0, 0, -1);
  return {problems, info};
}
"""


def _check_slides(page, where, min_text_px=MIN_EXPLORER_TEXT_PX):
    got = page.evaluate(SLIDES_CHECK, min_text_px)
    return [f"{where}: {p}" for p in got["problems"]], got["info"]


def _check_math(page) -> list[str]:
    math = page.evaluate(r"""() => {
        const items = Array.from(MathJax.startup.document.math);
        const mml = items.map(m => MathJax.startup.toMML(m.root));
        const raw = Array.from(document.querySelectorAll('.jp-RenderedMarkdown, aside.notes')).map(e => {
            const c = e.cloneNode(true); c.querySelectorAll('mjx-container, code, pre').forEach(x => x.remove());
            return c.textContent; }).filter(t => /\$[^$\s][^$]*\$|\\\(|\\\[|\\frac|\\sum/.test(t)).map(t => t.slice(0, 120));
        return {count: items.length, errors: mml.filter(s => s.includes('merror')).length,
                backslash: mml.filter(s => /<mtext[^>]*>[^<]*\\/.test(s)).map(s => s.slice(0, 160)), raw};
    }""")
    problems = []
    if math["count"] <= 10:
        problems.append(f"only {math['count']} formulas typeset")
    if math["errors"]:
        problems.append(f"{math['errors']} formulas with TeX errors")
    if math["backslash"]:
        problems.append(f"\\text with a stray backslash: {math['backslash']}")
    if math["raw"]:
        problems.append(f"raw TeX left: {math['raw']}")
    return problems


STATE = """() => { const s = Reveal.getCurrentSlide(), i = Reveal.getIndices(), f = s.querySelector(':scope > .st-frame');
    const answer = s.querySelector('.st-answer');
    return {h: i.h, v: i.v || 0, fragment: i.f === undefined ? -1 : i.f, paused: Reveal.isPaused(),
            scroll: f ? f.scrollTop : 0, bottom: f ? f.scrollTop + f.clientHeight >= f.scrollHeight - 2 : true,
            scrolls: s.classList.contains('st-scroll'),
            answer: answer ? {shown: answer.classList.contains('visible'),
                              inView: (() => { const a = answer.getBoundingClientRect(), b = f.getBoundingClientRect();
                                               return a.top >= b.top - 1 && a.top + Math.min(a.height, 160) <= b.bottom + 1; })(),
                              markers: /BEGIN SOLUTION|END SOLUTION/.test(answer.textContent)} : null}; }"""


def _walk_with_the_clicker(page, where) -> list[str]:
    """From the first slide to the last with the clicker's forward keys, then a few steps back with
    PageUp. The page records the state after each key (one round trip per key)."""
    problems = []
    total = page.evaluate("Reveal.getTotalSlides()")
    presses = page.evaluate("""() => Reveal.getSlides().reduce((n, s) => { const f = s.querySelector(':scope > .st-frame');
        const pages = s.classList.contains('st-scroll') ? Math.ceil(f.scrollHeight / Math.max(60, f.clientHeight - 80)) : 0;
        return n + 1 + s.querySelectorAll('.fragment:not(.st-stub)').length + pages; }, 0)""") + 3
    page.evaluate("Reveal.slide(0, 0, -1)")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus the deck, as a presenter's first click does
    page.evaluate(f"() => {{ const state = {STATE}; window.stWalk = [state()];"
                  "document.addEventListener('keyup', () => window.stWalk.push(state())); }")
    for n in range(presses):
        page.keyboard.press(FORWARD[n % len(FORWARD)])
    states = page.evaluate("window.stWalk")
    seen = set()
    for previous, state in zip(states, states[1:]):
        seen.add((previous["h"], previous["v"]))
        if (state["h"], state["v"]) != (previous["h"], previous["v"]):
            if previous["scrolls"] and not previous["bottom"]:
                problems.append(f"{where}: left slide {previous['h']}.{previous['v']} before its end was shown")
            if previous["answer"] and not previous["answer"]["shown"]:
                problems.append(f"{where}: left exercise slide {previous['h']}.{previous['v']} without its solution")
        if state["answer"] and state["answer"]["shown"] and previous["answer"] and not previous["answer"]["shown"]:
            if not state["answer"]["inView"]:
                problems.append(f"{where}: the solution of {state['h']}.{state['v']} is revealed out of view")
            if state["answer"]["markers"]:
                problems.append(f"{where}: the solution of {state['h']}.{state['v']} shows its BEGIN/END markers")
    seen.add((states[-1]["h"], states[-1]["v"]))
    if len(seen) != total or not page.evaluate("Reveal.isLastSlide()"):
        problems.append(f"{where}: {presses} presses of {'/'.join(FORWARD)} reached {len(seen)} of {total} slides")
    page.keyboard.press("b")
    paused = page.evaluate("Reveal.isPaused()")
    page.keyboard.press(".")
    if not paused or page.evaluate("Reveal.isPaused()"):
        problems.append(f"{where}: B / . do not black the screen and back")
    before = page.evaluate("Reveal.getIndices().h * 1000 + (Reveal.getIndices().v || 0)")
    for _ in range(3):
        page.keyboard.press(BACK[0])
    if page.evaluate("Reveal.getIndices().h * 1000 + (Reveal.getIndices().v || 0)") >= before:
        problems.append(f"{where}: PageUp does not go back")
    return problems


def _solution_lines(lesson):
    nb = nbformat.read(REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)
    lines = []
    for cell in nb.cells:
        m = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, re.S)
        if m:
            lines += [ln.strip() for ln in m.group(1).splitlines() if len(ln.strip()) > 15]
    return lines


def _check_student_deck_has_no_solutions(lesson, path) -> list[str]:
    text = _html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
    released = nbformat.read(REPO_ROOT / "course" / lesson / f"{lesson}.ipynb", as_version=4)
    released_text = "\n".join(c.source for c in released.cells).replace("`", "")
    problems = []
    solution = _solution_lines(lesson)
    if not solution:
        problems.append("no solution code found in the instructor notebook")
    # a solution line the student notebook itself shows elsewhere (prose, an experiment, a worked
    # example such as `with torch.no_grad():`) is no leak; any other one is
    leaked = [ln for ln in solution if ln in text and ln not in released_text]
    if leaked:
        problems.append(f"solution code in the student deck: {leaked}")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        if marker in text:
            problems.append(f"{marker!r} in the student deck")
    if "NotImplementedError" not in text:
        problems.append("the student deck should show the exercise stubs")
    return problems


EXPLORER_STATE = """(root) => Array.from(root.querySelectorAll('[data-leaf]'))
    .map(l => l.tagName === 'IMG' ? l.getAttribute('src') : l.innerHTML).join('|')"""


def _check_explorers_answer(page) -> list[str]:
    """Each control of each explorer changes the picture (in some setting of the drop-downs)."""
    problems = []
    static = page.locator(".st-explorer[data-static]")
    for k in range(static.count()):
        root = static.nth(k)
        section = root.evaluate("r => { const i = Reveal.getIndices(r.closest('section')); return [i.h, i.v || 0]; }")
        page.evaluate(f"Reveal.slide({section[0]}, {section[1]}, -1)")
        controls, selects = root.locator("[data-control]"), root.locator("select[data-control]")
        for c in range(controls.count()):
            control = controls.nth(c)
            contexts = [None] + [(s, o) for s in range(selects.count()) for o in range(selects.nth(s).locator("option").count())]
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
                    control.select_option(index=(int(control.input_value()) + 1) % control.locator("option").count())
                else:
                    top, current = int(control.get_attribute("max")), int(control.input_value())
                    control.fill(str(current + 1 if current < top else current - 1))
                if root.evaluate(EXPLORER_STATE) != before:  # the picture is swapped synchronously
                    changed = True
                    break
            if not changed:
                problems.append(f"explorer {k}: moving {control.evaluate('e => e.closest(`label`).innerText')!r} "
                                "never changes the picture")
        for img in root.locator("img").all():
            try:
                page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle(), timeout=3000)
            except Exception:
                problems.append(f"explorer {k}: a frame did not load within 3 s: {img.get_attribute('src')[:80]}")
    return problems


def _check_speaker_view(page, where) -> list[str]:
    """Press S: the speaker view opens, and the notes of a slide with formulas show, typeset."""
    target = page.evaluate("""() => { for (const s of Reveal.getSlides()) {
        const a = s.querySelector('aside.notes'); if (a && a.querySelector('mjx-container')) {
          const i = Reveal.getIndices(s); return [i.h, i.v || 0, a.textContent.trim().slice(0, 30)]; } } return null; }""")
    if target is None:
        return [f"{where}: no speaker notes with a formula to check"]
    page.evaluate(f"Reveal.slide({target[0]}, {target[1]}, -1)")
    with page.context.expect_page(timeout=10_000) as popup:
        page.keyboard.press("s")
    view = popup.value
    try:
        view.wait_for_function("""(start) => { const v = document.querySelector('.speaker-controls-notes .value');
            if (!v || !v.textContent.includes(start)) return false;
            const svgs = Array.from(v.querySelectorAll('mjx-container svg'));
            return svgs.length > 0 && svgs.every(s => s.getBoundingClientRect().width > 0); }""",
                               arg=target[2][:20], timeout=20_000)
    except Exception:
        text = view.evaluate("() => (document.querySelector('.speaker-controls-notes .value') || {}).innerHTML || ''")
        return [f"{where}: the speaker view does not show the notes of slide {target[0]}.{target[1]} with "
                f"typeset formulas: {text[:200]!r}"]
    finally:
        view.close()
    return []


@pytest.mark.parametrize("lesson, variant", DECKS, ids=[f"{lesson}-{variant}" for lesson, variant in DECKS])
def test_deck(lesson, variant, deck, browser):
    path = deck(lesson, variant)
    page, log, outside = _open(browser, path)
    problems, info = _check_slides(page, "1280x720")
    assert info["slides"] >= 5, f"only {info['slides']} slides"
    problems += _check_math(page)
    if variant == "student":
        problems += _check_explorers_answer(page)
        problems += _check_student_deck_has_no_solutions(lesson, path)
    else:
        solutions = page.evaluate("document.querySelectorAll('.st-solution').length")
        cells = nbformat.read(REPO_ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4).cells
        expected = len([c for c in cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")])
        if solutions != expected:
            problems.append(f"{solutions} stub/solution swaps for {expected} exercises")
    problems += _walk_with_the_clicker(page, "clicker")
    if lesson.startswith("04") and variant == "instructor":
        problems += _check_speaker_view(page, "speaker view")
    page.set_viewport_size({"width": 1024, "height": 768})
    page.evaluate("Reveal.layout()")
    more, _ = _check_slides(page, "1024x768", min_text_px=0)
    problems += more
    if outside:
        problems.append(f"requests off the disk (a deck must need no network): {outside}")
    failed = [f for f in log.failed if "ERR_ABORTED" not in f]  # a frame the explorer swapped again before it loaded
    if failed:
        problems.append(f"failed requests: {failed}")
    if log.errors:
        problems.append(f"console errors: {log.errors}")
    page.close()
    print(f"\n{lesson} {variant}: {info['slides']} slides, {len(info['scroll'])} scroll {info['scroll']}, "
          f"{info['figures']} figures, {info['explorers']} explorer(s), {info['notes']} notes "
          f"({info['notesMath']} formulas), smallest fit {min(info['fit']):.2f}")
    assert not problems, "\n".join(problems)
