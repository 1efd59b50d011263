"""Every quantitative sentence of lesson 03, checked on every run the claims tests cover.

A sentence is a claim about networks, not about one CPU's rounding (docs/LESSON_STANDARD.md §4).
``lab.all_experiments`` computes what the notebook computes, with the notebook's arguments, and
``claims_support.runs`` runs it natively on the lesson's seeds 0–4 and the held-back seeds 5–14,
under the avx2 and default CPU kernels on 0–4, and with the initial weights jittered by 1e-6
(30 seed-runs in all). A claim about one seed is checked on every seed of every run; a claim about
what the notebook shows for its five seeds (a median, a spread) on every block of five seeds: 0–4,
5–9 and 10–14 natively and 0–4 in each variant. Each docstring quotes the sentence and says what
was measured over all runs, so the margin is visible.

Deterministic facts (closed forms, float64 Monte Carlo on fixed seeds, torch conventions) are
checked once and say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import claims_support as claims
import stabletrain
from stabletrain.lessons import init_lab as lab

# one worker computes this lesson's experiments while the other runs other tests (make test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("claims-03")

LN3 = math.log(3)
BLOCK = 5  # the notebook's number of seeds


@pytest.fixture(scope="module")
def runs() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.init_lab:all_experiments")


def _blocks(run: claims.Run) -> Iterator[tuple[str, slice]]:
    """(label, seed slice) of every block of five consecutive seeds of a run."""
    for start in range(0, len(run.seeds), BLOCK):
        yield f"{run.variant} seeds {run.seeds[start]}–{run.seeds[start + BLOCK - 1]}", slice(start, start + BLOCK)


def test_the_experiments_use_the_notebooks_settings_and_the_seeds_asked_for(runs):
    """The notebook's defaults: seeds 0–4; the variants: 15 native seeds and 5 in each other run."""
    assert lab.SEEDS == (0, 1, 2, 3, 4)
    assert [len(r.seeds) for r in runs] == [15, 5, 5, 5]
    for run in runs:
        e = run.result
        assert e.symmetry.seeds == e.deep.seeds == e.sweep["kaiming", "relu"].seeds == run.seeds
        assert e.deep.depth == 10 and e.shallow.depth == 3 and e.deep.steps == 250 and e.deep.lr == 0.01
        assert e.symmetry.steps == 100 and e.breaking.steps == 600
        assert e.sweep["kaiming", "relu"].width == 64 and e.sweep["kaiming", "relu"].depth == 50


# ----------------------------------------------------------------------------------------------
# Section 1: symmetry


def test_zero_init_keeps_units_identical_exactly_on_every_arithmetic(runs):
    """"With zero init the difference between any two hidden units is exactly 0 at every step, on
    any CPU: every product that could tell them apart has an exact 0 in it ... W₁ does not move at
    all." Measured: 0 in every step of all 30 runs, the jittered ones included (0·(1 + ε) = 0)."""
    for run in runs:
        s = run.result.symmetry
        assert np.all(s.spread["zero"] == 0) and np.all(s.grad_spread["zero"] == 0), run.label
        assert np.all(s.moved["zero"] == 0), run.label


def test_constant_init_stays_identical_up_to_rounding(runs):
    """"With constant init the units are identical in exact arithmetic; in floating point the
    difference is either exactly 0 (the CPU's matrix kernels round every unit's sum alike, as on
    most machines) or a rounding error that stays below 10⁻³ over the 100 steps."
    Measured: exactly 0 natively (AMD EPYC, AVX-512), avx2 and default; at most 1.6e-4 in the
    jittered runs (a 1e-6 relative difference, eight float32 roundings, that grows ~100× in 100 steps)."""
    for run in runs:
        assert run.result.symmetry.spread["constant"].max() < 1e-3, run.label


def test_random_init_separates_units_from_the_start(runs):
    """"random init separates them from the start"; instructor notes: "a largest spread of about 2
    for random init". Measured: first-step spread 0.54–0.88 (min over seeds), largest 2.06–2.10."""
    for run in runs:
        s = run.result.symmetry
        assert np.all(s.spread["random"][:, 0] > 0.3), run.label
        assert 1.5 < s.spread["random"].max() < 2.6, run.label


def test_symmetric_inits_end_above_random_init_on_every_seed(runs):
    """"with zero or constant weights the network stays a one-unit network and ends above the
    random-init loss on every seed." Measured: constant 0.884–0.906 and zero 1.099 against random
    0.722–0.756."""
    for run in runs:
        loss = run.result.symmetry.loss
        assert np.all(loss["constant"][:, -1] > loss["random"][:, -1] + 0.1), run.label
        assert np.all(loss["zero"][:, -1] > loss["constant"][:, -1]), run.label


def test_symmetry_instructor_numbers(runs):
    """Instructor notes: "Median final losses over the 5 seeds: zero 1.10 (ln 3: only the output
    bias learns), constant 0.90, random 0.73." Measured medians per block of five: zero 1.099,
    constant 0.89–0.90, random 0.73–0.74."""
    for run in runs:
        for label, block in _blocks(run):
            median = {k: np.median(v[block, -1]) for k, v in run.result.symmetry.loss.items()}
            assert abs(median["zero"] - LN3) < 0.01, label
            assert abs(median["constant"] - 0.90) < 0.03 and abs(median["random"] - 0.73) < 0.03, (label, median)


