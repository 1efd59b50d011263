"""Every quantitative sentence of lesson 04, checked on every run the claims tests cover.

The lesson standard (docs/LESSON_STANDARD.md §4): a number in the prose — "on some seeds", "below 7
on every seed", "1–10 % of the steps" — is a claim about the experiment, and it must hold on any
machine. The experiment (65 RNNs trained as one batch by ``clipping_lab.run_experiment``) is
chaotic by design: at learning rate 0.1 without clipping, a rare spike decides whether a seed blows
up, and the last bit of one float32 product decides whether the spike comes. So every sentence about
it is checked on every run of ``claims_support.runs``: native kernels on seeds 0–14, and seeds 0–4
under ``ATEN_CPU_CAPABILITY=avx2``, ``=default`` and a 1e-6 jitter of the initial weights — 30
seed-runs per session. Each docstring quotes the sentence and says what was measured, over the
60 distinct seed-runs of three sessions on an AMD EPYC (2 cores): a plain one (native kernels
AVX-512; the avx2 variant rounds exactly like them there, so 25 distinct seed-runs), one with
``ATEN_CPU_CAPABILITY=default`` exported (its native and jitter runs use the generic kernels with
MKL's own path: 20 more) and one with ``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE`` exported
(the default variant's arithmetic for the whole session; its seeds 0–4 repeat the first session's
default variant, so 15 more: seeds 5–14 and the jitter run). "Our runs" in the lesson's prose and
notes means these 60; "the third session" below is the last one. Thresholds keep
a margin of about 20 % from everything measured; where one is thinner, the docstring says so.

Sentences about one seed's single-model runs (Section 5's loop against the batch, Section 7's cell)
are checked on that seed under the same four arithmetics (``claims_support.compute``). Deterministic
facts — float64 demonstrations on fixed inputs (the cliff, the heavy-tailed gradient, momentum and
Adam) and one float32 forward/backward pass whose numbers sit far from any threshold (Section 4) —
need no variants; their tests say so.

Cost (cold cache, one pytest worker): about 105 s of CPU (user + sys of the whole process tree),
nearly all of it the experiment under the four variants (native seeds 0–14: ~40 s, each 5-seed
variant ~12–20 s including its subprocess); the single-model runs of Sections 5 and 7 add ~15 s.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import claims_support as claims
import stabletrain as st
from stabletrain.lessons import clipping_lab as lab

# one worker computes this lesson's experiments while the other runs other tests (make test: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("claims-04")

BASELINE = lab.BASELINE_LOSS


@pytest.fixture(scope="module")
def sweeps() -> list[claims.Run]:
    return claims.runs("stabletrain.lessons.clipping_lab:run_experiment")


def _variant_args(variant: str) -> tuple[str, float]:
    """The arithmetic and the jitter of one of claims_support.VARIANTS."""
    return ("native", claims.JITTER) if variant == "jitter" else (variant, 0.0)


def _lesson_part(run: claims.Run) -> lab.Sweep:
    """The lesson's seeds 0–4 of a run (the native run also holds 5–14): what the notebook shows."""
    sweep = run.result
    keep = [sweep.seeds.index(s) for s in claims.LESSON_SEEDS]
    fields = {name: getattr(sweep, name)[keep] for name in (
        "losses", "raw_norms", "clipped_norms", "cosines", "clipped", "w_rec_norms", "rec_share", "update_ratio",
        "diverged_at")}
    return lab.Sweep(sweep.settings, claims.LESSON_SEEDS, sweep.cfg, sweep.n_params, **fields)


def _col(sweep, kind, threshold=None, lr=None):
    return sweep.index(kind, threshold, lr)


def _max_w_rec(sweep, kind, threshold=None, lr=None):
    return np.nanmax(sweep.w_rec_norms[:, _col(sweep, kind, threshold, lr)], axis=1)


def _blown(sweep) -> np.ndarray:
    """Per seed: did ||W_rec||_2 pass lab.BLOWN_UP without clipping?"""
    return _max_w_rec(sweep, "none") > lab.BLOWN_UP


