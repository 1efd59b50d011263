"""The grader trusts nothing from the kernel, fast: decoding results, verifying them, assembling
notebooks, the secret, signed results and the watchdog pool — without starting a kernel."""

from __future__ import annotations

import json
import math
import os
import stat
import time

import nbformat
import numpy as np
import pytest
import torch

from stabletrain.exercises import get_exercise, plain
from stgrade import secret as secret_
from stgrade.assemble import SubmissionUnreadable, assemble, read_submission
from stgrade.cohorts import lesson_sources
from stgrade.course import REPO_ROOT, load_lesson
from stgrade.grading import decode_results, verify_one
from stgrade.workers import Pool, Task

LESSON = "04_gradient_clipping"


# -- the result channel: bounded decoding ------------------------------------------------------
def test_results_round_trip_with_scalars_and_zero_d_arrays():
    value = [{"a": np.array(2.5, dtype=np.float32), "b": np.arange(6).reshape(2, 3), "c": [None, True, "x"]},
             {"inf": math.inf, "nan": math.nan, "s": np.array(["u", "v"])}]
    back = plain.loads(plain.dumps(value))
    assert back[0]["a"].shape == () and back[0]["b"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert back[1]["inf"] == math.inf and math.isnan(back[1]["nan"]) and back[1]["s"].tolist() == ["u", "v"]


@pytest.mark.parametrize("text", [
    '{"__ndarray__": ["O", [1], ""]}',                      # object arrays (pickles) are never rebuilt
    '{"__ndarray__": ["<f8", [4294967296, 4294967296], "AAAA"]}',  # a "bomb": tiny text, huge array
    '{"__ndarray__": ["<f8", [2], "AAAA"]}',                # data that does not match its shape
    '{"__ndarray__": ["<f8", [1], "not base64!"]}',
    '{"__ndarray__": ["[(\'a\', \'O\')]", [1], ""]}',       # structured dtypes
    '{"__evil__": 1}', "NaN", "[" * 100_000, 42,
])
def test_results_that_are_not_plain_data_are_rejected(text):
    with pytest.raises(plain.NotPlainData):
        plain.loads(text)


def test_an_oversized_result_is_rejected_before_it_is_parsed():
    with pytest.raises(plain.NotPlainData, match="over the limit"):
        plain.loads("[" + "0," * plain.MAX_MESSAGE_CHARS + "0]")


def test_a_result_recorded_twice_earns_nothing():
    one = plain.dumps({"exercise": "clip_grad_norm_", "level": "visible", "outputs": []})
    found, problems = decode_results([one, one])
    assert "more than once" in found[("clip_grad_norm_", "visible")]
    found, problems = decode_results([None, plain.dumps([1])])
    assert len(problems) == 2 and not found


# -- an honest mistake costs its exercise (KeyError: 'dtype' used to fail the submission) --------
def _norm_without_return(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]),
                                         norm_type)
        for g in grads:
            g.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))


def test_a_comparison_that_cannot_handle_an_answer_fails_that_case_not_the_grader():
    exercise = get_exercise("clip_grad_norm_")
    cases = exercise.cases("hidden", 7)
    outputs = [exercise.run(_norm_without_return, case) for case in cases]
    failures = verify_one(exercise, cases, outputs)
    assert failures and all(f.exercise == "clip_grad_norm_" for f in failures)
    # either the comparison explains the missing value, or (where it could not cope) the grader says
    # what came back — never a bare KeyError
    assert any("returned: None" in f.problem or "got None" in f.problem for f in failures), failures[0].problem


# -- assembling: added cells, malformed notebooks ----------------------------------------------
@pytest.fixture(scope="module")
def src():
    return lesson_sources(LESSON, REPO_ROOT)


def _write(tmp_path, nb) -> object:
    path = tmp_path / f"{LESSON}.ipynb"
    if isinstance(nb, (dict, list, int)) and not isinstance(nb, nbformat.NotebookNode):
        path.write_text(json.dumps(nb))
    else:
        nbformat.write(nb, path)
    return path


def _graded_sources(assembled):
    return [(spec.role, spec.grade_id, cell.source) for spec, cell in zip(assembled.specs, assembled.notebook.cells)
            if cell.cell_type == "code"]


def test_an_answer_in_an_added_cell_below_the_stub_runs_before_the_tests(src):
    nb = src.with_answers({})
    stub = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_norm")
    nb.cells.insert(stub + 1, nbformat.v4.new_code_cell(src.solutions["clip_grad_norm"]))
    cells = _graded_sources(assemble(load_lesson(LESSON), nb))
    at = [i for i, (role, gid, _) in enumerate(cells) if gid == "clip_grad_norm"][0]
    assert cells[at + 1][0] == "added" and "def clip_grad_norm_" in cells[at + 1][2]
    assert cells[at + 2][1] == "clip_grad_norm_visible"


def test_a_copied_answer_cell_runs_where_it_is_and_copies_of_tests_do_not(src):
    nb = src.with_answers({})
    i = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_value")
    answer = nbformat.from_dict(dict(nb.cells[i]))
    answer.source = src.solutions["clip_grad_value"]
    test_copy = nbformat.from_dict(dict(nb.cells[i + 1]))
    test_copy.source = "check = lambda *a, **k: True  # forged"
    nb.cells[i + 1:i + 1] = [answer, test_copy]
    assembled = assemble(load_lesson(LESSON), nb)
    cells = _graded_sources(assembled)
    roles = [(role, gid) for role, gid, _ in cells]
    at = roles.index(("solution", "clip_grad_value"))
    assert roles[at + 1] == ("added", None) and roles[at + 2] == ("test", "clip_grad_value_visible")
    assert not any("# forged" in source for _, _, source in cells)
    assert any("appears 2 times" in n for n in assembled.notes)


