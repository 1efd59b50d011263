"""Lesson 02's plumbing: the lab's experiments, figures and explorer, and the grading machinery's
own guarantees (deterministic cases, the recycling check's false-fail bound).

What the lesson claims about the full experiments is tested in tests/test_claims_02_activations.py;
here the experiments run small, to test the machinery.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from stabletrain import activations as A
from stabletrain.exercises import get_exercise
from stabletrain.exercises import activations as ex
from stabletrain.lessons import activations_lab as lab
from stabletrain.style import MIN_FONT_PT, font_sizes

SMALL = lab.DeadConfig(n_per_class=40, width=16, steps=60, burst_steps=10, record_every=10, recycle_every=20)


def _check_figure(fig: Figure) -> None:
    assert isinstance(fig, Figure) and plt.get_fignums() == []  # detached: nothing accumulates in pyplot
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"
    width, height = fig.get_size_inches() * 120
    assert width <= 1280 and height <= 640, "a lesson figure fits a 1280×720 slide at 120 dpi"


@pytest.fixture(scope="module")
def small_dead() -> lab.DeadUnits:
    return lab.dead_unit_experiment(seeds=(0, 3), cfg=SMALL)


# ----------------------------------------------------------------------------------------------
# The dead-unit experiment


def test_the_batch_trains_what_a_plain_loop_trains(small_dead):
    """Seed 3's ReLU run in the batch equals a plain nn.Sequential loop with the same draws (up to the
    float32 rounding of bmm against Linear) over the burst and after."""
    model, losses, _ = lab.train_plain(3, SMALL)
    x, _ = lab.spirals(3, SMALL)
    batched = small_dead.loss[:, small_dead.index("relu"), 1]
    np.testing.assert_allclose(losses, batched, rtol=1e-3)
    assert A.count_dead_neurons(model, x) == small_dead.dead_total("relu")[-1, 1]


def test_sequential_model_reproduces_the_counts(small_dead):
    for setting in small_dead.settings:
        for k, seed in enumerate(small_dead.seeds):
            model = lab.sequential_model(small_dead, setting, seed)
            x, _ = lab.spirals(seed, SMALL)
            assert A.count_dead_neurons(model, x) == small_dead.dead_total(setting)[-1, k], (setting, seed)


def test_settings_of_a_seed_share_their_start(small_dead):
    """Every setting of a seed starts from the same network: the counts at step 0 agree."""
    start = small_dead.dead[0].sum(axis=-1)  # (settings, seeds)
    assert np.all(start == start[0])
    control = small_dead.index("control")
    assert np.all(small_dead.recycled[control] == 0) and np.all(small_dead.recycled[small_dead.index("recycled")] >= 0)


def test_a_seed_gives_the_same_run_alone_or_in_a_batch(small_dead):
    alone = lab.dead_unit_experiment(seeds=(3,), cfg=SMALL, settings=("relu", "recycled"))
    np.testing.assert_allclose(alone.loss[:, 0, 0], small_dead.loss[:, small_dead.index("relu"), 1], rtol=1e-5)
    np.testing.assert_array_equal(alone.dead[:, 1, 0], small_dead.dead[:, small_dead.index("recycled"), 1])


def test_jitter_moves_the_start_only_slightly():
    plain = lab.dead_unit_experiment(seeds=(0,), cfg=SMALL, settings=("control",))
    moved = lab.dead_unit_experiment(seeds=(0,), jitter=1e-6, cfg=SMALL, settings=("control",))
    assert not np.array_equal(plain.weights[0], moved.weights[0])
    assert abs(plain.loss[0, 0, 0] - moved.loss[0, 0, 0]) < 1e-4


def test_plot_dead_units(small_dead):
    _check_figure(lab.plot_dead_units(small_dead))


# ----------------------------------------------------------------------------------------------
# Depth and the fixed point


def test_gradient_through_depth_small():
    sweep = lab.gradient_through_depth(seeds=(1, 2), depth=6, width=64, batch=32)
    for name in sweep.grad_sq:
        assert sweep.grad_sq[name].shape == (2, 6) and np.allclose(sweep.grad_sq[name][:, -1], 1)
        assert sweep.predicted[name][-1] == 1 and sweep.predicted[name][0] == pytest.approx(sweep.chi[name] ** 5)
    assert sweep.gains["relu"] == pytest.approx(math.sqrt(2)) and sweep.chi["relu"] == pytest.approx(1)
    alone = lab.gradient_through_depth(seeds=(2,), depth=6, width=64, batch=32)
    np.testing.assert_allclose(alone.grad_sq["tanh"][0], sweep.grad_sq["tanh"][1], rtol=1e-12)
    jittered = lab.gradient_through_depth(seeds=(2,), jitter=1e-6, depth=6, width=64, batch=32)
    np.testing.assert_allclose(jittered.grad_sq["tanh"][0], sweep.grad_sq["tanh"][1], rtol=1e-4)
    assert not np.array_equal(jittered.grad_sq["tanh"][0], sweep.grad_sq["tanh"][1])
    _check_figure(lab.plot_gradient_through_depth(sweep))


def test_second_moment_through_depth_small():
    fixed = lab.second_moment_through_depth(seeds=(0, 1), depth=8, width=64, batch=32, starts=(0.5, 2.0))
    for (name, q0), values in fixed.measured.items():
        assert values.shape == (2, 8)
        assert fixed.predicted[(name, q0)][0] == pytest.approx(fixed.gains[name] ** 2 * q0)
    np.testing.assert_allclose(fixed.predicted[("relu", 2.0)], 4.0)  # gain √2: every q is a fixed point
    np.testing.assert_allclose(lab.variance_map("relu", math.sqrt(2), 0.3, 5), 0.3)
    _check_figure(lab.plot_fixed_point(fixed))


def test_plot_activations_and_maxima():
    _check_figure(lab.plot_activations())
    maxima = lab.derivative_maxima(("sigmoid", "gelu"), points=20_001)
    assert maxima["sigmoid"][0] == pytest.approx(0.25)


# ----------------------------------------------------------------------------------------------
# The explorer


def test_explorer_redraws_quickly_in_the_course_style(capsys):
    explorer = lab.HistogramExplorer("tanh", 2.0)
    times = []
    for name in lab.NAMES:
        explorer.activation.value = name
        for sigma in (0.1, 1.0, 10.0):
            explorer.sigma.value = sigma
            times.append(explorer.last_update_s)
            assert explorer.image.value[:4] == b"\x89PNG" and lab.LABELS[name] in explorer.summary.value
    sizes = font_sizes(explorer.figure)
    assert sizes and min(sizes) >= MIN_FONT_PT
    assert explorer.figure.get_size_inches()[0] * explorer.dpi <= 1280
    with capsys.disabled():
        print(f"\nHistogramExplorer update: median {np.median(times):.3f} s, max {max(times):.3f} s")
    assert np.median(times) < 0.5  # the standard's redraw bar, in process


def test_explorer_statistics_match_the_moments():
    explorer = lab.HistogramExplorer("relu", 2.0)
    stats = explorer.stats()
    assert stats["saturated"] == pytest.approx(0.5, abs=0.01)
    assert stats["second_moment"] == pytest.approx(A.second_moment("relu", 2.0), rel=0.03)
    explorer.activation.value = "tanh"
    assert explorer.stats()["slope_second_moment"] == pytest.approx(A.derivative_second_moment("tanh", 2.0), rel=0.03)


# ----------------------------------------------------------------------------------------------
# Grading machinery


def test_the_lab_imports_no_answer_key():
    """A grading kernel imports the lab in its setup cell and has no answer keys to import."""
    code = ("import sys\nimport stabletrain.lessons.activations_lab\n"
            "print('stabletrain.activations' in sys.modules, 'stabletrain.variance' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("name", sorted(ex.EXERCISES))
def test_runs_repeat_exactly_so_the_grader_may_remember_the_reference(name):
    """The grader remembers the reference's (and the mutants') outputs per case: right only when
    running a case again gives the same outputs, bit for bit."""
    from stabletrain.exercises.base import first_difference

    exercise = get_exercise(name)
    assert exercise.deterministic
    for level in ("visible", "hidden"):
        for case in exercise.cases(level, 11):
            first, again = exercise.run(exercise.reference, case), exercise.run(exercise.reference, case)
            assert first_difference(first, again, 0.0, 0.0) is None, case.label


def test_the_recycling_spread_check_rarely_fails_a_correct_answer():
    """Fresh weights in U(±1/√fan_in), in units of their std: X² ∈ [0, 3], E = 1, Var = 4/5. Bernstein:
    P(mean of n ≥ 50 below 0.3² = 0.09) ≤ 2·exp(−n t²/(2(Var + b t/3))) with t = 0.91, b = 2 — below
    1e-6 for every case that is checked."""
    n, t, var, b = ex._R_SPREAD_N, 1 - ex._R_SPREAD_MIN ** 2, 0.8, 2.0
    assert 2 * math.exp(-n * t * t / (2 * (var + b * t / 3))) < 1e-6
    sizes = []
    for level in ("visible", "hidden"):
        for case in get_exercise("recycle_dead_units_").cases(level, 0):
            spec = case.inputs["spec"]
            model, linears, _ = ex._build(spec)
            x = torch.from_numpy(spec["x"])
            with torch.no_grad():
                h, size = x, 0
                for layer in linears[:-1]:
                    z = layer(h)
                    size += int((z <= 0).all(dim=0).sum()) * layer.in_features
                    h = torch.relu(z)
            sizes.append(size)
    assert any(s >= ex._R_SPREAD_N for s in sizes)  # the check runs on some case


def test_planted_units_are_what_the_labels_say():
    """The cases' planted units: dead ones off for every example, 'almost' ones on for exactly one."""
    rng = np.random.default_rng(0)
    spec = ex._mlp_spec(rng, (5, 12, 8, 3), 32, dead={0: [1]}, almost={0: [4]}, zero={1: [2]}, negative_outputs=[2])
    model, linears, _ = ex._build(spec)
    x = torch.from_numpy(spec["x"])
    with torch.no_grad():
        z0 = linears[0](x)
        z1 = linears[1](torch.relu(z0))
        out = model(x)
    assert (z0[:, 1] <= 0).all() and int((z0[:, 4] > 0).sum()) == 1 and (z1[:, 2] == 0).all() and (out[:, 2] < 0).all()