def test_a_nudge_of_one_in_a_million_breaks_the_symmetry_after_about_200_steps(runs):
    """"Nudge every weight of the constant init by one part in a million ... The difference grows
    exponentially, about tenfold every 45 steps, and after a little over 200 steps the units differ
    by more than 0.1; then the loss leaves the constant init's plateau of 0.9 — and after 600 steps
    it is still above random init's on every seed." Test: tenfold every 36–59 steps, separation at
    steps 181–289. Measured over the 30 runs: tenfold every 42.5–46 steps (2.16–2.35 decades per 100
    steps, steps 50 → 150), separation at steps 215–242, final loss 0.52–0.68 (random 0.23–0.39)."""
    for run in runs:
        b = run.result.breaking
        nudged = b.spread["nudged"]
        decades = np.log10(nudged[:, 150] / nudged[:, 50])
        assert np.all((decades > 1.7) & (decades < 2.8)), (run.label, decades)
        step = lab.separation_step(nudged)
        assert np.all((step > 180) & (step < 290)), (run.label, step)
        final = b.loss["nudged"][:, -1]
        assert np.all(final < 0.8) and np.all(final > b.loss["random"][:, -1]), run.label


# ----------------------------------------------------------------------------------------------
# Sections 2, 3, 5, 6, 7: the formulas (deterministic: closed forms and fixed-seed float64)


def test_small_random_numbers_arithmetic():
    """n = 256, std 0.01: factor 0.0256, after 10 layers 1e-16 of the variance (closed form)."""
    factor = 256 * 0.01**2
    assert math.isclose(factor, 0.0256) and 1e-17 < factor**10 < 1e-15


def test_tanh_gain_one_drains_like_one_over_l_and_five_thirds_settles():
    """"With g = 1 the variance drains away slowly (about like 1/l), with g = 5/3 it settles at
    q* ≈ 1.18 within a few layers" (the mean-field recursion: deterministic)."""
    q1 = stabletrain.predicted_activation_variance(50, 64, 1 / 64, "tanh", which="pre")
    layers = np.arange(1, 51)
    assert np.all((layers[9:] * q1[9:] > 0.3) & (layers[9:] * q1[9:] < 1.0))
    q53 = stabletrain.predicted_activation_variance(50, 64, (5 / 3) ** 2 / 64, "tanh", which="pre")
    assert abs(q53[-1] - 1.18) < 0.005 and np.all(np.abs(q53[4:] / q53[-1] - 1) < 0.03)


def test_pytorch_default_is_a_third_of_lecun_and_a_sixth_of_kaiming():
    """Var = 1/(3·fan_in) from kaiming_uniform_(a=√5) (a torch convention; nn.Linear(256, 256)'s
    65 536 weights, whose sample variance is within 3 % of it on any draw)."""
    fan_in = 100
    default = (1 / math.sqrt(5 + 1) * math.sqrt(2)) ** 2 / fan_in / 3 * 3  # gain² / fan_in, gain = √(2/(1+5))
    assert math.isclose(default, 1 / (3 * fan_in))
    assert math.isclose(default / (1 / fan_in), 1 / 3) and math.isclose(default / (2 / fan_in), 1 / 6)
    layer = torch.nn.Linear(256, 256)
    assert abs(layer.weight.var().item() * 3 * 256 - 1) < 0.03


@pytest.mark.parametrize("seed", range(5))
def test_qr_sign_convention_and_haar_trace(seed):
    """"with LAPACK's Householder QR, Q₁₁ is always negative"; the corrected traces have mean 0 and
    variance 1 (float64 linear algebra on fixed draws)."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(500, 32, 32, generator=gen, dtype=torch.float64))
    assert bool((q[:, 0, 0] < 0).all())
    fixed = q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)
    traces = torch.diagonal(fixed, dim1=-2, dim2=-1).sum(-1)
    assert abs(traces.mean().item()) < 0.2 and 0.8 < traces.var().item() < 1.2


def test_truncated_normal_std_and_uncorrected_variance():
    """0.87962566 and "77% of the variance" (closed form)."""
    from scipy import stats

    std = stats.truncnorm(-2, 2).std()
    assert abs(std - 0.87962566103423978) < 1e-12
    assert round(std**2 * 100) == 77


# ----------------------------------------------------------------------------------------------
# Section 8: prediction against measurement


def _predicted(name: str) -> tuple[np.ndarray, np.ndarray]:
    init, act = lab.PREDICTION_SETTINGS[name]
    var_w = lab.weight_variance(init, act, 64)
    return (stabletrain.predicted_activation_variance(50, 64, var_w, act),
            stabletrain.predicted_gradient_variance(50, 64, var_w, act))


def _ratios(run: claims.Run, name: str, block: slice) -> tuple[np.ndarray, np.ndarray]:
    """Median of five seeds over the prediction, per layer: (activations, gradients)."""
    p = run.result.prediction[name]
    act_pred, grad_pred = _predicted(name)
    return np.median(p.act_var[block], axis=0) / act_pred, np.median(p.grad_var[block], axis=0) / grad_pred


def test_tanh_prediction_matches_within_a_factor_2_at_every_layer(runs):
    """"For tanh the measured median stays within a factor 2 of the prediction at every layer,
    forward and backward." Measured per block of five: 0.52–1.50."""
    for run in runs:
        for label, block in _blocks(run):
            for name in ("tanh, Xavier", "tanh, 5/3 (Kaiming)"):
                for ratio in _ratios(run, name, block):
                    assert np.all((ratio > 0.4) & (ratio < 2.0)), (label, name, ratio.min(), ratio.max())


