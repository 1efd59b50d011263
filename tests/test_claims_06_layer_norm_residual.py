"""Every quantitative sentence of lesson 06's prose, checked on every run of the claims variants.

Each experiment runs under ``claims_support.runs``: native arithmetic on the lesson's seeds 0–4 and
the held-back seeds 5–14, the avx2 and default CPU kernels on seeds 0–4, and a 1e-6 jitter of the
initial weights on seeds 0–4 (docs/LESSON_STANDARD.md §4). Every claim is asserted on every seed of
every run (or on every run's median, where the sentence is about a median), and each docstring
says what was measured over all runs, so the margin is visible.

The training runs (SGD with momentum 0.9 at a large learning rate) are chaotic: the same seed can
end several times higher depending on the last bit of a matrix product (the reference's seed 0:
0.09 natively, 0.36 with the default kernels), so their sentences are about medians, orderings and
counts, not single losses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import claims_support as claims
from stabletrain.lessons import residual_lab as lab
from stabletrain.residual import capstone_config, residual_stream_variance

# one worker computes this lesson's experiments while the other runs other tests (make test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("claims-06")

C = lab.CapstoneConfig
LN3 = math.log(3)

#: Section 7's placement comparison: Kaiming, residual, layer norm and no clipping (so that the
#: capstone's reference answer is not printed in the lesson)
K_LN = dict(init="kaiming", residual=True, norm="layer")
REFERENCE = C(**capstone_config())

#: every configuration the lesson trains in Sections 5, 7 and 9
CONFIGS = {
    "plain": C(init="default"),
    "residual": C(init="default", residual=True),
    "residual_clipped": C(init="default", residual=True, clip=1.0),
    "pre": C(**K_LN),
    "post": C(**K_LN, placement="post"),
    "post_gpt2": C(**K_LN, placement="post", scaling="gpt2"),
    "post_small_lr": (C(**K_LN, placement="post"), {"lr": 0.01}),
    "post_gpt2_small_lr": (C(**K_LN, placement="post", scaling="gpt2"), {"lr": 0.01}),
    "kaiming_residual": C(init="kaiming", residual=True),
    "kaiming_layer_norm_plain": C(init="kaiming", norm="layer"),
    "reference": REFERENCE,
}
#: the configurations Section 7 trains (the lr-0.01 runs are the same configurations: the capstone
#: trains whatever dict it gets at its own learning rate)
SECTION_7 = ("pre", "post", "post_gpt2")

#: every (depth, placement, scaling[, final norm / skip connections only]) of Sections 6 and 7
STREAMS = ((32, "none", "none"), (32, "pre", "none"), (32, "pre", "gpt2"), (32, "post", "none"),
           (12, "pre", "none", "final"), (12, "post", "none", "final"), (48, "pre", "none", "final"),
           (48, "post", "none", "final"), (12, "pre", "none", "skip"), (12, "post", "none", "skip"),
           (48, "pre", "none", "skip"), (48, "post", "none", "skip"))


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


# ---------------------------------------------------------------------------------------------- section 4b


def test_the_norm_family_reduces_to_each_other():
    """"one group is layer norm over (C, L), C groups are instance norm"; RMS norm is
    x / sqrt(mean(x^2) + eps). Deterministic facts (float64 on fixed inputs, torch's modules): no
    variants."""
    import torch

    x = torch.randn(8, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    ln = (x - x.mean(dim=(1, 2), keepdim=True)) / torch.sqrt(x.var(dim=(1, 2), keepdim=True, correction=0) + 1e-5)
    assert torch.allclose(torch.nn.GroupNorm(1, 6, affine=False, dtype=torch.float64)(x), ln, atol=1e-12)
    assert torch.allclose(torch.nn.GroupNorm(6, 6, affine=False, dtype=torch.float64)(x),
                          torch.nn.InstanceNorm1d(6)(x), atol=1e-12)
    rms = torch.nn.RMSNorm(5, eps=1e-6, elementwise_affine=False, dtype=torch.float64)(x)
    assert torch.allclose(rms, x / torch.sqrt(x.square().mean(dim=-1, keepdim=True) + 1e-6), atol=1e-12)
    for name in lab.NORM_GROUPS:  # the figure shades a group of the size the table says
        mask = lab.norm_group_mask(name, 4, 6, 3)
        assert mask.sum() == {"batch norm": 4 * 3, "layer norm": 6 * 3, "instance norm": 3,
                              "group norm (2 groups)": 3 * 3}[name]


def test_layer_norm_is_not_per_feature_standardization():
    """"The two differ by about one standard deviation per entry (RMS between 0.8 and 1.3 on every
    seed) and correlate only weakly (between 0.2 and 0.7)". No weights, no training (nothing to
    jitter): native seeds 0–14, avx2 and default kernels on 0–4. Measured: RMS 0.90–1.18,
    correlation 0.30–0.60."""
    target = "stabletrain.lessons.residual_lab:layer_norm_against_standardization"
    lesson, held = claims.LESSON_SEEDS, claims.HELD_BACK_SEEDS
    results = [claims.compute(target, "native", seeds=lesson + held)]
    results += [claims.compute(target, env, seeds=lesson) for env in ("avx2", "default")]
    for res in results:
        assert np.all((res["rms"] > 0.8) & (res["rms"] < 1.3)), res["rms"]
        assert np.all((res["correlation"] > 0.2) & (res["correlation"] < 0.7)), res["correlation"]


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
        assert np.all(run.result["residual_clipped"].clipped.mean(axis=1) > 0.9), run.label  # "more than 90 %"


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


def test_zero_gamma_keeps_v0_except_after_a_post_norm():
    """"A zero-initialised γ silences every branch: without a norm and with pre-norm the stream keeps
    v_l = v_0; post-norm still normalizes the sum, so v_l = 1 for l >= 1 whatever v_0" (the notebook's
    cell with v_0 = 4). Deterministic (float64, a branch multiplied by exactly 0, fixed inputs): no
    variants. Measured: none and pre 3.99 (the input's sample variance, unchanged bit for bit),
    post 1.000 (layer norm's eps moves it by 3e-6)."""
    import torch

    x = 2 * torch.randn(256, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.randn(8, 128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * math.sqrt(2 / 128)
    ln = lambda z: torch.nn.functional.layer_norm(z, z.shape[-1:])  # noqa: E731
    for placement in ("none", "pre", "post"):
        h = x
        for l in range(8):
            h = h + 0.0 * (torch.relu(ln(h) if placement == "pre" else h) @ w[l])
            h = ln(h) if placement == "post" else h
        predicted = residual_stream_variance(8, input_variance=4.0, placement=placement, scaling="zero_gamma")
        if placement == "post":
            assert abs(float(h.var(correction=0)) - 1) < 1e-4 and predicted[-1] == 1.0
        else:
            assert torch.equal(h, x) and abs(float(x.var(correction=0)) - 4) < 0.1 and predicted[-1] == 4.0
        assert predicted[0] == 4.0


# ---------------------------------------------------------------------------------------------- section 7


@pytest.fixture(scope="module")
def gains() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.residual_lab:post_norm_block_gains")


@pytest.fixture(scope="module")
def similarities() -> list[claims.Run]:
    configs = {"pre": C(**K_LN), "post": C(**K_LN, placement="post"),
               "post_gpt2": C(**K_LN, placement="post", scaling="gpt2"), "plain": C(init="kaiming", norm="layer")}
    return claims.runs("stabletrain.lessons.residual_lab:input_similarities", configs=configs)


def test_one_post_norm_block_keeps_the_gradient_level_on_average(gains):
    """Answer 4 and the reading of Section 7: "branch 1.00, skip + branch 1.41, norm 0.71, whole block
    1.00"; "standard deviation 1.41". Measured over 30 runs: branch 0.99–1.02, skip + branch
    1.40–1.43, norm 0.70–0.73, block 0.98–1.03, std of the sum 1.39–1.46; medians of a run within
    0.014 of the quoted value (checked to 0.02), single seeds within 0.04 (checked to 0.06)."""
    for run in gains:
        g = run.result
        for name, value in (("branch", 1.0), ("skip + branch", math.sqrt(2)), ("norm", 1 / math.sqrt(2)),
                            ("block", 1.0), ("sum std", math.sqrt(2))):
            assert abs(np.median(g[name]) - value) < 0.02, (run.label, name, g[name])
            assert np.all(np.abs(g[name] - value) < 0.06), (run.label, name, g[name])


def test_gradient_ratios_at_depth_follow_the_derivations(streams):
    """"Pre-norm's ratio follows sqrt((L+1)/2) (within 30 % on every seed, at 12 and at 48 blocks);
    with the branches detached its gradient reaches the input exactly unchanged"; "Post-norm's ratio
    stays near 1 (between 0.3 and 3 at 48 blocks)"; "with the branches detached, 48 norms leave
    between 10^-8 and 10^-6 of the gradient"; "post-norm's gradients near the output are about
    sqrt((L+1)/2) times pre-norm's" (checked within 25 %). Measured over 30 runs: pre-norm /
    prediction 0.90–1.14 (12 blocks) and 0.90–1.17 (48); skip-only pre-norm 1 to 1e-6; post-norm
    0.48–1.80 at 48 blocks, 0.90–1.31 at 12; skip-only post-norm 4.0e-8–1.24e-7 at 48 blocks
    (prediction 6e-8), 0.014–0.022 at 12; last block post/pre over the prediction 0.86–1.14."""
    for run in streams:
        st = run.result
        for depth in (12, 48):
            predicted = math.sqrt((depth + 1) / 2)
            r = _ratio(st[depth, "pre", "none", "final"]["grad_norms"])
            assert np.all(np.abs(r / predicted - 1) < 0.3), (run.label, depth, r)
            skip = st[depth, "pre", "none", "skip"]["stream_grads"]
            assert np.allclose(skip[:, 0], skip[:, -1], rtol=1e-4), run.label
            last = st[depth, "post", "none", "final"]["grad_norms"][:, -1] / st[depth, "pre", "none", "final"]["grad_norms"][:, -1]
            assert np.all(np.abs(last / predicted - 1) < 0.25), (run.label, depth, last)
        post = _ratio(st[48, "post", "none", "final"]["grad_norms"])
        assert np.all((post > 0.3) & (post < 3)), (run.label, post)
        skip = st[48, "post", "none", "skip"]["stream_grads"]
        assert np.all((skip[:, 0] / skip[:, -1] > 1e-8) & (skip[:, 0] / skip[:, -1] < 1e-6)), run.label
    assert 2 ** (-24) == pytest.approx(6e-8, rel=0.01)  # the prediction quoted, arithmetic


def test_post_norm_makes_the_inputs_look_alike(similarities):
    """"After the embedding the inputs are far apart (about 0.2). At the top of post-norm — and of the
    network without skip connections — they are almost one point (above 0.85 on every seed).
    Pre-norm keeps them further apart (median over the seeds below 0.85; on every seed at least 2.5
    times as far from 1 as post-norm), and so does post-norm with 1/sqrt(L) (below 0.75)". Measured
    over 30 runs: embedding 0.21–0.25; post-norm 0.90–1.00; no skip 0.99–1.00; pre-norm 0.60–0.94,
    run medians 0.67–0.75; (1 − pre) / (1 − post) at least 3.5; post-norm 1/sqrt(L) 0.30–0.66."""
    for run in similarities:
        sim = run.result
        assert np.all((sim["pre"]["embedding"] > 0.15) & (sim["pre"]["embedding"] < 0.3)), run.label
        assert np.all(sim["post"]["top"] > 0.85) and np.all(sim["plain"]["top"] > 0.85), run.label
        pre, post = sim["pre"]["top"], sim["post"]["top"]
        assert np.median(pre) < 0.85 and np.all((1 - pre) > 2.5 * (1 - post)), (run.label, pre, post)
        assert np.all(sim["post_gpt2"]["top"] < 0.75), (run.label, sim["post_gpt2"]["top"])


def _jumps(losses: np.ndarray, after: int = 30) -> np.ndarray:
    """Per seed, the largest rise of the loss above its lowest value so far, after step ``after``
    (the notebook's print)."""
    return np.max(losses[:, after:] - np.minimum.accumulate(losses, axis=1)[:, after - 1:-1], axis=1)


def test_pre_norm_trains_and_post_norm_needs_both_fixes(training):
    """Section 7 trains without clipping. "Pre-norm trains (median final loss below 0.15). Post-norm
    stays at ln 3 on every seed (above 0.9) ... With alpha = 1/sqrt(L) ... at this learning rate
    post-norm still does not learn (median above 0.75) ... At a five times smaller learning rate
    post-norm with 1/sqrt(L) learns (median below 0.35 ...), while post-norm with alpha = 1 still
    does not (median above 0.9)"; "post-norm's block-1 gradient at step 0 is anywhere from a
    hundredth to several times block 50's". Measured over 30 runs: pre-norm medians 0.037–0.121;
    post-norm every seed 1.097–1.099; post-norm 1/sqrt(L) medians 0.960–1.108; at lr 0.01 post-norm
    1/sqrt(L) medians 0.102–0.269, post-norm 1.098–1.099; step-0 ratio 0.013–7.5 over all seed-runs
    (a property of the initialization, the same as with clipping)."""
    for run in training:
        r = run.result
        assert np.median(r["pre"].final_losses) < 0.15, (run.label, r["pre"].final_losses)
        assert np.all(r["post"].final_losses > 0.9), (run.label, r["post"].final_losses)
        assert np.median(r["post_gpt2"].final_losses) > 0.75, (run.label, r["post_gpt2"].final_losses)
        assert np.median(r["post_gpt2_small_lr"].final_losses) < 0.35, (run.label, r["post_gpt2_small_lr"].final_losses)
        assert np.median(r["post_small_lr"].final_losses) > 0.9, (run.label, r["post_small_lr"].final_losses)
        ratio = _ratio(r["post"].layer_grad_norms)
        assert ratio.min() < 0.05 and ratio.max() / ratio.min() > 10, (run.label, ratio)


def test_pre_norm_without_clipping_is_spiky(training):
    """"on most seeds pre-norm's loss jumps back up by more than 0.2 at least once after it has
    fallen ..., and a seed hit by a jump near the end finishes far above the others (several times
    the median seed's loss)"; "its norm is about 1.3 on a typical step, but on most seeds some
    step's norm is above 6, more than four times that"; capstone notes: the gradient norm's median
    is "1.1–1.4 for this run".
    Measured over the 30 seed-runs of the native session and of a session with
    ATEN_CPU_CAPABILITY=default exported: jumps 0.18–2.38, 29 and 28 of 30 above 0.2 (checked: at
    least 20); 5 seed-runs end above 0.35 in each session (0.45–0.93); a run's worst seed at
    1.3–14 times its median (3.9–14 on 7 of the 8 runs; the default session's jitter run left no
    seed behind), 6 seed-runs in each session above 3 times their run's median (checked: at least
    one); median gradient norm per run 1.17–1.37 (checked 1.0–1.6), over all steps and seeds of a
    run 1.17–1.33 in both sessions (checked 1.05–1.6 for "about 1.3"); largest gradient norm per
    seed-run 5.82–14.44, above 6 on 28 of 30 natively and 30 of 30 in the default session (checked:
    at least 20 of 30)."""
    jumps, far_behind, spikes = [], 0, []
    for run in training:
        res = run.result["pre"]
        assert np.all(np.isfinite(res.final_losses)) and res.clipped.sum() == 0, run.label
        jumps.append(_jumps(res.losses))
        far_behind += int(np.sum(res.final_losses > 3 * np.median(res.final_losses)))
        assert 1.0 < np.median(lab.summarize(res)["grad_norm"]) < 1.6, run.label
        assert 1.05 < np.nanmedian(res.grad_norms) < 1.6, (run.label, np.nanmedian(res.grad_norms))
        spikes.append(np.nanmax(res.grad_norms, axis=1))
    jumps, spikes = np.concatenate(jumps), np.concatenate(spikes)
    assert np.sum(jumps > 0.2) >= 20, jumps
    assert far_behind >= 1, far_behind
    assert np.sum(spikes > 6) >= 20, spikes


def test_section_7_does_not_hand_over_the_capstone(training):
    """Section 7 compares the placements without printing the capstone's answer, and none of the
    configurations it trains passes the capstone's rule. Checked: no configuration it trains is the
    reference or another configuration the capstone rule's benchmark calls taught (zero gamma and
    Xavier with zero gamma, clipped at 5; 1/sqrt(L) clipped at 5), and none clips; the visible and
    the hidden rule reject every one of them on every five-seed group of every run. Pre-norm
    without clipping trains, but its gradient spikes unclipped (the rule's third condition: no step
    above 6 on any seed): 4–5 of the 5 seeds of every group spike (5, 5, 4, 5, 5, 4 natively; 5 on
    every group with ATEN_CPU_CAPABILITY=default exported; checked: at least 3), and the hidden
    rule names the spike. Before that condition five seeds could not decide it: the visible rule
    rejected it on 3 of our 6 groups and the hidden rule passed all 6 (benchmarks/capstone_rule_06.py:
    P(visible passes, grade fails) 9.8 %, now 0)."""
    from stabletrain.exercises.layernorm import CAPSTONE_SPIKE, capstone_verdict

    taught = [REFERENCE, C(**{**capstone_config(), "scaling": "zero_gamma"}),
              C(**{**capstone_config(), "init": "xavier", "scaling": "zero_gamma"}),
              C(**{**capstone_config(), "scaling": "gpt2"})]
    for name in SECTION_7:
        assert CONFIGS[name] not in taught and CONFIGS[name].clip is None, name
    for run in training:
        for name in SECTION_7:
            summary = lab.summarize(run.result[name])
            for start in range(0, len(run.seeds), 5):
                part = {k: v[start:start + 5] for k, v in summary.items()}
                for level in ("visible", "hidden"):
                    assert capstone_verdict(part, level) is not None, (run.label, name, level, part)
                if name == "pre":  # rejected for its spikes, with margin: most seeds of every group spike
                    spiked = np.sum(np.array(part["max_step_norm"]) > CAPSTONE_SPIKE)
                    assert spiked >= 3, (run.label, part["max_step_norm"])
                    assert "spike" in capstone_verdict(part, "hidden"), (run.label, part)


# ---------------------------------------------------------------------------------------------- section 9


def test_capstone_candidates_fail_as_described(training):
    """"The defaults ... stay at ln 3"; Kaiming with skip connections and no norm: "the loss overflows
    after one step on every seed"; Kaiming with layer norm, no skip connections: "every final loss
    above 1"; Section 5's network with clipping at 1: "the clip acts on almost every step"; and the
    grader's visible and hidden rules reject all four on every five-seed group. Measured over 30
    runs: defaults 1.099 on every seed; overflow at step 1 on every seed; no skip connections 1.099;
    Section 5's clip on 96–100 % of the steps."""
    from stabletrain.exercises.layernorm import capstone_verdict

    for run in training:
        r = run.result
        assert np.all(np.abs(r["plain"].final_losses - LN3) < 0.01), run.label
        exploded = r["kaiming_residual"]
        assert np.all(np.isinf(exploded.final_losses)), run.label
        assert all(int(np.argmax(~np.isfinite(row))) <= 1 for row in exploded.losses), run.label
        assert np.all(r["kaiming_layer_norm_plain"].final_losses > 1), run.label
        assert np.all(r["residual_clipped"].clipped.mean(axis=1) > 0.95), run.label
        for name in ("plain", "kaiming_residual", "kaiming_layer_norm_plain", "residual_clipped"):
            for start in range(0, len(run.seeds), 5):
                part = {k: v[start:start + 5] for k, v in lab.summarize(r[name]).items()}
                assert capstone_verdict(part, "visible") is not None, (run.label, name)
                assert capstone_verdict(part, "hidden") is not None, (run.label, name)


def test_capstone_reference_passes_with_rare_clipping(training):
    """Instructor notes: the reference answer passes the visible rule on seeds 0–4 and the grader's
    rule on every five-seed group of every run (the spike condition by construction: with clip 5 the
    largest step applied is 5.0 on every seed-run, against the rule's 6), "its clip acts on 0–15 %
    of the steps" (the benchmark's 160 seed-runs: 0–15 %), "seed 0: 0.09 natively, 0.36 with
    PyTorch's default kernels". Measured over 30 runs: last-10 loss 0.030–0.362 (0.362: seed 0 with
    the default kernels; natively at most 0.155), clipped 2–8 % of the steps (checked 1–12 %)."""
    from stabletrain.exercises.layernorm import capstone_verdict

    for run in training:
        res = run.result["reference"]
        summary = lab.summarize(res)
        for start in range(0, len(run.seeds), 5):
            part = {k: v[start:start + 5] for k, v in summary.items()}
            assert capstone_verdict(part, "visible") is None, (run.label, part)
            assert capstone_verdict(part, "hidden") is None, (run.label, part)
        assert np.median(summary["last10"]) < 0.15 and np.max(summary["last10"]) < 0.5, (run.label, summary["last10"])
        clipped = np.array(summary["clipped"])
        assert np.all((clipped >= 0.01) & (clipped <= 0.12)), (run.label, clipped)
        assert max(summary["max_step_norm"]) <= 5.0, (run.label, summary["max_step_norm"])


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
