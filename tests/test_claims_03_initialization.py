"""Every quantitative sentence of lesson 03's prose, checked over the seeds the notebook uses.

Each experiment is computed once per module (the same calls as the notebook, so the same numbers);
the tests name the section and quote the claim they check.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import stabletrain
from stabletrain.lessons import init_lab as lab

SEEDS = range(5)
LN3 = math.log(3)


@functools.cache
def symmetry():
    return {init: [lab.symmetry_run(init, steps=100, seed=s) for s in SEEDS] for init in ("zero", "constant", "random")}


@functools.cache
def sweep():
    return lab.depth_sweep()


@functools.cache
def training():
    inits = ("pytorch default", "xavier", "kaiming")
    return (lab.train_sweep(inits, depth=10, steps=250, lr=0.01), lab.train_sweep(inits, depth=3, steps=250, lr=0.01))


SETTINGS = {"ReLU, Kaiming": ("kaiming", "relu"), "ReLU, PyTorch default": ("pytorch default", "relu"),
            "tanh, Xavier": ("xavier", "tanh"), "tanh, 5/3 (Kaiming)": ("kaiming", "tanh")}


@functools.cache
def prediction():
    out = {}
    for name, (init, act) in SETTINGS.items():
        var_w = lab.weight_variance(init, act, 64)
        out[name] = (lab.profile(init, act, depth=50, width=64),
                     stabletrain.predicted_activation_variance(50, 64, var_w, act),
                     stabletrain.predicted_gradient_variance(50, 64, var_w, act))
    return out


# ----------------------------------------------------------------------------------------------
# Section 1: symmetry


def test_zero_and_constant_init_keep_units_identical_at_every_step_and_seed():
    runs = symmetry()
    for init in ("zero", "constant"):
        for r in runs[init]:
            assert np.all(r["spread"] == 0) and np.all(r["grad_spread"] == 0)
    for r in runs["random"]:
        assert r["spread"][0] > 0  # "separates them from the start"
    assert max(r["spread"].max() for r in runs["random"]) > 1  # instructor note: "about 2"


def test_zero_init_never_moves_w1():
    assert all(np.all(r["moved"] == 0) for r in symmetry()["zero"])


def test_symmetric_inits_end_above_random_init_on_every_seed():
    runs = symmetry()
    for s in SEEDS:
        random_loss = runs["random"][s]["loss"][-1]
        assert runs["zero"][s]["loss"][-1] > random_loss and runs["constant"][s]["loss"][-1] > random_loss


def test_symmetry_instructor_numbers():
    median = {k: np.median([r["loss"][-1] for r in v]) for k, v in symmetry().items()}
    assert abs(median["zero"] - 1.10) < 0.03 and abs(median["constant"] - 0.90) < 0.03
    assert abs(median["random"] - 0.73) < 0.03


# ----------------------------------------------------------------------------------------------
# Sections 2, 3, 5, 6, 7: the formulas


def test_small_random_numbers_arithmetic():
    """n = 256, std 0.01: factor 0.0256, after 10 layers 1e-16 of the variance."""
    factor = 256 * 0.01**2
    assert math.isclose(factor, 0.0256) and 1e-17 < factor**10 < 1e-15


def test_tanh_gain_one_drains_like_one_over_l_and_five_thirds_settles():
    q1 = stabletrain.predicted_activation_variance(50, 64, 1 / 64, "tanh", which="pre")
    layers = np.arange(1, 51)
    assert np.all((layers[9:] * q1[9:] > 0.3) & (layers[9:] * q1[9:] < 1.0))
    q53 = stabletrain.predicted_activation_variance(50, 64, (5 / 3) ** 2 / 64, "tanh", which="pre")
    assert abs(q53[-1] - 1.18) < 0.005 and np.all(np.abs(q53[4:] / q53[-1] - 1) < 0.03)  # "within a few layers"


def test_pytorch_default_is_a_third_of_lecun_and_a_sixth_of_kaiming():
    fan_in = 100
    default = (1 / math.sqrt(5 + 1) * math.sqrt(2)) ** 2 / fan_in / 3 * 3  # gain² / fan_in, gain = √(2/(1+5))
    assert math.isclose(default, 1 / (3 * fan_in))
    assert math.isclose(default / (1 / fan_in), 1 / 3) and math.isclose(default / (2 / fan_in), 1 / 6)
    layer = torch.nn.Linear(256, 256)
    assert abs(layer.weight.var().item() * 3 * 256 - 1) < 0.03


@pytest.mark.parametrize("seed", SEEDS)
def test_qr_sign_convention_and_haar_trace(seed):
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(500, 32, 32, generator=gen, dtype=torch.float64))
    assert bool((q[:, 0, 0] < 0).all())  # "Q11 is always negative" with LAPACK's Householder QR
    fixed = q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)
    traces = torch.diagonal(fixed, dim1=-2, dim2=-1).sum(-1)
    assert abs(traces.mean().item()) < 0.2 and 0.8 < traces.var().item() < 1.2


def test_truncated_normal_std_and_uncorrected_variance():
    from scipy import stats

    std = stats.truncnorm(-2, 2).std()
    assert abs(std - 0.87962566103423978) < 1e-12
    assert round(std**2 * 100) == 77  # "77% of the variance"


# ----------------------------------------------------------------------------------------------
# Section 8: prediction against measurement


def test_prediction_follows_measurement_within_a_factor_30():
    for profile, act_pred, grad_pred in prediction().values():
        for measured, predicted in ((profile.act_var, act_pred), (profile.grad_var, grad_pred)):
            ratio = np.median(measured, axis=0) / predicted
            assert np.all(np.abs(np.log10(ratio)) < math.log10(30))


def test_default_relu_falls_about_39_orders_of_magnitude():
    """From the input's variance 1 to layer 50."""
    profile, act_pred, _ = prediction()["ReLU, PyTorch default"]
    assert 38.5 < -math.log10(act_pred[-1]) < 39.5
    assert 37 < -math.log10(np.median(profile.act_var[:, -1])) < 41