def test_default_relu_falls_about_39_orders_of_magnitude(runs):
    """"with PyTorch's default, the ReLU net's activation variance falls by a factor 6 per layer —
    39 orders of magnitude from the input to layer 50 predicted, about 40 measured (the median)".
    Prediction: 39.07 (deterministic). Measured medians per block: 39.7–40.3 orders."""
    act_pred, _ = _predicted("ReLU, PyTorch default")
    assert 38.5 < -math.log10(act_pred[-1]) < 39.5
    for run in runs:
        for label, block in _blocks(run):
            orders = -math.log10(np.median(run.result.prediction["ReLU, PyTorch default"].act_var[block, -1]))
            assert 39.0 < orders < 41.5, (label, orders)


def test_tanh_five_thirds_gradient_grows_about_1_21_per_layer(runs):
    """"tanh with 5/3 holds its forward variance but its gradient grows backward by about 1.21 per
    layer (between 1.15 and 1.27 on every seed)". Predicted 1.21 at the fixed point; measured
    1.192–1.231; layer-50 activation variance at least 0.40."""
    _, grad_pred = _predicted("tanh, 5/3 (Kaiming)")
    assert abs(grad_pred[9] / grad_pred[10] - 1.21) < 0.005
    for run in runs:
        p = run.result.prediction["tanh, 5/3 (Kaiming)"]
        growth = (p.grad_var[:, 0] / p.grad_var[:, -1]) ** (1 / 49)
        assert np.all((growth > 1.15) & (growth < 1.27)), (run.label, growth)
        assert np.all(p.act_var[:, -1] > 0.3), run.label


def test_relu_kaiming_seeds_spread_and_the_median_network_sits_below_the_mean():
    """"For ReLU with Kaiming ... the log of one network's layer-50 variance has a standard deviation
    of about 0.8 decades (Hanin and Rolnick estimate √(5L/n)/ln 10 = 0.86), and the median network
    sits below the mean: Hanin and Rolnick's e^{−5L/2n} = 0.14 times the prediction, 0.23 measured
    over 400 networks."
    Deterministic: float64 forward passes of 400 fixed networks (seeds 0–399, width 64, batch 16),
    the mean-field prediction and the closed forms. Measured: sd 0.79 decades, median 0.22, mean 1.15."""
    assert abs(math.sqrt(5 * 50 / 64) / math.log(10) - 0.86) < 0.005
    assert abs(math.exp(-5 * 50 / (2 * 64)) - 0.14) < 0.005
    p = lab.profile("kaiming", "relu", 50, 64, batch=16, seeds=tuple(range(400)))
    ratio = p.act_var[:, -1] / _predicted("ReLU, Kaiming")[0][-1]
    assert 0.65 < np.log10(ratio).std() < 0.95
    assert 0.18 < np.median(ratio) < 0.28
    assert 0.7 < ratio.mean() < 1.6  # the mean is the prediction, within its own (heavy-tailed) noise


def test_relu_five_seeds_span_decades_and_their_median_is_below_the_prediction(runs):
    """"at layer 50 the five seeds' variances span one to three decades ... and the median lies
    below the prediction on most sets of five seeds". Measured per block (ReLU + Kaiming): spans
    56–318 (1.7–2.5 decades); median/prediction 0.035–1.16, below 1 in 5 of the 6 blocks;
    over all 15 native seeds 0.27."""
    below = total = 0
    for run in runs:
        for label, block in _blocks(run):
            v = run.result.prediction["ReLU, Kaiming"].act_var[block, -1]
            assert 10 < v.max() / v.min() < 1000, (label, v.max() / v.min())
            act, _ = _ratios(run, "ReLU, Kaiming", block)
            below += act[-1] < 1
            total += 1
    assert below >= 0.6 * total, (below, total)
    native = runs[0].result.prediction["ReLU, Kaiming"].act_var[:, -1]
    assert np.median(native) < _predicted("ReLU, Kaiming")[0][-1] / 2


