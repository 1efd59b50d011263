"""BatchNorm1d and LayerNorm modules against torch.nn: outputs, gradients, buffers, state, errors.

As in test_normalization.py, wrong variants defined here (one convention away from torch's) are
run through the protocol the reference passes, to show that it can fail.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from stabletrain import BatchNorm1d, LayerNorm

BN_SHAPES = [(16, 6), (8, 6, 5)]
DTYPES = [torch.float32, torch.float64]
#: (rtol, atol) for comparisons with torch
TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-10, 1e-12)}


def _close(actual: Tensor, expected: Tensor) -> bool:
    rtol, atol = TOL[expected.dtype] if expected.is_floating_point() else (0, 0)
    return actual.shape == expected.shape and torch.allclose(actual, expected, rtol=rtol, atol=atol)


def _randomize_affine(*modules: nn.Module, seed: int = 0) -> None:
    """Give every module the same random weight and bias (where it has them)."""
    gen = torch.Generator().manual_seed(seed)
    reference = modules[0]
    with torch.no_grad():
        for name in ("weight", "bias"):
            if getattr(reference, name, None) is None:
                continue
            value = torch.randn(getattr(reference, name).shape, generator=gen) * 0.5 + 1.0
            for module in modules:
                getattr(module, name).copy_(value)


def _batch(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype, step: int) -> Tensor:
    """Inputs whose mean and spread change with ``step``, so running statistics move."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    return (x * (1.5 + step) + step - 1).to(dtype)


def _module_disagreements(
    make: Callable[..., nn.Module], shape: tuple[int, ...], dtype: torch.dtype, **kwargs: object
) -> list[str]:
    """Run ``make(C, **kwargs)`` and ``torch.nn.BatchNorm1d(C, **kwargs)`` side by side.

    Three training steps (outputs, input and parameter gradients, every buffer), then one
    evaluation step (output and gradients, buffers unchanged); returns every disagreement.
    """
    channels = shape[1]
    ours = make(channels, dtype=dtype, **kwargs)
    ref = nn.BatchNorm1d(channels, dtype=dtype, **kwargs)
    _randomize_affine(ref, ours)
    gen = torch.Generator().manual_seed(1)
    problems = []

    def step(label: str, index: int) -> None:
        x = _batch(gen, shape, dtype, index)
        dout = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        results = []
        for module in (ours, ref):
            module.zero_grad()
            xi = x.clone().requires_grad_()
            out = module(xi)
            out.backward(dout)
            grads = [xi.grad] + [p.grad for p in module.parameters()]
            results.append((out.detach(), grads))
        (out_a, grads_a), (out_b, grads_b) = results
        if not _close(out_a, out_b):
            problems.append(f"{label} output")
        if len(grads_a) != len(grads_b) or not all(map(_close, grads_a, grads_b)):
            problems.append(f"{label} gradients")
        state_a, state_b = ours.state_dict(), ref.state_dict()
        if list(state_a) != list(state_b):
            problems.append(f"{label} state_dict keys {list(state_a)}")
        for key in state_b:
            if key in ("weight", "bias") or key not in state_a:
                continue
            if not _close(state_a[key], state_b[key]):
                problems.append(f"{label} {key}")

    for i in range(3):
        step(f"training step {i}:", i)
    ours.eval()
    ref.eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    step("eval:", 3)
    if any(not torch.equal(before[k], v) for k, v in ours.state_dict().items()):
        problems.append("eval changed the state")
    return problems


