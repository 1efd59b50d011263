"""Plain data crossing from a student's kernel, and the answer-key guard inside it."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from stabletrain.exercises import plain


def test_plain_round_trip(tmp_path):
    value = [{"a": np.arange(6.0).reshape(2, 3), "b": None, "c": [1, 2.5, "x", True]},
             {"inf": math.inf, "nan": math.nan, "s": np.array(["u", "v"])}]
    plain.to_files(value, tmp_path / "v")
    back = plain.from_files(tmp_path / "v")
    np.testing.assert_array_equal(back[0]["a"], value[0]["a"])
    assert back[0]["c"] == [1, 2.5, "x", True] and back[0]["b"] is None
    assert back[1]["inf"] == math.inf and math.isnan(back[1]["nan"])
    assert back[1]["s"].tolist() == ["u", "v"]


@pytest.mark.parametrize("bad", [object(), np.array([object()], dtype=object), {1: 2}, (1, 2), lambda: 0])
def test_plain_rejects_objects(bad, tmp_path):
    with pytest.raises(plain.NotPlainData):
        plain.to_files([bad], tmp_path / "v")


def test_a_pickle_in_the_npz_is_never_loaded(tmp_path):
    np.savez(tmp_path / "v.npz", a0=np.array([object()], dtype=object))
    (tmp_path / "v.json").write_text('{"__array__": "a0"}')
    with pytest.raises(ValueError, match="pickle"):
        plain.from_files(tmp_path / "v")


def test_unexpected_json_shapes_are_rejected(tmp_path):
    np.savez(tmp_path / "v.npz")
    (tmp_path / "v.json").write_text('{"__evil__": 1}')
    with pytest.raises(plain.NotPlainData):
        plain.from_files(tmp_path / "v")


GUARD_PROBE = r"""
import torch, stabletrain
from stabletrain.exercises import guard
guard.install()
layer = torch.nn.Linear(3, 4)          # torch's own layers still initialise their weights
results = []
for call in (lambda: torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0),
             lambda: torch.nn.utils.clip_grad.clip_grad_value_(layer.parameters(), 1.0),
             lambda: torch.nn.init.xavier_uniform_(layer.weight),
             lambda: stabletrain.clip_grad_norm_(layer.parameters(), 1.0),
             lambda: stabletrain.kaiming_uniform_(layer.weight)):
    try:
        call(); results.append("ran")
    except guard.AnswerKeyUnavailable:
        results.append("blocked")
print(",".join(results))
"""


def test_guard_blocks_answer_keys_but_not_torch_layers():
    """torch.nn.init stays (nn.Linear needs it): it is watched during checks, not blocked
    (tests/test_sandbox_answer_keys.py); everything else is blocked."""
    out = subprocess.run([sys.executable, "-c", GUARD_PROBE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "blocked,blocked,ran,blocked,blocked"
