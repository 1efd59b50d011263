"""stabletrain.clipping against torch.nn.utils (and AGC against a per-unit numpy computation)."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.utils as tnu

from stabletrain.clipping import (
    adaptive_clip_grad_,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)

INF = float("inf")
F32, F64 = torch.float32, torch.float64

# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Case:
    """Parameters with gradients, rebuilt identically (fixed seed) on every call of ``build``.

    One parameter per entry of ``shapes``/``dtypes``, with a standard normal gradient times
    ``grad_scale``, except the indices in ``zero`` (all-zero gradient) and ``none`` (grad None).
    """

    name: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]
    norm_type: float | str = 2.0
    max_norm: float = 1.0
    grad_scale: float = 1.0
    zero: tuple[int, ...] = ()
    none: tuple[int, ...] = ()
    seed: int = 0

    def build(self) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        params = []
        for i, (shape, dtype) in enumerate(zip(self.shapes, self.dtypes)):
            p = torch.randn(shape, generator=gen, dtype=dtype).requires_grad_()
            if i in self.zero:
                p.grad = torch.zeros(shape, dtype=dtype)
            elif i not in self.none:
                p.grad = torch.randn(shape, generator=gen, dtype=dtype) * self.grad_scale
            params.append(p)
        return params


SHAPE_SETS = {
    "mlp": ((4, 5), (4,), (3, 4), (3,)),
    "conv": ((8, 3, 3, 3), (8,), (), (2, 8), (5,)),
    "single": ((7,),),
}
DTYPE_MIXES = {
    "f32": lambda n: (F32,) * n,
    "f64": lambda n: (F64,) * n,
    "mixed": lambda n: tuple(F32 if i % 2 else F64 for i in range(n)),
}
NORM_TYPES = (1, 2.0, 3.5, INF, "inf", 0)
MAX_NORMS = (0.0, 0.3, 1e4)


def _sweep() -> list[Case]:
    cases = []
    for (sname, shapes), (dname, mix), p, m in itertools.product(
        SHAPE_SETS.items(), DTYPE_MIXES.items(), NORM_TYPES, MAX_NORMS
    ):
        n = len(shapes)
        cases.append(
            Case(
                name=f"{sname}-{dname}-p{p}-max{m}",
                shapes=shapes,
                dtypes=mix(n),
                norm_type=p,
                max_norm=m,
                # the conv set has one all-zero gradient (not counted by p=0) and one None
                zero=(1,) if sname == "conv" else (),
                none=(4,) if sname == "conv" else (),
                seed=len(cases),
            )
        )
    return cases


SWEEP = _sweep()
# Gradients whose total norm (~1e-5) is comparable to the 1e-6 in max_norm / (total + 1e-6).
TINY = [
    Case(f"tiny-{dname}", SHAPE_SETS["mlp"], mix(4), 2.0, 1e-6, 1e-6, seed=7)
    for dname, mix in DTYPE_MIXES.items()
]
CASES = SWEEP + TINY


def _clone(params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = None if p.grad is None else p.grad.clone()
        out.append(q)
    return out


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 2e-6 if dtype == F32 else 1e-12, "atol": 0.0}


def close(actual: torch.Tensor | None, expected: torch.Tensor | None) -> bool:
    """Same dtype, shape and values (NaN == NaN), to a few ulp of the dtype."""
    if actual is None or expected is None:
        return actual is None and expected is None
    try:
        torch.testing.assert_close(actual, expected, equal_nan=True, **_tol(expected.dtype))
    except AssertionError:
        return False
    return True


def grads_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(close(p.grad, q.grad) for p, q in zip(a, b))


def run_against_torch(
    fn: Callable[..., torch.Tensor | None], case: Case
) -> tuple[torch.Tensor | None, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Clip copies of ``case`` with ``fn`` and with torch; return both norms and both params."""
    mine, ref = case.build(), case.build()
    got = fn(mine, case.max_norm, case.norm_type)
    want = tnu.clip_grad_norm_(ref, case.max_norm, case.norm_type)
    return got, want, mine, ref


# ----------------------------------------------------------------------------- clip_grad_norm_


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_clip_grad_norm_matches_torch(case: Case) -> None:
    got, want, mine, ref = run_against_torch(clip_grad_norm_, case)
    assert got.shape == () and close(got, want), (got, want)
    assert grads_close(mine, ref)
    for p, q in zip(mine, ref):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert p.grad.dtype == q.grad.dtype


