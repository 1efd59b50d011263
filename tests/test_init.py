"""stabletrain.init against torch.nn.init, and statistical tests of every initializer.

The expected distributions below are written from the formulas (REFERENCE.md "Initialization"),
not from the code under test; samples are drawn from seeded generators, so every test is
deterministic. A Kolmogorov-Smirnov test against the exact distribution and a confidence interval
on the sample variance check each initializer; the same tests reject the wrong conventions
(xavier for kaiming, fan_out for fan_in, relu's gain for tanh's).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import scipy.stats as st
import torch
import torch.nn.init as tinit

from stabletrain.init import (
    calculate_gain,
    fan_in_and_fan_out,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    orthogonal_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
)

# ----------------------------------------------------------------------------- gains

GAIN_NAMES = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]


@pytest.mark.parametrize("name", GAIN_NAMES)
def test_gain_matches_torch(name: str) -> None:
    assert calculate_gain(name) == pytest.approx(tinit.calculate_gain(name), rel=1e-15)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("linear", 1.0),
        ("conv_transpose2d", 1.0),
        ("sigmoid", 1.0),
        ("tanh", 5 / 3),
        ("relu", math.sqrt(2)),
        ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
        ("selu", 0.75),
    ],
)
def test_gain_values(name: str, expected: float) -> None:
    assert calculate_gain(name) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("slope", [None, 0, 0.0, 0.2, 1, 3, -0.5, np.float64(0.3)])
def test_leaky_relu_slope_matches_torch(slope) -> None:
    expected = tinit.calculate_gain("leaky_relu", slope)
    assert calculate_gain("leaky_relu", slope) == pytest.approx(expected, rel=1e-15)


def test_leaky_relu_slope_zero_is_relu_gain() -> None:
    assert calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04), rel=1e-15)


@pytest.mark.parametrize("name", ["Relu", "ReLU", "TANH", "Linear", "gelu", "identity", ""])
def test_unknown_or_miscased_nonlinearity_raises(name: str) -> None:
    with pytest.raises(ValueError, match="nonlinearity"):
        calculate_gain(name)
    with pytest.raises(ValueError):
        tinit.calculate_gain(name)


@pytest.mark.parametrize("slope", [True, False, "0.2", torch.tensor(0.2), np.float32(0.2), [0.2]])
def test_non_number_slope_raises_like_torch(slope) -> None:
    with pytest.raises(ValueError, match="not a valid number"):
        calculate_gain("leaky_relu", slope)
    with pytest.raises(ValueError):
        tinit.calculate_gain("leaky_relu", slope)


def test_param_is_ignored_except_for_leaky_relu() -> None:
    assert calculate_gain("relu", "x") == tinit.calculate_gain("relu", "x") == math.sqrt(2)


def test_relu_and_tanh_gains_differ() -> None:
    assert abs(calculate_gain("relu") - calculate_gain("tanh")) > 0.2


# ----------------------------------------------------------------------------- fans


@pytest.mark.parametrize(
    "shape", [(5, 3), (3, 5), (16, 3, 3, 3), (8, 4, 5), (2, 3, 4, 5, 6), (1, 1), (7, 0, 3)]
)
def test_fans_match_torch(shape: tuple[int, ...]) -> None:
    expected = tinit._calculate_fan_in_and_fan_out(torch.empty(shape))
    for form in (shape, list(shape), torch.Size(shape), torch.empty(shape)):
        assert fan_in_and_fan_out(form) == expected


def test_fan_examples() -> None:
    assert fan_in_and_fan_out((5, 3)) == (3, 5)  # Linear(3 -> 5): weight (out, in)
    assert fan_in_and_fan_out((16, 3, 3, 3)) == (27, 144)  # Conv2d(3 -> 16, 3x3)


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_need_two_dims(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        fan_in_and_fan_out(shape)


# ----------------------------------------------------------------------------- statistics

SHAPES = {"linear": (256, 384), "conv": (96, 32, 3, 3)}  # fans (384, 256) and (288, 864)
TRUNC_STD = st.truncnorm(-2, 2).std()


def uniform(std: float) -> st.rv_continuous:
    bound = math.sqrt(3) * std
    return st.uniform(-bound, 2 * bound)


def normal(std: float) -> st.rv_continuous:
    return st.norm(0, std)


def truncated(std: float) -> st.rv_continuous:
    return st.truncnorm(-2, 2, scale=std / TRUNC_STD)


def xavier_std(fi: int, fo: int, gain: float = 1.0) -> float:
    return gain * math.sqrt(2 / (fi + fo))


def kaiming_std(fan: int, gain: float = math.sqrt(2)) -> float:
    return gain / math.sqrt(fan)


Init = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Expected = Callable[[int, int], st.rv_continuous]

# (initializer with its arguments, expected distribution as a function of (fan_in, fan_out))
CASES: dict[str, tuple[Init, Expected]] = {
    "xavier_uniform": (
        lambda t, g: xavier_uniform_(t, generator=g),
        lambda fi, fo: uniform(xavier_std(fi, fo)),
    ),
    "xavier_uniform_gain": (
        lambda t, g: xavier_uniform_(t, gain=5 / 3, generator=g),
        lambda fi, fo: uniform(xavier_std(fi, fo, 5 / 3)),
    ),
    "xavier_normal": (
        lambda t, g: xavier_normal_(t, generator=g),
        lambda fi, fo: normal(xavier_std(fi, fo)),
    ),
    "xavier_normal_gain": (
        lambda t, g: xavier_normal_(t, gain=math.sqrt(2), generator=g),
        lambda fi, fo: normal(xavier_std(fi, fo, math.sqrt(2))),
    ),
    "kaiming_uniform_default": (
        lambda t, g: kaiming_uniform_(t, generator=g),
        lambda fi, fo: uniform(kaiming_std(fi)),
    ),
    "kaiming_uniform_linear_default_a_sqrt5": (
        lambda t, g: kaiming_uniform_(t, a=math.sqrt(5), generator=g),
        lambda fi, fo: st.uniform(-1 / math.sqrt(fi), 2 / math.sqrt(fi)),  # Var = 1/(3 fan_in)
    ),
    "kaiming_uniform_fan_out_relu": (
        lambda t, g: kaiming_uniform_(t, mode="fan_out", nonlinearity="relu", generator=g),
        lambda fi, fo: uniform(kaiming_std(fo)),
    ),
    "kaiming_uniform_tanh": (
        lambda t, g: kaiming_uniform_(t, nonlinearity="tanh", generator=g),
        lambda fi, fo: uniform(kaiming_std(fi, 5 / 3)),
    ),
    "kaiming_uniform_leaky_0.2": (
        lambda t, g: kaiming_uniform_(t, a=0.2, generator=g),
        lambda fi, fo: uniform(kaiming_std(fi, math.sqrt(2 / 1.04))),
    ),
    "kaiming_normal_default": (
        lambda t, g: kaiming_normal_(t, generator=g),
        lambda fi, fo: normal(kaiming_std(fi)),
    ),
    "kaiming_normal_fan_out_relu": (
        lambda t, g: kaiming_normal_(t, mode="fan_out", nonlinearity="relu", generator=g),
        lambda fi, fo: normal(kaiming_std(fo)),
    ),
    "kaiming_normal_upper_case_mode": (
        lambda t, g: kaiming_normal_(t, mode="FAN_OUT", nonlinearity="relu", generator=g),
        lambda fi, fo: normal(kaiming_std(fo)),
    ),
    "kaiming_normal_tanh": (
        lambda t, g: kaiming_normal_(t, nonlinearity="tanh", generator=g),
        lambda fi, fo: normal(kaiming_std(fi, 5 / 3)),
    ),
    "kaiming_normal_selu": (
        lambda t, g: kaiming_normal_(t, nonlinearity="selu", generator=g),
        lambda fi, fo: normal(kaiming_std(fi, 0.75)),
    ),
    "lecun_normal": (
        lambda t, g: lecun_normal_(t, generator=g),
        lambda fi, fo: normal(1 / math.sqrt(fi)),
    ),
}
for _mode, _n in {
    "fan_in": lambda fi, fo: fi,
    "fan_out": lambda fi, fo: fo,
    "fan_avg": lambda fi, fo: (fi + fo) / 2,
}.items():
    for _dist, _family in {
        "normal": normal,
        "truncated_normal": truncated,
        "uniform": uniform,
    }.items():
        CASES[f"variance_scaling_{_mode}_{_dist}"] = (
            lambda t, g, m=_mode, d=_dist: variance_scaling_(t, 2.0, m, d, generator=g),
            lambda fi, fo, n=_n, family=_family: family(math.sqrt(2.0 / n(fi, fo))),
        )


def draw(
    init: Init, shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return init(torch.empty(shape, dtype=dtype), torch.Generator().manual_seed(seed))


def ks_pvalue(sample: torch.Tensor, dist: st.rv_continuous) -> float:
    return float(st.kstest(sample.double().flatten().numpy(), dist.cdf).pvalue)


def variance_z(sample: torch.Tensor, dist: st.rv_continuous) -> float:
    """(s² − σ²) / SE(s²), with SE² = (μ4 − σ⁴)/n for a zero-mean distribution."""
    x = sample.double().flatten().numpy()
    var = dist.var()
    return float((np.mean(x**2) - var) / math.sqrt((dist.moment(4) - var**2) / x.size))


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("name", list(CASES))
def test_distribution_matches_formula(name: str, shape_name: str) -> None:
    init, expected = CASES[name]
    shape = SHAPES[shape_name]
    dist = expected(*fan_in_and_fan_out(shape))
    w = draw(init, shape, seed=len(name))
    lo, hi = dist.support()
    assert lo <= w.min().item() and w.max().item() <= hi, (w.min(), w.max(), dist.support())
    assert ks_pvalue(w, dist) > 1e-3
    assert abs(variance_z(w, dist)) < 4.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_truncated_normal_is_truncated_at_two_sigma_with_exact_variance(dtype: torch.dtype) -> None:
    scale, shape = 3.0, (300, 200)
    sigma = math.sqrt(scale / 200) / TRUNC_STD  # fan_in = 200
    w = variance_scaling_(torch.empty(shape, dtype=dtype), scale, "fan_in", "truncated_normal",
                          generator=torch.Generator().manual_seed(1))
    assert w.dtype == dtype
    assert w.abs().max().item() <= 2 * sigma * (1 + 1e-6)
    assert w.abs().max().item() > 1.99 * sigma
    assert w.double().var().item() == pytest.approx(scale / 200, rel=0.02)


def test_keras_truncation_constant() -> None:
    assert TRUNC_STD == pytest.approx(0.87962566103423978, rel=1e-14)


# Each row: an initializer and the distribution of a *wrong* convention it must not match.
WRONG = {
    "xavier_is_not_kaiming": ("xavier_normal", lambda fi, fo: normal(kaiming_std(fi))),
    "kaiming_is_not_xavier": (
        "kaiming_uniform_default",
        lambda fi, fo: uniform(xavier_std(fi, fo)),
    ),
    "fan_in_is_not_fan_out": ("kaiming_normal_default", lambda fi, fo: normal(kaiming_std(fo))),
    "fan_out_is_not_fan_in": (
        "kaiming_uniform_fan_out_relu",
        lambda fi, fo: uniform(kaiming_std(fi)),
    ),
    "tanh_gain_is_not_relu_gain": (
        "kaiming_normal_tanh",
        lambda fi, fo: normal(kaiming_std(fi, math.sqrt(2))),
    ),
    "relu_gain_is_not_tanh_gain": (
        "kaiming_normal_default",
        lambda fi, fo: normal(kaiming_std(fi, 5 / 3)),
    ),
    "uniform_is_not_normal": ("kaiming_uniform_default", lambda fi, fo: normal(kaiming_std(fi))),
    "truncated_is_not_uncorrected": (
        "variance_scaling_fan_in_truncated_normal",
        lambda fi, fo: st.truncnorm(-2, 2, scale=math.sqrt(2.0 / fi)),
    ),
    "lecun_is_not_kaiming": ("lecun_normal", lambda fi, fo: normal(kaiming_std(fi))),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_conventions_are_rejected(name: str) -> None:
    """The statistical test that accepts the right distribution rejects the wrong convention."""
    case, wrong = WRONG[name]
    init, _ = CASES[case]
    shape = SHAPES["linear"]
    w = draw(init, shape, seed=len(case))
    fans = fan_in_and_fan_out(shape)
    assert fans[0] != fans[1]
    assert ks_pvalue(w, wrong(*fans)) < 1e-6


# ------------------------------------------------------------------ vs torch, in place, RNG

TORCH_PAIRS = {
    "xavier_uniform": (
        lambda t, g: xavier_uniform_(t, 1.3, generator=g),
        lambda t, g: tinit.xavier_uniform_(t, 1.3, generator=g),
    ),
    "xavier_normal": (
        lambda t, g: xavier_normal_(t, 0.7, generator=g),
        lambda t, g: tinit.xavier_normal_(t, 0.7, generator=g),
    ),
    "kaiming_uniform": (
        lambda t, g: kaiming_uniform_(t, 0.1, "fan_out", generator=g),
        lambda t, g: tinit.kaiming_uniform_(t, 0.1, "fan_out", generator=g),
    ),
    "kaiming_normal": (
        lambda t, g: kaiming_normal_(t, 0, "fan_in", "tanh", generator=g),
        lambda t, g: tinit.kaiming_normal_(t, 0, "fan_in", "tanh", generator=g),
    ),
    "orthogonal": (
        lambda t, g: orthogonal_(t, 2.0, generator=g),
        lambda t, g: tinit.orthogonal_(t, 2.0, generator=g),
    ),
}


@pytest.mark.parametrize("shape", [(6, 4), (3, 8), (5, 2, 3, 3)])
@pytest.mark.parametrize("name", list(TORCH_PAIRS))
def test_same_generator_gives_torchs_samples(name: str, shape: tuple[int, ...]) -> None:
    """Drawing in the same order from the same generator reproduces torch.nn.init exactly."""
    mine, theirs = TORCH_PAIRS[name]
    a = mine(torch.empty(shape, dtype=torch.float64), torch.Generator().manual_seed(5))
    b = theirs(torch.empty(shape, dtype=torch.float64), torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


ALL_INITS = {name: init for name, (init, _) in CASES.items()} | {
    "orthogonal": lambda t, g: orthogonal_(t, generator=g)
}


@pytest.mark.parametrize("name", list(ALL_INITS))
def test_in_place_returns_same_tensor_without_history(name: str) -> None:
    t = torch.empty(6, 4, 3, requires_grad=True)
    ptr = t.data_ptr()
    out = ALL_INITS[name](t, torch.Generator().manual_seed(0))
    assert out is t and t.data_ptr() == ptr
    assert t.grad_fn is None and t.requires_grad and t.is_leaf
    assert torch.isfinite(t).all() and t.abs().sum() > 0


@pytest.mark.parametrize("name", list(ALL_INITS))
def test_generator_is_used_and_global_rng_untouched(name: str) -> None:
    init = ALL_INITS[name]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = init(torch.empty(5, 7), torch.Generator().manual_seed(42))
    b = init(torch.empty(5, 7), torch.Generator().manual_seed(42))
    c = init(torch.empty(5, 7), torch.Generator().manual_seed(43))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_global_rng_is_used_without_generator() -> None:
    torch.manual_seed(0)
    a = xavier_uniform_(torch.empty(4, 4))
    torch.manual_seed(0)
    assert torch.equal(a, xavier_uniform_(torch.empty(4, 4)))


# ------------------------------------------------------- variance_scaling_ as the general form


@pytest.mark.parametrize(
    "special,general",
    [
        (
            lambda t, g: xavier_uniform_(t, 1.5, generator=g),
            lambda t, g: variance_scaling_(t, 2.25, "fan_avg", "uniform", g),
        ),
        (
            lambda t, g: xavier_normal_(t, 1.5, generator=g),
            lambda t, g: variance_scaling_(t, 2.25, "fan_avg", "normal", g),
        ),
        (
            lambda t, g: kaiming_uniform_(t, generator=g),
            lambda t, g: variance_scaling_(t, 2.0, "fan_in", "uniform", g),
        ),
        (
            lambda t, g: kaiming_normal_(t, mode="fan_out", nonlinearity="tanh", generator=g),
            lambda t, g: variance_scaling_(t, 25 / 9, "fan_out", "normal", g),
        ),
        (
            lambda t, g: lecun_normal_(t, generator=g),
            lambda t, g: variance_scaling_(t, 1.0, "fan_in", "normal", g),
        ),
    ],
    ids=["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "lecun_normal"],
)
def test_every_scheme_is_a_case_of_variance_scaling(special: Init, general: Init) -> None:
    a = draw(special, (12, 5, 3), seed=9, dtype=torch.float64)
    b = draw(general, (12, 5, 3), seed=9, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- orthogonal_


@pytest.mark.parametrize("shape", [(8, 3), (3, 8), (5, 5), (4, 2, 3), (6, 2, 1), (2, 3, 2, 2)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_gram_is_gain_squared_identity(shape: tuple[int, ...], gain: float) -> None:
    gen = torch.Generator().manual_seed(2)
    w = orthogonal_(torch.empty(shape, dtype=torch.float64), gain, generator=gen)
    m = w.reshape(shape[0], -1)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    identity = torch.eye(min(m.shape), dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * identity, rtol=0, atol=1e-12)


def test_orthogonal_float32() -> None:
    w = orthogonal_(torch.empty(64, 32), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.T @ w, torch.eye(32), rtol=0, atol=1e-5)


@pytest.fixture
def one_thread():
    """Many tiny QRs are ~300x slower with intra-op threads on a loaded machine; run them on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_orthogonal_is_haar_distributed() -> None:
    """For Haar Q in O(3), Q[0, 0] is uniform on [-1, 1] (a coordinate of a uniform point on S²).

    Without the sign(diag R) correction, LAPACK's QR makes Q[0, 0] negative every time.
    """
    gen = torch.Generator().manual_seed(0)
    corner = torch.stack(
        [
            orthogonal_(torch.empty(3, 3, dtype=torch.float64), generator=gen)[0, 0]
            for _ in range(1000)
        ]
    )
    assert ks_pvalue(corner, st.uniform(-1, 2)) > 1e-3
    gen = torch.Generator().manual_seed(0)
    uncorrected = torch.stack(
        [
            torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64)).Q[0, 0]
            for _ in range(1000)
        ]
    )
    assert ks_pvalue(uncorrected, st.uniform(-1, 2)) < 1e-6


