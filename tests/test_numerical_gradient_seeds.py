"""Lesson 00's ``numerical_gradient`` never fails a right answer, whatever seed the grader draws.

The grader draws a new seed per submitted file, and the catalogue test tries seeds 0 and 1 only. A
seed scan found the hidden case "ReLU at points within 1e-6 of its kink, probed with h = 1e-8"
flagging the correct backward pass against the five-point stencil (a listed alternative) on 60 of
100 seeds: at h = 1e-8 the rounding of f (eps |f| / h ~ 3e-8) at entries whose true gradient is 0,
over the grader's floor (1e-3 of the largest entry), is a relative error of up to 1e-5 > tol 1e-6;
centred differences escaped only by cancelling bit-identical values exactly. The case now probes
points 3e-6 to 8e-6 from the kink with h = 1e-6 (see ``_relu_draw`` in
``stabletrain.exercises.diagnostics``).

These tests run every correct implementation we have (the reference, the alternatives, and two
that round differently: the five-point stencil grouped as 8 (f1 - f-1) - (f2 - f-2), and centred
differences of f(x +- h e_i) / 2h taken on copies) over 200 hidden seeds (50 for the loops whose
arithmetic is the reference's): every verdict must be the
reference's, and the correct backward pass's relative error must stay under a quarter of the tolerance
(measured over these seeds: 1.2e-7 / 1e-6 for the five-point stencil on the ReLU case, the largest;
before the fix it reached 1.1e-5). The catalogued mutants must be rejected on every one of 50 seeds.
Deterministic given the seeds; about 15 s of CPU.
"""

from __future__ import annotations

import numpy as np

from alternatives import all_alternatives
from stabletrain.exercises import get_exercise
from stabletrain.exercises.diagnostics import _rel_err
from stabletrain.exercises.diagnostics_mutants import NUMERICAL_GRADIENT

EXERCISE = get_exercise("numerical_gradient")
SEEDS = range(1000, 1200)
#: largest relative error of the correct backward pass / tol allowed to a correct implementation
MARGIN = 0.25


def five_point_grouped(f, x, h=1e-5):
    """The fourth-order stencil with the differences taken first: (8 (f1 - f-1) - (f2 - f-2)) / 12h."""
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.array(x, dtype=np.float64)
    grad = np.zeros(point.shape)
    for i in np.ndindex(point.shape):
        old, values = point[i], {}
        for k in (2, 1, -1, -2):
            point[i] = old + k * h
            values[k] = float(f(point))
        point[i] = old
        grad[i] = (8 * (values[1] - values[-1]) - (values[2] - values[-2])) / (12 * h)
    return grad


def centred_on_copies(f, x, h=1e-5):
    """f(x + h e_i) / 2h - f(x - h e_i) / 2h, each probe a new array (x itself never written)."""
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.array(x, dtype=np.float64)
    grad = np.zeros(point.shape)
    for i in np.ndindex(point.shape):
        step = np.zeros(point.shape)
        step[i] = h
        grad[i] = float(f(point + step)) / (2 * h) - float(f(point - step)) / (2 * h)
    return grad


ALTERNATIVES = {fn.__name__: fn for fn in all_alternatives()["numerical_gradient"]}
#: name -> (function, seeds): all 200 seeds for the stencils that round unlike the reference, 50 for the
#: loops whose arithmetic is the reference's (flat, nditer)
CORRECT = {"reference": (EXERCISE.reference, SEEDS), "five_point_grouped": (five_point_grouped, SEEDS),
           **{name: (fn, SEEDS if "five_point" in name else SEEDS[:50]) for name, fn in ALTERNATIVES.items()}}


def _cases(seeds):
    for seed in seeds:
        for case in EXERCISE.cases("hidden", seed):
            yield seed, case, EXERCISE.run(EXERCISE.reference, case)


def test_correct_implementations_pass_every_seed_with_a_margin():
    failures, worst = [], {}
    for seed, case, want in _cases(SEEDS):
        for name, (fn, seeds) in CORRECT.items():
            if seed not in seeds:
                continue
            got = EXERCISE.run(fn, case)
            problem = EXERCISE.compare(case, got, want)
            if problem is not None:
                failures.append((seed, name, case.label[:50], problem[:100]))
            if got.get("gradient") is not None:
                ratio = _rel_err(case.inputs["panel"]["correct"]["grad"], got["gradient"]) / case.inputs["tol"]
                key = (name, case.label[:50])
                worst[key] = max(worst.get(key, 0.0), ratio)
    assert not failures, failures[:5]
    over = {k: v for k, v in worst.items() if v >= MARGIN}
    assert not over, over


def test_centred_differences_on_copies_pass_where_f_takes_its_argument():
    """The copy-making variant is right except where f reads x through a closure (the mutant copies_x)."""
    failures = []
    for seed, case, want in _cases(SEEDS[:50]):
        if case.inputs.get("closure"):
            continue
        problem = EXERCISE.compare(case, EXERCISE.run(centred_on_copies, case), want)
        if problem is not None:
            failures.append((seed, case.label[:50], problem[:100]))
    assert not failures, failures[:5]


def test_mutants_rejected_on_every_seed():
    """Every catalogued mutant fails at least one hidden case on each of 50 seeds."""
    passing = {name: [] for name in NUMERICAL_GRADIENT}
    for seed in SEEDS[:50]:
        runs = list(_cases([seed]))
        for name, mutant in NUMERICAL_GRADIENT.items():
            if all(EXERCISE.compare(case, EXERCISE.run(mutant.fn, case), want) is None for _, case, want in runs):
                passing[name].append(seed)
    assert not any(passing.values()), {k: v[:10] for k, v in passing.items() if v}