class _BNVariant(BatchNorm1d):
    """BatchNorm1d whose conventions can each be switched to a common mistake."""

    def __init__(
        self,
        *args: object,
        detach_stats: bool = False,
        running_correction: int = 1,
        reversed_momentum: bool = False,
        eval_uses_batch_stats: bool = False,
        wrong_axes: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.detach_stats = detach_stats
        self.running_correction = running_correction
        self.reversed_momentum = reversed_momentum
        self.eval_uses_batch_stats = eval_uses_batch_stats
        self.wrong_axes = wrong_axes

    def forward(self, x: Tensor) -> Tensor:
        dims = (0,) if x.dim() == 2 else (0, 2)
        channel = (1, -1) if x.dim() == 2 else (1, -1, 1)
        if self.training or self.eval_uses_batch_stats:
            stat_dims = ((1,) if x.dim() == 2 else (0,)) if self.wrong_axes else dims
            mean = x.mean(stat_dims, keepdim=True)
            var = x.var(stat_dims, keepdim=True, correction=0)
            if self.detach_stats:
                mean, var = mean.detach(), var.detach()
        else:
            mean, var = self.running_mean.view(channel), self.running_var.view(channel)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                keep = m if self.reversed_momentum else 1 - m
                running_var = x.var(dims, correction=self.running_correction)
                self.running_mean.mul_(keep).add_((1 - keep) * x.mean(dims))
                self.running_var.mul_(keep).add_((1 - keep) * running_var)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.view(channel) + self.bias.view(
            channel
        )


#: mistake -> (module factory, the first disagreement the protocol must report)
WRONG_MODULES = {
    "batch statistics detached from the graph": (
        functools.partial(_BNVariant, detach_stats=True),
        "training step 0: gradients",
    ),
    "biased running variance": (
        functools.partial(_BNVariant, running_correction=0),
        "training step 0: running_var",
    ),
    "CS231n momentum (m*old + (1-m)*batch)": (
        functools.partial(_BNVariant, reversed_momentum=True),
        "training step 0: running_mean",
    ),
    "statistics over the wrong axis": (
        functools.partial(_BNVariant, wrong_axes=True),
        "training step 0: output",
    ),
    "eval uses batch statistics": (
        functools.partial(_BNVariant, eval_uses_batch_stats=True),
        "eval: output",
    ),
}


# ------------------------------------------------------------------------- BatchNorm1d vs torch


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_batchnorm1d_matches_torch(
    shape: tuple[int, ...], dtype: torch.dtype, momentum: float | None
) -> None:
    assert _module_disagreements(BatchNorm1d, shape, dtype, momentum=momentum) == []


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize(
    "options",
    [
        {"affine": False},
        {"track_running_stats": False},
        {"affine": False, "track_running_stats": False},
        {"bias": False},
        {"eps": 0.1},
    ],
    ids=str,
)
def test_batchnorm1d_options_match_torch(shape: tuple[int, ...], options: dict) -> None:
    assert _module_disagreements(BatchNorm1d, shape, torch.float64, **options) == []


@pytest.mark.parametrize("shape", BN_SHAPES)
def test_the_wrong_modules_differ_only_in_their_mistake(shape: tuple[int, ...]) -> None:
    # the harness with every convention right passes, so each failure below is its one mistake
    assert _module_disagreements(_BNVariant, shape, torch.float64) == []


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("mistake", list(WRONG_MODULES))
def test_wrong_module_conventions_are_rejected(shape: tuple[int, ...], mistake: str) -> None:
    make, first_problem = WRONG_MODULES[mistake]
    problems = _module_disagreements(make, shape, torch.float64)
    assert problems, f"the comparison with torch did not catch: {mistake}"
    assert problems[0] == first_problem


def test_batchnorm1d_running_statistics_by_hand() -> None:
    gen = torch.Generator().manual_seed(2)
    batches = [
        torch.randn(10, 3, generator=gen, dtype=torch.float64) * (i + 1) + i for i in range(4)
    ]
    ema = BatchNorm1d(3, momentum=0.25, dtype=torch.float64)
    cma = BatchNorm1d(3, momentum=None, dtype=torch.float64)
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for x in batches:
        ema(x)
        cma(x)
        mean = 0.75 * mean + 0.25 * x.mean(0)
        var = 0.75 * var + 0.25 * x.var(0, correction=1)
    torch.testing.assert_close(ema.running_mean, mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ema.running_var, var, rtol=1e-12, atol=1e-14)
    # momentum=None: the plain average of the batch statistics (the initial values drop out)
    torch.testing.assert_close(cma.running_mean, torch.stack([x.mean(0) for x in batches]).mean(0))
    torch.testing.assert_close(cma.running_var, torch.stack([x.var(0) for x in batches]).mean(0))
    assert ema.num_batches_tracked.item() == cma.num_batches_tracked.item() == 4
    assert ema.num_batches_tracked.dtype == torch.long


def test_batchnorm1d_empty_batch_matches_torch() -> None:
    for shape in [(0, 3), (0, 3, 4), (4, 3, 0)]:
        ours, ref = BatchNorm1d(3), nn.BatchNorm1d(3)
        x = torch.randn(shape)
        assert ours(x).shape == ref(x).shape == shape
        for key, value in ref.state_dict().items():
            assert torch.equal(ours.state_dict()[key], value), key
        assert ours.num_batches_tracked.item() == 1


def test_batchnorm1d_factory_kwargs() -> None:
    bn = BatchNorm1d(4, dtype=torch.float64, device="cpu")
    assert bn.weight.dtype == bn.bias.dtype == bn.running_mean.dtype == torch.float64
    assert bn.running_var.dtype == torch.float64 and bn.num_batches_tracked.dtype == torch.long
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    buffers = ["running_mean", "running_var", "num_batches_tracked"]
    assert [n for n, _ in bn.named_buffers()] == buffers


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}, {"bias": False}],
    ids=str,
)
def test_batchnorm1d_state_dict_and_repr_interchange_with_torch(options: dict) -> None:
    ours, ref = BatchNorm1d(5, eps=1e-3, **options), nn.BatchNorm1d(5, eps=1e-3, **options)
    assert repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(3))
    ref(x * 3 + 1)  # move the running statistics
    _randomize_affine(ref, seed=4)
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x))
    fresh = nn.BatchNorm1d(5, eps=1e-3, **options)
    fresh.load_state_dict(ours.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh(x), ref(x))