def test_the_lesson_runs_over_at_least_five_seeds(sweeps):
    """"at five seeds"; "stacks 65 copies of the RNN (13 settings × 5 seeds)"; the standard: every
    experiment over >= 5 seeds, with a control. Deterministic (the experiment's layout)."""
    assert lab.SEEDS == claims.LESSON_SEEDS and len(lab.SEEDS) >= 5
    sweep = _lesson_part(sweeps[0])
    assert sweep.index("none", None, lab.CONTROL_LR) >= 0 and lab.CONTROL_LR == lab.CONFIG.lr / 4
    assert sweep.cfg.T == 20 and sweep.cfg.hidden == 16 and sweep.n_params == 321 and sweep.cfg.steps == 300
    assert len(sweep.settings) * len(sweep.seeds) == 65
    assert [run.variant for run in sweeps] == list(claims.VARIANTS)


# ----------------------------------------------------------------------------------------------
# Section 1: the cliff (float64 gradient descent on a fixed 2-D function: deterministic)


@pytest.fixture(scope="module")
def cliff():
    return lab.cliff_trajectory(None), lab.cliff_trajectory(1.0)


def test_cliff_claims(cliff):
    """"at the edge the gradient is about 60 times larger than the largest gradient on the way there,
    and more than 200 times larger than one step before the edge";
    instructor notes: a jump of about 48 units to about (45, 22) while start and minimum are about 4.3
    apart; the clipped run never moves more than 0.5 per step and after 60 steps is 0.16 from the
    minimum. Float64 on a fixed function: no variants needed."""
    raw, clipped = cliff
    jumps = np.linalg.norm(np.diff(raw, axis=0), axis=1)
    edge = int(np.argmax(jumps))
    grads = jumps / 0.5  # plain GD: step = lr * gradient, lr = 0.5
    assert 50 * grads[:edge].max() < grads[edge] < 70 * grads[:edge].max()
    assert grads[edge] > 200 * grads[edge - 1]
    assert 45 <= jumps[edge] <= 51 and np.allclose(raw[edge + 1], [45, 22], atol=1.0)
    assert np.linalg.norm(np.array([0.0, 1.5]) - [4, 0]) == pytest.approx(4.3, abs=0.05)
    assert np.linalg.norm(np.diff(clipped, axis=0), axis=1).max() <= 0.5 * (1 + 1e-9)
    assert np.linalg.norm(clipped[-1] - [4, 0]) == pytest.approx(0.16, abs=0.01)


# ----------------------------------------------------------------------------------------------
# Sections 2 and 4 (instructor notes)


def test_heavy_tailed_gradient_numbers():
    """"raw norm 388.4, 32 % of the entries exceed c = 1; value clipping leaves a norm of 63.0 and a
    cosine of 0.639, norm clipping the guaranteed 100.0". Float64 on a fixed seeded draw: no variants."""
    g = torch.randn(10_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) ** 3
    by_value = g.clamp(-1, 1)
    assert g.norm().item() == pytest.approx(388.4, abs=0.05)
    assert (g.abs() > 1).double().mean().item() == pytest.approx(0.32, abs=0.005)
    assert by_value.norm().item() == pytest.approx(63.0, abs=0.05)
    assert lab.cosine(g, by_value) == pytest.approx(0.639, abs=0.0005)


