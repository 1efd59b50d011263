"""One figure style for every lesson (docs/LESSON_STANDARD.md): every text of every lesson figure is
at least ``stabletrain.style.MIN_FONT_PT`` once drawn, and compared lines differ by line style as
well as colour (one dash pattern per colour), so figures stay readable on a projector, in greyscale
and for every kind of colour vision.

To add a lesson's figures, append ``(id, "module", "function", make_kwargs)`` rows to ``FIGURES``:
``make_kwargs`` is a function returning the keyword arguments (called lazily, so an expensive input
such as a small training sweep is only built when the test runs; use small settings).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stabletrain import style


@functools.cache
def _clipping_sweep():
    from stabletrain.lessons import clipping_lab as lab

    return lab.train_sweep(lab.experiment_settings(), (0, 1), lab.Config(steps=40))


def _jacobian_kwargs() -> dict[str, Any]:
    from stabletrain.lessons import clipping_lab as lab

    Q, drive = lab.random_tanh_rnn(hidden=8, T=15, seed=0)
    return {"norms": {s: lab.jacobian_norms(s, Q, drive)[0] for s in (0.9, 1.0, 1.5, 2.0, 3.0)}}


def _agc_kwargs() -> dict[str, Any]:
    w = np.array([0.5, 1.0, 2.0, 1e-4])
    before = np.array([0.1, 0.001, 0.5, 0.01])
    return {"w_norms": w, "g_before": before, "g_after": np.minimum(before, 0.05 * np.maximum(w, 1e-3)),
            "clip_factor": 0.05}


def _cliff_kwargs() -> dict[str, Any]:
    from stabletrain.lessons import clipping_lab as lab

    return {"trajectories": {"no clipping": lab.cliff_trajectory(None), "clipped": lab.cliff_trajectory(1.0)}}


_LAB04 = "stabletrain.lessons.clipping_lab"
_LAB03 = "stabletrain.lessons.init_lab"


@functools.cache
def _init_sweep():
    from stabletrain.lessons import init_lab as lab

    return lab.depth_sweep(inits=("too small", "xavier", "kaiming", "lsuv"), activations=("tanh", "relu"), depth=12,
                           width=16, batch=16, seeds=(0, 1), sample_layers=(1, 12))


def _init_prediction_kwargs() -> dict[str, Any]:
    import stabletrain
    from stabletrain.lessons import init_lab as lab

    measured, predicted = {}, {}
    for name, (init, act) in lab.PREDICTION_SETTINGS.items():
        measured[name] = lab.profile(init, act, depth=12, width=16, batch=16, seeds=(0, 1))
        var_w = lab.weight_variance(init, act, 16)
        predicted[name] = (stabletrain.predicted_activation_variance(12, 16, var_w, act),
                           stabletrain.predicted_gradient_variance(12, 16, var_w, act))
    return {"measured": measured, "predicted": predicted}


def _init_lab():
    from stabletrain.lessons import init_lab as lab

    return lab

#: (id, module, function, make_kwargs) of every lesson figure held to the style
FIGURES: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = [
    ("04-jacobian-norms", _LAB04, "plot_jacobian_norms", _jacobian_kwargs),
    ("04-clipping-geometry", _LAB04, "plot_clipping_geometry", lambda: {"g": (2.4, 0.6), "c": 1.0}),
    ("04-agc-units", _LAB04, "plot_agc_units", _agc_kwargs),
    ("04-cliff", _LAB04, "plot_cliff", _cliff_kwargs),
    ("04-seed-bands", _LAB04, "plot_seed_bands", lambda: {"sweep": _clipping_sweep()}),
    ("04-update-ratio", _LAB04, "plot_update_ratio", lambda: {"sweep": _clipping_sweep()}),
    ("04-threshold-sweep", _LAB04, "plot_threshold_sweep", lambda: {"sweep": _clipping_sweep()}),
    ("04-clipping-stats", _LAB04, "plot_clipping_stats",
     lambda: {"sweep": _clipping_sweep(), "keys": [("value", 2.0), ("norm", 2.0), ("agc", 0.05)]}),
    ("03-depth-profiles", _LAB03, "plot_depth_profiles", lambda: {"sweep": _init_sweep(), "what": "act_std"}),
    ("03-depth-gradients", _LAB03, "plot_depth_profiles", lambda: {"sweep": _init_sweep(), "what": "grad_std"}),
    ("03-histograms", _LAB03, "plot_histograms",
     lambda: {"sweep": _init_sweep(), "act": "tanh", "inits": ["xavier", "kaiming"], "layers": (1, 12)}),
    ("03-prediction", _LAB03, "plot_prediction", _init_prediction_kwargs),
    ("03-training", _LAB03, "plot_training",
     lambda: {"training": _init_lab().train_sweep(_init_lab().TRAIN_INITS, depth=3, width=8, steps=5, seeds=(0, 1))}),
    ("03-symmetry", _LAB03, "plot_symmetry",
     lambda: {"sym": _init_lab().symmetry_sweep(("zero", "constant", "random", "nudged"), steps=5, seeds=(0, 1))}),
    ("03-bias-profile", _LAB03, "plot_bias_profile",
     lambda: {"bp": _init_lab().bias_profile(depth=6, width=32, batch=16, seeds=(0, 1))}),
    ("03-training-stats", _LAB03, "plot_training_stats",
     lambda: {"training": _init_lab().train_sweep(("pytorch default", "kaiming"), depth=5, width=8, steps=4,
                                                  seeds=(0, 1), record=True), "layers": (1, 3, 5)}),
]


def _dashes(line: Line2D) -> str:
    """The line's dash pattern (get_linestyle() reports every custom pattern as '--')."""
    offset, pattern = line._unscaled_dash_pattern  # matplotlib keeps no public getter for it
    return f"{line.get_linestyle()} {offset} {tuple(pattern) if pattern else ()}"


