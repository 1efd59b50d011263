"""Lesson 05's sample cohort: a perfect, a blank and a partly correct student.

The partial student writes the classic mistakes of the lesson: the running statistics with
CS231n's momentum convention (the output is right, the running averages are not), and a module
that detaches the batch statistics (outputs and buffers right, input gradients wrong); the
standardization and the graph backward pass are right, the rest is not attempted.
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

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 20, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 10.26, "standardization (2) and the graph backward pass (3) right; the forward "
                                         "pass with CS231n's momentum convention keeps its output and eps groups "
                                         "but loses the running-statistics ones (1.33 + 1); a BatchNorm1d with "
                                         "detached statistics fails only its gradient groups (1.5 + 1.43); the "
                                         "rest not attempted"),
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
    }
