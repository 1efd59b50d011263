"""Tests of stabletrain.models and stabletrain.data."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from stabletrain.data import make_regression, make_sequence_task, make_spirals, standardize
from stabletrain.diagnostics import TrainingRecorder, grad_norms_per_layer
from stabletrain.models import ExplodingRNN, ResidualBlock, make_mlp, train_steps



def _x(n: int = 64, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- make_mlp ---------------------------------------------------------------------------------


def test_plain_mlp_layout_shapes_and_param_count() -> None:
    model = make_mlp(4, 16, 3, 2, activation="relu")
    assert list(dict(model.named_children())) == ["fc1", "act1", "fc2", "act2", "fc3", "act3", "out"]
    assert isinstance(model.act2, nn.ReLU)
    assert model(_x()).shape == (64, 2)
    assert _n_params(model) == (4 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 2 + 2)
    no_bias = make_mlp(4, 16, 3, 2, bias=False)
    assert _n_params(no_bias) == 4 * 16 + 2 * 16 * 16 + 16 * 2
    assert sum(isinstance(m, nn.Linear) for m in make_mlp(3, 8, 7, 1).modules()) == 8


@pytest.mark.parametrize(("norm", "cls"), [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_norm_sits_between_linear_and_activation(norm: str, cls: type[nn.Module]) -> None:
    model = make_mlp(4, 8, 2, 1, norm=norm)
    names = list(dict(model.named_children()))
    assert names == ["fc1", "norm1", "act1", "fc2", "norm2", "act2", "out"]
    assert isinstance(model.norm2, cls)
    calls: list[int] = []
    custom = make_mlp(4, 8, 2, 1, norm=lambda width: calls.append(width) or nn.Identity())
    assert calls == [8, 8] and isinstance(custom.norm1, nn.Identity)


def test_residual_layout_and_block_formulas() -> None:
    model = make_mlp(4, 8, 3, 2, residual=True, norm="layer", seed=0)
    assert list(dict(model.named_children())) == ["embed", "block1", "block2", "block3", "out"]
    block = model.block2
    assert isinstance(block, ResidualBlock)
    assert [n for n, _ in block.named_children()] == ["norm", "fc", "act"]
    h = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(block(h), h + torch.tanh(block.fc(block.norm(h))))
        post = ResidualBlock(8, "relu", norm="layer", pre_norm=False, residual_scale=0.5)
        assert [n for n, _ in post.named_children()] == ["fc", "act", "norm"]
        torch.testing.assert_close(post(h), post.norm(h + 0.5 * torch.relu(post.fc(h))))
        plain = ResidualBlock(8, "tanh")
        assert not hasattr(plain, "norm")
        torch.testing.assert_close(plain(h), h + torch.tanh(plain.fc(h)))
    assert model(_x()).shape == (64, 2)


def test_residual_scale_zero_makes_blocks_identities() -> None:
    model = make_mlp(4, 8, 5, 2, residual=True, residual_scale=0.0, seed=0)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.out(model.embed(x)))


def test_residual_keeps_the_first_layers_gradient_where_a_plain_net_loses_it() -> None:
    x = _x(128, 16)
    ratios = {}
    for residual, first, last in ((False, "fc1", "fc30"), (True, "block1.fc", "block30.fc")):
        model = make_mlp(16, 32, 30, 1, activation="tanh", residual=residual, seed=0)
        model(x).pow(2).mean().backward()
        norms = grad_norms_per_layer(model)
        ratios[residual] = norms[f"{first}.weight"] / norms[f"{last}.weight"]
    assert ratios[False] < 1e-4  # vanishes through 30 tanh layers at PyTorch's default init
    assert ratios[True] > 0.1  # the identity path carries it back


@pytest.mark.parametrize(
    ("activation", "gain"), [("tanh", 5 / 3), ("relu", math.sqrt(2)), ("sigmoid", 1.0)]
)
def test_kaiming_init_std_and_zero_bias(activation: str, gain: float) -> None:
    model = make_mlp(200, 400, 2, 10, activation=activation, init="kaiming", seed=0)
    assert model.fc2.weight.std().item() == pytest.approx(gain / math.sqrt(400), rel=0.02)
    assert model.fc1.weight.std().item() == pytest.approx(gain / math.sqrt(200), rel=0.02)
    assert model.out.weight.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.05)  # linear
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.Linear))


def test_other_init_schemes() -> None:
    xavier = make_mlp(200, 400, 2, 10, init="xavier", seed=0)
    assert xavier.fc1.weight.std().item() == pytest.approx(math.sqrt(2 / 600), rel=0.02)
    lecun = make_mlp(200, 400, 2, 10, activation="relu", init="lecun", seed=0)
    assert lecun.fc2.weight.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.02)
    ortho = make_mlp(8, 16, 2, 4, activation="tanh", init="orthogonal", seed=0)
    w = ortho.fc2.weight.detach()
    torch.testing.assert_close(w @ w.T, (5 / 3) ** 2 * torch.eye(16), atol=1e-5, rtol=0)
    const = make_mlp(3, 5, 2, 1, init=functools.partial(nn.init.constant_, val=0.25))
    assert all(torch.all(m.weight == 0.25) for m in const.modules() if isinstance(m, nn.Linear))
    default = make_mlp(300, 400, 1, 1, seed=0)  # PyTorch's U(±1/√fan_in): Var = 1/(3 fan_in)
    assert default.fc1.weight.var().item() == pytest.approx(1 / 900, rel=0.02)


def test_weight_scale_multiplies_every_linear_weight() -> None:
    base = make_mlp(4, 8, 3, 2, init="kaiming", seed=3)
    scaled = make_mlp(4, 8, 3, 2, init="kaiming", seed=3, weight_scale=2.5)
    for (name, p), (_, q) in zip(base.named_parameters(), scaled.named_parameters()):
        factor = 2.5 if name.endswith("weight") else 1.0
        torch.testing.assert_close(q, factor * p)


def test_seed_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b = make_mlp(4, 8, 2, 1, seed=7), make_mlp(4, 8, 2, 1, seed=7)
    c = make_mlp(4, 8, 2, 1, seed=8)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc1.weight, c.fc1.weight)
    r1, r2 = ExplodingRNN(2, 4, 1, seed=1), ExplodingRNN(2, 4, 1, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(r1.parameters(), r2.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_make_mlp_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'swish'"):
        make_mlp(2, 4, 2, 1, activation="swish")
    with pytest.raises(ValueError, match="'he'"):
        make_mlp(2, 4, 2, 1, init="he")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'group'"):
        make_mlp(2, 4, 2, 1, norm="group")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth.*0"):
        make_mlp(2, 4, 0, 1)
    with pytest.raises(ValueError, match="hidden.*0"):
        make_mlp(2, 0, 2, 1)
    with pytest.raises(ValueError, match="nan"):
        make_mlp(2, 4, 2, 1, weight_scale=float("nan"))


# --- ExplodingRNN -----------------------------------------------------------------------------


def test_exploding_rnn_shapes_and_recurrent_spectrum() -> None:
    rnn = ExplodingRNN(3, 16, 2, recurrent_scale=1.7, seed=0)
    x = torch.randn(5, 9, 3, generator=torch.Generator().manual_seed(0))
    assert rnn(x).shape == (5, 2)
    singular_values = torch.linalg.svdvals(rnn.recurrent.weight.detach())
    torch.testing.assert_close(singular_values, torch.full((16,), 1.7), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(5, 9\)"):
        rnn(x[:, :, 0])
    with pytest.raises(ValueError, match="-1.0"):
        ExplodingRNN(3, 16, 2, recurrent_scale=-1.0)


def test_exploding_rnn_forward_is_the_tanh_recursion() -> None:
    rnn = ExplodingRNN(2, 4, 1, recurrent_scale=1.3, seed=0)
    x = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(2))
    h = torch.zeros(3, 4)
    with torch.no_grad():
        for t in range(6):
            h = torch.tanh(rnn.input(x[:, t]) + h @ rnn.recurrent.weight.T)
        torch.testing.assert_close(rnn(x), rnn.readout(h))


def _rnn_grad_norm(scale: float, T: int) -> float:
    x, y = make_sequence_task(64, T, seed=0)
    rnn = ExplodingRNN(2, 32, 1, recurrent_scale=scale, seed=0)
    nn.functional.mse_loss(rnn(x), y).backward()
    return math.sqrt(sum(v**2 for v in grad_norms_per_layer(rnn).values()))


def test_exploding_rnn_gradient_grows_with_T_only_for_scale_above_one() -> None:
    growth_large = _rnn_grad_norm(3.0, 40) / _rnn_grad_norm(3.0, 10)
    growth_small = _rnn_grad_norm(0.5, 40) / _rnn_grad_norm(0.5, 10)
    assert growth_large > 100.0
    assert growth_small < 3.0


def test_train_steps_rnn_blows_up_without_clipping_and_not_with_it() -> None:
    x, y = make_sequence_task(256, 30, seed=0)
    results = {}
    for clip in (None, 1.0):
        rnn = ExplodingRNN(2, 32, 1, seed=0)
        opt = torch.optim.SGD(rnn.parameters(), lr=0.5)
        results[clip] = train_steps(rnn, (x, y), nn.functional.mse_loss, opt, 40, clip=clip, batch_size=64)
    blown, clipped = results[None], results[1.0]
    assert blown.diverged_at is not None and blown.diverged_at < 30
    assert np.isfinite(blown.losses[: blown.diverged_at]).all()
    assert not np.isfinite(blown.losses[blown.diverged_at])
    assert np.isnan(blown.losses[blown.diverged_at + 1 :]).all()
    assert np.isnan(blown.grad_norms[blown.diverged_at :]).all()
    assert clipped.diverged_at is None and np.isfinite(clipped.losses).all()
    assert clipped.losses[-5:].mean() < clipped.losses[0]
    assert (clipped.clipped_grad_norms <= 1.0 + 1e-4).all()
    assert (clipped.clipped_grad_norms < clipped.grad_norms).any()


def test_train_steps_full_batch_is_deterministic_and_records() -> None:
    x, y = make_spirals(30, 3, seed=0)

    def run(clip: object = None, recorder: TrainingRecorder | None = None):
        model = make_mlp(2, 16, 2, 3, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        rec = recorder(model) if recorder else None
        result = train_steps(model, (x, y), nn.functional.cross_entropy, opt, 6, clip=clip, recorder=rec)
        return result, rec

    (a, _), (b, _) = run(), run()
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.losses.shape == a.grad_norms.shape == (6,) and a.diverged_at is None
    np.testing.assert_array_equal(a.grad_norms, a.clipped_grad_norms)
    assert a.losses[-1] < a.losses[0]
    calls: list[int] = []
    value_clip = functools.partial(torch.nn.utils.clip_grad_value_, clip_value=1e-3)
    c, rec = run(clip=lambda ps: (calls.append(len(ps)), value_clip(ps)), recorder=TrainingRecorder)
    assert calls == [6] * 6  # called each step with the list of trainable parameters
    assert (c.clipped_grad_norms < c.grad_norms).all()
    assert rec.steps == 6
    np.testing.assert_allclose(rec.loss, c.losses)


def test_train_steps_validates_arguments() -> None:
    model = make_mlp(2, 4, 1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = (torch.zeros(8, 2), torch.zeros(8, 1))
    with pytest.raises(ValueError, match="steps.*0"):
        train_steps(model, data, nn.functional.mse_loss, opt, 0)
    with pytest.raises(ValueError, match="batch_size.*9"):
        train_steps(model, data, nn.functional.mse_loss, opt, 1, batch_size=9)
    with pytest.raises(ValueError, match="8 vs 7"):
        train_steps(model, (data[0], data[1][:7]), nn.functional.mse_loss, opt, 1)
    with pytest.raises(ValueError, match="-1"):
        train_steps(model, data, nn.functional.mse_loss, opt, 1, clip=-1.0)


# --- data -------------------------------------------------------------------------------------


def test_generators_are_deterministic_by_seed_and_leave_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    for make in (
        lambda s: make_regression(50, 3, seed=s),
        lambda s: make_spirals(20, 3, seed=s),
        lambda s: make_sequence_task(10, 8, seed=s),
    ):
        (xa, ya), (xb, yb), (xc, _) = make(0), make(0), make(1)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert not torch.equal(xa, xc)
        assert xa.dtype == torch.float32
    assert torch.equal(torch.random.get_rng_state(), state)


def test_make_regression_shapes_scales_and_signal() -> None:
    x, y = make_regression(4000, 4, noise=0.1, seed=0, scale_spread=1000.0, offset=50.0)
    assert x.shape == (4000, 4) and y.shape == (4000, 1) and y.dtype == torch.float32
    np.testing.assert_allclose(x.std(dim=0).numpy(), [1, 10, 100, 1000], rtol=0.05)
    scales = np.array([1.0, 10.0, 100.0, 1000.0])
    assert (np.abs(x.mean(dim=0).numpy() - 50.0) < 0.1 * scales).all()
    # y is linear in the standardized features, up to the noise
    (z,) = standardize(x)
    design = torch.cat([z, torch.ones(4000, 1)], dim=1)
    residual = y - design @ torch.linalg.lstsq(design, y).solution
    assert residual.std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="-0.5"):
        make_regression(10, 2, noise=-0.5)


def test_make_spirals_labels_and_radius() -> None:
    x, y = make_spirals(50, 4, noise=0.0, seed=0)
    assert x.shape == (200, 2) and y.shape == (200,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [50] * 4
    torch.testing.assert_close(x[:50].norm(dim=1), torch.linspace(0, 1, 50))
    with pytest.raises(ValueError, match="classes.*1"):
        make_spirals(5, 1)


def test_make_sequence_task_is_the_adding_problem() -> None:
    x, y = make_sequence_task(500, 20, seed=0)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    values, markers = x[..., 0], x[..., 1]
    assert torch.all(markers.sum(dim=1) == 2)
    assert torch.all(markers[:, :10].sum(dim=1) == 1) and torch.all(markers[:, 10:].sum(dim=1) == 1)
    torch.testing.assert_close(y[:, 0], (values * markers).sum(dim=1))
    assert 0.0 <= values.min() and values.max() < 1.0
    assert y.var().item() == pytest.approx(2 / 12, rel=0.15)
    with pytest.raises(ValueError, match="T.*1"):
        make_sequence_task(5, 1)


def test_standardize_uses_training_statistics_only() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.randn(100, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -3.0, 7.0])
    test = torch.randn(40, 3, generator=g) * 10 + 100
    train_std, test_std = standardize(train, test)
    torch.testing.assert_close(train_std.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_std.std(dim=0, correction=0), torch.ones(3))
    mean, std = train.mean(dim=0), train.std(dim=0, correction=0)
    torch.testing.assert_close(test_std, (test - mean) / std)
    assert test_std.mean().abs() > 1.0  # not re-centred on its own statistics


def test_standardize_constant_feature_and_errors() -> None:
    train = torch.tensor([[1.0, 4.0], [3.0, 4.0]])
    (out,) = standardize(train)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        standardize(train, torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(0, 2\)"):
        standardize(torch.zeros(0, 2))