def test_prediction_instructor_numbers(runs):
    """Instructor notes: ratios measured/predicted printed by the cell (median of five seeds): ReLU +
    Kaiming layer-50 activations 0.03–1.2 (it depends on the seed set), ReLU + default 0.05–0.3,
    tanh + Xavier 0.6–0.8, tanh + 5/3 ≈ 1 forward (0.98–1.01) and 0.9–1.5 for the gradient.
    Measured per block: 0.035–1.16, 0.060–0.265, 0.620–0.792, 0.980–1.010 and 0.94–1.44."""
    bounds = {"ReLU, Kaiming": (0.02, 1.5), "ReLU, PyTorch default": (0.04, 0.35), "tanh, Xavier": (0.5, 0.95),
              "tanh, 5/3 (Kaiming)": (0.95, 1.05)}
    for run in runs:
        for label, block in _blocks(run):
            for name, (low, high) in bounds.items():
                act, grad = _ratios(run, name, block)
                assert low < act[-1] < high, (label, name, act[-1])
            _, grad = _ratios(run, "tanh, 5/3 (Kaiming)", block)
            assert 0.8 < grad[0] < 1.7, (label, grad[0])


# ----------------------------------------------------------------------------------------------
# Section 9: the sweep (float64 forward and backward passes: nothing chaotic, the variants agree)


def _layer50(run, init, act, what="act_std"):
    return getattr(run.result.sweep[init, act], what)[:, -1]


def _layer1_grad(run, init, act):
    return run.result.sweep[init, act].grad_std[:, 0]


def test_too_small_and_default_vanish_forward_and_backward(runs):
    """"Too small and PyTorch's default vanish for every activation, forward and backward": layer-50
    activation std and layer-1 gradient std below 1e-3 on every seed. Measured: at most 8.6e-5."""
    for run in runs:
        for init in ("too small", "pytorch default"):
            for act in lab.ACTIVATIONS:
                assert np.all(_layer50(run, init, act) < 1e-3) and np.all(_layer1_grad(run, init, act) < 1e-3)


def test_too_large_explodes_for_relu_and_selu(runs):
    """"too large explodes for ReLU and SELU": layer-50 std above 1e3. Measured: at least 3e36."""
    for run in runs:
        for act in ("relu", "selu"):
            assert np.all(_layer50(run, "too large", act) > 1e3)


def test_too_large_tanh_saturates_with_exploding_gradients(runs):
    """"the activations sit at ±1 (std between 0.9 and 1 — it looks healthy!) while the gradient
    explodes backward". Measured: activation std 0.939–0.953 at every layer; layer-1 gradient std
    at least 3.9e14."""
    for run in runs:
        acts = run.result.sweep["too large", "tanh"].act_std
        assert np.all((acts > 0.9) & (acts < 1.0)) and np.all(_layer1_grad(run, "too large", "tanh") > 1e3)


def test_xavier_keeps_tanh_fading_and_kills_relu(runs):
    """"Xavier keeps tanh alive but fading (the std at layer 50 is below layer 10's, between 0.01
    and 0.5) and kills ReLU (below 1e-3 at layer 50)". Measured: tanh layer 50 0.054–0.131, at most
    0.56 of layer 10's; ReLU at most 9.5e-8."""
    for run in runs:
        tanh = run.result.sweep["xavier", "tanh"].act_std
        assert np.all((tanh[:, -1] > 0.01) & (tanh[:, -1] < 0.5)) and np.all(tanh[:, -1] < 0.8 * tanh[:, 9])
        assert np.all(_layer50(run, "xavier", "relu") < 1e-3)


def test_kaiming_orthogonal_lsuv_keep_activations_of_order_one(runs):
    """"Kaiming, orthogonal and LSUV keep the activations of order one with every activation (std
    between 0.04 and 5 at every layer, on every seed: the lower row zooms in)". Measured: 0.051
    (ReLU + Kaiming, a held-back seed) to 4.00 (ReLU + orthogonal)."""
    for run in runs:
        for init in ("kaiming", "orthogonal", "lsuv"):
            for act in lab.ACTIVATIONS:
                acts = run.result.sweep[init, act].act_std
                assert np.all((acts > 0.04) & (acts < 5)), (run.label, init, act, acts.min(), acts.max())


def test_the_gradient_factors_the_prose_quotes(runs):
    """"with ReLU, Kaiming, orthogonal and LSUV keep the layer-1 gradient within a factor 10 of the
    output's (std 1); with SELU all four let it grow 4- to 15-fold; with tanh Xavier lets it fade
    to between 0.08 and 0.3 of the output's, 5/3 (Kaiming, orthogonal) lets it grow 50- to 250-fold,
    as Section 8 predicted, and LSUV, which pins the forward variance, 40- to 80-fold."
    Measured: ReLU 0.154–3.58; SELU 4.79–11.9; tanh Xavier 0.111–0.222, Kaiming and orthogonal
    71.5–189, LSUV 47.8–64.6."""
    bands = {("kaiming", "relu"): (0.1, 10), ("orthogonal", "relu"): (0.1, 10), ("lsuv", "relu"): (0.1, 10),
             ("xavier", "selu"): (4, 15), ("kaiming", "selu"): (4, 15), ("orthogonal", "selu"): (4, 15),
             ("lsuv", "selu"): (4, 15), ("xavier", "tanh"): (0.08, 0.3), ("kaiming", "tanh"): (50, 250),
             ("orthogonal", "tanh"): (50, 250), ("lsuv", "tanh"): (40, 80)}
    for run in runs:
        for (init, act), (low, high) in bands.items():
            g = _layer1_grad(run, init, act)
            assert np.all((g > low) & (g < high)), (run.label, init, act, g)


