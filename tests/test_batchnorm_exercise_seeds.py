"""Lesson 05's graded checks never fail a right answer, whatever seed the grader draws.

The grader draws a new seed per submitted file (``grading_seed``), so a hidden case that a correct
implementation fails on one draw in a few thousand still costs some student a third of a point. A
demo once graded the instructor's solutions 19.67/20 this way: ``fold_batchnorm``'s case with a
running variance of 1e-7 was float32, where the amplified feature's folded bias and outputs are
differences of terms ~1e3 whose rounding (6e-5) exceeds the case's atol of 1e-5 whenever the
result lies near 0; foldings that round differently from the reference (computed in float64, or
``s * b - s * running_mean``) failed on about 1 seed in 2000. The case is float64 now.

These tests run every correct implementation we have (the reference, the alternatives, and foldings
that round differently) over many seeds and require a margin: the largest error stays under a
tenth of the tolerance (measured after the fix: 0.056 over 1000 seeds, float32 rounding in the
other fold cases; before it, the float32 tiny-variance case reached 0.17 within these 300 seeds
and 3.4 over 4000), so a rare draw cannot push it over. Deterministic given the seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from alternatives import all_alternatives
from stabletrain.exercises import get_exercise

ALTERNATIVES = all_alternatives()
#: largest error / tolerance allowed to any correct implementation. Measured: fold_batchnorm 0.056 over 1000
#: seeds; BatchNorm1d 0.17 over 2000 (float32 input gradients of a batch of two or of (N, C, L) inputs)
MARGIN = {"BatchNorm1d": 0.25}
DEFAULT_MARGIN = 0.1


def _ratio(got, want, rtol, atol, graded):
    """Largest |got - want| / (atol + rtol |want|) over the graded arrays (inf for a mismatch of form)."""
    if isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or want.dtype.kind == "b":
            return 0.0 if np.array_equal(got, want) else np.inf
        error = np.where(got == want, 0.0, np.abs(got - want))
        return float(np.max(error / (atol + rtol * np.abs(want)), initial=0.0))
    if isinstance(want, dict):
        keep = [k for k in want if k not in ("raised", "message") and (graded is None or k in graded or k == "steps")]
        if not isinstance(got, dict):
            return np.inf
        return max([_ratio(got.get(k), want[k], rtol, atol, graded) for k in keep], default=0.0)
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return np.inf
        return max([_ratio(g, w, rtol, atol, graded) for g, w in zip(got, want)], default=0.0)
    return 0.0 if got == want else np.inf


def fold_batchnorm_float64(linear, bn):
    """Folded in float64, stored in the Linear's dtype: as right as it gets, rounds unlike the reference."""
    with torch.no_grad():
        d = torch.float64
        s = bn.weight.to(d) / torch.sqrt(bn.running_var.to(d) + bn.eps)
        b = linear.bias.to(d) if linear.bias is not None else torch.zeros_like(s)
        folded = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
        folded.weight.copy_(linear.weight.to(d) * s[:, None])
        folded.bias.copy_(s * (b - bn.running_mean.to(d)) + bn.bias.to(d))
    return folded


def fold_batchnorm_expanded(linear, bn):
    """b' = s * b - s * running_mean + beta: the same formula, expanded (another rounding)."""
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = linear.bias if linear.bias is not None else torch.zeros_like(s)
        folded = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
        folded.weight.copy_(linear.weight * s[:, None])
        folded.bias.copy_(s * b - s * bn.running_mean + bn.bias)
    return folded


EXTRA = {"fold_batchnorm": [fold_batchnorm_float64, fold_batchnorm_expanded]}
#: seeds per exercise: CPU seconds stay small (the fold cases build torch layers, ~5 ms a seed per implementation)
SEEDS = {"standardize_apply": 200, "batchnorm_forward": 200, "batchnorm_backward": 200,
         "batchnorm_backward_alt": 200, "BatchNorm1d": 60, "fold_batchnorm": 300}


@pytest.mark.parametrize("name", list(SEEDS))
def test_every_correct_implementation_passes_every_hidden_case_with_margin(name):
    exercise = get_exercise(name)
    fns = [exercise.reference, *ALTERNATIVES[name], *EXTRA.get(name, [])]
    worst = (0.0, None)
    for seed in range(SEEDS[name]):
        for case in exercise.cases("hidden", seed):
            want = exercise.run(exercise.reference, case)
            for fn in fns:
                got = exercise.run(fn, case)
                assert exercise.compare(case, got, want) is None, f"{fn.__name__} fails '{case.label}' at seed {seed}"
                r = _ratio(got, want, *case.inputs["tol"], case.inputs.get("graded"))
                if r > worst[0]:
                    worst = (r, f"{fn.__name__} on '{case.label}' at seed {seed}")
    assert worst[0] < MARGIN.get(name, DEFAULT_MARGIN), f"error {worst[0]:.2f} of the tolerance: {worst[1]}"
