"""Fast tests of stabletrain.lessons.clipping_lab, the experiments and widget of lesson 04.

At the default, seeded configuration the RNN must blow up without clipping and train with norm
clipping; the batched grid must compute what the one-model loop computes; the batched clipping
must match the reference functions; every figure is a detached, renderable Figure; the explorer
builds and redraws (its update time is printed, not asserted: run with ``-s`` to see it).
"""

from __future__ import annotations

import io
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import stabletrain as st
from stabletrain.lessons import clipping_lab as lab



@pytest.fixture(scope="module")
def grid() -> lab.Grid:
    """Seed 0 of a short sweep (13 RNNs x 120 steps): enough to test the machinery; what the lesson
    claims about the full experiment is tested in tests/test_claims_04_gradient_clipping.py."""
    return lab.train_grid(cfg=SHORT)


SHORT = lab.Config(steps=120)


@pytest.fixture(scope="module")
def norm_run() -> lab.Run:
    return lab.train_rnn("norm", 1.0, cfg=SHORT)


def _check_figure(fig: Figure, axes: int) -> None:
    """A detached figure with ``axes`` titled axes that renders to PNG."""
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []  # not registered with pyplot: nothing accumulates
    assert len(fig.axes) >= axes
    for ax in fig.axes[:axes]:
        assert ax.get_title() or fig.get_suptitle()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------------------------
# The machinery of the experiment


def test_grid_clipping_keeps_direction_only_for_norm(grid):
    by_norm, by_value, agc = grid["norm", 1.0], grid["value", 1.0], grid["agc", 0.05]
    assert np.nanmin(by_norm.cosines) > 1 - 1e-5
    assert np.nanmean(by_value.cosines) < 0.95
    assert np.nanmean(agc.cosines) < 0.99
    assert by_value.clipped_fraction > by_norm.clipped_fraction
    none = grid.none
    taken = none.steps_taken
    assert np.allclose(none.cosines[:taken], 1.0) and not none.clipped.any()
    np.testing.assert_allclose(none.clipped_norms[:taken], none.raw_norms[:taken], rtol=1e-6)


def test_grid_norms_obey_the_guarantees(grid):
    for m in grid.max_norms:
        for kind in ("norm", "value"):  # value clipping at max_norm/sqrt(P) has the same bound
            run = grid[kind, m]
            taken = run.steps_taken
            assert np.all(run.clipped_norms[:taken] <= m * (1 + 1e-5))
            assert np.all(run.clipped_norms[:taken] <= run.raw_norms[:taken] * (1 + 1e-6))


def test_grid_layout_and_lookup(grid):
    assert len(grid.runs) == 1 + 2 * len(lab.MAX_NORMS) + len(lab.CLIP_FACTORS)
    assert grid.n_params == sum(p.numel() for p in lab.make_model().parameters()) == 321
    for run in grid.runs.values():
        assert run.losses.shape == run.raw_norms.shape == run.cosines.shape == (grid.cfg.steps,)
        assert run.w_rec_norms.shape == (grid.cfg.steps,) and run.w_rec_norms[0] == pytest.approx(1.0)
    assert grid["none", 123.0] is grid.none
    assert grid["agc", 0.05].threshold == 0.05
    with pytest.raises(KeyError, match="available"):
        grid["norm", 3.0]


def test_sweep_runs_each_seed_as_its_own_model():
    cfg = lab.Config(steps=15)
    sweep = lab.train_sweep([("none", None, 0.1), ("norm", 1.0, 0.1), ("none", None, 0.025)], (0, 3), cfg)
    assert sweep.losses.shape == (2, 3, 15) and sweep.diverged_at.shape == (2, 3)
    assert not np.allclose(sweep.losses[0, 0], sweep.losses[1, 0])  # different seeds, different runs
    for seed in (0, 3):  # each seed's runs equal a one-seed sweep at that seed
        alone = lab.train_sweep([("none", None, 0.1)], (seed,), cfg)
        np.testing.assert_allclose(alone.losses[0, 0], sweep.losses[sweep.seeds.index(seed), 0], rtol=1e-5)
    assert sweep.index("none", None, 0.025) == 2 and sweep.index("norm", 1.0) == 1
    with pytest.raises(KeyError):
        sweep.index("norm", 2.0)
    ratio = sweep.update_ratio[:, 0]
    assert np.all(ratio[np.isfinite(ratio)] > 0)
    with pytest.raises(ValueError, match="unknown clipping kind"):
        lab.train_sweep([("clamp", 1.0, 0.1)], (0,), cfg)


def test_train_rnn_clips_and_bounds(norm_run):
    assert norm_run.diverged_at is None
    assert np.all(norm_run.clipped_norms <= 1.0 + 1e-5)
    assert norm_run.clipped[0]  # the first gradient (norm about 5) is clipped