def test_orthogonal_errors_and_empty() -> None:
    with pytest.raises(ValueError, match=r"\(5,\)"):
        orthogonal_(torch.empty(5))
    empty = torch.empty(0, 3)
    assert orthogonal_(empty) is empty


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "fn",
    [
        xavier_uniform_,
        xavier_normal_,
        kaiming_uniform_,
        kaiming_normal_,
        lecun_normal_,
        variance_scaling_,
    ],
)
def test_initializers_need_two_dims(fn: Callable[..., torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        fn(torch.empty(5))


@pytest.mark.parametrize("fn", [kaiming_uniform_, kaiming_normal_])
@pytest.mark.parametrize("mode", ["fan_avg", "fanin", "in"])
def test_kaiming_rejects_bad_mode(fn: Callable[..., torch.Tensor], mode: str) -> None:
    with pytest.raises(ValueError, match=mode):
        fn(torch.empty(3, 4), mode=mode)
    with pytest.raises(ValueError):
        getattr(tinit, fn.__name__)(torch.empty(3, 4), mode=mode)


@pytest.mark.parametrize("fn", [kaiming_uniform_, kaiming_normal_])
def test_kaiming_rejects_bad_nonlinearity(fn: Callable[..., torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="gelu"):
        fn(torch.empty(3, 4), nonlinearity="gelu")


@pytest.mark.parametrize("fn", [kaiming_uniform_, kaiming_normal_])
def test_kaiming_zero_element_tensor_warns_and_is_untouched(fn: Callable) -> None:
    t = torch.empty(0, 4)
    with pytest.warns(UserWarning, match="zero-element") as record:
        assert fn(t) is t
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="zero-element"):
        getattr(tinit, fn.__name__)(torch.empty(0, 4))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scale": -1.0}, "-1.0"),
        ({"scale": math.nan}, "nan"),
        ({"scale": math.inf}, "inf"),
        ({"mode": "fan_sum"}, "fan_sum"),
        ({"mode": "FAN_IN"}, "FAN_IN"),
        ({"distribution": "gaussian"}, "gaussian"),
        ({"distribution": "Normal"}, "Normal"),
    ],
)
def test_variance_scaling_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        variance_scaling_(torch.empty(3, 4), **kwargs)


def test_variance_scaling_rejects_zero_fan() -> None:
    with pytest.raises(ValueError, match="fan_out"):
        variance_scaling_(torch.empty(0, 4), mode="fan_out")


def test_variance_scaling_zero_scale_gives_zeros() -> None:
    for dist in ("normal", "truncated_normal", "uniform"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            w = variance_scaling_(torch.empty(3, 4), 0.0, "fan_avg", dist)
        assert torch.equal(w, torch.zeros(3, 4))
