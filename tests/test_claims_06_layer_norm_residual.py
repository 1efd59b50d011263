"""Every quantitative sentence of lesson 06's prose, checked on every run of the claims variants.

Each experiment runs under ``claims_support.runs``: native arithmetic on the lesson's seeds 0–4 and
the held-back seeds 5–14, the avx2 and default CPU kernels on seeds 0–4, and a 1e-6 jitter of the
initial weights on seeds 0–4 (docs/LESSON_STANDARD.md §4). Every claim is asserted on every seed of
every run (or on every run's median, where the sentence is about a median), and each docstring
says what was measured over all runs, so the margin is visible.

The training runs (SGD with momentum at a large learning rate, clipping on almost every step) are
chaotic: the same seed ends anywhere between 0.03 and 0.4 depending on the last bit of a matrix
product, so their sentences are about medians, orderings and counts, not single losses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import claims_support as claims
from stabletrain.lessons import residual_lab as lab
from stabletrain.residual import capstone_config, residual_stream_variance

C = lab.CapstoneConfig
LN3 = math.log(3)

#: every configuration the lesson trains in Sections 5, 7 and 9
CONFIGS = {
    "plain": C(init="default"),
    "residual": C(init="default", residual=True),
    "residual_clipped": C(init="default", residual=True, clip=1.0),
    "pre": C(init="kaiming", residual=True, norm="layer", clip=1.0),
    "post": C(init="kaiming", residual=True, norm="layer", placement="post", clip=1.0),
    "kaiming_residual": C(init="kaiming", residual=True),
    "kaiming_layer_norm_plain": C(init="kaiming", norm="layer"),
    "reference": C(**capstone_config()),
    "reference_no_clip": C(**{**capstone_config(), "clip": None}),
}

#: every (depth, placement, scaling) of Sections 6 and 7
STREAMS = ((32, "none", "none"), (32, "pre", "none"), (32, "pre", "gpt2"), (32, "post", "none"),
           (12, "pre", "none"), (12, "post", "none"), (48, "pre", "none"), (48, "post", "none"))


@pytest.fixture(scope="module")
def training() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.residual_lab:train_many", configs=CONFIGS)


@pytest.fixture(scope="module")
def streams() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.residual_lab:streams_many", specs=STREAMS)


@pytest.fixture(scope="module")
def explorer_streams() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.residual_lab:precompute_streams")


@pytest.fixture(scope="module")
def batchmates() -> list[claims.Run]:
    """The batchmate experiment has no weights (it normalizes random draws), so there is nothing to
    jitter: it runs natively on seeds 0–14 and under the avx2 and default kernels on 0–4."""
    target = "stabletrain.lessons.residual_lab:batchmate_dependence"
    lesson, held = claims.LESSON_SEEDS, claims.HELD_BACK_SEEDS
    out = [claims.Run("native", lesson + held, claims.compute(target, "native", seeds=lesson + held))]
    out += [claims.Run(env, lesson, claims.compute(target, env, seeds=lesson)) for env in ("avx2", "default")]
    return out


def _ratio(grad_norms: np.ndarray) -> np.ndarray:
    return grad_norms[:, 0] / grad_norms[:, -1]


def _failed(final_losses: np.ndarray, threshold: float) -> int:
    return int(np.sum(~(np.isfinite(final_losses) & (final_losses < threshold))))


# ---------------------------------------------------------------------------------------------- section 4


def test_batch_norm_spread_falls_like_one_over_root_b(batchmates):
    """"the spread over batchmates drops by a factor between 2.5 and 6 from B = 4 to B = 64 (√16 = 4)
    on every seed"; "at B = 2 ... by 0.6 to 1 standard deviation"; "at B = 256 by less than 0.1";
    "layer norm's spread is exactly 0"; answer 1: "between 0.45 and 0.8 at B = 4".
    Measured over 25 seed-runs: factor 3.35–4.82; B = 2: 0.714–0.895 (at most 1: x̂ = ±1 there);
    B = 256: 0.067–0.080; gap at B = 4: 0.578–0.667."""
    for run in batchmates:
        sizes = list(run.result["batch_sizes"])
        spread = run.result["bn_spread"]
        ratio = spread[:, sizes.index(4)] / spread[:, sizes.index(64)]
        assert np.all((ratio > 2.5) & (ratio < 6)), (run.label, ratio)
        b2 = spread[:, sizes.index(2)]
        assert np.all((b2 > 0.6) & (b2 < 1)), (run.label, b2)
        assert np.all(spread[:, sizes.index(256)] < 0.1), run.label
        assert np.all(run.result["ln_spread"] == 0), run.label
        assert np.all(np.isnan(spread[:, sizes.index(1)])), run.label  # B = 1: undefined
        gap = run.result["bn_gap"][:, sizes.index(4)]
        assert np.all((gap > 0.45) & (gap < 0.8)), (run.label, gap)


# ---------------------------------------------------------------------------------------------- section 5


def test_plain_network_vanishes_and_stays_at_chance(training):
    """"the gradient of block 1 is more than 10^10 times smaller than that of block 50 on every seed";
    "its loss stays at ln 3 on every seed". Measured over 30 runs: ratio at most 1.4e-18; every final
    loss within 0.001 of ln 3."""
    for run in training:
        res = run.result["plain"]
        assert np.all(_ratio(res.layer_grad_norms) < 1e-10), run.label
        assert np.all(np.abs(res.final_losses - LN3) < 0.01), run.label


def test_residual_network_keeps_the_gradient_but_diverges_without_clipping(training):
    """"the gradient norms of the fifty blocks are within a factor of 30 of each other"; "SGD
    diverges within 25 steps on every seed". Measured over 30 runs: largest over smallest block
    gradient 2.1–18.1; divergence at steps 2–20."""
    for run in training:
        res = run.result["residual"]
        g = res.layer_grad_norms
        spread = g.max(axis=1) / g.min(axis=1)
        assert np.all(spread < 30), (run.label, spread)
        diverged_at = [int(np.argmax(~np.isfinite(row))) for row in res.losses]
        assert np.all(np.isinf(res.final_losses)) and max(diverged_at) < 25, (run.label, diverged_at)


def test_clipped_residual_network_trains_on_most_seeds(training):
    """"the residual network trains: its median final loss is below 0.4 and most seeds end below
    0.35, but ... a seed can be left behind (up to 2 of 5 in our runs)". Measured over the runs
    of the native session and of a session with ATEN_CPU_CAPABILITY=default exported: medians
    0.089–0.250; seed-runs ending above 0.35: 3 and 4 of 30 (0.39–0.85), at most 2 of any 5
    seeds; none above ln 3 on our CPUs (the issue saw 1.01 on one AVX-512 seed, so the prose says
    nothing about the worst seed)."""
    failed = 0
    for run in training:
        final = run.result["residual_clipped"].final_losses
        assert np.median(final) < 0.4, (run.label, final)
        failed += _failed(final, 0.35)
        for start in range(0, len(final), 5):
            assert _failed(final[start:start + 5], 0.35) <= 3, (run.label, final)
    assert failed <= 8, failed  # "most seeds": at least 22 of 30


# ---------------------------------------------------------------------------------------------- section 6


@pytest.mark.parametrize(("placement", "scaling"), [("pre", "none"), ("pre", "gpt2"), ("post", "none")])
def test_stream_variance_within_25_percent_of_the_prediction(streams, placement, scaling):
    """"pre-norm (predicted 33), pre-norm with 1/√L (predicted 2) and post-norm (predicted 1) land
    within 25 % of the prediction on every seed". Measured over 30 runs: pre-norm −10 % to +18 %;
    with 1/√L −4 % to +7 %; post-norm +0.003 % (the norm's eps)."""
    predicted = residual_stream_variance(32, placement=placement, scaling=scaling)[-1]
    for run in streams:
        final = run.result[32, placement, scaling]["variance"][:, -1]
        assert np.all(np.abs(final / predicted - 1) < 0.25), (run.label, final, predicted)


def test_stream_without_norm_grows_about_twofold_per_block(streams):
    """"about 10^10"; "the growth per block is between 1.8 and 2.3 on every seed"; explorer answer:
    "passes 10^6 between blocks 16 and 23". Measured over 30 runs: 1.3e9–3.6e10; growth
    1.925–2.138; first block past 10^6: 18–21 (predicted 20)."""
    for run in streams:
        v = run.result[32, "none", "none"]["variance"]
        growth = (v[:, -1] / v[:, 0]) ** (1 / 32)
        assert np.all((growth > 1.8) & (growth < 2.3)), (run.label, growth)
        assert np.all((v[:, -1] > 1e9) & (v[:, -1] < 1e11)), run.label
        first = [int(np.argmax(row > 1e6)) for row in v]
        assert all(16 <= l <= 23 for l in first), (run.label, first)


def test_pre_norm_first_blocks_get_larger_gradients(streams):
    """"pre-norm's first blocks get larger gradients than its last ones — 3 to 7 times at 32 blocks".
    Measured over 30 runs: 3.73–5.08."""
    for run in streams:
        r32 = _ratio(run.result[32, "pre", "none"]["grad_norms"])
        assert np.all((r32 > 3) & (r32 < 7)), (run.label, r32)


# ---------------------------------------------------------------------------------------------- section 7


def test_gradient_ratios_at_depth(streams):
    """"Pre-norm's first block gets 1.8 to 3.5 times the gradient of its last at 12 blocks and 3 to
    7 times at 48"; "Post-norm's ratio stays between 0.3 and 3". Measured over 30 runs: 12 blocks
    2.31–2.90; 48 blocks 4.46–5.76; post-norm at 48 blocks 0.48–1.80. The sentence "along the skip
    connections alone 2^(−47/2) ≈ 10^−7" is arithmetic (no variants)."""
    for run in streams:
        r12, r48 = _ratio(run.result[12, "pre", "none"]["grad_norms"]), _ratio(run.result[48, "pre", "none"]["grad_norms"])
        assert np.all((r12 > 1.8) & (r12 < 3.5)), (run.label, r12)
        assert np.all((r48 > 3) & (r48 < 7)), (run.label, r48)
        post = _ratio(run.result[48, "post", "none"]["grad_norms"])
        assert np.all((post > 0.3) & (post < 3)), (run.label, post)
    assert 2 ** (-47 / 2) < 1e-6


def test_pre_norm_trains_and_post_norm_does_not(training):
    """"pre-norm trains to a median final loss below 0.3; post-norm's median stays near ln 3 (above
    0.9), and on every seed post-norm ends above pre-norm". Measured over 30 runs natively and 30
    with the default kernels exported: pre-norm medians 0.099–0.222 (single seeds 0.034–0.368; 0.513 on one AVX-512 seed in the issue); post-norm
    medians 1.097–1.099 (single seeds 0.761–1.325); post-norm over pre-norm, seed by seed, at least
    2.99 times. "The same seed of pre-norm can end several times higher under another CPU's rounding":
    largest ratio over the four arithmetics of one seed 5.1 (seed 0: 0.067 to 0.345)."""
    for run in training:
        pre, post = run.result["pre"].final_losses, run.result["post"].final_losses
        assert np.median(pre) < 0.3, (run.label, pre)
        assert np.median(post) > 0.9, (run.label, post)
        assert np.all(post > 1.5 * pre), (run.label, pre, post)
    across = np.stack([run.result["pre"].final_losses[:5] for run in training])  # seeds 0-4, 4 arithmetics
    assert np.max(across.max(axis=0) / across.min(axis=0)) > 3, across  # "several times higher"


# ---------------------------------------------------------------------------------------------- section 9


def test_capstone_candidates_fail_as_described(training):
    """"The defaults ... stay at ln 3"; Kaiming with skip connections and no norm: "the loss overflows
    after one step on every seed"; Kaiming with layer norm, no skip connections: "every final loss
    above 1". Measured over 30 runs: 0 seeds below 0.35; every overflow at step 1; smallest final
    loss 1.095."""
    for run in training:
        assert run.result["plain"].passed(0.35) == 0, run.label
        exploded = run.result["kaiming_residual"]
        assert np.all(np.isinf(exploded.final_losses)), run.label
        assert all(int(np.argmax(~np.isfinite(row))) <= 1 for row in exploded.losses), run.label
        assert np.all(run.result["kaiming_layer_norm_plain"].final_losses > 1), run.label


def test_capstone_reference_passes_and_clipping_matters(training):
    """Instructor notes: "the reference answer reaches a median final loss of about 0.1 (below 0.2
    in every run); single seeds between 0.03 and 0.6"; "without the clipping some seeds diverge or end above 0.35 (12 of our 30
    seed-runs)"; "residual connections with clipping and the default initialization pass the grader
    on seeds 0–4". Measured over 30 runs: reference 0.039–0.315, medians 0.060–0.068 (with the default
    kernels exported for the session: 0.039–0.417, medians 0.063–0.124); without
    clipping 12 of 30 seed-runs at or above 0.35 (0.354 to 116), 1–7 per run (12 of 30 with the
    default kernels exported for the whole session, where the medians are 0.063–0.124); default init
    residual + clipping passes the rule (4 of 5 below 0.35) on seeds 0–4 in 4 of 4 runs natively,
    3 of 4 with the default kernels exported (the jitter run: 3 of 5). "The same seed can end several
    times higher under another CPU's kernels": seed 3, 0.063 natively and 0.315 with the default
    kernels (5.0 times)."""
    failed_without_clip, default_init_passes = 0, 0
    for run in training:
        ref = run.result["reference"].final_losses
        assert np.all((ref > 0.03) & (ref < 0.6)), (run.label, ref)
        assert np.median(ref) < 0.2, (run.label, ref)
        failed_without_clip += _failed(run.result["reference_no_clip"].final_losses, 0.35)
        lesson_seeds = run.result["residual_clipped"].final_losses[:5]  # seeds 0-4 in every run
        default_init_passes += int(np.sum(lesson_seeds < 0.35) >= 4)
    assert default_init_passes >= 3, default_init_passes
    assert 6 <= failed_without_clip <= 20, failed_without_clip
    across = np.stack([run.result["reference"].final_losses[:5] for run in training])
    assert np.max(across.max(axis=0) / across.min(axis=0)) > 3, across


# ---------------------------------------------------------------------------------------------- explorer, notes


def test_explorer_answers(explorer_streams):
    """Explorer answers: "below 3.5 at every depth: pre-norm with 1/√L, every placement with zero γ,
    post-norm, and no norm with 1/√L (predicted below e ≈ 2.72, medians up to 2.8)"; no norm, no
    scaling passes 10^6 "between blocks 16 and 23", "only the depths 32 and 64 get there";
    post-norm's spread between seeds "below 1.6 up to 4 blocks and above 2 from 16 blocks on";
    pre-norm's ratio "below 1.5 at 2 blocks" and "above 4 at 64". Measured over 30 runs (medians
    over each run's seeds): no norm with 1/√L 2.32–2.81, the others at most 2.08; first block past
    10^6 20–21; depth 16 peaks at 6.3e4; spread 1.18–1.28 (2 and 4 blocks), 2.87–8.5 (16–64);
    pre-norm 1.22 at 2 blocks, 5.6–6.8 at 64."""
    for run in explorer_streams:
        st = run.result
        final = {key: np.median(res["variance"][:, -1]) for key, res in st.items()}
        for depth in lab.EXPLORER_DEPTHS:
            for placement, scaling in [("pre", "gpt2"), ("post", "none"), ("pre", "zero_gamma"),
                                       ("post", "zero_gamma"), ("none", "zero_gamma"), ("none", "gpt2")]:
                assert final[depth, placement, scaling] < 3.5, (run.label, depth, placement, scaling)
        assert final[64, "pre", "none"] > 3.5 and final[2, "none", "none"] > 3.5, run.label
        for depth in (32, 64):
            first = int(np.argmax(np.median(st[depth, "none", "none"]["variance"], axis=0) > 1e6))
            assert 16 <= first <= 23, (run.label, first)
        assert np.all(np.median(st[16, "none", "none"]["variance"], axis=0) < 1e6), run.label

        def spread(depth):
            r = _ratio(st[depth, "post", "none"]["grad_norms"])
            return r.max() / r.min()

        assert spread(2) < 1.6 and spread(4) < 1.6, run.label
        assert all(spread(d) > 2 for d in (16, 32, 64)), run.label
        assert np.median(_ratio(st[2, "pre", "none"]["grad_norms"])) < 1.5, run.label
        assert np.median(_ratio(st[64, "pre", "none"]["grad_norms"])) > 4, run.label