@pytest.mark.parametrize("kind, threshold", [("norm", 1.0), ("value", 1.0), ("agc", 0.05)])
def test_train_rnn_matches_the_grid_at_first(grid, kind, threshold):
    """Same model, data and clipping; only float rounding differs, which chaos amplifies later."""
    single = lab.train_rnn(kind, threshold, cfg=lab.Config(steps=40))
    batched = grid[kind, threshold]
    np.testing.assert_allclose(single.losses[:40], batched.losses[:40], rtol=1e-3)
    np.testing.assert_allclose(single.raw_norms[:40], batched.raw_norms[:40], rtol=1e-3)
    np.testing.assert_allclose(single.cosines[:40], batched.cosines[:40], rtol=1e-3, atol=1e-4)
    assert (single.clipped[:20] == batched.clipped[:20]).all()


def test_train_rnn_with_a_clip_fn_equals_the_reference(norm_run):
    mine = lab.train_rnn("norm", 1.0, cfg=SHORT, clip_fn=lambda params: torch.nn.utils.clip_grad_norm_(params, 1.0))
    np.testing.assert_allclose(mine.losses[:40], norm_run.losses[:40], rtol=1e-5)


def test_runs_are_reproducible():
    cfg = lab.Config(steps=25)
    a = lab.train_grid((1.0,), (0.1,), cfg)
    b = lab.train_grid((1.0,), (0.1,), cfg)
    for key in a.runs:
        np.testing.assert_array_equal(a.runs[key].losses, b.runs[key].losses)
    assert len(a.runs) == 4 and a.cfg.steps == 25


def test_bad_kinds_raise():
    with pytest.raises(ValueError, match="unknown clipping kind"):
        lab.train_rnn("clamp", 1.0)
    with pytest.raises(ValueError, match="unknown clipping kind"):
        lab.clip_("clamp", 1.0, lab.make_model())


# ----------------------------------------------------------------------------------------------
# The batched clipping against the reference functions


def _stacked_model_grads(K: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 3), (6,), (6, 6), (1, 6), (1,)]
    params = [torch.randn(K, *s, generator=g) * 0.5 for s in shapes]
    grads = [torch.randn(K, *s, generator=g) * torch.logspace(-2, 1, K).view(K, *([1] * len(s))) for s in shapes]
    return params, grads