def test_agc_section_numbers():
    """Instructor notes, Section 4: "100 of the MLP's 199 units are above λ = 0.02 (largest ratio
    0.570 before, 0.020 after), and the largest relative update is 0.00200 = lr·λ."

    One float32 forward and backward pass of a fixed MLP, no training: no chaos to amplify rounding.
    The unit nearest the threshold sits 1.2 % from λ, 10^5 times float32 rounding; under the
    default kernels the ratios agree to 1e-7 and the count is the same."""
    from stabletrain.data import make_spirals
    from stabletrain.models import make_mlp

    def per_unit(tensors):  # a row of a weight matrix, or a whole bias, is one unit
        return torch.cat([t.norm(dim=1) if t.ndim == 2 else t.norm().reshape(1) for t in tensors]).numpy()

    features, labels = make_spirals(100, classes=3, seed=0)
    mlp = make_mlp(2, 64, 3, 3, activation="tanh", seed=0)
    weights = list(mlp.parameters())
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(mlp(features), labels), weights)
    floor = np.maximum(per_unit([w.detach() for w in weights]), 1e-3)
    ratio = per_unit(grads) / floor
    assert (ratio > 0.02).sum() == 100 and len(ratio) == 199
    assert np.min(np.abs(ratio / 0.02 - 1)) > 0.01  # no unit within 1 % of the threshold
    assert ratio.max() == pytest.approx(0.570, abs=0.0005)
    for w, g in zip(weights, grads):
        w.grad = g.clone()
    before = [w.detach().clone() for w in weights]
    st.adaptive_clip_grad_(weights, clip_factor=0.02, eps=1e-3)
    torch.optim.SGD(weights, lr=0.1).step()
    moved = per_unit([w.detach() - b for w, b in zip(weights, before)]) / floor
    assert moved.max() == pytest.approx(0.1 * 0.02, rel=1e-3)


# ----------------------------------------------------------------------------------------------
# Section 5: the experiment


def test_without_clipping_some_seeds_blow_up(sweeps):
    """"Without clipping, on some seeds a few large gradients throw the recurrent weights far out:
    ||W_rec||_2, 1 at the start, grows past 10, and those runs end above the 0.167 of predicting the
    mean. On the machines we tried that was 1 to 3 of these five seeds, and 3 to 6 of the fifteen
    seeds 0–14. ... On the other seeds ||W_rec||_2 stays below 10 and the loss ends near the
    baseline, below twice its value."

    Measured over the 60 seed-runs: the largest ||W_rec||_2 of a healthy run is at most 6.97
    (generic kernels, seed 3), checked as none between 10/1.2 and 10; a blown run's is 11.0 (third
    session, seed 11, which ends at 1.18: 7 times the baseline) to 353 000. Blown up on seeds 0–4:
    native and avx2 {0, 1, 3}, default {1, 3, 4}, jitter {1, 3}; with the generic kernels exported
    {1} and (jitter) {0, 1, 3}; in the third session {1, 3, 4} and (jitter) {1, 3, 4}: checked as
    1–4 of 5. On seeds 0–14: 4 (native), 3 (generic kernels) and 6 (third session) of 15, checked as
    1–10 ("some": a third of the seeds is the rate over all runs, so 11 of 15 would be far out).
    Blown runs end at 0.27–90, checked above 1.2 times the baseline (the smallest, 0.271, is 1.6
    times); healthy ones end at 0.080–0.253, checked below 0.333."""
    for run in sweeps:
        sweep = run.result
        w_rec = _max_w_rec(sweep, "none")
        finals = sweep.final_losses("none")
        blown = _blown(sweep)
        assert np.allclose(sweep.w_rec_norms[:, _col(sweep, "none"), 0], 1.0), run.label
        assert np.all((w_rec < lab.BLOWN_UP / 1.2) | blown), (run.label, w_rec)
        assert 1 <= _blown(_lesson_part(run)).sum() <= 4, (run.label, w_rec)
        assert np.all(finals[blown] > 1.2 * BASELINE), (run.label, finals)
        assert np.all((finals[~blown] > 0.05) & (finals[~blown] < 2 * BASELINE)), (run.label, finals)
    assert 1 <= _blown(sweeps[0].result).sum() <= 10  # "3 to 6 of the fifteen seeds 0–14"


def test_which_seeds_blow_up_depends_on_the_arithmetic(sweeps):
    """"In our runs the seeds that blew up changed with the CPU kernels and with such a change of the
    initial weights, so your table may name other seeds than ours."  Measured on seeds 0–4: five
    different sets in the six distinct runs (see the test above); checked as at least two different
    sets among the four runs of a session."""
    sets = {tuple(np.array(claims.LESSON_SEEDS)[_blown(_lesson_part(run))]) for run in sweeps}
    assert len(sets) >= 2, sets