def test_inputs_exercise_clipping_and_non_clipping() -> None:
    """The sweep must contain totals both above and below max_norm, or the tests prove little."""
    ratios = []
    for case in SWEEP:
        grads = [p.grad for p in case.build() if p.grad is not None]
        total = tnu.get_total_norm(grads, case.norm_type)
        ratios.append(float(total) / case.max_norm if case.max_norm else math.inf)
    assert min(ratios) < 1 < max(r for r in ratios if math.isfinite(r))


def _per_parameter_mutant(params, max_norm, norm_type):
    """Wrong: each tensor clipped by its own norm instead of one global norm."""
    for p in params:
        n = torch.linalg.vector_norm(p.grad, float(norm_type))
        p.grad.mul_(torch.clamp(max_norm / (n + 1e-6), max=1.0))


def _no_epsilon_mutant(params, max_norm, norm_type):
    """Wrong: scale by max_norm / total, and only if total > max_norm."""
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad, float(norm_type)).double() for p in params]),
        float(norm_type),
    )
    if total > max_norm:
        for p in params:
            p.grad.mul_(max_norm / total)


@pytest.mark.parametrize("mutant", [_per_parameter_mutant, _no_epsilon_mutant])
def test_mutants_are_distinguished_by_the_inputs_used(mutant) -> None:
    """Each wrong convention gives different gradients from torch on at least one test input."""
    distinguished = []
    for case in CASES:
        if case.none:  # the mutants do not skip None gradients; compare where they apply
            continue
        _, _, mine, ref = run_against_torch(mutant, case)
        if not grads_close(mine, ref):
            distinguished.append(case.name)
    assert distinguished, f"{mutant.__name__} passes every input"


def _three_four() -> list[torch.Tensor]:
    """One float64 gradient [3, 4], whose 2-norm is exactly 5."""
    p = torch.zeros(2, dtype=F64, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0], dtype=F64)
    return [p]


def test_coefficient_is_applied_when_total_equals_max_norm() -> None:
    params, ref, mutant = _three_four(), _three_four(), _three_four()
    total = clip_grad_norm_(params, 5.0)
    assert total.item() == 5.0
    expected = torch.tensor([3.0, 4.0], dtype=F64) * (5.0 / (5.0 + 1e-6))
    assert close(params[0].grad, expected)
    tnu.clip_grad_norm_(ref, 5.0)
    assert grads_close(params, ref)
    _no_epsilon_mutant(mutant, 5.0, 2.0)  # leaves [3, 4] untouched: rejected by the same check
    assert torch.equal(mutant[0].grad, _three_four()[0].grad) and not grads_close(mutant, ref)


def test_single_tensor_is_wrapped() -> None:
    case = Case("single", ((6, 2),), (F32,), max_norm=0.5)
    (p,), (q,) = case.build(), case.build()
    assert close(clip_grad_norm_(p, 0.5), tnu.clip_grad_norm_(q, 0.5))
    assert close(p.grad, q.grad)


def test_generator_is_consumed_once_and_clipped() -> None:
    case = Case("gen", SHAPE_SETS["mlp"], (F32,) * 4, max_norm=0.1)
    mine, ref = case.build(), case.build()
    got = clip_grad_norm_((p for p in mine), 0.1)
    want = tnu.clip_grad_norm_(ref, 0.1)
    assert close(got, want) and got.item() > 0.1
    assert grads_close(mine, ref)


def test_empty_generator_warns_and_empty_list_does_not() -> None:
    with pytest.warns(UserWarning, match="empty generator") as record:
        total = clip_grad_norm_((p for p in []), 1.0)
    assert record[0].filename == __file__  # points at the caller
    assert torch.equal(total, torch.tensor(0.0)) and total.dtype == F32 and total.shape == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(clip_grad_norm_([], 1.0), torch.tensor(0.0))
    with pytest.warns(UserWarning, match="empty generator"):
        tnu.clip_grad_norm_((p for p in []), 1.0)


def test_none_grads_are_skipped_and_stay_none() -> None:
    params = [torch.ones(3, requires_grad=True) for _ in range(3)]
    params[1].grad = torch.full((3,), 10.0)
    total = clip_grad_norm_(params, 1.0)
    assert params[0].grad is None and params[2].grad is None
    assert total.item() == pytest.approx(math.sqrt(300))
    assert torch.linalg.vector_norm(params[1].grad).item() == pytest.approx(1.0, rel=1e-5)


def test_no_gradients_gives_zero_norm_and_changes_nothing() -> None:
    params = [torch.ones(3, requires_grad=True), torch.ones(2, 2, requires_grad=True)]
    total = clip_grad_norm_(params, 1.0)
    assert torch.equal(total, torch.tensor(0.0)) and total.dtype == F32
    assert all(p.grad is None for p in params)
    assert torch.equal(total, tnu.clip_grad_norm_(params, 1.0))


