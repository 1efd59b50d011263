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
_LAB02 = "stabletrain.lessons.activations_lab"


@functools.cache
def _activations_small():
    from stabletrain.lessons import activations_lab as lab

    cfg = lab.DeadConfig(n_per_class=40, width=16, steps=40, burst_steps=10, recycle_every=20)
    return {"dead": lab.dead_unit_experiment(seeds=(0, 1), cfg=cfg),
            "depth": lab.gradient_through_depth(seeds=(0, 1), depth=6, width=32, batch=16),
            "fixed": lab.second_moment_through_depth(seeds=(0, 1), depth=6, width=32, batch=16)}


_LAB00 = "stabletrain.lessons.diagnostics_lab"


@functools.cache
def _diagnostics_run():
    from stabletrain.lessons import diagnostics_lab as lab

    return lab.train_batch((0, 1), lab.Config(steps=40))


def _step_size_kwargs() -> dict[str, Any]:
    from stabletrain.lessons import diagnostics_lab as lab

    return {"errors": lab.step_size_errors(np.logspace(-12, -1, 12))}


_LAB01 = "stabletrain.lessons.vanishing_lab"


@functools.cache
def _vanishing_sweep():
    from stabletrain.lessons import vanishing_lab as lab

    return lab.gradient_sweep(depths=(6,), scales=(0.5, 1.0, 2.0), seeds=(0, 1))


@functools.cache
def _vanishing_batch():
    from stabletrain.lessons import vanishing_lab as lab

    return lab.train_deep_batch(depth=5, width=8, scales=(1.0, 3.0), seeds=(0, 1), steps=8, lr=0.5)


def _vanishing_training():
    return {"batch": _vanishing_batch()}


def _vanishing_walks():
    from stabletrain.lessons import vanishing_lab as lab

    return {"walks": lab.random_walk(width=8, depth=10, samples=40)}


def _vanishing_spectra():
    from stabletrain.lessons import vanishing_lab as lab

    return {"spectra": lab.jacobian_spectra(depths=(2, 4), width=6, seeds=(0, 1))}


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


_LAB05 = "stabletrain.lessons.batchnorm_lab"


def _lab05(experiment: str, **kwargs: Any) -> Callable[[], dict[str, Any]]:
    """Keyword arguments ``{"result": lab.<experiment>(**kwargs)}`` for a lesson-05 figure (small settings)."""

    def make() -> dict[str, Any]:
        from stabletrain.lessons import batchnorm_lab as lab

        return {"result": getattr(lab, experiment)(**kwargs)}

    return make


#: (id, module, function, make_kwargs) of every lesson figure held to the style
FIGURES: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = [
    ("00-step-size", _LAB00, "plot_step_size", _step_size_kwargs),
    ("00-loss", _LAB00, "plot_loss", lambda: {"d": _diagnostics_run()}),
    ("00-activation-histograms", _LAB00, "plot_activation_histograms", lambda: {"d": _diagnostics_run()}),
    ("00-gradient-histograms", _LAB00, "plot_gradient_histograms", lambda: {"d": _diagnostics_run()}),
    ("00-weight-gradients", _LAB00, "plot_weight_gradients", lambda: {"d": _diagnostics_run()}),
    ("00-update-ratio", _LAB00, "plot_update_ratio", lambda: {"d": _diagnostics_run()}),
    ("00-heatmap", _LAB00, "plot_heatmap", lambda: {"d": _diagnostics_run()}),
    ("00-layer-profile", _LAB00, "plot_layer_profile", lambda: {"d": _diagnostics_run()}),
    ("01-sigmoid-derivative", _LAB01, "plot_sigmoid_derivative", dict),
    ("01-random-walk", _LAB01, "plot_random_walk", _vanishing_walks),
    ("01-sweep", _LAB01, "plot_sweep", lambda: {"sweep": _vanishing_sweep(), "depth": 6}),
    ("01-slopes", _LAB01, "plot_slopes", lambda: {"sweep": _vanishing_sweep(), "depth": 6}),
    ("01-jacobian-spectra", _LAB01, "plot_jacobian_spectra", _vanishing_spectra),
    ("01-training", _LAB01, "plot_training", _vanishing_training),
    ("01-gradient-profiles", _LAB01, "plot_gradient_profiles", _vanishing_training),
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
    ("02-activations", _LAB02, "plot_activations", dict),
    ("02-gradient-through-depth", _LAB02, "plot_gradient_through_depth", lambda: {"sweep": _activations_small()["depth"]}),
    ("02-dead-units", _LAB02, "plot_dead_units", lambda: {"result": _activations_small()["dead"]}),
    ("02-fixed-point", _LAB02, "plot_fixed_point", lambda: {"result": _activations_small()["fixed"]}),
    ("05-standardization", _LAB05, "plot_standardization", _lab05("standardization_experiment", steps=20, seeds=(0, 1))),
    ("05-sweep-heatmaps", _LAB05, "plot_sweep_heatmaps",
     _lab05("sweep_experiment", scales=(1.0, 4.0), lrs=(0.1, 1.0), depth=2, width=8, steps=5, seeds=(0, 1))),
    ("05-weight-norms", _LAB05, "plot_weight_norms", _lab05("weight_norm_experiment", steps=5, seeds=(0, 1))),
    ("05-gradient-norms", _LAB05, "plot_gradient_norms",
     _lab05("gradient_norm_experiment", depth=3, width=8, batch=16, seeds=(0, 1))),
    ("05-batch-size", _LAB05, "plot_batch_size", _lab05("batch_size_experiment", batch_sizes=(2, 8), steps=5,
                                                        seeds=(0, 1))),
    ("05-residual-stream", _LAB05, "plot_residual_stream", _lab05("residual_stream_experiment", blocks=4, width=8,
                                                                  batch=32, seeds=(0, 1))),
    ("05-explorer", _LAB05, "explorer_figure", dict),
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


def test_lesson_00s_explorer_draws_in_the_course_style():
    from stabletrain.lessons import diagnostics_lab as lab

    explorer = lab.DiagnosticsExplorer(_diagnostics_run(), layer=1, step=0)
    sizes = style.font_sizes(explorer.figure)
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def test_the_explorer_widget_draws_in_the_course_style():
    from stabletrain.lessons import clipping_lab as lab

    explorer = lab.ClippingExplorer(_clipping_sweep(), kind="norm", max_norm=2.0, clip_factor=0.05)
    sizes = style.font_sizes(explorer.figure)
    assert sizes and min(sizes) >= style.MIN_FONT_PT


def test_lesson_03s_explorer_draws_every_text_in_the_course_style():
    """Tick labels and legends are made when the figure is drawn: the explorer draws inside the style,
    so after an update (a redraw) no text is below the minimum, ticks included."""
    from stabletrain.lessons import init_lab as lab

    explorer = lab.InitExplorer(depth=6, width=8, seeds=(0, 1))
    explorer.depth.value = 5
    sizes = style.font_sizes(explorer.figure)
    assert len(sizes) > 8 and min(sizes) >= style.MIN_FONT_PT, sorted(set(sizes))


def test_the_histogram_explorer_draws_in_the_course_style():
    from stabletrain.lessons import activations_lab as lab

    explorer = lab.HistogramExplorer("gelu", 2.0)
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