@pytest.mark.parametrize("mangle", [
    lambda nb: nb["cells"][3].update(source=42),
    lambda nb: nb["cells"].insert(0, "not a cell"),
    lambda nb: nb.update(cells={"a": 1}),
])
def test_a_malformed_notebook_is_unreadable_not_a_crash(src, tmp_path, mangle):
    nb = json.loads(nbformat.writes(src.with_answers(src.solutions)))
    mangle(nb)
    with pytest.raises(SubmissionUnreadable):
        read_submission(_write(tmp_path, nb))


@pytest.mark.parametrize("meta", [{"nbgrader": "yes"}, {"nbgrader": {"grade_id": 42}}, {"tags": "experiment"},
                                  {"nbgrader": {"grade_id": ["clip_grad_norm"]}}, "metadata"])
def test_malformed_nbgrader_metadata_makes_an_ordinary_cell(src, tmp_path, meta):
    nb = json.loads(nbformat.writes(src.with_answers(src.solutions)))
    nb["cells"].append({"cell_type": "code", "metadata": meta, "source": "x = 1", "outputs": [],
                        "execution_count": None})
    assembled = assemble(load_lesson(LESSON), read_submission(_write(tmp_path, nb)))
    assert ("added", None, "x = 1") in _graded_sources(assembled)


# -- the secret ----------------------------------------------------------------------------------
def test_the_secret_is_created_private_reused_and_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv(secret_.ENV, raising=False)
    path = tmp_path / "secret"
    said = []
    first = secret_.load(path=path, announce=said.append)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and str(path) in said[0] and len(first.value) >= 32
    assert secret_.load(path=path, announce=said.append).value == first.value
    os.chmod(path, 0o644)
    assert secret_.load(path=path, announce=said.append).value == first.value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(secret_.ENV, "from-the-environment-0123456789")
    assert secret_.load(path=path).value == "from-the-environment-0123456789"
    assert secret_.load("given", path=path).source == "--secret"
    assert first.value not in json.dumps(first.describe())


def test_a_changed_result_no_longer_carries_a_valid_signature():
    data = {"student": "s", "total": 3.0, "cells": []}
    data["signature"] = secret_.sign("k" * 32, data)
    assert secret_.signed("k" * 32, data)
    assert not secret_.signed("other" * 8, data)
    assert not secret_.signed("k" * 32, {**data, "total": 9.0})


# -- the watchdog pool ---------------------------------------------------------------------------
def test_a_dead_or_stuck_worker_costs_only_its_own_task():
    tasks = [Task(0, (4.0,)), Task(1, (9.0,)), Task(2, (16.0,))]
    with Pool(2, watchdog_seconds=60, target="math:sqrt") as pool:
        assert sorted((t.index, r) for t, r, _ in pool.run(tasks)) == [(0, 2.0), (1, 3.0), (2, 4.0)]
    with Pool(2, watchdog_seconds=60, target="os:_exit") as pool:  # the worker dies under this task
        got = list(pool.run([Task(0, (3,))]))
    assert got[0][1] is None and "died" in got[0][2]
    started = time.monotonic()
    with Pool(1, watchdog_seconds=3, target="time:sleep") as pool:
        got = {t.index: (r, why) for t, r, why in pool.run([Task(0, (600,)), Task(1, (0,))])}
    assert "longer than 3 s" in got[0][1] and got[1] == (None, "")
    assert time.monotonic() - started < 60


def test_the_secret_leaves_the_environment_children_inherit_and_what_proc_shows():
    import subprocess
    import sys

    probe = ("import os, sys\nfrom stgrade.secret import hide_from_proc\nv = os.environ['STGRADE_SECRET']\n"
             "hide_from_proc(v)\nproc = open('/proc/self/environ', 'rb').read() + open('/proc/self/cmdline', 'rb').read()\n"
             "child = os.popen('cat /proc/self/environ').read()\n"
             "print(v.encode() in proc, v in child, 'STGRADE_SECRET' in os.environ)")
    value = "probe-secret-" + "7" * 24
    out = subprocess.run([sys.executable, "-c", probe, value], capture_output=True, text=True, check=True,
                         env={**os.environ, "STGRADE_SECRET": value}).stdout
    assert out.split() == ["False", "False", "False"]


def test_an_added_cell_that_names_an_answer_key_is_flagged_for_the_instructor(src):
    """The scan's findings flag the submission (overview, validate); they void nothing by
    themselves: the helper's call to torch's clip_grad_norm_ fails at run time, where the guard
    switches it off."""
    from stgrade.grading import static_findings

    nb = src.with_answers({**src.solutions, "clip_grad_norm": "def clip_grad_norm_(p, m, *a, **k):\n    return _h(p, m)"})
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip_grad_norm")
    nb.cells.insert(at, nbformat.v4.new_code_cell("def _h(p, m):\n    return torch.nn.utils.clip_grad_norm_(p, m)"))
    found = static_findings(assemble(load_lesson(LESSON), nb))
    assert len(found) == 1 and found[0].startswith("a cell you added") and "clip_grad_norm_" in found[0], found
