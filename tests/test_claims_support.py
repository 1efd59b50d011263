"""The claims tests' variants really change the arithmetic, and the jitter really moves a run."""

from __future__ import annotations

import os

import pytest
import torch

import claims_support as claims
from stabletrain.perturb import JITTER, jitter_


@pytest.mark.parametrize(("environment", "capability"), [("avx2", "AVX2"), ("default", "DEFAULT")])
def test_a_variant_runs_with_its_cpu_kernels(environment, capability):
    assert claims.cpu_capability(environment) == capability


def test_the_default_kernels_round_differently():
    """The default variant is another arithmetic: the same float32 products, other last bits.

    Not where the session itself was started with the default variant's environment (a run of the
    claims under ``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE``): its native run *is* that
    arithmetic, and the variants' distinctness is what is being tested on an ordinary run."""
    session = {name: os.environ.get(name) for name in claims.ENVIRONMENTS["default"]}
    if session == claims.ENVIRONMENTS["default"]:
        pytest.skip(f"this session was started with the default variant's environment {session}: native is default")
    native = claims.compute("claims_probe:products")
    default = claims.compute("claims_probe:products", "default")
    assert native.shape == default.shape
    assert not torch.equal(native, default)
    assert torch.allclose(native, default, rtol=1e-4, atol=1e-4)


def test_results_are_computed_once_per_session(tmp_path, monkeypatch):
    monkeypatch.setenv(claims.CACHE_ENV, str(tmp_path))
    first = claims.compute("claims_probe:counter")
    second = claims.compute("claims_probe:counter")
    assert first == second == 1


def test_jitter_moves_every_weight_by_about_rel_and_nothing_else():
    w = torch.randn(200, 300)
    before = w.clone()
    state = torch.random.get_rng_state()
    jitter_(w, JITTER, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the lesson's generator is untouched
    rel = ((w - before) / before).abs()
    assert 0.3 * JITTER < rel.median().item() < 1.5 * JITTER
    assert (w != before).float().mean().item() > 0.9
    again = before.clone()
    jitter_(again, JITTER, seed=3)
    assert torch.equal(again, w)
    unchanged = before.clone()
    jitter_([unchanged], 0.0)
    assert torch.equal(unchanged, before)
    with pytest.raises(ValueError, match="-1"):
        jitter_(w, -1.0)


def test_runs_gives_every_variant(monkeypatch, tmp_path):
    monkeypatch.setenv(claims.CACHE_ENV, str(tmp_path))
    out = claims.runs("claims_probe:seeded", lesson_seeds=(0, 1), held_back_seeds=(7,))
    assert [r.variant for r in out] == list(claims.VARIANTS)
    assert out[0].seeds == (0, 1, 7) and all(r.seeds == (0, 1) for r in out[1:])
    assert out[0].result == ((0, 1, 7), 0.0) and out[-1].result == ((0, 1), JITTER)


def test_the_session_folder_is_the_one_the_workers_share():
    import conftest

    assert conftest.CACHE_ENV == claims.CACHE_ENV