def _figure(module: str, function: str, make_kwargs) -> Figure:
    fig = getattr(importlib.import_module(module), function)(**make_kwargs())
    assert isinstance(fig, Figure)
    fig.draw_without_rendering()  # creates tick labels and lays the legends out
    return fig


@pytest.mark.parametrize("module, function, make_kwargs", [f[1:] for f in FIGURES], ids=[f[0] for f in FIGURES])
def test_every_text_is_at_least_the_minimum_font_size(module, function, make_kwargs):
    fig = _figure(module, function, make_kwargs)
    sizes = style.font_sizes(fig)
    assert sizes, "the figure has no text at all"
    small = sorted({s for s in sizes if s < style.MIN_FONT_PT})
    assert not small, f"{function}: texts of {small} pt, below {style.MIN_FONT_PT} pt"


@pytest.mark.parametrize("module, function, make_kwargs", [f[1:] for f in FIGURES], ids=[f[0] for f in FIGURES])
def test_compared_lines_differ_by_dash_pattern_as_well_as_colour(module, function, make_kwargs):
    fig = _figure(module, function, make_kwargs)
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if isinstance(ln, Line2D) and not ln.get_label().startswith("_")]
        pairs = {(to_rgba(ln.get_color()), _dashes(ln)) for ln in lines}
        colours = {c for c, _ in pairs}
        dashes = {d for _, d in pairs}
        assert len(pairs) == len(colours) == len(dashes), (
            f"{function}: each colour needs its own dash pattern; got {sorted(pairs)}")


def test_the_explorer_widget_draws_in_the_course_style():
    from stabletrain.lessons import clipping_lab as lab

    explorer = lab.ClippingExplorer(_clipping_sweep(), kind="norm", max_norm=2.0, clip_factor=0.05)
    sizes = style.font_sizes(explorer.figure)
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def _lab_plot_functions():
    import importlib
    import pkgutil

    import stabletrain.lessons as lessons

    for info in pkgutil.iter_modules(lessons.__path__):
        module = importlib.import_module(f"stabletrain.lessons.{info.name}")
        for name, fn in vars(module).items():
            if name.startswith("plot_") and callable(fn) and getattr(fn, "__module__", "") == module.__name__:
                yield f"{info.name}.{name}", fn


@pytest.mark.parametrize("name, fn", list(_lab_plot_functions()), ids=[n for n, _ in _lab_plot_functions()])
def test_every_lessons_plot_function_draws_in_the_course_style(name, fn):
    """Every lesson's figures use stabletrain.style (fonts >= 12 pt, colour + line style): each
    plot_* function of a lab module is decorated with @styled or draws inside course_style()."""
    import inspect

    decorated = fn.__code__.co_qualname == "styled.<locals>.wrapper"
    assert decorated or "course_style()" in inspect.getsource(fn), f"{name} does not use stabletrain.style"