def _the_spike(sweep, i: int) -> tuple[int, int]:
    """For a run without clipping that blows up: (the step at which ||W_rec||_2 first exceeds
    lab.BLOWN_UP, the step of the largest gradient before it) — the spike that throws W_rec."""
    j = _col(sweep, "none")
    passed = int(np.argmax(sweep.w_rec_norms[i, j] > lab.BLOWN_UP))
    return passed, int(np.nanargmax(sweep.raw_norms[i, j, :passed]))


def test_a_spike_throws_the_recurrent_weights(sweeps):
    """"in each of these runs a gradient spike, at least 30 times the control's typical gradient
    norm, comes a few steps before ||W_rec||_2 passes 10, and in most of them more than half of that
    spike's squared norm sits in W_rec — against about a fifth on a typical step of a run that stays
    healthy."  (The spike: the largest gradient before ||W_rec||_2 first passes 10; the control's
    typical norm: its median on the same seed; a typical step: the median share over every step of
    the healthy runs of a run of claims_support.runs.)

    Measured over the 15 distinct blown seed-runs: the spike comes 1–6 steps before (checked: at
    most 10), at 46–4 300 times the control's median (checked: 30); its share in W_rec is above half
    in 12 of 15 (0.69–0.99; the others 0.001, 0.08, 0.14), checked as at least 60 % of the blown
    runs of a session (measured 10 of 12 and 9 of 12, counting avx2's copies). The typical share
    is 0.20–0.24, checked as 0.12–0.33. The third session's 6 new blown runs (native seeds 7, 11,
    12; jitter seeds 1, 3, 4) all fit: 1–3 steps before, 80–346 times, shares 0.72–0.95, typical
    0.197 and 0.233. (The largest gradient of the whole run is no good measure:
    after the blow-up the tanh units saturate, and a later, larger gradient can sit almost wholly
    outside W_rec — share 1e-13 on one run.)"""
    shares = []
    for run in sweeps:
        sweep = run.result
        j, c = _col(sweep, "none"), _col(sweep, "none", None, lab.CONTROL_LR)
        blown = _blown(sweep)
        for i in np.flatnonzero(blown):
            passed, step = _the_spike(sweep, i)
            assert passed - step <= 10, (run.label, sweep.seeds[i], passed, step)
            assert sweep.raw_norms[i, j, step] > 30 * np.nanmedian(sweep.raw_norms[i, c]), (run.label, sweep.seeds[i])
            shares.append(sweep.rec_share[i, j, step])
        typical = np.nanmedian(sweep.rec_share[~blown, j])
        assert 0.12 < typical < 0.33, (run.label, typical)
    assert np.mean(np.array(shares) > 0.5) >= 0.6, shares


def test_norm_clipping_keeps_w_rec_bounded_and_fires_rarely(sweeps):
    """"With norm clipping at max_norm = 2, ||W_rec||_2 stays below 7 on every seed, and on most seeds
    clipping fires on 1–10 % of the steps. On the odd seed it fires on far more steps, from about a
    fifth to nearly half, and that run trains much worse than the control"; instructor notes: "the
    control trains on that seed".

    Measured over the 60 seed-runs: largest ||W_rec||_2 5.29 (third session, jitter, seed 1; 4.47
    in the other sessions); clipped fraction 1.3–8.7 % on 57 of 60, checked as at least 3 of every 5
    lesson seeds and 80 % of a session's seed-runs; the others 18.7 % (jitter, seed 1), 31 %
    (native and avx2, seed 4) and 41.7 % (third session, jitter, seed 1), checked as 15–50 %; final
    loss 3.1, 3.5 and 4.0 times the control's, whose own final loss there is 0.06, 0.135 and 0.06."""
    rare_counts = []
    for run in sweeps:
        sweep = run.result
        assert np.all(_max_w_rec(sweep, "norm", lab.MAX_NORM) < 7), run.label
        fractions = sweep.clipped_fractions("norm", lab.MAX_NORM)
        rare = (fractions >= 0.01) & (fractions <= 0.10)
        rare_counts.append((rare.sum(), len(rare)))
        assert rare[[sweep.seeds.index(s) for s in claims.LESSON_SEEDS]].sum() >= 3, (run.label, fractions)
        odd = ~rare
        assert np.all((fractions[odd] > 0.15) & (fractions[odd] < 0.5)), (run.label, fractions)
        finals = sweep.final_losses("norm", lab.MAX_NORM)
        control = sweep.final_losses("none", None, lab.CONTROL_LR)
        assert np.all(finals[odd] > 2 * control[odd]), (run.label, finals, control)
        assert np.all(control[odd] < BASELINE), (run.label, control)  # "the control trains on that seed"
    rare, total = np.sum(rare_counts, axis=0)
    assert rare / total >= 0.8, rare_counts