def test_p0_counts_tensors_with_a_nonzero_entry() -> None:
    """Norm of per-tensor norms: for p = 0, 2 non-zero tensors, not 8 non-zero entries."""
    case = Case("p0", ((3,), (4,), (2, 2)), (F64,) * 3, norm_type=0, max_norm=1.0, zero=(0,))
    mine = case.build()
    flat_count = sum(int((p.grad != 0).sum()) for p in mine)
    total = clip_grad_norm_(mine, 1.0, norm_type=0)
    assert total.item() == 2.0 and flat_count == 8
    _, want, _, ref = run_against_torch(clip_grad_norm_, case)
    assert close(total, want) and grads_close(mine, ref)


@pytest.mark.parametrize("p", [1, 2.0, 3.5, INF])
def test_total_norm_equals_flattened_norm_for_positive_p(p: float) -> None:
    params = Case("flat", SHAPE_SETS["conv"], (F64,) * 5).build()
    flat = np.concatenate([q.grad.numpy().ravel() for q in params if q.grad is not None])
    expected = np.linalg.norm(flat, ord=p)
    assert clip_grad_norm_(params, 1e9, p).item() == pytest.approx(expected, rel=1e-12)


def test_returns_the_norm_before_clipping() -> None:
    params = Case("pre", SHAPE_SETS["mlp"], (F64,) * 4, max_norm=0.01).build()
    before = math.sqrt(sum(float((q.grad**2).sum()) for q in params))
    total = clip_grad_norm_(params, 0.01)
    after = math.sqrt(sum(float((q.grad**2).sum()) for q in params))
    assert total.item() == pytest.approx(before, rel=1e-12)
    assert after == pytest.approx(0.01, rel=1e-5)


def test_inf_string_equals_inf_float() -> None:
    case = Case("inf", SHAPE_SETS["mlp"], (F32,) * 4)
    a, b = case.build(), case.build()
    assert torch.equal(clip_grad_norm_(a, 0.2, "inf"), clip_grad_norm_(b, 0.2, INF))
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a, b))


def test_mixed_dtypes_give_float64_norm_and_keep_grad_dtypes() -> None:
    params = Case("mixed", SHAPE_SETS["mlp"], (F32, F64, F32, F64), max_norm=0.1).build()
    total = clip_grad_norm_(params, 0.1)
    assert total.dtype == F64
    assert [p.grad.dtype for p in params] == [F32, F64, F32, F64]


def test_max_norm_zero_zeroes_every_gradient() -> None:
    params = Case("zero", SHAPE_SETS["conv"], (F32,) * 5, none=(4,)).build()
    clip_grad_norm_(params, 0.0)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params[:4])


def _with_nonfinite(value: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = Case("nf", SHAPE_SETS["mlp"], (F32,) * 4).build()
    params[2].grad[1, 1] = value
    return params, _clone(params)


@pytest.mark.parametrize("value", [math.nan, INF, -INF])
def test_nonfinite_raises_before_changing_any_gradient(value: float) -> None:
    params, untouched = _with_nonfinite(value)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 0.1, error_if_nonfinite=True)
    assert grads_close(params, untouched)
    with pytest.raises(RuntimeError):
        tnu.clip_grad_norm_(untouched, 0.1, error_if_nonfinite=True)


@pytest.mark.parametrize("value", [math.nan, INF])
def test_nonfinite_propagates_as_in_torch(value: float) -> None:
    params, ref = _with_nonfinite(value)
    got = clip_grad_norm_(params, 0.1)
    want = tnu.clip_grad_norm_(ref, 0.1)
    assert close(got, want) and grads_close(params, ref)
    if math.isnan(value):  # NaN coefficient: everything NaN
        assert all(p.grad.isnan().all() for p in params)
    else:  # coefficient 0: finite entries 0, the inf entry 0·inf = NaN
        assert params[2].grad[1, 1].isnan() and params[0].grad.eq(0).all()


@pytest.mark.parametrize("foreach", [None, True, False])
def test_foreach_is_accepted(foreach: bool | None) -> None:
    case = Case("fe", SHAPE_SETS["mlp"], (F32,) * 4, max_norm=0.2)
    mine, ref = case.build(), case.build()
    assert close(clip_grad_norm_(mine, 0.2, foreach=foreach), tnu.clip_grad_norm_(ref, 0.2))
    assert grads_close(mine, ref)