def test_tanh_five_thirds_gradient_grows_about_1_21_per_layer():
    profile, act_pred, grad_pred = prediction()["tanh, 5/3 (Kaiming)"]
    assert abs(grad_pred[9] / grad_pred[10] - 1.21) < 0.005  # per layer, at the fixed point
    growth = (profile.grad_var[:, 0] / profile.grad_var[:, -1]) ** (1 / 49)
    assert np.all((growth > 1.15) & (growth < 1.27))
    assert np.all(profile.act_var[:, -1] > 0.3)  # "holds its forward variance"


def test_relu_kaiming_median_below_prediction_and_seeds_spread():
    profile, act_pred, _ = prediction()["ReLU, Kaiming"]
    assert np.median(profile.act_var[:, -1]) < act_pred[-1]
    assert profile.act_var[:, -1].max() / profile.act_var[:, -1].min() > 10


# ----------------------------------------------------------------------------------------------
# Section 9: the sweep


def _layer50(init, act, what="act_std"):
    return getattr(sweep()[init, act], what)[:, -1]


def _layer1_grad(init, act):
    return sweep()[init, act].grad_std[:, 0]


@pytest.mark.parametrize("act", lab.ACTIVATIONS)
@pytest.mark.parametrize("init", ["too small", "pytorch default"])
def test_too_small_and_default_vanish_forward_and_backward(init, act):
    assert np.all(_layer50(init, act) < 1e-3) and np.all(_layer1_grad(init, act) < 1e-3)


@pytest.mark.parametrize("act", ["relu", "selu"])
def test_too_large_explodes_for_relu_and_selu(act):
    assert np.all(_layer50("too large", act) > 1e3)


def test_too_large_tanh_saturates_with_exploding_gradients():
    acts = sweep()["too large", "tanh"].act_std
    assert np.all((acts > 0.9) & (acts < 1.0)) and np.all(_layer1_grad("too large", "tanh") > 1e3)


def test_xavier_keeps_tanh_fading_and_kills_relu():
    tanh = sweep()["xavier", "tanh"].act_std
    assert np.all((tanh[:, -1] > 0.01) & (tanh[:, -1] < 0.5)) and np.all(tanh[:, -1] < tanh[:, 9])
    assert np.all(_layer50("xavier", "relu") < 1e-3)


@pytest.mark.parametrize("act", lab.ACTIVATIONS)
@pytest.mark.parametrize("init", ["kaiming", "orthogonal", "lsuv"])
def test_kaiming_orthogonal_lsuv_keep_activations_of_order_one(init, act):
    acts = sweep()[init, act].act_std
    assert np.all((acts > 0.05) & (acts < 5))


