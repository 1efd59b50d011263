"""Lesson 06's sample cohort: a perfect, a blank, a partly correct and a misreading student.

The partial student gets layer norm's forward pass and the residual block right, forgets the
mean terms in the backward pass, scales GPT-2's branches by 1/L instead of 1/sqrt(L), writes a
LayerNorm whose statistics are detached from the graph, and leaves the capstone unanswered.

The misreading student gets everything right except two things the second edition grades: the
residual block scales the branch's *input* (``x + branch(alpha * norm(x))``, which a branch without
biases could not tell apart), and the capstone answer is Section 5's network kept alive by
clipping at 1 (default init, no normalization) — clipping on almost every step, which the first
edition accepted with 16/16.
"""

from __future__ import annotations

import nbformat

from . import Expected, LessonSources

LESSON = "06_layer_norm_residual"

_NO_MEAN_TERM_BACKWARD = '''\
def layernorm_backward(dout, cache):
    """Backward pass without the mean term."""
    x_hat, inv_std, gamma = cache
    leading = tuple(range(dout.ndim - 1))
    dx_hat = dout * gamma
    dx = inv_std * (dx_hat - x_hat * (dx_hat * x_hat).mean(axis=-1, keepdims=True))
    return dx, (dout * x_hat).sum(axis=leading), dout.sum(axis=leading)
'''

_DETACHED_LAYERNORM = '''\
class LayerNorm(torch.nn.Module):
    """Right parameters and outputs, but the statistics are detached from the graph."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(self.normalized_shape, dtype=dtype)) if elementwise_affine else None
        self.bias = (torch.nn.Parameter(torch.zeros(self.normalized_shape, dtype=dtype))
                     if elementwise_affine and bias else None)

    def forward(self, x):
        dims = tuple(range(x.dim() - len(self.normalized_shape), x.dim()))
        mean = x.mean(dim=dims, keepdim=True).detach()
        var = (x - mean).square().mean(dim=dims, keepdim=True).detach()
        out = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out
'''

_ONE_OVER_L_VARIANCE = '''\
def residual_stream_variance(depth, branch_gain=1.0, input_variance=1.0, placement="pre", scaling="none"):
    """GPT-2's branches scaled by 1/L instead of 1/sqrt(L)."""
    alpha = {"none": 1.0, "gpt2": 1.0 / depth, "zero_gamma": 0.0}[scaling]
    layers = np.arange(depth + 1)
    if placement == "none":
        return input_variance * (1 + alpha**2 * branch_gain) ** layers
    if placement == "pre":
        return input_variance + layers * alpha**2 * branch_gain
    return np.where(layers == 0, input_variance, 1.0)
'''

_SCALED_INPUT_BLOCK = '''\
def residual_block(x, branch, norm, placement="pre", branch_scale=1.0):
    """Scales what goes into the branch instead of what comes out of it."""
    inner = norm(x) if placement == "pre" else x
    out = x + branch(branch_scale * inner)
    return norm(out) if placement == "post" else out
'''

_SECTION5_CAPSTONE = '''\
def capstone_config():
    """Section 5's residual network with clipping at 1."""
    return {"init": "default", "residual": True, "norm": "none", "placement": "pre", "scaling": "none", "clip": 1.0}
'''

EXPECTED: dict[str, Expected] = {
    "perfect": Expected("graded", 16, "the instructor's solutions: full marks"),
    "blank": Expected("graded", 0, "submitted the student notebook untouched"),
    "partial": Expected("graded", 7.92, "layernorm_forward (3) and residual_block (2) right; a backward pass "
                                        "without the mean term fails every group (0); a LayerNorm with detached "
                                        "statistics keeps the groups that check parameters and outputs only "
                                        "(0.5 + 1); 1/L for GPT-2's scale loses that group (0.67 + 0.75); "
                                        "capstone not attempted (0)"),
    "misread": Expected("graded", 12.25, "everything right except: residual_block scales the branch's input "
                                        "(visible groups pass: 1; hidden: only post-norm without a scale "
                                        "passes, 1 of 4 groups: 0.25), and the capstone is Section 5's network with "
                                        "clipping on almost every step (0 of 3)"),
}


def build(src: LessonSources) -> dict[str, nbformat.NotebookNode | str | None]:
    """student -> submitted notebook."""
    good = src.solutions
    return {
        "perfect": src.with_answers(good),
        "blank": src.release,
        "partial": src.with_answers({
            "layernorm_forward": good["layernorm_forward"],
            "layernorm_backward": _NO_MEAN_TERM_BACKWARD,
            "LayerNorm": _DETACHED_LAYERNORM,
            "residual_block": good["residual_block"],
            "residual_stream_variance": _ONE_OVER_L_VARIANCE,
        }),
        "misread": src.with_answers({**good, "residual_block": _SCALED_INPUT_BLOCK,
                                     "capstone_config": _SECTION5_CAPSTONE}),
    }