def test_histogram_claims(runs):
    """"With std-1 weights about three quarters of the tanh units are saturated (|h| > 0.99) at every
    layer from the first on ... Xavier's activations concentrate near 0 as depth grows (the std at
    layer 50 is less than a third of layer 1's); with 5/3 the shape settles within 10 layers (the
    std at layers 10, 25 and 50 agrees within 10 %), with a mild pile-up near ±1 (under a quarter of
    the units beyond ±0.9)." Every seed: saturated 0.711–0.753; Xavier ratio 0.086–0.21; 5/3 stds
    within 4.9 %; beyond ±0.9: 0.14–0.20."""
    for run in runs:
        samples = {init: run.result.sweep[init, "tanh"].samples for init in ("too large", "xavier", "kaiming")}
        for values in samples["too large"].values():
            saturated = np.mean(np.abs(values) > 0.99, axis=1)
            assert np.all((saturated > 0.65) & (saturated < 0.85)), (run.label, saturated)
        assert np.all(samples["xavier"][50].std(axis=1) < samples["xavier"][1].std(axis=1) / 3)
        stds = np.stack([samples["kaiming"][k].std(axis=1) for k in (10, 25, 50)])
        assert np.all(stds.max(axis=0) / stds.min(axis=0) < 1.10)
        for k in (10, 25, 50):
            assert np.all(np.mean(np.abs(samples["kaiming"][k]) > 0.9, axis=1) < 0.25)


#: instructor notes of Section 9: (init, activation) -> (low, high) of the layer-50 median of five seeds
SWEEP_NOTES = {
    ("too small", "tanh"): (1e-57, 1e-53), ("too large", "tanh"): (0.9, 0.99), ("xavier", "tanh"): (0.06, 0.11),
    ("kaiming", "tanh"): (0.6, 0.7), ("pytorch default", "tanh"): (1e-14, 1e-11), ("orthogonal", "tanh"): (0.6, 0.7),
    ("lsuv", "tanh"): (0.58, 0.68),
    ("too small", "relu"): (1e-65, 1e-61), ("too large", "relu"): (1e35, 1e39), ("xavier", "relu"): (1e-10, 1e-6),
    ("kaiming", "relu"): (0.12, 1.15), ("pytorch default", "relu"): (1e-22, 1e-18), ("orthogonal", "relu"): (0.35, 0.95),
    ("lsuv", "relu"): (0.45, 0.75),
    ("xavier", "selu"): (0.8, 1.1), ("kaiming", "selu"): (0.8, 1.1), ("lsuv", "selu"): (0.95, 1.05),
}


def test_sweep_instructor_numbers(runs):
    """Instructor notes: "layer-50 activation std, median of five seeds — tanh: too small ≈ 1e-55,
    too large ≈ 0.94, Xavier ≈ 0.08, Kaiming ≈ 0.65, default ≈ 1e-12, orthogonal ≈ 0.65, LSUV ≈ 0.63;
    ReLU: too small ≈ 1e-63, too large ≈ 1e37, Xavier ≈ 1e-8, Kaiming 0.15–0.9 (single seeds from
    0.05 up), default ≈ 1e-20, orthogonal 0.45–0.75, LSUV ≈ 0.6; SELU: Xavier = Kaiming ≈ 0.95,
    LSUV ≈ 1.00; the layer-1 gradient std for tanh + too large ≈ 1e15". The bands of SWEEP_NOTES
    hold every block's median (a factor 100 either side for the tiny and huge values). Measured: ReLU
    + Kaiming 0.161–0.909, orthogonal 0.458–0.739, the rest as quoted (float64: the variants agree to
    three digits; the seed set moves them); smallest ReLU + Kaiming seed 0.076; tanh + too large's
    gradient medians 0.9e15–1.5e15."""
    for run in runs:
        for label, block in _blocks(run):
            for (init, act), (low, high) in SWEEP_NOTES.items():
                median = np.median(_layer50(run, init, act)[block])
                assert low < median < high, (label, init, act, median)
            assert 1e14 < np.median(_layer1_grad(run, "too large", "tanh")[block]) < 1e16
        assert _layer50(run, "kaiming", "relu").min() > 0.05 * 0.8


# ----------------------------------------------------------------------------------------------
# Section 10: training


def test_shallow_control_trains_with_every_init(runs):
    """"In 3 layers all three inits train (every final loss is at least 0.3 below ln 3 ≈ 1.10)".
    Measured: worst final loss 0.713 (default), 0.677 (Xavier), 0.390 (Kaiming)."""
    for run in runs:
        for init in run.result.shallow.inits:
            assert np.all(run.result.shallow.final(init) < LN3 - 0.3), (run.label, init)