# -------------------------------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize(
    ("input_shape", "normalized_shape"),
    [((7, 6), 6), ((3, 4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((4, 2, 3), [4, 2, 3])],
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "options", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 0.1}], ids=str
)
def test_layernorm_matches_torch(
    input_shape: tuple[int, ...],
    normalized_shape: int | tuple[int, ...],
    dtype: torch.dtype,
    options: dict,
) -> None:
    ours = LayerNorm(normalized_shape, dtype=dtype, **options)
    ref = nn.LayerNorm(normalized_shape, dtype=dtype, **options)
    _randomize_affine(ref, ours)
    gen = torch.Generator().manual_seed(5)
    x = _batch(gen, input_shape, dtype, 2)
    dout = torch.randn(input_shape, generator=gen, dtype=torch.float64).to(dtype)
    results = []
    for module in (ours, ref):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(dout)
        results.append([out.detach(), xi.grad] + [p.grad for p in module.parameters()])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert a.dtype == b.dtype
        assert _close(a, b), f"max abs difference {(a - b).abs().max()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.1, -3.7, 1e4])
def test_layernorm_constant_sample_gives_exactly_beta(dtype: torch.dtype, value: float) -> None:
    ln = LayerNorm((2, 3), dtype=dtype)
    _randomize_affine(ln, seed=6)
    out = ln(torch.full((4, 2, 3), value, dtype=dtype))
    assert torch.equal(out, ln.bias.detach().expand(4, 2, 3))


def test_layernorm_is_the_same_in_train_and_eval() -> None:
    ln = LayerNorm(5)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(7))
    train_out = ln(x)
    ln.eval()
    assert torch.equal(ln(x), train_out)
    assert list(ln.buffers()) == []


@pytest.mark.parametrize("options", [{}, {"elementwise_affine": False}, {"bias": False}], ids=str)
def test_layernorm_state_dict_and_repr_interchange_with_torch(options: dict) -> None:
    ours, ref = LayerNorm((3, 4), eps=1e-6, **options), nn.LayerNorm((3, 4), eps=1e-6, **options)
    assert repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    _randomize_affine(ref, seed=8)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours(x), ref(x))
    assert repr(LayerNorm(7)) == repr(nn.LayerNorm(7))


# ------------------------------------------------------------------------------------ gradcheck


def _check_gradients(module: nn.Module, x: Tensor) -> None:
    params = dict(module.named_parameters())

    def f(inp: Tensor, *values: Tensor) -> Tensor:
        return torch.func.functional_call(module, dict(zip(params, values)), (inp,))

    inputs = (x.requires_grad_(), *(p.detach().clone().requires_grad_() for p in params.values()))
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 4)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_gradcheck(shape: tuple[int, ...], training: bool) -> None:
    gen = torch.Generator().manual_seed(10)
    bn = BatchNorm1d(3, dtype=torch.float64)
    _randomize_affine(bn, seed=11)
    bn(torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1)  # non-trivial buffers
    bn.train(training)
    _check_gradients(bn, torch.randn(shape, generator=gen, dtype=torch.float64))


def test_layernorm_gradcheck() -> None:
    ln = LayerNorm((3, 4), dtype=torch.float64)
    _randomize_affine(ln, seed=12)
    gen = torch.Generator().manual_seed(13)
    _check_gradients(ln, torch.randn(2, 3, 4, generator=gen, dtype=torch.float64))