# ----------------------------------------------------------------------------- split functions


@pytest.mark.parametrize("case", SWEEP[::7], ids=lambda c: c.name)
def test_get_total_norm_matches_torch(case: Case) -> None:
    tensors = [p.grad for p in case.build() if p.grad is not None]
    want = tnu.get_total_norm(tensors, case.norm_type)
    assert close(get_total_norm(tensors, case.norm_type), want)
    assert close(get_total_norm(iter(tensors), case.norm_type), want)


def test_get_total_norm_edge_cases() -> None:
    t = torch.tensor([3.0, -4.0])
    assert torch.equal(get_total_norm(t), torch.tensor(5.0))
    assert torch.equal(get_total_norm([]), torch.tensor(0.0))
    bad = [torch.tensor([1.0, math.nan])]
    assert get_total_norm(bad).isnan()
    with pytest.raises(RuntimeError, match="non-finite"):
        get_total_norm(bad, error_if_nonfinite=True)


@pytest.mark.parametrize("total", [0.0, 0.5, 2.5, 1e6, INF])
def test_clip_grads_with_norm_matches_torch(total: float) -> None:
    case = Case("cw", SHAPE_SETS["conv"], DTYPE_MIXES["mixed"](5), none=(4,))
    mine, ref = case.build(), case.build()
    norm = torch.tensor(total, dtype=F64)
    assert clip_grads_with_norm_(mine, 1.0, norm) is None
    tnu.clip_grads_with_norm_(ref, 1.0, norm)
    assert grads_close(mine, ref)
    assert mine[4].grad is None


def test_clip_grads_with_norm_rejects_a_float_total() -> None:
    with pytest.raises(TypeError, match="2.5"):
        clip_grads_with_norm_([torch.ones(2, requires_grad=True)], 1.0, 2.5)


# ----------------------------------------------------------------------------- clip_grad_value_


@pytest.mark.parametrize("case", SWEEP[::5], ids=lambda c: c.name)
@pytest.mark.parametrize("clip_value", [0.0, 0.5, 1e3])
def test_clip_grad_value_matches_torch(case: Case, clip_value: float) -> None:
    mine, ref = case.build(), case.build()
    assert clip_grad_value_(mine, clip_value) is None
    tnu.clip_grad_value_(ref, clip_value)
    for p, q in zip(mine, ref):
        assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad)
        assert p.grad is None or p.grad.abs().max() <= clip_value


def test_clip_grad_value_special_values_single_tensor_and_generator() -> None:
    values = torch.tensor([math.nan, INF, -INF, 2.0, -0.5])
    p = torch.zeros(5, requires_grad=True)
    p.grad = values.clone()
    clip_grad_value_(p, 1.0)
    expected = torch.tensor([math.nan, 1.0, -1.0, 1.0, -0.5])
    torch.testing.assert_close(p.grad, expected, equal_nan=True)
    q = torch.zeros(5, requires_grad=True)
    q.grad = values.clone()
    none = torch.zeros(2, requires_grad=True)
    clip_grad_value_((x for x in [none, q]), 1.0)
    assert none.grad is None and torch.equal(p.grad.nan_to_num(), q.grad.nan_to_num())


def test_value_and_norm_clipping_are_distinguished() -> None:
    """Value clipping changes the gradient's direction; norm clipping does not."""
    a, b = Case("v", ((10,),), (F64,)).build(), Case("n", ((10,),), (F64,)).build()
    raw = a[0].grad.clone()
    clip_grad_value_(a, 0.5)
    clip_grad_norm_(b, 0.5)

    def cos(g: torch.Tensor) -> float:
        return float(torch.dot(g, raw) / (g.norm() * raw.norm()))

    assert cos(b[0].grad) == pytest.approx(1.0, abs=1e-12)
    assert cos(a[0].grad) < 0.999


# ----------------------------------------------------------------------------- AGC


def agc_numpy(w: np.ndarray, g: np.ndarray, clip_factor: float, eps: float, p: float) -> np.ndarray:
    """Brock et al. 2021, a unit at a time: a row of the (out, rest) view; ndim <= 1: all of it."""
    rows_w = w.reshape(1, -1) if w.ndim <= 1 else w.reshape(w.shape[0], -1)
    rows_g = (g.reshape(1, -1) if g.ndim <= 1 else g.reshape(g.shape[0], -1)).copy()
    for i in range(rows_w.shape[0]):
        max_norm = max(np.linalg.norm(rows_w[i], ord=p), eps) * clip_factor
        grad_norm = np.linalg.norm(rows_g[i], ord=p)
        if grad_norm >= max_norm:
            rows_g[i] = rows_g[i] * (max_norm / max(grad_norm, 1e-6))
    return rows_g.reshape(g.shape)