def test_deep_default_does_not_move(runs):
    """"at 10 layers the default-initialized nets do not move from ln 3 in 250 steps (within 0.01 on
    every seed)". Measured: within 8.3e-4."""
    for run in runs:
        assert np.all(np.abs(run.result.deep.final("pytorch default") - LN3) < 0.01), run.label


def test_deep_kaiming_trains_and_xavier_lands_in_between(runs):
    """"Kaiming's median run reaches a loss below 0.05 and Kaiming ends below 0.1 on most seeds,
    while Xavier's median lands in between (0.1–0.3); on most seeds Kaiming ends below Xavier."
    Measured: Kaiming median per block 0.022–0.028; Kaiming below 0.1 in 28 of 30 runs (seed 7 ends
    at 0.49, seed 11 at 0.13); Xavier medians 0.126–0.233; Kaiming below Xavier on the same seed in 29
    of 30 runs (seed 7 again)."""
    below_01 = kaiming_wins = total = 0
    for run in runs:
        deep = run.result.deep
        kaiming, xavier = deep.final("kaiming"), deep.final("xavier")
        for label, block in _blocks(run):
            assert np.median(kaiming[block]) < 0.05, label
            assert 0.1 < np.median(xavier[block]) < 0.3, label
        below_01 += int(np.sum(kaiming < 0.1))
        kaiming_wins += int(np.sum(kaiming < xavier))
        total += len(kaiming)
    assert below_01 >= 0.8 * total and kaiming_wins >= 0.8 * total, (below_01, kaiming_wins, total)


# ----------------------------------------------------------------------------------------------
# Section 11: the explorer's instructor answers (computed as the explorer computes them)


def test_explorer_answers_width_and_spread(runs):
    """Instructor notes: "ReLU + Kaiming, layer-50 activation std over 5 seeds spans two decades or
    more at width 8 (a narrow net can even die: every unit of a layer off for every input, std
    exactly 0) and about one decade at width 64 (0.7 to 1.5)". Measured per block: width 8 2.5,
    3.8 decades and one block with a dead network; width 64 0.93–1.22 decades."""
    for run in runs:
        for label, block in _blocks(run):
            narrow = run.result.explorer["kaiming", "relu", 8].act_std[block, -1]
            wide = run.result.explorer["kaiming", "relu", 64].act_std[block, -1]
            assert narrow.min() == 0 or math.log10(narrow.max() / narrow.min()) > 2, label
            assert 0.7 < math.log10(wide.max() / wide.min()) < 1.5, label


def test_explorer_answers_tanh_gradients(runs):
    """Instructor notes: "Xavier (gain 1) keeps tanh's gradients closest to 1 (layer-1 gradient std
    0.1–0.3, median of five), paying with activations that fade (layer 50: median 0.08, single
    seeds 0.04–0.16); 5/3 multiplies the gradient by about 100 (Kaiming's and orthogonal's medians
    between 50 and 250)." Measured per block: Xavier 0.144–0.164 and 0.077–0.091 (seeds
    0.054–0.130); Kaiming 93–119, orthogonal 85–98."""
    for run in runs:
        e = run.result.explorer
        xavier = e["xavier", "tanh", 64]
        assert np.all((xavier.act_std[:, -1] > 0.04) & (xavier.act_std[:, -1] < 0.16)), run.label
        for label, block in _blocks(run):
            g = {i: np.median(e[i, "tanh", 64].grad_std[block, 0]) for i in lab.INITS}
            assert min(g, key=lambda i: abs(math.log10(g[i]))) == "xavier", label
            assert 0.1 < g["xavier"] < 0.3 and 0.06 < np.median(xavier.act_std[block, -1]) < 0.11, label
            assert 50 < g["kaiming"] < 250 and 50 < g["orthogonal"] < 250, label


def _crossing(stds: np.ndarray, level: float = 1e10) -> int:
    """The first layer (1-based) whose value passes ``level``; len + 1 if none does."""
    above = stds > level
    return int(above.argmax()) + 1 if above.any() else len(stds) + 1


def test_explorer_answers_too_large_depth_to_1e10(runs):
    """Instructor notes: "the mean-field estimate 20/log₁₀(n/2) says the std passes 10¹⁰ after 13
    layers at width 64, and the median does so at layer 14 on every set of five seeds. At width 8
    the estimate says 33, but the median passes late, at layer 45 or later, or not within 50
    layers; single seeds anywhere from layer 36 on, and some never (one network in our runs dies).
    Hanin and Rolnick's drift −5/(2n) per layer in the log-variance moves the estimate to about 43."
    Measured: width 64 median crossings 14 in every block; width 8 medians 46, 49, 49, single seeds
    36–49 and 5 of 15 native seeds never."""
    assert round(20 / math.log10(64 / 2)) == 13 and round(20 / math.log10(8 / 2)) == 33
    assert round(20 * math.log(10) / (math.log(8 / 2) - 5 / (2 * 8))) == 43
    never = 0
    for run in runs:
        wide, narrow = run.result.explorer["too large", "relu", 64], run.result.explorer["too large", "relu", 8]
        for label, block in _blocks(run):
            assert _crossing(np.median(wide.act_std[block], axis=0)) == 14, label
            assert _crossing(np.median(narrow.act_std[block], axis=0)) >= 43, label
        per_seed = [_crossing(s) for s in narrow.act_std]
        assert min(per_seed) >= 30, (run.label, per_seed)
        never += sum(c > 50 for c in per_seed)
    assert never >= 2


