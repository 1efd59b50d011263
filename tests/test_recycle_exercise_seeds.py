"""Lesson 02's ``recycle_dead_units_`` check never fails a right answer, whatever seed the grader draws.

The grader draws a new seed per submitted file, and every correct answer draws the fresh incoming
weights differently from the reference (another order of layers, another call of the generator).
The check "the revived units train" used to ask that every revived unit's incoming row move during
3 SGD steps. Two things made that depend on the draw: (1) a revived unit's outgoing column starts
at 0, so its row gets no gradient on the first step, and a unit revived on one or two examples can
be switched off by that step's change to the layers below before its row ever moves; (2) the few
examples a unit is on for may have no unit of the next layer that passes a gradient back, so it
gets none at all. ``recycle_dead_units_deepest_first`` (listed as correct) failed 4 of 100 hidden
seeds (1000–1099): "a deeper network" on 1007, 1043 and 1051, "units on for a single example" on
1076; on 1043 and 1076 it was the reference whose revived unit never moved. The check
now asks it only of the revived units that the loss's gradient reaches on the first step (the next
layer's pre-activation has a non-zero gradient on an example where the unit is on), and counts the
unit as training when its incoming row or its outgoing column moves: on the first step that column
(exactly 0 in the live rows) gets a non-zero gradient for every correct answer on every draw,
barring an exact cancellation.

Measured after the change: the reference and the three alternatives agree on every hidden case of
seeds 1000–1399 and 0–199 (0 failures); before it, 11 failing (seed, alternative, case) triples over
this file's 204 seeds. The check still bites: an answer that recycles correctly but leaves the
weights untrainable (``requires_grad`` off) is rejected by it. About 0.1 s CPU a seed for the four
implementations (~22 s CPU for this file).
"""

from __future__ import annotations

import pytest

from alternatives import all_alternatives
from stabletrain.exercises import get_exercise

EXERCISE = get_exercise("recycle_dead_units_")
CORRECT = [EXERCISE.reference, *all_alternatives()["recycle_dead_units_"]]
#: the seeds that failed before the change, then a block of 200
SEEDS = (1007, 1043, 1051, 1076, *range(0, 200))


def test_every_correct_answer_passes_every_hidden_case_on_many_seeds():
    failures = []
    for seed in SEEDS:
        for case in EXERCISE.cases("hidden", seed):
            want = EXERCISE.run(EXERCISE.reference, case)
            for fn in CORRECT[1:]:
                problem = EXERCISE.compare(case, EXERCISE.run(fn, case), want)
                if problem is not None:
                    failures.append((seed, fn.__name__, case.label[:40], problem))
    assert not failures, f"{len(failures)} failures, e.g. {failures[:3]}"


def _untrainable(model, data):
    """Recycles correctly, then makes every weight's gradient 0 (the biases still train; requires_grad stays
    on, so the check that the parameters can train passes and the training check itself must catch it)."""
    import torch

    count = EXERCISE.reference(model, data)
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            p.register_hook(torch.zeros_like)
    return count


def test_frozen_parameters_are_named_not_a_grader_crash():
    """An answer that leaves requires_grad off everywhere used to crash the grader's own backward()."""
    def frozen(model, data):
        count = EXERCISE.reference(model, data)
        for p in model.parameters():
            p.requires_grad_(False)
        return count

    case = EXERCISE.cases("hidden", 0)[0]
    problem = EXERCISE.compare(case, EXERCISE.run(frozen, case), EXERCISE.run(EXERCISE.reference, case))
    assert problem is not None and problem.startswith("whether every weight and bias still requires grad"), problem


@pytest.mark.parametrize("seed", [1007, 1043, 0, 1])
def test_the_training_check_still_rejects_units_that_cannot_train(seed):
    run = EXERCISE.run
    problems = [EXERCISE.compare(case, run(_untrainable, case), run(EXERCISE.reference, case))
                for case in EXERCISE.cases("hidden", seed)]
    assert all(p is not None and p.startswith("whether the revived units that the loss's gradient reaches train")
               for p in problems), problems
