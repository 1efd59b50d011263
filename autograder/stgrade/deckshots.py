"""Screenshot sheets of the decks: every slide of a deck, as it looks on arrival at 1280×720, small,
in one picture (``slides/<lesson>/<variant>-sheet.png``), for a quick look at a whole deck.

Uses Playwright with the system's Chromium (as the browser tests do); without them the sheets are
skipped and ``make slides`` says why.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

VIEWPORT = {"width": 1280, "height": 720}
THUMB = (320, 180)
COLUMNS = 6
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium() -> str | None:
    override = os.environ.get("STABLETRAIN_CHROMIUM")
    if override:
        return override if os.path.exists(override) else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def launch(playwright, executable: str):
    """Chromium as the decks are tested in: headless, files may load files next to them."""
    return playwright.chromium.launch(
        executable_path=executable, headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--allow-file-access-from-files"])


def open_deck(browser, path: Path, viewport: dict = VIEWPORT):
    """A page with the deck at ``path`` loaded, reveal.js started and every formula typeset."""
    page = browser.new_page(viewport=viewport)
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_function("document.documentElement.dataset.stReady === '1'", timeout=60_000)
    return page


def slide_indices(page) -> list[tuple[int, int]]:
    return [tuple(x) for x in page.evaluate(
        "Reveal.getSlides().map(s => { const i = Reveal.getIndices(s); return [i.h, i.v || 0]; })")]


def sheet(page, target: Path) -> Path:
    """Photograph every slide of the deck open in ``page`` and write the sheet to ``target``."""
    from PIL import Image, ImageDraw

    indices = slide_indices(page)
    rows = (len(indices) + COLUMNS - 1) // COLUMNS
    pad, label = 8, 18
    image = Image.new("RGB", (COLUMNS * (THUMB[0] + pad) + pad, rows * (THUMB[1] + pad + label) + pad), "#e8e8e8")
    draw = ImageDraw.Draw(image)
    for n, (h, v) in enumerate(indices):
        page.evaluate(f"Reveal.slide({h}, {v}, -1)")
        shot = Image.open(io.BytesIO(page.screenshot(type="png"))).convert("RGB").resize(THUMB, Image.LANCZOS)
        x = pad + (n % COLUMNS) * (THUMB[0] + pad)
        y = pad + (n // COLUMNS) * (THUMB[1] + pad + label)
        draw.text((x, y), f"{n + 1}  ({h}.{v})", fill="#333")
        image.paste(shot, (x, y + label))
    image.save(target, optimize=True)
    return target


def sheets(decks: list[Path]) -> tuple[list[Path], str | None]:
    """A sheet for each deck; or no sheets and the reason."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [], "the Python package playwright is not installed"
    executable = chromium()
    if executable is None:
        return [], f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} and $STABLETRAIN_CHROMIUM)"
    written = []
    with sync_playwright() as p:
        browser = launch(p, executable)
        for deck in decks:
            page = open_deck(browser, deck)
            written.append(sheet(page, deck.with_name(f"{deck.stem}-sheet.png")))
            page.close()
        browser.close()
    return written, None