# ----------------------------------------------------------------------------------------------
# Inline questions' instructor answers (deterministic)


def test_xavier_compromise_factors():
    """fan_in = 3·fan_out: forward 1.5, backward 0.5, product 0.75 (closed form)."""
    fan_out = 10
    fan_in = 3 * fan_out
    forward, backward = fan_in * 2 / (fan_in + fan_out), fan_out * 2 / (fan_in + fan_out)
    assert math.isclose(forward, 1.5) and math.isclose(backward, 0.5) and math.isclose(forward * backward, 0.75)


@pytest.mark.parametrize("seed", range(5))
def test_raw_qr_trace_statistics(seed):
    """"The raw QR's traces average about −3.4 with variance about 0.6" (float64 QR of fixed draws)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(500, 32, 32, generator=gen, dtype=torch.float64))
    traces = torch.diagonal(q, dim1=-2, dim2=-1).sum(-1)
    assert abs(traces.mean().item() + 3.4) < 0.2 and abs(traces.var().item() - 0.6) < 0.15


@pytest.mark.parametrize("seed", range(5))
def test_keras_bound_and_pytorch_largest_normal(seed):
    """"Keras's weights never exceed 2/0.8796 ≈ 2.27 standard deviations; among a million normal
    draws the largest lies between 4.5 and 6" (fixed draws)."""
    assert abs(2 / 0.87962566103423978 - 2.27) < 0.005
    z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert 4.5 < z.abs().max().item() < 6


# ----------------------------------------------------------------------------------------------
# Second edition: Section 5's biases and telescoping, Section 6's trunc_normal_, Section 7's raw QR,
# Section 8's uneven widths, Section 10's loss at init and statistics during training


def test_default_biases_hold_a_fixed_point_while_the_input_dependent_part_vanishes(runs):
    """"With the biases the activations settle near the fixed point's std (0.023 at width 256; within
    25 % from layer 5 on), while their input-dependent part shrinks about sixfold in variance per
    layer, just as the whole signal does without biases: after 20 layers the network gives every
    input the same output, up to a part in 10⁶." Measured: 0.86–1.11 of the fixed point; per-seed
    median factor 0.159–0.171; input-dependent/all at layer 20 at most 5.1e-7; bias-free std at
    layer 20 at most 1.5e-8."""
    fixed = math.sqrt(2 / (5 * 256) * (0.5 - 0.5 / math.pi))
    assert abs(fixed - 0.0231) < 5e-5
    for run in runs:
        bp = run.result.biases
        ratio = bp.total[:, 4:] / fixed
        assert np.all((ratio > 0.75) & (ratio < 1.25)), (run.label, ratio.min(), ratio.max())
        factor = np.median((bp.across[:, 5:] / bp.across[:, 4:-1]) ** 2, axis=1)
        assert np.all((factor > 1 / 8) & (factor < 1 / 4.5)), (run.label, factor)
        assert np.all(bp.across[:, -1] / bp.total[:, -1] < 1e-6), run.label
        assert np.all(bp.total_zero_bias[:, -1] < 1e-7), run.label


def test_the_depth_scale_and_the_telescoping_factor():
    """"χ = 1/3 · 1/2 = 1/6 ... 1/ln 6 ≈ 0.56 layers"; "Π n_l/n_{l−1} = n_L/n_1 ... √(16/256) = 1/4"
    (closed forms)."""
    assert abs(1 / math.log(6) - 0.56) < 0.005
    widths = lab.UNEVEN_WIDTHS
    assert math.isclose(math.prod(widths[i] / widths[i - 1] for i in range(2, len(widths))), widths[-1] / widths[1])
    assert math.isclose(math.sqrt(widths[-1] / widths[1]), 0.25)
    _, grad = stabletrain.predict_layer_stds(widths, lab.kaiming_weight_vars(widths), "relu")
    assert np.allclose(grad, [0.25, 0.5, math.sqrt(1 / 32), math.sqrt(1 / 8), 1.0])


def test_uneven_widths_match_the_prediction(runs):
    """"The median of five seeds lands within 20 % of the prediction at every layer, forward and
    backward, and the gradient at layer 1 is a quarter of the output's". Measured per block:
    0.88–1.05."""
    pred_act, pred_grad = stabletrain.predict_layer_stds(lab.UNEVEN_WIDTHS, lab.kaiming_weight_vars(lab.UNEVEN_WIDTHS),
                                                         "relu")
    assert np.allclose(pred_act, math.sqrt(2 * (0.5 - 0.5 / math.pi)))  # instructor note: 0.826 everywhere
    for run in runs:
        u = run.result.uneven
        for label, block in _blocks(run):
            for measured, predicted in ((u.act_std, pred_act), (u.grad_std, pred_grad)):
                ratio = np.median(measured[block], axis=0) / predicted
                assert np.all(np.abs(ratio - 1) < 0.2), (label, ratio)