def test_the_control_stays_healthy(sweeps):
    """"The control (learning rate 0.025, no clipping) keeps ||W_rec||_2 below 3 and ends below the
    baseline on most seeds."  Measured over the 60 seed-runs: largest ||W_rec||_2 2.15 (seed 12),
    final losses 0.060–0.150, all 60 below the baseline 0.167 (the control is barely chaotic: its
    final losses agree to 3 digits under every variant). A one-off scan of seeds 0–59 found 2 of 60
    at or above the baseline (largest 0.213) and one seed whose ||W_rec||_2 reached 4.8: hence
    "most", not "every"."""
    for run in sweeps:
        w_max = _max_w_rec(run.result, "none", None, lab.CONTROL_LR)
        finals = run.result.final_losses("none", None, lab.CONTROL_LR)
        assert np.all(w_max < 3), (run.label, w_max)
        assert np.mean(finals < BASELINE) >= 0.8, (run.label, finals)


@pytest.fixture(scope="module")
def single_runs(sweeps) -> list[tuple[str, lab.Run, lab.Run]]:
    """Seed 0 with norm clipping at 2 in lab.train_rnn and in the batch, under every variant."""
    out = []
    for run in sweeps:
        environment, jitter = _variant_args(run.variant)
        single = claims.compute("stabletrain.lessons.clipping_lab:train_rnn_seeds", environment, seeds=(0,),
                                jitter=jitter)[0]
        out.append((run.label, single, run.result.run(0, "norm", lab.MAX_NORM)))
    return out


def test_single_loop_against_the_batch(single_runs):
    """"The two sum the same numbers in a different order, so they differ by float32 rounding — at
    first by less than 1e-6 relative — and the difference grows as training goes on: on seed 0, below
    1e-5 over the first 100 steps, and by the end the final losses can differ by about ten per cent."

    Seed 0 (the cell's) under the four arithmetics of each session. Measured: first 40 steps at most
    5.1e-7; first 100 steps 9e-7–4.6e-6; final losses 0.3–11.4 % apart (11.4 % with the generic
    kernels exported), checked below 20 %. (Other seeds part sooner: seeds 1 and 4, where clipping
    acts on more steps, differ by 7–92 % within 100 steps — not claimed.)"""
    for label, single, batched in single_runs:
        relative = np.abs(single.losses - batched.losses) / batched.losses
        assert relative[:40].max() < 1e-6, label
        assert relative[:100].max() < 1e-5, label
        assert abs(single.final_loss - batched.final_loss) / batched.final_loss < 0.2, label


def test_value_clipping_acts_often_and_bends(sweeps):
    """"Value clipping, held to the same guarantee (c = 2/sqrt(321) ≈ 0.11), acts on more than half of
    the steps on every seed and changes the direction (mean cosine 0.9–0.98)"; "Norm clipping ... its
    cosine with the raw gradient is 1 at every step"; instructor notes: "value clipping at max_norm
    2 acts on 62–89 % of the steps, mean cosine 0.93–0.97".

    Measured over the 60 seed-runs: fraction 0.62–0.89; mean cosine 0.925–0.971 (1 - cos 0.029–0.075
    against the sentence's 0.02–0.1); norm clipping's smallest cosine 1 - 1.7e-7 at any max_norm."""
    assert lab.value_clip_for(2.0, sweeps[0].result.n_params) == pytest.approx(0.11, abs=0.005)
    for run in sweeps:
        sweep = run.result
        fractions = sweep.clipped_fractions("value", lab.MAX_NORM)
        assert np.all((fractions > 0.5) & (fractions < 0.95)), (run.label, fractions)
        cos = np.nanmean(sweep.cosines[:, _col(sweep, "value", lab.MAX_NORM)], axis=1)
        assert np.all((cos > 0.9) & (cos < 0.98)), (run.label, cos)
        for m in lab.MAX_NORMS:
            assert np.nanmin(sweep.cosines[:, _col(sweep, "norm", m)]) > 1 - 1e-5, run.label


