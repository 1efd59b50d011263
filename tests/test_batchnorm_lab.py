"""Fast tests of stabletrain.lessons.batchnorm_lab, the experiments and widget of lesson 05.

The batched models must compute what plain torch models compute; every figure is a detached,
renderable Figure with alt text and fonts of at least 12 pt; the explorer redraws in under half a
second (with headroom for a busy machine). The experiments' outcomes are checked, claim by claim,
in test_claims_05_batch_norm.py.
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from stabletrain.lessons import batchnorm_lab as lab
from stabletrain.style import MIN_FONT_PT, font_sizes


def _check_figure(fig: Figure, axes: int) -> None:
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == axes
    assert fig.get_label(), "every figure has alt text"
    assert min(font_sizes(fig)) >= MIN_FONT_PT
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:4] == b"\x89PNG"


def _torch_twin(model: lab.BatchedMLP, run: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        linear = nn.Linear(w.shape[1], w.shape[2], dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w[run].T)
            linear.bias.copy_(b[run, 0])
        layers.append(linear)
        if i < model.depth:
            if model.bn:
                bn = nn.BatchNorm1d(w.shape[2], dtype=w.dtype)
                with torch.no_grad():
                    bn.weight.copy_(model.gammas[i][run, 0])
                    bn.bias.copy_(model.betas[i][run, 0])
                layers.append(bn)
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("bn", [False, True])
def test_batched_mlp_matches_torch_models_in_both_modes(bn):
    runs = 3
    model = lab.BatchedMLP(runs, 3, 8, 2, 3, bn, torch.tensor([0.5, 1.0, 2.0]), [0, 1, 2], dtype=torch.float64)
    x = torch.randn(runs, 16, 2, dtype=torch.float64)
    twins = [_torch_twin(model, r) for r in range(runs)]
    out = model.forward(x)
    for r, twin in enumerate(twins):
        twin.train()
        assert torch.allclose(out[r], twin(x[r]), atol=1e-10)
        if bn:
            bns = [m for m in twin if isinstance(m, nn.BatchNorm1d)]
            for i, m in enumerate(bns):
                assert torch.allclose(model.running_mean[i][r, 0], m.running_mean)
                assert torch.allclose(model.running_var[i][r, 0], m.running_var)
    model.training = False
    out = model.forward(x)
    for r, twin in enumerate(twins):
        twin.eval()
        assert torch.allclose(out[r], twin(x[r]), atol=1e-10)


def test_batched_gradients_match_torch():
    model = lab.BatchedMLP(2, 2, 6, 2, 3, True, torch.ones(2), [3, 4], dtype=torch.float64)
    x = torch.randn(2, 10, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 10))
    twins = [_torch_twin(model, r) for r in range(2)]
    lab._cross_entropy(model.forward(x), y).sum().backward()
    for r, twin in enumerate(twins):
        nn.functional.cross_entropy(twin(x[r]), y[r]).backward()
        assert torch.allclose(model.weights[0].grad[r], twin[0].weight.grad.T, atol=1e-10)


def test_experiment_shapes_and_seeds():
    small = lab.sweep_experiment(scales=(1.0, 2.0), lrs=(0.1,), depth=2, width=8, steps=5, seeds=(0, 1))
    assert small.final["bn"].shape == (2, 2, 1) and small.trains("bn", 10.0).shape == (2, 1)
    sizes = lab.batch_size_experiment(batch_sizes=(2, 8), steps=5, seeds=(0, 1))
    assert sizes.gap().shape == (2, 2) and np.all(sizes.disagreement["plain"] == 0)
    grads = lab.gradient_norm_experiment(depth=3, width=8, batch=16, scales=(1.0,), seeds=(0, 1))
    assert grads.norms["bn", 1.0].shape == (2, 4)
    assert sizes.recalibrated_accuracy.shape == (2, 2)
    norms = lab.weight_norm_experiment(steps=4, seeds=(0, 1))
    assert norms.norms[0.0].shape == norms.norms[norms.weight_decay].shape == (2, 5)
    assert norms.effective_lr(0.0).shape == (2, 5)
    stream = lab.residual_stream_experiment(blocks=3, width=8, batch=16, seeds=(0, 1))
    assert stream.variance["bn"].shape == stream.variance["plain"].shape == (2, 4)
    assert stream.branch_share().shape == (2, 3)


def test_figures():
    _check_figure(lab.plot_standardization(lab.standardization_experiment(steps=20, seeds=(0, 1))), 1)
    _check_figure(lab.plot_sweep_heatmaps(lab.sweep_experiment(scales=(1.0, 4.0), lrs=(0.1, 1.0), depth=2, width=8,
                                                               steps=5, seeds=(0, 1))), 2)
    _check_figure(lab.plot_batch_size(lab.batch_size_experiment(batch_sizes=(2, 8), steps=5, seeds=(0, 1))), 2)
    _check_figure(lab.plot_gradient_norms(lab.gradient_norm_experiment(depth=3, width=8, batch=16,
                                                                         scales=(1.0,), seeds=(0, 1))), 1)
    _check_figure(lab.plot_weight_norms(lab.weight_norm_experiment(steps=4, seeds=(0, 1))), 2)
    _check_figure(lab.plot_residual_stream(lab.residual_stream_experiment(blocks=3, width=8, batch=16,
                                                                          seeds=(0, 1))), 1)


def test_heatmap_says_it_caps_values():
    fig = lab.plot_sweep_heatmaps(lab.sweep_experiment(scales=(4.0,), lrs=(1.0,), depth=2, width=8, steps=5,
                                                       seeds=(0, 1)))
    texts = " ".join(t.get_text() for t in fig.findobj(plt.Text))
    assert "capped" in texts and "div." in texts


def test_explorer_updates_quickly_and_follows_the_controls():
    explorer = lab.BatchNormExplorer()
    times = []
    for gamma, beta, mode, seen in ((2.0, 1.0, "train", 0), (1.0, 0.0, "eval", 0), (1.0, -2.0, "eval", 30)):
        explorer.gamma.value, explorer.beta.value = gamma, beta
        explorer.mode.value, explorer.seen.value = mode, seen
        times.append(explorer.update())
        assert explorer.image.value[:4] == b"\x89PNG"
    print(f"explorer updates: {', '.join(f'{1000 * t:.0f} ms' for t in times)}")
    assert min(times) < 0.5
    y, mean, var = explorer.output(2.0, 1.0, "train", 0)
    assert np.allclose(y.mean(0), 1.0) and np.allclose(y.std(0), 2.0, rtol=1e-4)
    assert explorer.seen.disabled is False  # eval mode enables the batches-seen slider


def test_time_call_returns_seconds_per_call():
    assert 0 <= lab.time_call(lambda: None, repeat=2, number=3) < 0.01


def test_jitter_moves_only_the_initial_weights():
    """The claims tests' perturbation: the same seeds give the same data and draws; a jitter moves
    every initial weight by about 1e-6 of itself and leaves biases, gamma and beta alone."""
    seeds = (0, 1)
    plain = lab.BatchedMLP(2, 2, 6, 2, 3, True, torch.ones(2), seeds)
    moved = lab.BatchedMLP(2, 2, 6, 2, 3, True, torch.ones(2), seeds, jitter=1e-6)
    for w0, w1 in zip(plain.weights, moved.weights):
        rel = ((w1 - w0) / w0).abs()
        assert 0 < rel.max().item() < 1e-5 and not torch.equal(w0, w1)
    assert all(torch.equal(a, b) for a, b in zip(plain.gammas + plain.biases, moved.gammas + moved.biases))
    a = lab.gradient_norm_experiment(depth=3, width=8, batch=16, scales=(1.0,), seeds=seeds)
    b = lab.gradient_norm_experiment(depth=3, width=8, batch=16, scales=(1.0,), seeds=seeds, jitter=1e-6)
    assert np.allclose(a.norms["bn", 1.0], b.norms["bn", 1.0], rtol=1e-4)
    assert not np.array_equal(a.norms["bn", 1.0], b.norms["bn", 1.0])


def test_recalibrate_sets_the_statistics_of_the_given_data():
    """BatchedMLP.recalibrate: one training-mode pass with momentum 1 — the running statistics become
    the batch's (unbiased variance), as torch's BatchNorm1d with momentum 1 gives — then eval mode."""
    model = lab.BatchedMLP(2, 2, 6, 2, 3, True, torch.ones(2), [0, 1], dtype=torch.float64)
    x = torch.randn(2, 50, 2, dtype=torch.float64)
    model.recalibrate(x)
    assert model.training is False and model.momentum == 0.1
    twin = _torch_twin(model, 0)
    for m in twin:
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = 1.0
    twin.train()
    twin(x[0])
    bns = [m for m in twin if isinstance(m, nn.BatchNorm1d)]
    for i, m in enumerate(bns):
        assert torch.allclose(model.running_mean[i][0, 0], m.running_mean)
        assert torch.allclose(model.running_var[i][0, 0], m.running_var)


def test_weight_norm_experiment_records_orthogonal_gradients():
    """The Pythagoras identity of the weight-norm cell holds step by step on a short run."""
    result = lab.weight_norm_experiment(steps=20, seeds=(0,))
    assert result.max_cosine < 1e-3 and result.max_identity_error < 0.01
    assert np.all(np.diff(result.norms[0.0], axis=1) > 0)


def test_every_lesson_05_mutant_is_named_by_its_own_misconception():
    """Stronger than the catalogue test: the feedback for each mutant of lesson 05 names the
    misconception that mutant stands for, not another one's (seed 0, hidden level). The training
    loop's mutants are named by the kind of their verdict (the first mutant whose loop goes wrong
    the same way), so for them it is enough that every mutant's kind differs from the others'."""
    from stabletrain.exercises import get_exercise
    from stabletrain.exercises.batchnorm import EXERCISES, _loop_verdict

    wrong = []
    for name in EXERCISES:
        exercise = get_exercise(name)
        if name == "train_bn_classifier":
            case = exercise.cases("visible", 0)[0]
            kinds = {m: (_loop_verdict(case, exercise.run(mutant.fn, case)) or ("passes",))[0]
                     for m, mutant in exercise.mutants.items()}
            wrong += [(name, m, kind) for m, kind in kinds.items()
                      if kind == "passes" or list(kinds.values()).count(kind) > 1]
            continue
        cases = exercise.cases("hidden", 0)
        for mutant_name, mutant in exercise.mutants.items():
            failures = exercise.verify(cases, [exercise.run(mutant.fn, case) for case in cases])
            named = next((f.misconception for f in failures if f.misconception), None)
            if named != mutant.misconception:
                wrong.append((name, mutant_name, named))
    assert not wrong, wrong
