"""Every graded exercise rejects its catalogue of wrong implementations and accepts correct ones.

For each exercise: the reference passes every case at several seeds (the grader draws a seed per
student); every alternative correct implementation passes; every mutant fails at least one hidden
case, and the feedback for it names a misconception.
"""

from __future__ import annotations

import pytest

from alternatives import all_alternatives
from stabletrain.exercises import ExerciseCheckFailed, check, exercise_names, get_exercise

SEEDS = (0, 1, 12345, 2**31 - 1)
ALTERNATIVES = all_alternatives()


def _failures(exercise, fn, level, seed):
    cases = exercise.cases(level, seed)
    return exercise.verify(cases, [exercise.run(fn, case) for case in cases])


@pytest.mark.parametrize("name", exercise_names())
@pytest.mark.parametrize("seed", SEEDS)
def test_reference_passes_every_case(name, seed):
    exercise = get_exercise(name)
    for level in ("visible", "hidden"):
        assert _failures(exercise, exercise.reference, level, seed) == []


@pytest.mark.parametrize("name", exercise_names())
def test_alternative_correct_implementations_pass(name):
    assert ALTERNATIVES[name], f"no alternative implementations listed for {name}"
    exercise = get_exercise(name)
    for fn in ALTERNATIVES[name]:
        for seed in SEEDS[:2]:
            for level in ("visible", "hidden"):
                failures = _failures(exercise, fn, level, seed)
                assert failures == [], f"{fn.__name__} rejected: {failures[0].message()}"


MUTANTS = [(name, m) for name in exercise_names() for m in get_exercise(name).mutants]


@pytest.mark.parametrize(("name", "mutant"), MUTANTS, ids=[f"{n}-{m}" for n, m in MUTANTS])
def test_mutant_is_rejected_with_a_misconception(name, mutant):
    exercise = get_exercise(name)
    for seed in SEEDS[:2]:
        failures = _failures(exercise, exercise.mutants[mutant].fn, "hidden", seed)
        assert failures, f"mutant {mutant} of {name} passes every hidden case at seed {seed}"
        assert any(f.misconception for f in failures), f"no misconception named for mutant {mutant}"


@pytest.mark.parametrize("name", exercise_names())
def test_every_exercise_has_mutants(name):
    assert len(get_exercise(name).mutants) >= 4


def test_visible_check_explains_expected_got_and_misconception(capsys):
    norm = get_exercise("clip_grad_norm_")
    with pytest.raises(ExerciseCheckFailed) as info:
        check(norm.mutants["per_parameter"].fn, "clip_grad_norm_")
    text = str(info.value)
    assert "expected" in text and "got" in text
    assert "Likely misconception" in text and "global" in text


def test_visible_check_passes_quietly_for_the_reference(capsys):
    exercise = get_exercise("clip_grad_value_")
    assert check(exercise.reference, "clip_grad_value_") is None  # nothing for a notebook to echo as Out[n]
    count = len(exercise.cases("visible", 0))
    assert f"all {count} visible checks passed" in capsys.readouterr().out


def stub(parameters, clip_value):
    raise NotImplementedError()


def test_an_unanswered_exercise_says_so_in_one_line_and_lets_run_all_go_on(capsys, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert check(stub, "clip_grad_value_") is None
    out = capsys.readouterr().out
    assert "not answered yet" in out and out.count("\n") == 1


def test_an_unanswered_exercise_fails_under_stock_nbgrader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(ExerciseCheckFailed, match="not answered yet"):
        check(stub, "clip_grad_value_")


def test_group_score_gives_credit_per_group_of_cases():
    from stabletrain.exercises.base import Case, Failure, group_score

    cases = [Case("a", {}, "core"), Case("b", {}, "core"), Case("c", {}, "edge"), Case("d", {}, "more")]
    assert group_score(cases, []) == (3, 3, [])
    assert group_score(cases, [Failure("x", "b", "wrong")]) == (2, 3, ["core"])
    assert group_score(cases, [Failure("x", "c", "wrong"), Failure("x", "d", "wrong")]) == (1, 3, ["edge", "more"])
    assert group_score(cases, [Failure("x", "everything", "wrong count")]) == (0, 3, ["core", "edge", "more"])
    ungrouped = [Case("a", {}), Case("b", {})]  # no groups: all or nothing
    assert group_score(ungrouped, [Failure("x", "b", "wrong")]) == (0, 1, ["all cases"])


def test_check_rejects_non_callables_and_unknown_exercises():
    with pytest.raises(ExerciseCheckFailed, match="expected a function"):
        check(42, "clip_grad_value_")
    with pytest.raises(ValueError, match="unknown exercise 'clip_grad_nrom_'"):
        check(print, "clip_grad_nrom_")


def test_a_rigged_return_value_cannot_pass():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

        def __array__(self, *args, **kwargs):
            raise TypeError("no")

    def rigged(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
        return AlwaysEqual()

    assert _failures(get_exercise("clip_grad_norm_"), rigged, "visible", 0)


def test_running_cases_never_imports_an_answer_key_or_a_mutant_catalogue():
    """A grading kernel builds and runs cases only; the reference implementations and the mutant
    catalogues must stay out of it (so the sandbox can leave their files out of its view)."""
    import subprocess
    import sys

    from stabletrain.exercises.guard import reference_modules

    code = (
        "import sys\n"
        "from stabletrain.exercises import exercise_names, get_exercise\n"
        "def stub(*args, **kwargs):\n    raise NotImplementedError\n"
        "for name in exercise_names():\n"
        "    ex = get_exercise(name)\n"
        "    for level in ('visible', 'hidden'):\n"
        "        [ex.run(stub, case) for case in ex.cases(level, 0)]\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('stabletrain'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    forbidden = {f"stabletrain.{m}" for m in reference_modules()}
    leaked = [m for m in loaded if m in forbidden or m.endswith("_mutants")]
    assert not leaked, f"running cases imported answer keys or mutant catalogues: {leaked}"


def test_an_unanswered_case_fails_without_running_the_reference():
    """A blank notebook's cases all raise NotImplementedError: they fail whatever the reference
    gives, so the grader does not run it (lesson 01's references train networks)."""
    from stabletrain.exercises.base import Case, Exercise

    calls = []

    def reference(x):
        calls.append(x)
        return 2 * x

    def blank(x):
        raise NotImplementedError()

    def run(fn, case):
        try:
            return {"raised": None, "value": fn(case.inputs["x"])}
        except Exception as exc:  # noqa: BLE001 — what it raised is its behaviour
            return {"raised": type(exc).__name__, "message": str(exc)}

    ex = Exercise("double", reference, make_cases=lambda level, seed: [Case("one", {"x": 1})], run=run,
                  compare=lambda case, got, want: None if got == want else "differs")
    cases = ex.cases("visible", 0)
    failures = ex.verify(cases, [run(blank, cases[0])])
    assert [f.problem for f in failures] == ["your function raised NotImplementedError: "] and calls == []
    assert ex.verify(cases, [{"raised": None, "value": 2}]) == [] and calls == [1]  # an answer does run it