def test_a_loose_threshold_protects_only_by_luck(sweeps):
    """"Norm clipping at max_norm = 5 — above almost every gradient of a healthy run — acts on at most
    2 % of the steps and keeps ||W_rec||_2 below 5, unless an early spike gets through (in our runs
    on none to two of these five seeds). Then ||W_rec||_2 grows more than twice as far as at max_norm
    = 2, clipping acts on many steps, and the run ends above the baseline."

    Every seed-run falls in one of the two classes. Measured over the first two sessions' 45: 37 clip on at most 0.7 %
    of the steps (2 of 300) with ||W_rec||_2 at most 3.98; the other 8 (native seeds 14; default
    seeds 1, 4; jitter seeds 1, 4; generic kernels seeds 7, 14; their jitter seed 1) clip on
    6.3–76 % with ||W_rec||_2 5.8–18.3, 2.5–7.8 times their max_norm = 2 run's, and end at
    0.30–12.2. The third session adds 5 escapes (seeds 1, 4, 7, 14; jitter seed 1: 6.3–79 % of the
    steps, ||W_rec||_2 5.8–17.0, ending at 0.31–6.5) and one quiet run at the edge: jitter seed 4
    clips on 3 of 300 steps (1.0 %) with ||W_rec||_2 3.69, yet ends at 0.316 — hence "2 %" in the
    sentence, checked as stated. On seeds 0–4: 0 to 2 escape per run."""
    for run in sweeps:
        sweep = run.result
        fractions = sweep.clipped_fractions("norm", 5.0)
        w_rec = _max_w_rec(sweep, "norm", 5.0)
        finals = sweep.final_losses("norm", 5.0)
        quiet = (fractions <= 0.02) & (w_rec < 5)
        escaped = (fractions > 0.05) & (w_rec > 2 * _max_w_rec(sweep, "norm", lab.MAX_NORM)) & (finals > BASELINE)
        assert np.all(quiet | escaped), (run.label, fractions, w_rec, finals)
        assert escaped[[sweep.seeds.index(s) for s in claims.LESSON_SEEDS]].sum() <= 3, run.label


def test_bending_is_not_what_hurts_value_clipping(sweeps):
    """"AGC at λ = 0.01 bends the gradient much more than value clipping at max_norm = 1 (mean cosine
    0.3–0.7 against about 0.9, on every seed), yet its median final loss is lower."

    Measured over the 60 seed-runs: AGC's mean cosine 0.344–0.667, value clipping's 0.863–0.923, at
    least 0.21 apart on every seed; median final loss AGC 0.100–0.124 against value 0.150–0.159 per
    run (ratio at most 0.83)."""
    for run in sweeps:
        sweep = run.result
        agc_cos = np.nanmean(sweep.cosines[:, _col(sweep, "agc", 0.01)], axis=1)
        value_cos = np.nanmean(sweep.cosines[:, _col(sweep, "value", 1.0)], axis=1)
        assert np.all((agc_cos > 0.28) & (agc_cos < 0.8)), (run.label, agc_cos)
        assert np.all((value_cos > 0.8) & (value_cos < 0.95)), (run.label, value_cos)
        assert np.all(value_cos - agc_cos > 0.15), run.label
        assert np.median(sweep.final_losses("agc", 0.01)) < np.median(sweep.final_losses("value", 1.0)), run.label