def test_gradients_within_a_factor_10_where_the_prose_says_so():
    within = [(i, "relu") for i in ("kaiming", "orthogonal", "lsuv")]
    within += [(i, "selu") for i in ("xavier", "kaiming", "orthogonal", "lsuv")] + [("xavier", "tanh")]
    for init, act in within:
        g = _layer1_grad(init, act)
        assert np.all((g > 0.1) & (g < 10)), (init, act, g)
    for init in ("kaiming", "orthogonal"):
        g = _layer1_grad(init, "tanh")
        assert np.all((g > 50) & (g < 200)), (init, g)
    g = _layer1_grad("lsuv", "tanh")
    assert np.all((g > 40) & (g < 80))


def test_histogram_claims():
    samples = {init: sweep()[init, "tanh"].samples for init in ("too large", "xavier", "kaiming")}
    for values in samples["too large"].values():
        assert 0.65 < np.mean(np.abs(values) > 0.99) < 0.8  # "about three quarters"
    assert samples["xavier"][50].std() < samples["xavier"][1].std() / 5
    stds = [samples["kaiming"][k].std() for k in (10, 25, 50)]
    assert max(stds) / min(stds) < 1.05
    assert all(np.mean(np.abs(samples["kaiming"][k]) > 0.9) < 0.25 for k in (10, 25, 50))


# ----------------------------------------------------------------------------------------------
# Section 10: training


def test_shallow_control_trains_with_every_init():
    _, shallow = training()
    for init in shallow.inits:
        assert np.all(shallow.final(init) < LN3 - 0.3)


def test_deep_default_does_not_move_kaiming_trains_xavier_between():
    deep, _ = training()
    default, xavier, kaiming = deep.final("pytorch default"), deep.final("xavier"), deep.final("kaiming")
    assert np.all(np.abs(default - LN3) < 0.01)
    assert np.all(kaiming < 0.1)
    assert xavier.min() > kaiming.max() and xavier.max() < default.min()


# ----------------------------------------------------------------------------------------------
# Section 11: the explorer's instructor answers (computed as the explorer computes them)

EXPLORER = {"batch": lab.InitExplorer.BATCH, "seeds": 5}


def test_explorer_answers_width_and_spread():
    spread = {}
    for width in (8, 64):
        p = lab.profile("kaiming", "relu", 50, width, **EXPLORER)
        spread[width] = math.log10(p.act_std[:, -1].max() / p.act_std[:, -1].min())
    assert spread[8] > 4 and 0.7 < spread[64] < 1.5


def test_explorer_answers_tanh_gradients():
    g = {i: np.median(lab.profile(i, "tanh", 50, 64, **EXPLORER).grad_std[:, 0]) for i in lab.INITS}
    assert min(g, key=lambda i: abs(math.log10(g[i]))) == "xavier"
    xavier = lab.profile("xavier", "tanh", 50, 64, **EXPLORER)
    assert 0.1 < np.median(xavier.grad_std[:, 0]) < 0.3 and 0.05 < np.median(xavier.act_std[:, -1]) < 0.12


def test_explorer_answers_too_large_depth_to_1e10():
    for width, layer, estimate in ((8, 49, 33), (64, 14, 13)):
        p = lab.profile("too large", "relu", 50, width, **EXPLORER)
        first = int(np.argmax(np.median(p.act_std, axis=0) > 1e10)) + 1
        assert abs(first - layer) <= 2
        assert round(20 / math.log10(width / 2)) == estimate


# ----------------------------------------------------------------------------------------------
# Inline questions' instructor answers


def test_xavier_compromise_factors():
    fan_out = 10
    fan_in = 3 * fan_out
    forward, backward = fan_in * 2 / (fan_in + fan_out), fan_out * 2 / (fan_in + fan_out)
    assert math.isclose(forward, 1.5) and math.isclose(backward, 0.5) and math.isclose(forward * backward, 0.75)


@pytest.mark.parametrize("seed", SEEDS)
def test_raw_qr_trace_statistics(seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(500, 32, 32, generator=gen, dtype=torch.float64))
    traces = torch.diagonal(q, dim1=-2, dim2=-1).sum(-1)
    assert abs(traces.mean().item() + 3.4) < 0.2 and abs(traces.var().item() - 0.6) < 0.15


@pytest.mark.parametrize("seed", SEEDS)
def test_keras_bound_and_pytorch_largest_normal(seed):
    assert abs(2 / 0.87962566103423978 - 2.27) < 0.005
    z = torch.randn(1_000_000, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert 4.5 < z.abs().max().item() < 6
