"""The residual reference (stabletrain.residual): blocks, branch scales and the stream-variance
prediction, checked against direct computation and against a Monte-Carlo measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stabletrain import residual
from stabletrain.lessons import residual_lab as lab


def _branch_norm(d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g, dtype=torch.float64)

    def branch(z):
        return torch.tanh(z @ w)

    def norm(z):
        return (z - z.mean(-1, keepdim=True)) / z.std(-1, keepdim=True, correction=0)

    return branch, norm


def test_residual_block_forms():
    branch, norm = _branch_norm()
    x = torch.randn(3, 5, dtype=torch.float64)
    assert torch.allclose(residual.residual_block(x, branch, norm, "pre", 0.5), x + 0.5 * branch(norm(x)))
    assert torch.allclose(residual.residual_block(x, branch, norm, "post", 0.5), norm(x + 0.5 * branch(x)))
    assert torch.allclose(residual.residual_block(x, branch, norm, "none"), x + branch(x))
    with pytest.raises(ValueError, match="placement"):
        residual.residual_block(x, branch, norm, "middle")


def test_residual_block_is_a_torch_nn_compatible_function():
    """The same block written with nn.Linear and torch.nn.LayerNorm as branch and norm."""
    torch.manual_seed(0)
    fc, ln = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
    x = torch.randn(4, 8)
    assert torch.allclose(residual.residual_block(x, fc, ln, "pre"), x + fc(ln(x)))


def test_branch_scales():
    assert residual.branch_scale_for(16, "none") == 1.0
    assert residual.branch_scale_for(16, "gpt2") == 0.25
    assert residual.branch_scale_for(16, "zero_gamma") == 0.0
    with pytest.raises(ValueError):
        residual.branch_scale_for(16, "1/L")


@pytest.mark.parametrize("placement", ["pre", "post", "none"])
@pytest.mark.parametrize("scaling", ["none", "gpt2", "zero_gamma"])
def test_prediction_shapes_and_first_entry(placement, scaling):
    v = residual.residual_stream_variance(7, 1.3, 2.0, placement, scaling)
    assert v.shape == (8,) and v.dtype == np.float64 and v[0] == 2.0


def test_prediction_closed_forms():
    assert np.allclose(residual.residual_stream_variance(4, 1.0, 1.0, "pre"), [1, 2, 3, 4, 5])
    assert np.allclose(residual.residual_stream_variance(4, 1.0, 1.0, "none"), [1, 2, 4, 8, 16])
    assert np.allclose(residual.residual_stream_variance(4, 1.0, 3.0, "post"), [3, 1, 1, 1, 1])
    assert np.isclose(residual.residual_stream_variance(100, 1.0, 1.0, "pre", "gpt2")[-1], 2.0)
    assert residual.residual_stream_variance(100, 1.0, 1.0, "none", "gpt2")[-1] < math.e
    assert np.allclose(residual.residual_stream_variance(9, 2.0, 1.5, "pre", "zero_gamma"), 1.5)
    with pytest.raises(ValueError):
        residual.residual_stream_variance(0)
    with pytest.raises(ValueError):
        residual.residual_stream_variance(3, placement="sandwich")


@pytest.mark.parametrize(("placement", "scaling"), [("pre", "none"), ("none", "none"), ("post", "none"),
                                                     ("pre", "gpt2"), ("none", "gpt2"), ("pre", "zero_gamma")])
def test_prediction_matches_measurement(placement, scaling):
    depth = 12
    measured = np.median(lab.stream_at_init(depth, placement, scaling, seeds=range(5), width=128, batch=128)
                         ["variance"], axis=0)
    predicted = residual.residual_stream_variance(depth, 1.0, 1.0, placement, scaling)
    assert np.allclose(measured, predicted, rtol=0.25), (measured, predicted)


def test_capstone_reference_config_is_valid():
    from stabletrain.exercises.layernorm import capstone_problem

    assert capstone_problem(residual.capstone_config()) is None
