"""Tests of stabletrain.diagnostics: hooks, gradient norms, update:data ratios, the recorder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from stabletrain import ActivationStats, TrainingRecorder, grad_norms_per_layer, update_to_data_ratio
from stabletrain.diagnostics import ACTIVATION_TYPES



def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def _batch(n: int = 32, d: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


# --- ActivationStats --------------------------------------------------------------------------


def test_activation_stats_match_direct_computation() -> None:
    model = _net()
    x = _batch()
    with torch.no_grad():
        h1 = model[1](model[0](x))
        h3 = model[3](model[2](h1))
    with ActivationStats(model, saturation_threshold=0.5) as stats:
        model(x)
    assert stats.names == ["1", "3"]
    tanh, relu = stats.stats
    for record, h in ((tanh, h1), (relu, h3)):
        arr = h.numpy()
        assert record.mean == pytest.approx(arr.mean(), abs=1e-6)
        assert record.std == pytest.approx(arr.std(), rel=1e-5)  # population std
        assert record.saturated == pytest.approx((np.abs(arr) > 0.5).mean())
        assert record.dead == pytest.approx((arr <= 0).all(axis=0).mean())
    assert tanh.kind == "Tanh" and relu.kind == "ReLU"
    np.testing.assert_array_equal(tanh.counts, np.histogram(h1.numpy(), bins=50, range=(-1, 1))[0])
    np.testing.assert_array_equal(relu.counts, np.histogram(h3.numpy(), bins=50, range=(0, 4))[0])
    np.testing.assert_allclose(tanh.edges, np.linspace(-1, 1, 51))


def test_default_histogram_ranges_per_module_type() -> None:
    model = nn.Sequential(nn.Sigmoid(), nn.GELU(), nn.Hardtanh(), nn.ReLU())
    stats = ActivationStats(model, bins=8)
    assert [(e[0], e[-1]) for e in stats.edges.values()] == [(0, 1), (-4, 4), (-1, 1), (0, 4)]
    assert all(len(e) == 9 for e in stats.edges.values())
    custom = ActivationStats(model, bins=4, hist_range=(-2.0, 3.0))
    assert all(e[0] == -2.0 and e[-1] == 3.0 and len(e) == 5 for e in custom.edges.values())


def test_histogram_ignores_non_finite_values() -> None:
    identity = nn.Sequential(nn.Identity())
    stats = ActivationStats(identity, layer_types=(nn.Identity,), bins=2, hist_range=(-1.0, 1.0))
    identity(torch.tensor([[0.5, -0.5, float("nan"), float("inf"), 7.0]]))
    np.testing.assert_array_equal(stats.stats[0].counts, [1, 1])


def test_dead_fraction_on_constructed_input() -> None:
    relu = nn.Sequential(nn.ReLU())
    z = torch.ones(4, 5)
    z[:, 0] = -1.0  # dead: negative for every sample
    z[:, 1] = 0.0  # dead: ReLU outputs 0 everywhere
    z[:3, 2] = -2.0  # alive: the last sample is positive
    with ActivationStats(relu) as stats:
        relu(z)
    assert stats.stats[0].dead == pytest.approx(2 / 5)


def test_dead_counts_units_over_all_non_batch_dims() -> None:
    relu = nn.Sequential(nn.ReLU())
    z = torch.ones(3, 2, 4)
    z[:, 1, 3] = -1.0
    with ActivationStats(relu) as stats:
        relu(z)
    assert stats.stats[0].dead == pytest.approx(1 / 8)


def test_saturated_fraction_tanh_like_and_sigmoid() -> None:
    identity = nn.Sequential(nn.Identity())
    with ActivationStats(identity, layer_types=(nn.Identity,)) as stats:
        identity(torch.tensor([[0.99, -0.98, 0.5, 0.96, -0.97, 0.0]]))
    assert stats.stats[0].saturated == pytest.approx(2 / 6)  # strict: 0.97 itself is not saturated

    sigmoid = nn.Sequential(nn.Sigmoid())
    p = torch.tensor([[0.995, 0.5, 0.004, 0.9, 0.2]])  # 2p - 1 = 0.99, 0, -0.992, 0.8, -0.6
    with ActivationStats(sigmoid) as stats:
        sigmoid(torch.logit(p))
    assert stats.stats[0].saturated == pytest.approx(2 / 5)  # both tails, not only p > 0.97


def test_context_manager_removes_hooks_and_keeps_records() -> None:
    model = _net()
    assert _all_hooks(model) == 0
    with ActivationStats(model) as stats:
        assert _all_hooks(model) == 2
        model(_batch())
    assert _all_hooks(model) == 0
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    model(_batch())
    assert [len(v) for v in stats.history.values()] == [1, 1]


def test_remove_and_clear() -> None:
    model = _net()
    stats = ActivationStats(model)
    model(_batch())
    stats.clear()
    assert stats.stats == [] and all(v == [] for v in stats.history.values())
    model(_batch())
    assert len(stats.stats) == 2  # hooks survive clear()
    stats.remove()
    assert _all_hooks(model) == 0


def test_history_over_calls_series_and_histograms() -> None:
    model = _net()
    inputs = [_batch(seed=s) * (s + 1) for s in range(3)]
    with torch.no_grad():
        expected = [model[1](model[0](x)).numpy().std() for x in inputs]
    stats = ActivationStats(model, bins=10)
    for x in inputs:
        model(x)
    stds = stats.series("std")
    assert list(stds) == ["1", "3"] and stds["1"].shape == (3,)
    np.testing.assert_allclose(stds["1"], expected, rtol=1e-5)
    assert stats.series("dead")["3"].shape == (3,)
    counts, edges = stats.histograms("1")
    assert counts.shape == (3, 10) and edges.shape == (11,)
    np.testing.assert_array_equal(counts[2], stats.history["1"][2].counts)
    with pytest.raises(ValueError, match="field"):
        stats.series("median")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="nope"):
        stats.histograms("nope")


def test_no_histograms_when_switched_off() -> None:
    model = _net()
    with ActivationStats(model, keep_histograms=False) as stats:
        model(_batch())
    assert stats.stats[0].counts is None and stats.stats[0].edges is None
    with pytest.raises(ValueError, match="keep_histograms"):
        stats.histograms("1")


def test_layer_selection_by_type_predicate_and_errors() -> None:
    model = _net()
    assert ActivationStats(model, layer_types=nn.Linear).names == ["0", "2", "4"]
    assert ActivationStats(model, layer_types=(nn.Linear, nn.Tanh)).names == ["0", "1", "2", "4"]
    picked = ActivationStats(model, layer_types=lambda name, m: name == "2")
    assert picked.names == ["2"]
    with pytest.raises(ValueError, match="no module"):
        ActivationStats(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="1.5"):
        ActivationStats(model, saturation_threshold=1.5)
    with pytest.raises(ValueError, match="hist_range"):
        ActivationStats(model, hist_range=(1.0, -1.0))
    assert nn.GELU in ACTIVATION_TYPES and nn.Linear not in ACTIVATION_TYPES


def test_module_called_several_times_records_each_call() -> None:
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(4):
                x = self.act(x)
            return x

    model = Loop()
    with ActivationStats(model) as stats:
        model(_batch())
    assert len(stats.history["act"]) == 4


def test_bad_outputs_raise() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    model = nn.Sequential(Pair())
    with ActivationStats(model, layer_types=(Pair,)), pytest.raises(TypeError, match="tuple"):
        model(torch.ones(2, 2))
    relu = nn.Sequential(nn.ReLU())
    with ActivationStats(relu), pytest.raises(ValueError, match=r"\(3,\)"):
        relu(torch.ones(3))


# --- grad_norms_per_layer ---------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_grad_norms_per_layer_match_torch(norm_type: float) -> None:
    model = _net()
    model[0].weight.requires_grad_(False)  # frozen: no gradient, left out
    model(_batch()).pow(2).sum().backward()
    norms = grad_norms_per_layer(model, norm_type=norm_type)
    expected = {
        name: torch.linalg.vector_norm(p.grad, ord=norm_type).item()
        for name, p in model.named_parameters()
        if p.grad is not None
    }
    assert list(norms) == ["0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert norms == pytest.approx(expected)
    assert all(isinstance(v, float) for v in norms.values())


def test_grad_norms_per_layer_before_backward_is_empty() -> None:
    assert grad_norms_per_layer(_net()) == {}


# --- update_to_data_ratio ---------------------------------------------------------------------


def test_update_to_data_ratio_tensor() -> None:
    g = torch.Generator().manual_seed(0)
    data, update = torch.randn(20, 30, generator=g) * 2.0, torch.randn(20, 30, generator=g) * 0.01
    expected = update.numpy().std() / data.numpy().std()
    assert update_to_data_ratio(update, data) == pytest.approx(expected, rel=1e-6)
    assert update_to_data_ratio(update, data, log10=True) == pytest.approx(math.log10(expected))
    assert update_to_data_ratio(1e-3 * data, data, log10=True) == pytest.approx(-3.0)
    # the ratio of stds, not of norms or of means
    assert update_to_data_ratio(update + 5.0, data) == pytest.approx(expected, rel=1e-5)


def test_update_to_data_ratio_mapping_and_edge_cases() -> None:
    g = torch.Generator().manual_seed(1)
    data = {"a": torch.randn(10, generator=g), "b": torch.randn(3, 4, generator=g)}
    update = {"a": 0.1 * data["a"], "b": 0.01 * data["b"]}
    assert update_to_data_ratio(update, data) == pytest.approx({"a": 0.1, "b": 0.01})
    assert update_to_data_ratio(update, data, log10=True) == pytest.approx({"a": -1.0, "b": -2.0})
    constant = torch.full((3,), 2.0)  # zero spread
    assert update_to_data_ratio(torch.randn(3, generator=g), constant) == math.inf
    assert math.isnan(update_to_data_ratio(torch.ones(3), constant))
    assert math.isnan(update_to_data_ratio(torch.ones(3), constant, log10=True))
    assert update_to_data_ratio(torch.zeros(3), torch.arange(3.0), log10=True) == -math.inf
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        update_to_data_ratio(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="only in update: \\['c'\\]"):
        update_to_data_ratio({**update, "c": torch.zeros(1)}, data)
    with pytest.raises(TypeError, match="Tensor and dict"):
        update_to_data_ratio(torch.zeros(2), {"a": torch.zeros(2)})  # type: ignore[call-overload]


# --- TrainingRecorder -------------------------------------------------------------------------


def test_recorder_matches_manual_sgd_bookkeeping() -> None:
    model = _net()
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    recorder = TrainingRecorder(model)
    assert recorder.names == ["0.weight", "2.weight", "4.weight"]  # weight matrices only
    expected_norm, expected_g2d, expected_u2d, losses = [], [], [], []
    for step in range(3):
        opt.zero_grad()
        loss = model(_batch(seed=step)).pow(2).mean()
        loss.backward()
        w = model[2].weight
        expected_norm.append(w.grad.norm().item())
        expected_g2d.append(w.grad.numpy().std() / w.detach().numpy().std())
        with recorder.step(loss):
            opt.step()
        expected_u2d.append(math.log10((lr * w.grad).numpy().std() / w.detach().numpy().std()))
        losses.append(loss.item())
    assert recorder.steps == 3
    np.testing.assert_allclose(recorder.loss, losses)
    np.testing.assert_allclose(recorder.grad_norm["2.weight"], expected_norm, rtol=1e-5)
    np.testing.assert_allclose(recorder.grad_to_data["2.weight"], expected_g2d, rtol=1e-5)
    np.testing.assert_allclose(recorder.log10_update_to_data["2.weight"], expected_u2d, atol=1e-4)
    per_param = np.stack(list(recorder.grad_norm.values()))
    np.testing.assert_allclose(recorder.total_grad_norm, np.sqrt((per_param**2).sum(axis=0)))
    assert all(a.shape == (3,) for a in recorder.log10_update_to_data.values())


def test_recorder_update_ratio_uses_the_parameter_after_the_step() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    layer.weight.grad = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    recorder = TrainingRecorder(layer)
    with recorder.step():
        torch.optim.SGD(layer.parameters(), lr=1.0).step()  # weight becomes [[0, 3], [1, 4]]
    after = np.array([0.0, 3.0, 1.0, 4.0])
    expected = math.log10(np.std([1.0, -1.0, 2.0, 0.0]) / after.std())
    assert recorder.log10_update_to_data["weight"][0] == pytest.approx(expected, rel=1e-6)
    assert recorder.grad_to_data["weight"][0] == pytest.approx(np.std([1, -1, 2, 0]) / np.std([1, 2, 3, 4]))


def test_recorder_filter_missing_grads_and_protocol_errors() -> None:
    model = _net()
    recorder = TrainingRecorder(model, param_filter=lambda name, p: name.startswith("4"))
    assert recorder.names == ["4.weight", "4.bias"]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder.before_step()  # no backward yet: no gradients
    opt.step()
    recorder.after_step()
    assert np.isnan(recorder.grad_norm["4.weight"][0]) and np.isnan(recorder.loss[0])
    assert recorder.log10_update_to_data["4.weight"][0] == -math.inf  # unchanged parameter
    assert recorder.total_grad_norm[0] == 0.0
    with pytest.raises(RuntimeError, match="without a matching"):
        recorder.after_step()
    recorder.before_step()
    with pytest.raises(RuntimeError, match="twice"):
        recorder.before_step()
    with pytest.raises(ValueError, match="selects no"):
        TrainingRecorder(model, param_filter=lambda name, p: False)


def test_recorder_step_discards_a_failed_step() -> None:
    model = _net()
    recorder = TrainingRecorder(model)
    model(_batch()).sum().backward()
    with pytest.raises(ZeroDivisionError), recorder.step(1.0):
        1 / 0
    assert recorder.steps == 0 and all(len(v) == 0 for v in recorder.grad_norm.values())
    with recorder.step(2.0):
        pass
    assert recorder.steps == 1 and recorder.loss.tolist() == [2.0]