def test_threshold_from_the_controls_norms(sweeps):
    """"the 95th percentile of the control's gradient norms lies roughly between 1 and 2.5 on every
    seed, and 2 is in that range".

    Measured over the 60 seed-runs: 1.067–2.442 (the control is barely chaotic: seed 4's moves
    between 1.36 and 1.48 with the arithmetic, the others by less than 1 %); checked as 0.85–3 and,
    on seeds 0–4 and on 0–14, a percentile on either side of 2 (2.30 on seed 0 is the one above on
    seeds 0–4: a 15 % margin, but on a seed whose value does not move with the arithmetic)."""
    for run in sweeps:
        for sweep in (run.result, _lesson_part(run)):
            norms = sweep.raw_norms[:, _col(sweep, "none", None, lab.CONTROL_LR)]
            q95 = np.quantile(norms, 0.95, axis=1)
            assert np.all((q95 > 0.85) & (q95 < 3.0)), (run.label, q95)
            assert q95.min() < lab.MAX_NORM < q95.max(), (run.label, q95)


def test_update_ratio_claims(sweeps):
    """"With norm clipping, the median step changes W_rec by about 1 % (0.5–1.5 %). Without clipping,
    on the seeds that blow up, single steps change it by more than a third; with norm clipping no
    step exceeds 15 % on any seed."

    Measured over the 60 seed-runs: medians 0.52–1.20 %; the largest step of a blown run 46 %–1100 %
    (the smallest on seed 0 of the jitter run with the generic kernels); the largest clipped step
    10.5 % (jitter, seed 1; at most 6.3 % on every other seed-run)."""
    for run in sweeps:
        sweep = run.result
        clipped = sweep.update_ratio[:, _col(sweep, "norm", lab.MAX_NORM)]
        medians = np.nanmedian(clipped, axis=1)
        assert np.all((medians > 0.0042) & (medians < 0.015)), (run.label, medians)
        largest = np.nanmax(sweep.update_ratio[:, _col(sweep, "none")], axis=1)
        assert np.all(largest[_blown(sweep)] > 1 / 3), (run.label, largest)
        assert np.nanmax(clipped) < 0.15, run.label


def test_explorer_answers(sweeps):
    """Instructor notes of the explorer: "λ = 0.01 clips on virtually every step ...; λ = 0.2 least
    often, on anywhere from about a seventh to nearly all of the steps depending on the seed, with a
    mean cosine above 0.95"; "on a seed where norm clipping at 2 fires on more than 10 % of the
    steps, the gradient norm keeps coming back above 2 after step 100, on 15–55 % of those steps,
    against at most about 10 % on the other seeds"; "Value clipping at max_norm 2 acts on 62–89 %
    of the steps on every seed, norm clipping on 1.3–8.3 % on most: about an order of magnitude
    more often, or more".

    Measured over the 60 seed-runs: λ = 0.01 clips on 100 % of the steps everywhere; the clipped
    fractions fall from λ = 0.01 to 0.05 to 0.2 on every seed; λ = 0.2 clips on 13.7–98.3 %, mean
    cosine 0.962–0.999; from step 100 on, the frequent clippers are above 2 on 16.5 % (jitter seed
    1), 43.5 % (native seed 4) and 54.5 % (third session, jitter seed 1) of the steps, checked below
    65 %, the others on at most 10.5 % (generic kernels);
    where norm clipping is rare, value clipping acts 7.9 to 54 times as often, checked as more
    than 6."""
    for run in sweeps:
        sweep = run.result
        by_lambda = [sweep.clipped_fractions("agc", lam) for lam in (0.01, 0.05, 0.2)]
        assert np.all(by_lambda[0] >= 0.97), run.label
        assert np.all((by_lambda[0] >= by_lambda[1]) & (by_lambda[1] >= by_lambda[2])), run.label
        assert np.all((by_lambda[2] > 0.1) & (by_lambda[2] <= 1.0)), (run.label, by_lambda[2])
        cos = np.nanmean(sweep.cosines[:, _col(sweep, "agc", 0.2)], axis=1)
        assert np.all(cos > 0.95), (run.label, cos)
        frequent = sweep.clipped_fractions("norm", lab.MAX_NORM) > 0.10
        late = sweep.raw_norms[:, _col(sweep, "norm", lab.MAX_NORM), 100:] > lab.MAX_NORM
        above = np.mean(late, axis=1)
        assert np.all((above[frequent] > 0.14) & (above[frequent] < 0.65)), (run.label, above)
        assert np.all(above[~frequent] < 0.13), (run.label, above)
        norm = sweep.clipped_fractions("norm", lab.MAX_NORM)
        rare = (norm >= 0.01) & (norm <= 0.10)
        value = sweep.clipped_fractions("value", lab.MAX_NORM)
        assert np.all(value[rare] > 6 * norm[rare]), (run.label, value / norm)


