"""Lesson 05's sample cohort: a perfect, a blank, a partly correct and a shortcut-taking student.

The partial student writes the classic mistakes of the lesson: the running statistics with
CS231n's momentum convention (the output is right, the running averages are not), and a module
that detaches the batch statistics (outputs and buffers right, input gradients wrong); the
standardization and the graph backward pass are right, the rest is not attempted.

The shortcuts student gets every number right but takes the three shortcuts a review of the first
edition found graded as correct: autograd for the backward pass, running statistics rebound inside
the graph, and a full-batch loop with momentum.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "05_batch_norm"

_CS231N_FORWARD = '''\
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """CS231n's convention: momentum weighs the OLD running value."""
    if training:
        mean, var = x.mean(axis=0), x.var(axis=0)
        running_mean[:] = momentum * running_mean + (1 - momentum) * mean
        running_var[:] = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)
    else:
        mean, var = running_mean.copy(), running_var.copy()
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma, "training": training}
'''

_DETACHED_MODULE = '''\
class BatchNorm1d(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        dims = (0,) if x.dim() == 2 else (0, 2)
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1)
        if self.training:
            with torch.no_grad():  # statistics computed outside the graph
                mean = x.mean(dim=dims, keepdim=True)
                var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
                m = x.numel() // x.shape[1]
                self.num_batches_tracked += 1
                f = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.flatten())
                self.running_var.mul_(1 - f).add_(f * var.flatten() * m / (m - 1))
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
'''

_AUTOGRAD_BACKWARD = '''\
def batchnorm_backward(dout, cache):
    """Let autograd differentiate the forward pass again."""
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    x = torch.tensor(x_hat / inv_std, requires_grad=True)  # x - mean, in training the mean is 0 again
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    if cache["training"]:
        mean = x.mean(0)
        out = g * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(0) + 1e-5) + b
    else:
        out = g * x * torch.tensor(inv_std) + b
    out.backward(torch.tensor(dout))
    return x.grad.numpy(), g.grad.numpy(), b.grad.numpy()
'''

#: the instructor's BatchNorm1d with its buffer update moved into the graph (rebinding, no no_grad)
_LEAK = (("with torch.no_grad():", "if True:  # no no_grad: the buffers become nodes of the batch's graph"),
         ("self.running_mean.mul_(1 - f).add_(f * mean.flatten())",
          "self.running_mean = (1 - f) * self.running_mean + f * mean.flatten()"),
         ("self.running_var.mul_(1 - f).add_(f * var.flatten() * m / (m - 1))",
          "self.running_var = (1 - f) * self.running_var + f * var.flatten() * m / (m - 1)"))


def _leaking(module_source: str) -> str:
    for old, new in _LEAK:
        if old not in module_source:
            raise ValueError(f"the solution's BatchNorm1d no longer contains {old!r}: update the shortcuts student")
        module_source = module_source.replace(old, new)
    return module_source


_FULL_BATCH_MOMENTUM_LOOP = '''\
def train_bn_classifier(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0):
    """The whole training set at every step, with momentum: converges fast, but not the loop asked for."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x_train), y_train).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return model(x_test)
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 20, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 10.43, "standardization (2) and the graph backward pass (3) right; the forward "
                                         "pass with CS231n's momentum convention keeps its output and eps groups "
                                         "but loses the running-statistics ones (1.33 + 1); a BatchNorm1d with "
                                         "detached statistics fails only its gradient groups (1.6 + 1.5); the "
                                         "rest not attempted"),
    "shortcuts": Expected("graded", 13.35, "every answer right except three shortcuts that give the right "
                                                 "numbers: a backward pass computed by autograd (0 of 3), a "
                                                 "BatchNorm1d whose buffers keep autograd history (fails the "
                                                 "out-of-the-graph group: 1.6 + 1.75), a full-batch loop with "
                                                 "momentum 0.9 (0 of 3)"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    return {
        "perfect": src.with_answers(good),
        "blank": src.release,
        "partial": src.with_answers({
            "standardize_fit": good["standardize_fit"],
            "standardize_apply": good["standardize_apply"],
            "batchnorm_forward": _CS231N_FORWARD,
            "batchnorm_backward": good["batchnorm_backward"],
            "BatchNorm1d": _DETACHED_MODULE,
        }),
        "shortcuts": src.with_answers({**good, "batchnorm_backward": _AUTOGRAD_BACKWARD,
                                       "BatchNorm1d": _leaking(good["BatchNorm1d"]),
                                       "train_bn_classifier": _FULL_BATCH_MOMENTUM_LOOP}),
    }