def test_modules_are_built_from_tensor_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a fused normalization kernel was called")

    for owner, name in [
        (torch.nn.functional, "batch_norm"),
        (torch.nn.functional, "layer_norm"),
        (torch, "batch_norm"),
        (torch, "native_batch_norm"),
        (torch, "layer_norm"),
        (torch, "native_layer_norm"),
    ]:
        monkeypatch.setattr(owner, name, forbidden)
    x = torch.randn(4, 3, 5, requires_grad=True)
    BatchNorm1d(3)(x).sum().backward()
    LayerNorm(5)(x).sum().backward()
    with pytest.raises(AssertionError, match="fused"):
        nn.BatchNorm1d(3)(x)  # the patch is effective


# --------------------------------------------------------------------------------------- errors


def _error(module: nn.Module, x: Tensor) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        module(x)
    return info.type, str(info.value)


@pytest.mark.parametrize(
    ("shape", "options", "training"),
    [
        ((3,), {}, True),
        ((2, 3, 4, 5), {}, True),
        ((2, 3, 4, 5), {}, False),
        ((1, 3), {}, True),
        ((1, 3, 1), {}, True),
        ((1, 3), {"track_running_stats": False}, False),
    ],
)
def test_batchnorm1d_raises_torchs_errors(
    shape: tuple[int, ...], options: dict, training: bool
) -> None:
    ours = BatchNorm1d(3, **options).train(training)
    ref = nn.BatchNorm1d(3, **options).train(training)
    x = torch.randn(shape)
    assert _error(ours, x) == _error(ref, x)
    assert ours.num_batches_tracked is None or ours.num_batches_tracked.item() == 0


def test_batchnorm1d_one_value_per_channel_is_fine_in_eval() -> None:
    bn = BatchNorm1d(3).eval()
    torch.testing.assert_close(bn(torch.ones(1, 3)), nn.BatchNorm1d(3).eval()(torch.ones(1, 3)))


def test_batchnorm1d_wrong_channel_count() -> None:
    x = torch.randn(4, 5)
    kind, message = _error(BatchNorm1d(3), x)
    assert kind is _error(nn.BatchNorm1d(3), x)[0] is RuntimeError
    assert "3 channels" in message and "(4, 5)" in message


@pytest.mark.parametrize("shape", [(2, 4, 3), (4,), (3, 5)])
def test_layernorm_raises_torchs_errors(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    assert _error(LayerNorm((3, 4)), x) == _error(nn.LayerNorm((3, 4)), x)


def test_layernorm_rejects_an_empty_normalized_shape() -> None:
    with pytest.raises(ValueError, match=r"at least one dimension, got \(\)"):
        LayerNorm(())


# ----------------------------------------------------------------------------------------------
# Folding batch norm into a Linear, and the training loop (lesson 05)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("module", [nn.BatchNorm1d, BatchNorm1d])
def test_fold_batchnorm_matches_torch_fusion_and_the_two_layers(bias: bool, module: type) -> None:
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    from stabletrain import fold_batchnorm

    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(5, 4, bias=bias, dtype=torch.float64)
    bn = module(4, eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        bn.running_mean.normal_(generator=gen)
        bn.running_var.uniform_(0.1, 3.0, generator=gen)
        bn.weight.uniform_(0.5, 2.0, generator=gen)
        bn.bias.normal_(generator=gen)
    linear.eval(), bn.eval()
    before = [t.clone() for t in (*linear.parameters(), *bn.parameters(), *bn.buffers())]
    folded = fold_batchnorm(linear, bn)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    assert isinstance(folded, nn.Linear) and folded is not linear and folded.bias is not None
    assert folded.weight.dtype == torch.float64
    assert torch.allclose(folded(x), bn(linear(x)), atol=1e-12)
    if module is nn.BatchNorm1d:
        reference = fuse_linear_bn_eval(linear, bn)
        assert torch.allclose(folded.weight, reference.weight) and torch.allclose(folded.bias, reference.bias)
    after = [*linear.parameters(), *bn.parameters(), *bn.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_train_bn_classifier_trains_and_predicts_in_eval_mode() -> None:
    from stabletrain import train_bn_classifier
    from stabletrain.data import make_spirals

    torch.manual_seed(0)
    x, y = make_spirals(60, classes=3, seed=0)
    model = nn.Sequential(nn.Linear(2, 32), BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    logits = train_bn_classifier(model, x, y, x[:10], steps=150, lr=0.2, batch_size=32)
    assert not model.training and model[1].num_batches_tracked.item() == 150
    with torch.no_grad():
        assert torch.equal(logits, model(x[:10]))
        assert nn.functional.cross_entropy(model(x), y).item() < 0.9
