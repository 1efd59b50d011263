r"""Residual blocks and the variance of the residual stream: the answer key of lesson 06.

A residual block adds a *branch* :math:`f` to the stream :math:`x`. Where the normalization sits
decides what grows with depth:

- ``"none"``: :math:`x_{l+1} = x_l + \alpha f(x_l)`;
- ``"pre"`` (pre-norm, GPT-2 and most transformers since): :math:`x_{l+1} = x_l + \alpha f(\mathrm{norm}(x_l))`
  — the stream itself is never normalized;
- ``"post"`` (post-norm, the original transformer): :math:`x_{l+1} = \mathrm{norm}(x_l + \alpha f(x_l))`.

:math:`\alpha` is the *branch scale*: 1 by default, :math:`1/\sqrt{L}` for ``L`` blocks as in GPT-2
(which scales the weights of the branches' last layers at initialization by :math:`1/\sqrt{N}`),
or effectively 0 at initialization when the branch ends in a norm whose γ starts at zero
(Goyal et al. 2017, "zero-init last γ").

At initialization, with a branch whose output is uncorrelated with its input and has variance
:math:`g\,v` for an input of variance :math:`v` (its *gain*; :math:`g = 1` for a Kaiming-initialised
``Linear → ReLU → Linear`` branch), the variance of the stream after ``l`` blocks is

.. math::

    \text{none: } v_l = v_0 (1 + \alpha^2 g)^l, \qquad
    \text{pre: } v_l = v_0 + l\,\alpha^2 g, \qquad
    \text{post: } v_l = 1 \ (l \ge 1).

Pre-norm grows linearly in depth, no-norm geometrically; :math:`\alpha = 1/\sqrt{L}` bounds both
(:math:`v_L = v_0 + g` and :math:`v_0 (1 + g/L)^L \le v_0 e^g`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

#: where a residual block puts its normalization
PLACEMENTS = ("pre", "post", "none")
#: how the branch is scaled at initialization
SCALINGS = ("none", "gpt2", "zero_gamma")


def residual_block(x, branch: Callable, norm: Callable, placement: str = "pre", branch_scale: float = 1.0):
    r"""One residual block around ``branch``, with the normalization ``norm`` placed as asked.

    - ``"pre"``: ``x + branch_scale * branch(norm(x))``;
    - ``"post"``: ``norm(x + branch_scale * branch(x))``;
    - ``"none"``: ``x + branch_scale * branch(x)`` (``norm`` is not called).

    Works on anything the callables accept (torch tensors in the lesson). Raises ValueError for an
    unknown placement.
    """
    if placement == "pre":
        return x + branch_scale * branch(norm(x))
    if placement == "post":
        return norm(x + branch_scale * branch(x))
    if placement == "none":
        return x + branch_scale * branch(x)
    raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


def branch_scale_for(depth: int, scaling: str = "none") -> float:
    """The factor α a branch is multiplied by at initialization: 1, 1/√depth (GPT-2) or 0 (zero γ)."""
    if scaling == "none":
        return 1.0
    if scaling == "gpt2":
        return 1.0 / math.sqrt(depth)
    if scaling == "zero_gamma":
        return 0.0
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


def residual_stream_variance(depth: int, branch_gain: float = 1.0, input_variance: float = 1.0,
                             placement: str = "pre", scaling: str = "none") -> NDArray[np.float64]:
    r"""Predicted variance of the residual stream at initialization after 0, 1, …, ``depth`` blocks.

    With :math:`\alpha` from ``scaling`` (1, :math:`1/\sqrt{\text{depth}}` or 0) and the branch's
    gain :math:`g` (variance out per variance in):

    - ``"none"``: :math:`v_l = v_0 (1 + \alpha^2 g)^l` — each block adds :math:`\alpha^2 g v_l`;
    - ``"pre"``: :math:`v_l = v_0 + l \alpha^2 g` — the branch sees a normalized input of variance 1;
    - ``"post"``: :math:`v_0`, then 1 — every block ends in a norm (γ = 1, β = 0).

    Returns a float64 array of shape ``(depth + 1,)``; entry 0 is ``input_variance``.
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    alpha2 = branch_scale_for(int(depth), scaling) ** 2
    layers = np.arange(int(depth) + 1, dtype=np.float64)
    if placement == "none":
        return input_variance * (1.0 + alpha2 * branch_gain) ** layers
    if placement == "pre":
        return input_variance + layers * alpha2 * branch_gain
    out = np.ones(int(depth) + 1)
    out[0] = input_variance
    return out


def capstone_config() -> dict:
    """The capstone's answer: a configuration under which the deep network of
    :mod:`stabletrain.lessons.residual_lab` trains stably (see ``CapstoneConfig`` there): Kaiming's
    init, residual connections, pre-norm layer norm (with the final norm it implies), and clipping
    at a max_norm above the typical gradient norm (about 1.4 here), so that it catches the rare
    spike and acts on a few per cent of the steps."""
    return {"init": "kaiming", "residual": True, "norm": "layer", "placement": "pre", "scaling": "none",
            "clip": 5.0}