@pytest.mark.parametrize("seed", range(5))
def test_trunc_normal_cuts_at_absolute_values_without_correction(seed):
    """"With std=0.02 ... largest weight about 5 std among a million. With std=1 ... std 0.88, not 1";
    instructor notes: 4.7–5.1 std and 0.879–0.880. torch 2.13's trunc_normal_ on fixed draws
    (measured 4.76–5.01 and 0.8787–0.8799 on seeds 0–2)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=0.02, generator=gen)
    assert 4.5 < w.abs().max().item() / 0.02 < 5.5
    w = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=1.0, generator=gen)
    assert 0.875 < w.std().item() < 0.885 and w.abs().max().item() <= 2.0


@pytest.mark.parametrize("seed", range(5))
def test_raw_qr_first_entry_mean(seed):
    """"E[Q₁₁] = −E|z|/√32 ≈ −0.14 (the cell prints about −0.14)" (float64 QR of fixed draws)."""
    assert abs(-math.sqrt(2 / math.pi) / math.sqrt(32) + 0.141) < 0.001
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(500, 32, 32, generator=gen, dtype=torch.float64))
    assert abs(q[:, 0, 0].mean().item() + 0.14) < 0.02


def test_loss_at_init(runs):
    """"the default nets sit exactly at ln 3 — for the wrong reason ... while Kaiming's logits have a
    std of order one, and their first loss depends on the draw"; instructor notes: "the default
    within 3e-5 of ln 3 on every seed; Xavier 1.097–1.100; Kaiming from 1.09 to 1.48". Measured:
    default within 1.2e-5, Kaiming 1.091–1.484."""
    for run in runs:
        deep = run.result.deep
        first = {name: deep.losses[deep.inits.index(name), :, 0] for name in deep.inits}
        assert np.all(np.abs(first["pytorch default"] - LN3) < 3e-5), run.label
        assert np.all((first["xavier"] > 1.095) & (first["xavier"] < 1.102)), run.label
        assert np.all((first["kaiming"] > 1.05) & (first["kaiming"] < 1.6)), run.label
    native = runs[0].result.deep
    assert np.ptp(native.losses[native.inits.index("kaiming"), :, 0]) > 0.2  # "depends on the draw"


def test_init_output_layer_makes_the_first_loss_ln_3():
    """"After init_output_layer_ the first loss is ln 3 to the digits the cell prints" (zero output
    weights give every input the logits ln p; the spirals are balanced: deterministic)."""
    from torch import nn

    from stabletrain.data import make_spirals

    x, y = make_spirals(200, classes=3, seed=0)
    torch.manual_seed(0)
    model = stabletrain.init_output_layer_(stabletrain.init_model_(nn.Sequential(nn.Linear(2, 32), nn.ReLU(),
                                                                                 nn.Linear(32, 3)), "relu"), y)
    with torch.no_grad():
        assert abs(nn.functional.cross_entropy(model(x), y).item() - LN3) < 1e-6


def test_statistics_during_training(runs):
    """"its layer-10 outputs start three to four orders of magnitude below Kaiming's and creep up
    towards 10⁻² — but its layers move by less than a fifth of the 10⁻³ rule of thumb at every step
    after the first ten ... Kaiming's layers move fastest in the first steps, the deeper ones most
    (medians of 10⁻⁴ to 10⁻² over the first ten steps), and several times less by step 250; their
    outputs grow". Measured over the 30 runs: default layer-10 std 2e-5–1.3e-4 at the first step,
    5e-3–3.5e-2 at the last; default ratio after step 10 at most 1.3e-4; Kaiming first-step std
    0.10–1.2 (medians of five ≥ 770× the default's), last 2.75–10.7; Kaiming first-ten medians 2.9e-4
    (layer 1) to 3.9e-3 (layer 10), final medians 6e-5–5.3e-4."""
    for run in runs:
        deep = run.result.deep
        d, k = deep.inits.index("pytorch default"), deep.inits.index("kaiming")
        assert np.all(deep.out_std[d, :, -1, 9] > 1e-3) and np.all(deep.out_std[d, :, -1, 9] < 0.1), run.label
        assert deep.update_ratio[d, :, 10:].max() < 2e-4, run.label
        assert np.all(deep.out_std[k, :, -1, 9] > 2 * deep.out_std[k, :, 0, 9]), run.label  # "their outputs grow"
        for label, block in _blocks(run):
            gap = np.median(deep.out_std[k, block, 0, 9]) / np.median(deep.out_std[d, block, 0, 9])
            assert 500 < gap < 30_000, (label, gap)  # three to four orders of magnitude
            early = np.median(deep.update_ratio[k, block, :10], axis=(0, 1))[[0, 4, 9]]
            late = np.median(deep.update_ratio[k, block, -1], axis=0)[[0, 4, 9]]
            assert np.all((early > 1e-4) & (early < 1e-2)) and early[2] > early[0], (label, early)
            assert np.all(early > 2.5 * late), (label, early, late)