def agc_params(dtype: torch.dtype = F64) -> list[torch.Tensor]:
    """Linear, conv, bias, scalar, and a None-grad parameter; gradient rows spread over 4 decades
    so that some units are clipped and others are not; one all-zero weight row (eps floor) and
    one all-zero gradient unit (the 1e-6 floor on ‖G_i‖ keeps it 0, not 0/0, at clip_factor=0)."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(6, 5), (4, 3, 2, 2), (6,), (), (3, 3)]
    params = []
    for shape in shapes:
        w = (0.1 * torch.randn(shape, generator=gen, dtype=dtype)).requires_grad_()
        if len(shape) >= 2:  # row i scaled by 10^(-4 + 4i/(rows-1))
            scale = torch.logspace(-4, 0, shape[0], dtype=dtype)
            scale = scale.reshape((-1,) + (1,) * (len(shape) - 1))
        else:
            scale = 1e-4
        w.grad = torch.randn(shape, generator=gen, dtype=dtype) * scale
        params.append(w)
    with torch.no_grad():
        params[0][2].zero_()
        params[1].grad[0].zero_()
    params[4].grad = None
    return params


@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, INF])
@pytest.mark.parametrize("clip_factor,eps", [(0.01, 1e-3), (0.1, 1e-2), (0.0, 1e-3)])
@pytest.mark.parametrize("dtype", [F64, F32])
def test_agc_matches_per_unit_numpy(
    p: float, clip_factor: float, eps: float, dtype: torch.dtype
) -> None:
    params = agc_params(dtype)
    expected = [
        None
        if q.grad is None
        else agc_numpy(q.detach().double().numpy(), q.grad.double().numpy(), clip_factor, eps, p)
        for q in params
    ]
    assert adaptive_clip_grad_(params, clip_factor, eps, p) is None
    for q, e in zip(params, expected):
        if e is None:
            assert q.grad is None
        else:
            assert q.grad.dtype == dtype
            rtol = 1e-12 if dtype == F64 else 2e-6
            np.testing.assert_allclose(q.grad.double().numpy(), e, rtol=rtol, atol=0)


def test_agc_inputs_clip_some_units_and_keep_others_bitwise() -> None:
    params = agc_params()
    raw = [None if q.grad is None else q.grad.clone() for q in params]
    adaptive_clip_grad_(params)
    w, g, g0 = params[0].detach(), params[0].grad, raw[0]
    changed = (g != g0).any(dim=1)
    assert changed.any() and (~changed).any()
    assert torch.equal(g[~changed], g0[~changed])
    ratio = g.norm(dim=1) / w.norm(dim=1).clamp(min=1e-3)
    expected = torch.full_like(ratio[changed], 0.01)
    torch.testing.assert_close(ratio[changed], expected, rtol=1e-9, atol=0)
    assert g[2].norm().item() == pytest.approx(1e-3 * 0.01, rel=1e-9)  # zero weight row: eps floor


def test_agc_is_unitwise_not_per_tensor() -> None:
    """A per-tensor AGC (whole-tensor norms for matrices) gives other gradients on these inputs."""
    unitwise, per_tensor = agc_params(), agc_params()
    adaptive_clip_grad_(unitwise)
    for q in per_tensor:
        if q.grad is not None:
            max_norm = max(q.detach().norm().item(), 1e-3) * 0.01
            if q.grad.norm().item() >= max_norm:
                q.grad.mul_(max_norm / max(q.grad.norm().item(), 1e-6))
    assert not torch.allclose(unitwise[0].grad, per_tensor[0].grad, rtol=1e-3)


def test_agc_single_tensor_generator_and_bad_arguments() -> None:
    a, b = agc_params(), agc_params()
    adaptive_clip_grad_(a[0])
    adaptive_clip_grad_(q for q in b[:1])
    expected = agc_numpy(b[0].detach().numpy(), agc_params()[0].grad.numpy(), 0.01, 1e-3, 2.0)
    np.testing.assert_allclose(a[0].grad.numpy(), expected, rtol=1e-12)
    assert torch.equal(a[0].grad, b[0].grad)
    with pytest.raises(ValueError, match="-0.5"):
        adaptive_clip_grad_(a, clip_factor=-0.5)
    with pytest.raises(ValueError, match="-1"):
        adaptive_clip_grad_(a, eps=-1.0)