def test_batched_clip_matches_the_reference_functions():
    K = 9
    kinds = torch.tensor([0, 1, 1, 1, 2, 2, 2, 3, 3])
    thresholds = [math.inf, 0.05, 0.3, 3.0, 0.1, 1.0, 10.0, 0.01, 0.2]
    params, grads = _stacked_model_grads(K)
    agc_mask = [True, True, True, False, False]  # the last two play the unclipped readout
    th = torch.tensor(thresholds)
    inf = torch.full((K,), math.inf)
    clipped, total, was = lab._batched_clip(
        grads, params, agc_mask, kinds,
        torch.where(kinds == 1, th, inf), torch.where(kinds == 2, th, inf), torch.where(kinds == 3, th, inf))
    for k in range(K):
        ps = [torch.nn.Parameter(p[k].clone()) for p in params]
        for p, g in zip(ps, grads):
            p.grad = g[k].clone()
        ref_total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ps]))
        if kinds[k] == 1:
            st.clip_grad_value_(ps, thresholds[k])
        elif kinds[k] == 2:
            st.clip_grad_norm_(ps, thresholds[k])
        elif kinds[k] == 3:
            st.adaptive_clip_grad_([p for p, m in zip(ps, agc_mask) if m], clip_factor=thresholds[k])
        changed = any(not torch.equal(p.grad, g[k]) for p, g in zip(ps, grads))
        for p, c in zip(ps, clipped):
            torch.testing.assert_close(c[k], p.grad, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(total[k], ref_total, rtol=1e-6, atol=0)
        assert bool(was[k]) == changed, f"model {k} (kind {int(kinds[k])})"


# ----------------------------------------------------------------------------------------------
# The small demonstrations


def test_jacobian_product_matches_autograd_and_its_bound():
    Q, drive = lab.random_tanh_rnn(hidden=8, T=10, seed=1)
    torch.testing.assert_close(Q.T @ Q, torch.eye(8, dtype=torch.float64))
    assert drive.shape == (10, 8)
    for s in (0.7, 2.5):
        norms, product = lab.jacobian_norms(s, Q, drive)
        jac = torch.autograd.functional.jacobian(lambda h: lab.rnn_final_state(h, Q, s, drive),
                                                 torch.zeros(8, dtype=torch.float64))
        assert st.rel_error(jac.numpy(), product.numpy()) < 1e-10
        assert norms.shape == (11,) and norms[0] == 1.0
        assert np.all(norms <= s ** np.arange(11) * (1 + 1e-12))


def test_cosine_and_unit_norms():
    a = [torch.tensor([1.0, 0.0]), torch.tensor([[0.0]])]
    assert lab.cosine(a, [torch.tensor([2.0, 0.0]), torch.tensor([[0.0]])]) == pytest.approx(1.0)
    assert lab.cosine(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == pytest.approx(0.0)
    assert math.isnan(lab.cosine(torch.zeros(3), torch.ones(3)))
    with pytest.raises(ValueError):
        lab.cosine(torch.ones(2), torch.ones(3))
    w = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    conv = torch.ones(2, 3, 2, 2)
    norms = lab.unit_norms([w, torch.tensor([3.0, 4.0]), conv])
    np.testing.assert_allclose(norms, [5.0, 1.0, 5.0, math.sqrt(12), math.sqrt(12)])


def test_value_clip_for_has_the_norm_guarantee():
    g = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 10
    c = lab.value_clip_for(2.0, g.numel())
    assert g.clamp(-c, c).norm() <= 2.0 * (1 + 1e-6)


def test_single_thread_restores_the_setting():
    before = torch.get_num_threads()
    with lab.single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------------------------
# Figures and the explorer


def test_demonstration_figures():
    Q, drive = lab.random_tanh_rnn(hidden=8, T=15, seed=0)
    _check_figure(lab.plot_jacobian_norms({s: lab.jacobian_norms(s, Q, drive)[0] for s in (0.9, 2.0)}), 1)
    fig = lab.plot_clipping_geometry((2.4, 0.6), 1.0)
    _check_figure(fig, 1)
    assert any("cos = 1.000" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    w = np.array([0.5, 1.0, 2.0])
    before = np.array([0.1, 0.001, 0.5])
    after = np.minimum(before, 0.05 * w)
    _check_figure(lab.plot_agc_units(w, before, after, clip_factor=0.05), 1)


@pytest.fixture(scope="module")
def small_sweep() -> lab.Sweep:
    return lab.train_sweep(lab.experiment_settings(), (0, 1), lab.Config(steps=60))


def test_experiment_figures(small_sweep):
    _check_figure(lab.plot_seed_bands(small_sweep), 3)
    _check_figure(lab.plot_update_ratio(small_sweep), 1)
    _check_figure(lab.plot_clipping_stats(small_sweep, [("value", 2.0), ("norm", 2.0), ("agc", 0.05)]), 2)
    _check_figure(lab.plot_threshold_sweep(small_sweep), 2)


def test_cliff_and_momentum_demonstrations():
    fig = lab.plot_cliff({"no clipping": lab.cliff_trajectory(None), "clipped": lab.cliff_trajectory(1.0)})
    _check_figure(fig, 1)
    clipped = lab.cliff_trajectory(1.0)
    assert np.all(np.linalg.norm(np.diff(clipped, axis=0), axis=1) <= 0.5 * (1 + 1e-9))
    numbers = lab.momentum_and_adam_numbers()
    assert numbers["sgd_step"] <= 0.1 and numbers["momentum_step"] <= numbers["momentum_bound"]


def test_explorer_builds_and_redraws(small_sweep):
    explorer = lab.ClippingExplorer(small_sweep, kind="norm", max_norm=2.0, clip_factor=0.05)
    assert explorer.image.value[:4] == b"\x89PNG"
    assert explorer.current_run() is explorer.grids[0]["norm", 2.0]
    assert not explorer.max_norm.disabled and explorer.clip_factor.disabled
    first = explorer.image.value
    times = [explorer.last_update_s]

    explorer.kind.value = "agc"  # an observed change redraws
    assert explorer.current_run() is explorer.grids[0]["agc", 0.05]
    assert explorer.max_norm.disabled and not explorer.clip_factor.disabled
    assert explorer.image.value != first
    times.append(explorer.last_update_s)

    explorer.clip_factor.value = 0.01
    assert explorer.current_run() is explorer.grids[0]["agc", 0.01]
    times.append(explorer.last_update_s)
    explorer.seed.value = 1
    assert explorer.current_run() is explorer.grids[1]["agc", 0.01]
    explorer.kind.value = "none"
    assert explorer.max_norm.disabled and explorer.clip_factor.disabled
    assert "seed 1" in explorer.summary.value
    times.append(explorer.update())
    assert plt.get_fignums() == []
    assert all(t > 0 for t in times)
    print(f"\nexplorer update times (s): {', '.join(f'{t:.3f}' for t in times)}")
