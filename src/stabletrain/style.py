"""One figure style for every lesson: readable on a projector, distinguishable without colour.

- Fonts of at least 12 pt at the notebook's size (figures are drawn 8 to 10 inches wide and shown
  at that size in JupyterLab and on a 1280×720 slide).
- Compared runs differ by line style *and* colour: the colours are Okabe and Ito's palette, which
  stays distinguishable under deuteranopia and protanopia, and each comes with its own dash pattern.
- PNGs at 120 dpi inline (sharp on a projector, light in a notebook).

Use :func:`styled` as a decorator on a function that returns a Figure, or ``with course_style():``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager
from typing import ParamSpec

import matplotlib as mpl
from cycler import cycler
from matplotlib.figure import Figure

P = ParamSpec("P")

#: Okabe & Ito (2008), colour-blind safe; black first for the control / reference run
COLORS = ("#000000", "#E69F00", "#0072B2", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
#: one dash pattern per colour, so lines stay apart in greyscale and for every kind of colour vision
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

MIN_FONT_PT = 12.0
DPI = 120

RC = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "legend.title_fontsize": 12,
    "figure.titlesize": 15,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "image.cmap": "viridis",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "axes.prop_cycle": cycler(color=list(COLORS)) + cycler(linestyle=list(LINESTYLES)),
}


@contextmanager
def course_style(font_scale: float = 1.0):
    """Matplotlib settings of the course, for the duration of a ``with`` block; ``font_scale``
    multiplies every font size (an explorer drawn tall for a slide keeps its text at 12 pt on screen)."""
    if font_scale <= 0:
        raise ValueError(f"font_scale must be positive, got {font_scale}")
    rc = {key: value * font_scale if key.endswith(("size", "fontsize")) else value for key, value in RC.items()}
    with mpl.rc_context(rc):
        yield


def styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw ``fn``'s figure in the course style."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with course_style():
            return fn(*args, **kwargs)

    return wrapper


def line_style(i: int) -> dict:
    """Colour, dash pattern and marker of the i-th compared run (for code that picks styles itself)."""
    return {"color": COLORS[i % len(COLORS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


def font_sizes(fig: Figure) -> list[float]:
    """Sizes (pt) of every visible text in ``fig``: tests use it to hold figures to MIN_FONT_PT."""
    return [t.get_fontsize() for t in fig.findobj(mpl.text.Text) if t.get_visible() and t.get_text().strip()]


def canvas_png(canvas) -> bytes:
    """Draw an Agg canvas and encode it as PNG at low compression: the explorers' redraw path,
    about twice as fast as ``savefig``."""
    import io

    from PIL import Image

    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()