def test_the_worst_unclipped_run_is_drawn_far_above(sweeps):
    """"The loss axis is logarithmic and not cut: the worst run's smoothed loss climbs more than ten
    times above the baseline."  On seeds 0–4, as the figure draws them. Measured over the 6 distinct
    runs: the worst smoothed loss 10.7 (generic kernels exported) to 5.4 million (jitter): 64 to
    3·10^7 times the baseline; checked as 12 times."""
    for run in sweeps:
        sweep = _lesson_part(run)
        j = _col(sweep, "none")
        peaks = np.array([np.nanmax(lab._ema(sweep.losses[i, j])) for i in range(len(sweep.seeds))])
        assert peaks.max() > 12 * BASELINE, (run.label, peaks)


# ----------------------------------------------------------------------------------------------
# Section 6: momentum and Adam (float64 on fixed sequences: deterministic)


def test_momentum_and_adam_claims():
    """"With momentum 0.9 the step approaches ten times lr * max_norm. With Adam, multiplying every
    gradient by 1e-3 changes the updates by less than 1e-4 (relative); a spike 1000 times the usual
    gradient moves the weights by less than 3 times a typical update even without clipping, and by
    about a typical update with it; over the 20 steps after the spike, the unclipped run's updates
    are larger on average than the clipped run's."  Float64 on fixed sequences: no variants."""
    n = lab.momentum_and_adam_numbers(lr=0.1, max_norm=1.0, spike=1000.0)
    assert n["sgd_step"] <= 0.1
    assert 0.999 * n["momentum_bound"] <= n["momentum_step"] <= n["momentum_bound"]
    assert n["momentum_bound"] == pytest.approx(10 * 0.1 * 1.0)
    assert n["adam_rescale_rel"] < 1e-4
    assert n["adam_spike_raw"] < 3 * n["adam_typical"]
    assert n["adam_spike_clipped"] == pytest.approx(n["adam_typical"], rel=0.1)
    assert n["adam_after_raw"] > n["adam_after_clipped"]


# ----------------------------------------------------------------------------------------------
# Section 7: the functions in the loop (instructor notes)


@pytest.fixture(scope="module")
def loop_numbers(sweeps) -> list[tuple[str, dict]]:
    """Section 7's cell with the reference functions, seed 0, under every variant."""
    out = []
    for run in sweeps:
        environment, jitter = _variant_args(run.variant)
        out.append((run.label, claims.compute("stabletrain.lessons.clipping_lab:loop_numbers", environment,
                                              seeds=(0,), jitter=jitter)[0]))
    return out


def test_functions_in_the_loop_numbers(loop_numbers):
    """Instructor notes, Section 7: "max_norm = 2.627; both runs clip on 5 % of the steps and end at a
    loss of about 0.177 over the last 20 steps; their norms differ by about 1e-5 (relative) over the
    first 20 steps — the same to three digits under every CPU arithmetic we tried".

    Seed 0 (the cell's) under the four arithmetics of both sessions; 200 steps at these rates are
    too few for the rounding to grow. Measured: max_norm 2.62701 everywhere, 5 of 100 steps clipped
    in both runs, final 0.17657–0.17659, largest relative difference of the norms 5.3e-6–1.05e-5."""
    for label, n in loop_numbers:
        assert n["threshold"] == pytest.approx(2.63, abs=0.02), label
        assert 0.03 <= n["plain_clipped"] <= 0.07 and 0.03 <= n["amp_clipped"] <= 0.07, label
        assert n["plain_final"] == pytest.approx(0.177, abs=0.005), label
        assert n["amp_final"] == pytest.approx(0.177, abs=0.005), label
        assert n["first_diff"] < 5e-5, label
