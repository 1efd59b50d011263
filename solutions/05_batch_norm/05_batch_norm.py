# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Lesson 5 — Batch normalization
#
# Lessons 1–3 kept the signal in a deep network at a healthy size by choosing the initial weights
# carefully. That works at step 0 — and then training moves the weights, and the careful scales
# drift. **Batch normalization** (Ioffe & Szegedy, 2015) re-standardizes every layer's
# pre-activations on every minibatch, during training, so that each layer sees inputs with mean 0
# and variance 1 per feature whatever the weights before it did. It made very deep networks
# trainable at learning rates that used to diverge — and it comes with a list of conventions and
# traps (two modes, running statistics, a momentum that means the opposite in some courses) that
# this lesson takes one at a time.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. standardize a network's **inputs** with statistics of the training set only, and explain with
#    a condition number why gradient descent needs it;
# 2. write the batch-norm forward pass in numpy with **PyTorch's conventions**: biased variance in
#    the output, unbiased variance and `momentum` as the weight of the new batch in the running
#    statistics, and an evaluation mode that uses them;
# 3. derive the backward pass twice — node by node through the computation graph, and as one
#    closed-form expression — and check both against finite differences;
# 4. build `BatchNorm1d` as a `torch.nn.Module` with torch's buffers, so it loads a
#    `torch.nn.BatchNorm1d` state_dict, and **fold** it into the preceding Linear layer for inference;
# 5. put `model.train()` and `model.eval()` in the right places of a training loop;
# 6. read experiments: which weight scales and learning rates train with and without BN, what small
#    batches do to BN, and what BN does to the gradient of every layer;
# 7. explain why batch norm helps — scale invariance, an effective learning rate that weight decay
#    controls, a smoother loss rather than less "covariate shift" — and use it in practice: per
#    channel for images, recalibrated or frozen statistics, and at the end of residual branches.
#
# **How this notebook works.** You implement eight functions in seven graded exercises. After each
# one, a test cell runs the visible checks, which explain what went wrong and name the likely
# misconception; hidden tests grade more cases. You can run the hidden-level checks yourself with
# `check(fn, "name", level="hidden")` — do so before handing in. Every formula is followed by a cell
# that checks it numerically. Experiments use the course's reference implementation, so they run
# even before you have finished the exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import stabletrain
from stabletrain.exercises import check
from stabletrain.lessons import batchnorm_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are tiny: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Before batch norm: standardize the inputs
#
# Take the simplest model, linear least squares: $L(w) = \frac{1}{2n}\|Aw - y\|^2$ with the
# inputs in the rows of $A$. Its gradient is $\nabla L = H(w - w^\star)$ with the
# Hessian $H = A^\top A/n$, so one gradient-descent step multiplies the error $w - w^\star$ by
# $I - \eta H$. Along the eigenvector of eigenvalue $\lambda_i$ the error shrinks by $|1 - \eta\lambda_i|$
# per step. Stability needs $|1 - \eta\lambda_{\max}| < 1$, so the largest stable step is
# $\eta = 2/\lambda_{\max}$; at half of it, $\eta = 1/\lambda_{\max}$, the fastest direction is solved in
# one step, none oscillates, and the slowest direction shrinks by
#
# $$
# 1 - \frac{\lambda_{\min}}{\lambda_{\max}} = 1 - \frac{1}{\kappa}, \qquad \kappa = \frac{\lambda_{\max}}{\lambda_{\min}}
# \ \text{(the condition number)} .
# $$
#
# Features on scales from 1 to 1000 make $\kappa$ huge — the largest scale squared over the
# smallest, and a constant offset adds a direction of its own. **Standardizing** every feature,
# $z = (x - \mu)/\sigma$ with the mean and standard deviation of the **training set**, brings
# $\kappa$ near 1. Test data is transformed with the *same* $\mu, \sigma$: the model has learned
# what "$z = 1$" means, and a test set standardized with its own statistics would shift that meaning
# (and leak the test data into the pipeline).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
std_result = lab.standardization_experiment()
c_raw, c_std = std_result.condition_raw, std_result.condition_standardized
print(f"condition number, raw features:          {c_raw.min():.2e} to {c_raw.max():.2e} over {len(c_raw)} seeds")
print(f"condition number, standardized features: {c_std.min():.2f} to {c_std.max():.2f}")
kept = std_result.raw[:, 100] / std_result.raw[:, 0]
print(f"raw: share of the initial excess loss left after 100 steps: {kept.min():.0%} to {kept.max():.0%}")
print(f"standardized: largest excess loss after 10 steps {std_result.standardized[:, 10].max():.1e}, "
      f"after 20 steps {std_result.standardized[:, 20].max():.1e}")
# the formula: the slowest error component shrinks by 1 - 1/kappa per step
print(f"predicted slowest shrink factor per step: raw {1 - 1 / c_raw[0]:.10f}, standardized {1 - 1 / c_std[0]:.3f} "
      "(seed 0)")
lab.plot_standardization(std_result)

# %% [markdown] slideshow={"slide_type": "fragment"}
# With raw features, gradient descent at the step $1/\lambda_{\max}$ still holds more than 15 % of
# its initial excess loss after 100 steps on every seed (how much depends on the seed: the cell
# prints your range). Standardized, the excess loss is below $10^{-6}$ after 10 steps and below
# $10^{-12}$ after 20. The condition number explains it: above $10^9$ raw, below 2.5 standardized,
# on every seed. With $\kappa \approx 3 \times 10^9$ the slowest direction shrinks by a factor
# $1 - 3 \times 10^{-10}$ per step: gradient descent quickly removes the part of the error in the
# fast directions and then stalls.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 1 — `standardize_fit` and `standardize_apply` (2 points)
#
# Write two functions, in numpy:
#
# - `standardize_fit(x_train)` returns the statistics of the training set, `x_train` of shape
#   `(n, d)`: the mean and the **biased** standard deviation of every feature (over axis 0,
#   dividing by $n$, so the standardized training set has variance exactly 1). What you return —
#   a tuple, a dict — is your choice: only your `standardize_apply` reads it.
# - `standardize_apply(x, stats)` returns `(x - mean) / std` for any `x` of shape `(m, d)`.
#
# A feature that is **constant** on the training set has std 0: use the scale 1 for it (it is
# only centred), as scikit-learn's `StandardScaler` does — never divide by zero, and do not add a
# tiny eps instead (a test value that differs from the constant would explode). Do not modify the
# arrays you are given.

# %% nbgrader={"grade": false, "grade_id": "standardize_fit", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def standardize_fit(x_train):
    """Per-feature mean and biased std of the training set (std 0 replaced by 1).

    Args:
        x_train: (n, d) array.

    Returns:
        the statistics, in a form your standardize_apply understands.
    """
    ### BEGIN SOLUTION
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)  # biased: divides by n
    return {"mean": mean, "std": np.where(std > 0, std, 1.0)}
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "standardize_apply", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def standardize_apply(x, stats):
    """Standardize x with the training statistics from standardize_fit.

    Args:
        x: (m, d) array (training, validation or test data).
        stats: what standardize_fit returned.

    Returns:
        (m, d) array.
    """
    ### BEGIN SOLUTION
    return (x - stats["mean"]) / stats["std"]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "standardize_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(standardize_apply, "standardize_apply")

# %% nbgrader={"grade": true, "grade_id": "standardize_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a test set of one sample, test data shifted away from the training data, constant
# and all-zero training features, features spread over six orders of magnitude, inputs unchanged.
### BEGIN HIDDEN TESTS
check(standardize_apply, "standardize_apply", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Batch norm, forward
#
# Standardizing the inputs fixes the first layer. Batch norm does the same for the
# pre-activations of *every* layer, on every minibatch. For a batch $x$ of shape $(N, C)$ and each
# feature (channel) $c$ separately, over the $M = N$ values of the batch:
#
# $$
# \mu = \frac1M \sum_i x_i, \qquad
# \sigma^2 = \frac1M \sum_i (x_i - \mu)^2, \qquad
# \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
# y_i = \gamma\,\hat x_i + \beta .
# $$
#
# The learned $\gamma$ and $\beta$ give the layer back the freedom to choose its own scale and
# offset — with $\gamma = \sqrt{\sigma^2 + \varepsilon}$, $\beta = \mu$ it could undo the
# normalization — but now the scale is **one parameter** per feature instead of the product of
# every weight before it. $\varepsilon$ (default $10^{-5}$) keeps a feature with zero variance from
# dividing by zero; it goes **inside** the square root.
#
# **Two modes.** In training the statistics are the batch's own, so each output depends on the
# other samples of its batch. At test time there may be one sample, and a prediction must not
# depend on its neighbours: evaluation uses **running statistics**, averages over the training
# batches, updated at every training step.
#
# **PyTorch's conventions** (the ones graded here; other courses differ):
#
# | | PyTorch (this course) | CS231n assignment 2 |
# |---|---|---|
# | running update | $r \leftarrow (1 - m)\,r + m\,\text{batch}$ | $r \leftarrow m\,r + (1 - m)\,\text{batch}$ |
# | default momentum | $m = 0.1$ (weight of the **new** batch) | $m = 0.9$ (weight of the **old** value) |
# | variance in the output | biased, $\frac1M\sum$ | biased |
# | variance in the running average | **unbiased**, $\frac{1}{M-1}\sum = \frac{M}{M-1}\sigma^2$ | biased |
#
# The cell below checks these formulas against `torch.nn.BatchNorm1d` itself.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
gen = torch.Generator().manual_seed(0)
x = 3.0 + 2.0 * torch.randn(8, 4, dtype=torch.float64, generator=gen)
bn = nn.BatchNorm1d(4, dtype=torch.float64)  # gamma = 1, beta = 0, running stats 0 and 1, momentum 0.1
y = bn(x)  # training mode: batch statistics, and one update of the running statistics
mu, var_biased, var_unbiased = x.mean(0), x.var(0, correction=0), x.var(0, correction=1)
assert torch.allclose(y, (x - mu) / torch.sqrt(var_biased + 1e-5))
assert torch.allclose(bn.running_mean, 0.9 * 0 + 0.1 * mu)
assert torch.allclose(bn.running_var, 0.9 * 1 + 0.1 * var_unbiased)
bn.eval()
assert torch.allclose(bn(x), (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5))
print("torch.nn.BatchNorm1d: output with the biased variance, running_var with the unbiased one,")
print(f"new = 0.9 old + 0.1 batch. running_mean = {bn.running_mean.numpy().round(3)}, "
      f"num_batches_tracked = {bn.num_batches_tracked.item()}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A batch of two.** With $M = 2$ values $a, b$ and $d = a - b$: $\mu = (a+b)/2$,
# $\sigma^2 = d^2/4$, and $\hat x = \pm \frac{d/2}{\sqrt{d^2/4 + \varepsilon}} \approx \pm 1$.
# Whatever the two inputs, training-mode batch norm outputs $\beta \pm \gamma$ — only *which*
# sample is larger survives. Keep it in mind for Section 7.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
pair = np.array([[0.3, -20.0, 5.0], [7.1, -19.0, 5.001]])
out, _ = stabletrain.batchnorm_forward(pair, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
print("x_hat of a batch of two:\n", out.round(4))
assert np.allclose(np.abs(out[:, :2]), 1.0, atol=1e-4)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 2 — `batchnorm_forward` (4 points)
#
# Write `batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5)`
# in numpy, for `x` of shape `(N, C)`:
#
# - **training**: normalize with the batch mean and the **biased** batch variance (`x.var(axis=0)`),
#   then scale and shift; update the running statistics **in place** —
#   `running_mean` ← `(1 - momentum) * running_mean + momentum * mean`, and `running_var` the same
#   with the **unbiased** variance (`x.var(axis=0, ddof=1)`). In place means the arrays the caller
#   passed in change: `running_mean *= 1 - momentum; running_mean += momentum * mean`, or
#   `running_mean[:] = ...`. A plain `running_mean = ...` only rebinds your local name.
# - **evaluation** (`training=False`): normalize with `running_mean` and `running_var`; change nothing.
# - return `(out, cache)`: `cache` is whatever your `batchnorm_backward` will need — your design.

# %% nbgrader={"grade": false, "grade_id": "batchnorm_forward", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def batchnorm_forward(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1, eps=1e-5):
    """Batch norm over axis 0 with PyTorch's conventions.

    Args:
        x: (N, C) array.
        gamma, beta: (C,) scale and shift.
        running_mean, running_var: (C,) arrays, updated in place in training.
        training: use batch statistics (and update the running ones) or the running ones.
        momentum: weight of the new batch in the running averages.
        eps: added to the variance inside the square root.

    Returns:
        (out, cache): out of shape (N, C); cache for your backward pass.
    """
    ### BEGIN SOLUTION
    if training:
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        n = x.shape[0]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * n / (n - 1)
    else:
        mean, var = running_mean.copy(), running_var.copy()
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    out = gamma * x_hat + beta
    cache = {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma, "training": training}
    return out, cache
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "batchnorm_forward_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(batchnorm_forward, "batchnorm_forward")

# %% nbgrader={"grade": true, "grade_id": "batchnorm_forward_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: several steps with another momentum then evaluation, a batch of two, the default
# arguments, features with tiny or zero variance (eps inside the root), evaluation twice with
# momentum 1, evaluation after training, more features than samples.
### BEGIN HIDDEN TESTS
check(batchnorm_forward, "batchnorm_forward", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Batch norm, backward
#
# ### Through the computation graph
#
# Write the forward pass as a chain of small nodes, per feature over the $M$ values of the batch:
#
# $$
# \mu = \tfrac1M\textstyle\sum x, \quad x_c = x - \mu, \quad \sigma^2 = \tfrac1M \sum x_c^2, \quad
# s = (\sigma^2 + \varepsilon)^{-1/2}, \quad \hat x = x_c\, s, \quad y = \gamma \hat x + \beta,
# $$
#
# and walk it backwards with the chain rule, given $dy = \partial L/\partial y$:
#
# $$
# d\beta = \textstyle\sum dy, \quad d\gamma = \sum dy\,\hat x, \quad d\hat x = dy\,\gamma, \quad
# ds = \sum d\hat x\, x_c, \quad d\sigma^2 = -\tfrac12 (\sigma^2 + \varepsilon)^{-3/2} ds,
# $$
# $$
# dx_c = d\hat x\, s + \tfrac{2}{M} x_c\, d\sigma^2, \quad d\mu = -\textstyle\sum dx_c, \quad
# dx = dx_c + \tfrac1M d\mu .
# $$
#
# $x_c$ feeds two nodes ($\hat x$ and $\sigma^2$), so its gradient is the **sum** of both paths;
# $x$ feeds $x_c$ directly and through $\mu$.
#
# ### In closed form
#
# Differentiate $\hat x_j$ with respect to $x_i$ directly. With
# $\partial\sigma^2/\partial x_i = \frac2M (x_i - \mu)$ (the term through $\mu$ vanishes because
# $\sum_j (x_j - \mu) = 0$), $\partial s/\partial x_i = -s^3 (x_i - \mu)/M$, and
#
# $$
# \frac{\partial \hat x_j}{\partial x_i} = s\Big(\delta_{ij} - \frac1M\Big) - \frac{s}{M}\,\hat x_j\,\hat x_i
# \quad\Longrightarrow\quad
# dx_i = \frac{s}{M}\Big(M\, d\hat x_i - \sum_j d\hat x_j - \hat x_i \sum_j d\hat x_j\,\hat x_j\Big).
# $$
#
# Two sums per feature and one pass over the data. In **evaluation**, $\mu$ and $\sigma^2$ are the
# running statistics — constants — and $dx = dy\,\gamma / \sqrt{r_{var} + \varepsilon}$.
#
# The cell below checks the closed form against centred finite differences of the forward pass,
# in float64 (`stabletrain.numerical_gradient`; relative errors near $10^{-8}$ or below mean right).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
rng = np.random.default_rng(0)
xb = rng.normal(2.0, 3.0, size=(6, 4))
gamma_b, beta_b, dout_b = rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=(6, 4))


def bn_output(x_):
    return stabletrain.batchnorm_forward(x_, gamma_b, beta_b, np.zeros(4), np.ones(4))[0]


_, cache_b = stabletrain.batchnorm_forward(xb, gamma_b, beta_b, np.zeros(4), np.ones(4))
dx_graph, dgamma_ref, dbeta_ref = stabletrain.batchnorm_backward(dout_b, cache_b)
dx_closed, _, _ = stabletrain.batchnorm_backward_alt(dout_b, cache_b)
dx_numeric = stabletrain.numerical_gradient(bn_output, xb.copy(), df=dout_b)
print(f"rel_error(graph, numeric)  = {stabletrain.rel_error(dx_graph, dx_numeric):.1e}")
print(f"rel_error(closed, numeric) = {stabletrain.rel_error(dx_closed, dx_numeric):.1e}")
assert stabletrain.rel_error(dx_graph, dx_numeric) < 1e-6 and stabletrain.rel_error(dx_closed, dx_graph) < 1e-10

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `batchnorm_backward` (3 points)
#
# Write `batchnorm_backward(dout, cache) -> (dx, dgamma, dbeta)` **node by node** through the
# graph above, from the cache of *your* `batchnorm_forward` (the check runs your forward first and
# hands your cache to your backward). Handle both modes: a cache from evaluation gives
# $dx = dy\,\gamma/\sqrt{r_{var} + \varepsilon}$. If your cache lacks something, go back and add
# it to your forward pass.
#
# **Numpy, by hand.** This exercise *is* the derivation, so autograd does not count as an answer:
# a backward pass that hands the forward pass to torch's autograd (`.backward()`,
# `torch.autograd.grad`, `torch.func`) gets no points — the check notices autograd recording a graph
# while your function runs. (Autograd does this work in the module of Section 4; checking your
# result against it, outside the function, is a good idea.)

# %% nbgrader={"grade": false, "grade_id": "batchnorm_backward", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def batchnorm_backward(dout, cache):
    """Backward pass of batchnorm_forward through the computation graph.

    Args:
        dout: (N, C) upstream gradient.
        cache: from your batchnorm_forward.

    Returns:
        (dx, dgamma, dbeta) of shapes (N, C), (C,), (C,).
    """
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    if not cache["training"]:
        return dx_hat * inv_std, dgamma, dbeta
    x_c = x_hat / inv_std
    ds = (dx_hat * x_c).sum(axis=0)
    dvar = -0.5 * inv_std**3 * ds
    dx_c = dx_hat * inv_std + 2.0 / m * x_c * dvar
    dmu = -dx_c.sum(axis=0)
    dx = dx_c + dmu / m
    return dx, dgamma, dbeta
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "batchnorm_backward_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(batchnorm_backward, "batchnorm_backward")

# %% nbgrader={"grade": true, "grade_id": "batchnorm_backward_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a larger batch, a batch of two, a feature with variance ~1e-6, more features than
# samples, evaluation-mode caches with the default eps and with eps = 0.1.
### BEGIN HIDDEN TESTS
check(batchnorm_backward, "batchnorm_backward", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 4 — `batchnorm_backward_alt` (2 points)
#
# Now the closed form: `batchnorm_backward_alt(dout, cache) -> (dx, dgamma, dbeta)`, same cache,
# same results, with $dx = \frac{s}{M}(M\,d\hat x - \sum d\hat x - \hat x\sum d\hat x\,\hat x)$.
# Hint: $\sum d\hat x = \gamma\, d\beta$ and $\sum d\hat x\,\hat x = \gamma\, d\gamma$. As in
# Exercise 3, numpy and no autograd.

# %% nbgrader={"grade": false, "grade_id": "batchnorm_backward_alt", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def batchnorm_backward_alt(dout, cache):
    """Backward pass of batchnorm_forward in closed form.

    Args:
        dout: (N, C) upstream gradient.
        cache: from your batchnorm_forward.

    Returns:
        (dx, dgamma, dbeta) of shapes (N, C), (C,), (C,).
    """
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    m = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    if not cache["training"]:
        return dout * gamma * inv_std, dgamma, dbeta
    dx = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "batchnorm_backward_alt_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(batchnorm_backward_alt, "batchnorm_backward_alt")

# %% nbgrader={"grade": true, "grade_id": "batchnorm_backward_alt_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: the same kinds of cases as for batchnorm_backward.
### BEGIN HIDDEN TESTS
check(batchnorm_backward_alt, "batchnorm_backward_alt", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Which is faster?** The cell below times both of your backward passes (the reference ones if
# yours are not written yet) on a batch of 256 × 512, best of five. The graph version makes more
# passes over the data and more temporaries; the closed form reuses $d\beta$ and $d\gamma$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
xt = rng.normal(size=(256, 512))
dt = rng.normal(size=(256, 512))
try:
    _, my_cache = batchnorm_forward(xt, np.ones(512), np.zeros(512), np.zeros(512), np.ones(512))
    batchnorm_backward(dt, my_cache), batchnorm_backward_alt(dt, my_cache)
    timed = {"yours, graph": (batchnorm_backward, my_cache), "yours, closed form": (batchnorm_backward_alt, my_cache)}
except NotImplementedError:
    print("(your functions are not written yet: timing the reference implementations)")
    _, ref_cache = stabletrain.batchnorm_forward(xt, np.ones(512), np.zeros(512), np.zeros(512), np.ones(512))
    timed = {"reference, graph": (stabletrain.batchnorm_backward, ref_cache),
             "reference, closed form": (stabletrain.batchnorm_backward_alt, ref_cache)}
seconds = {name: lab.time_call(fn, dt, c) for name, (fn, c) in timed.items()}
for name, s in seconds.items():
    print(f"{name:24s} {1e3 * s:6.2f} ms")
first, second = seconds.values()
print(f"ratio graph / closed form: {first / second:.2f}")

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor note (timing).** The closed form is faster than the graph version in every setting
# we measured, with the reference implementations, but by how much depends on the memory allocator
# more than on the arithmetic: the graph version makes more temporary arrays, and fresh memory from
# the operating system costs page faults. About 2× when the temporaries reuse memory the process
# already holds (a kernel that has run for a while), about 7× when every temporary is fresh memory,
# and 15–20× in a fresh Python process on the 2-core course machine (`tests/test_claims_05_batch_norm.py`
# pins the first two). So a student's ratio depends on what ran before; compare the two side by
# side. Ask: which terms does the closed form compute once that the graph version
# computes twice? (`sum(dx_hat)` and `sum(dx_hat * x_hat)` are γ·dβ and γ·dγ, already needed.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. `BatchNorm1d` as a module
#
# In a network, batch norm is a layer that carries state. torch's `nn.BatchNorm1d(C)` holds
#
# - two **parameters**, `weight` ($\gamma$, ones) and `bias` ($\beta$, zeros), trained by the optimizer;
# - three **buffers**, `running_mean` (zeros), `running_var` (ones) and `num_batches_tracked`
#   (a `long` scalar counting training steps): state that is saved in the `state_dict` and moved
#   by `.to(device)`, but not trained. `self.register_buffer(name, tensor)` makes one.
#
# `module.train()` / `module.eval()` set `self.training`, which `forward` reads. For inputs of
# shape $(N, C, L)$ (a sequence per channel) the statistics run over $N$ and $L$:
# $M = N L$ values per channel. With `momentum=None`, the running statistics are a **cumulative
# average** of all batches so far: the factor is $1/t$ at step $t$ (`num_batches_tracked` after
# incrementing), so $r_t = \frac1t\sum_{k\le t} \text{stat}_k$.
#
# In the module, autograd does the backward pass — **as long as the batch statistics stay in the
# graph**: computing them under `torch.no_grad()` or with `.detach()` would drop the two batch
# terms of Section 3 (only the running-statistics update belongs under `no_grad`).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
bn = nn.BatchNorm1d(3, momentum=None)
print("state_dict keys:", list(bn.state_dict()))
batches = [torch.randn(16, 3, generator=gen) + k for k in range(4)]
for b in batches:
    bn(b)
cumulative = torch.stack([b.mean(0) for b in batches]).mean(0)
print(f"momentum=None: running_mean {bn.running_mean.numpy().round(4)} = average of the batch means "
      f"{cumulative.numpy().round(4)}; num_batches_tracked = {bn.num_batches_tracked.item()}")
assert torch.allclose(bn.running_mean, cumulative, atol=1e-6)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 5 — `BatchNorm1d` (4 points)
#
# Write `BatchNorm1d(num_features, eps=1e-5, momentum=0.1)` as an `nn.Module` from tensor
# operations (no `F.batch_norm`, no `nn.BatchNorm1d`):
#
# - parameters `weight` and `bias`; buffers `running_mean`, `running_var` and
#   `num_batches_tracked` (`torch.tensor(0, dtype=torch.long)`), so that the `state_dict` keys are
#   torch's and a `torch.nn.BatchNorm1d` state_dict loads;
# - `forward(x)` for `(N, C)` and `(N, C, L)`; in training: batch mean and biased variance, kept in
#   the graph; update the buffers in place under `torch.no_grad()` (add 1 to `num_batches_tracked`;
#   factor `momentum`, or `1 / num_batches_tracked` when `momentum` is None; unbiased variance with
#   $M$ the number of values per channel); in evaluation: the running statistics, nothing updated.
#
# The update must stay **out of the graph**. `self.running_mean = (1 - m) * self.running_mean + m * mean`
# outside `no_grad` gives the right numbers, but the buffer becomes a node of this batch's graph and
# drags every earlier batch's graph along: memory grows with every step, and a backward pass
# through an evaluation-mode output fails ("Trying to backward through the graph a second time").
# The check runs three training steps and then exactly that backward pass.

# %% nbgrader={"grade": false, "grade_id": "BatchNorm1d", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
class BatchNorm1d(nn.Module):
    """Batch norm over (N, C) or (N, C, L) inputs, matching torch.nn.BatchNorm1d."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        ### BEGIN SOLUTION
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        dims = (0,) if x.dim() == 2 else (0, 2)
        shape = (1, -1) if x.dim() == 2 else (1, -1, 1)
        if self.training:
            mean = x.mean(dim=dims, keepdim=True)
            var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
            m = x.numel() // x.shape[1]
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(f * mean.flatten())
                self.running_var.mul_(1 - f).add_(f * var.flatten() * m / (m - 1))
        else:
            mean, var = self.running_mean.view(shape), self.running_var.view(shape)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "BatchNorm1d_visible", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(BatchNorm1d, "BatchNorm1d")

# %% nbgrader={"grade": true, "grade_id": "BatchNorm1d_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: (N, C, L) outputs, buffers and gradients, momentum=None, other eps and momentum, a
# torch.nn.BatchNorm1d state_dict loaded (then evaluated, or trained one step), a batch of two.
### BEGIN HIDDEN TESTS
check(BatchNorm1d, "BatchNorm1d", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Images: `BatchNorm2d` normalizes per channel
#
# A convolution applies the same filter at every position, so its output channel $c$ means the
# same thing everywhere in the image. Batch norm for images therefore keeps **one** mean, variance,
# $\gamma$ and $\beta$ per channel, over the batch *and* every position: for $x$ of shape
# $(N, C, H, W)$ the statistics run over $M = N H W$ values per channel (CS231n calls it "spatial
# batch normalization"; d2l.ai §8.5). That is batch norm on $(N, C, L)$ with $L = HW$: the cell
# below flattens the image, runs the course's `BatchNorm1d` on it and compares with
# `torch.nn.BatchNorm2d`, outputs and running statistics. (Normalizing over the channels of each
# sample instead is layer norm, or group norm for groups of channels — Lesson 6.)

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
images = 1.0 + 2.0 * torch.randn(8, 3, 5, 6, generator=gen)  # (N, C, H, W)
bn2d, bn1d = nn.BatchNorm2d(3), stabletrain.BatchNorm1d(3)
y2d, y1d = bn2d(images), bn1d(images.flatten(2)).view_as(images)  # (N, C, H*W): M = 8 * 30 = 240 per channel
print(f"largest difference BatchNorm2d vs BatchNorm1d on (N, C, H*W): {(y2d - y1d).abs().max().item():.1e}")
print(f"per-channel mean after BatchNorm2d {y2d.mean((0, 2, 3)).detach().numpy().round(6)}, "
      f"std {y2d.std((0, 2, 3), correction=0).detach().numpy().round(4)}")
assert torch.allclose(y2d, y1d, atol=1e-5)
assert torch.allclose(bn2d.running_var, bn1d.running_var) and torch.allclose(bn2d.running_mean, bn1d.running_mean)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Folding batch norm into the layer before it
#
# In evaluation, batch norm is an affine map per feature: with
# $s = \gamma/\sqrt{r_{var} + \varepsilon}$, $\;\text{BN}(z) = s\,(z - r_{mean}) + \beta$. After a
# Linear layer $z = Wx + b$,
#
# $$
# \text{BN}(Wx + b) = \underbrace{\operatorname{diag}(s)\,W}_{W'}\,x + \underbrace{s\,(b - r_{mean}) + \beta}_{b'} ,
# $$
#
# one Linear layer: row $i$ of $W$ is scaled by $s_i$. Deployed models do this ("fusing"), so
# inference pays nothing for batch norm. It is only valid in **evaluation** (in training the
# statistics change with every batch), and the folded layer always has a bias, even when the
# Linear layer had none — usual before batch norm, whose mean subtraction would cancel it.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
lin, bn = nn.Linear(5, 3), nn.BatchNorm1d(3)
with torch.no_grad():
    bn.running_mean.normal_(generator=gen), bn.running_var.uniform_(0.5, 2.0, generator=gen)
    bn.weight.uniform_(0.5, 2.0, generator=gen), bn.bias.normal_(generator=gen)
bn.eval()
s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
W_fold, b_fold = s[:, None] * lin.weight, s * (lin.bias - bn.running_mean) + bn.bias
x5 = torch.randn(4, 5, generator=gen)
print("largest difference, fold vs Linear then BN:", (x5 @ W_fold.T + b_fold - bn(lin(x5))).abs().max().item())
assert torch.allclose(x5 @ W_fold.T + b_fold, bn(lin(x5)), atol=1e-6)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 6 — `fold_batchnorm` (2 points)
#
# Write `fold_batchnorm(linear, bn) -> nn.Linear`: a **new** `nn.Linear` (the two layers given stay
# unchanged) whose output equals `bn(linear(x))` in evaluation mode. `linear` may have no bias;
# `bn` is a `torch.nn.BatchNorm1d` (or yours) with `weight`, `bias`, `running_mean`,
# `running_var` and `eps`. Keep the Linear's dtype. Work under `torch.no_grad()` and do not call
# `bn` itself.

# %% nbgrader={"grade": false, "grade_id": "fold_batchnorm", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def fold_batchnorm(linear, bn):
    """A new Linear equal to bn(linear(x)) with bn in evaluation mode.

    Args:
        linear: nn.Linear(in, out), with or without bias.
        bn: batch norm over `out` features, with running statistics.

    Returns:
        nn.Linear(in, out) with a bias.
    """
    ### BEGIN SOLUTION
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
        folded = nn.Linear(linear.in_features, linear.out_features, dtype=linear.weight.dtype)
        folded.weight.copy_(s[:, None] * linear.weight)
        folded.bias.copy_(s * (b - bn.running_mean) + bn.bias)
    return folded
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "fold_batchnorm_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(fold_batchnorm, "fold_batchnorm")

# %% nbgrader={"grade": true, "grade_id": "fold_batchnorm_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a Linear without bias, a running variance of 1e-7, eps = 0.1, float64.
### BEGIN HIDDEN TESTS
check(fold_batchnorm, "fold_batchnorm", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Batch norm in a training loop
#
# A network with batch norm has to be told which mode it is in, and the place of each call matters:
#
# ```python
# model.train()                      # batch statistics; running statistics updated
# for step in range(steps):
#     loss = F.cross_entropy(model(x_batch), y_batch)
#     optimizer.zero_grad(); loss.backward(); optimizer.step()   # or a hand-written SGD step
# model.eval()                       # running statistics; nothing updated
# with torch.no_grad():
#     test_logits = model(x_test)
# ```
#
# Forgetting `model.eval()` makes every prediction depend on the rest of its test batch (and
# quietly overwrites the running statistics with test data). A "quick look" at the test set in
# training mode, even under `torch.no_grad()`, updates the running statistics too: `no_grad` turns
# off autograd, not batch norm's bookkeeping.
#
# ### Exercise 7 — `train_bn_classifier` (3 points)
#
# Write `train_bn_classifier(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0)`:
# train `model` (a classifier with **your** `BatchNorm1d` layers inside) with plain SGD for
# exactly `steps` steps, each on one minibatch of `batch_size` training samples drawn at random
# (use `seed`), with cross-entropy; then return the logits on `x_test` in evaluation mode. Write
# the SGD step yourself — reset every `p.grad` to None, `loss.backward()`, then under
# `torch.no_grad()` update `p -= lr * p.grad` — or use `torch.optim.SGD(model.parameters(), lr=lr)`
# (the same steps; its first use in a fresh Python process costs a few seconds of imports).
#
# Minibatches and plain SGD are part of the task, not a detail: on the whole training set every
# step, the batch statistics would be the population's, training and evaluation mode would agree,
# and batch norm's two modes — what this exercise is about — would never differ. It is graded on
# behaviour: the check watches the model's forward passes (mode and batch size) and the first
# layer's weight at every step (each update must be $-\text{lr}$ times that step's gradient: no
# momentum, no weight decay, no gradients left to accumulate), then requires the loss on the
# training set below a threshold and test outputs equal to what `torch.nn.BatchNorm1d` layers
# loaded with your trained state give in evaluation mode.

# %% nbgrader={"grade": false, "grade_id": "train_bn_classifier", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def train_bn_classifier(model, x_train, y_train, x_test, steps=100, lr=0.1, batch_size=32, seed=0):
    """Train a classifier with batch-norm layers by minibatch SGD; return its test logits in eval mode.

    Args:
        model: an nn.Module mapping (n, features) to (n, classes) logits.
        x_train, y_train: (n, features) float inputs and (n,) int64 labels.
        x_test: (m, features) inputs.
        steps, lr, batch_size, seed: the number of SGD steps, the learning rate, the minibatch
            size and the seed of the minibatch draws.

    Returns:
        (m, classes) logits computed in evaluation mode.
    """
    ### BEGIN SOLUTION
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(x_train), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
        for p in params:
            p.grad = None  # zero_grad
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad  # the SGD step
    model.eval()
    with torch.no_grad():
        return model(x_test)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "train_bn_classifier_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(train_bn_classifier, "train_bn_classifier")

# %% nbgrader={"grade": true, "grade_id": "train_bn_classifier_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: two classes with small batches, four classes with larger batches.
### BEGIN HIDDEN TESTS
check(train_bn_classifier, "train_bn_classifier", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Experiments
#
# ### Weight scale × learning rate, with and without batch norm
#
# **Setup.** An MLP with 8 hidden ReLU layers of width 24 classifies the three-class spirals
# (300 points). Its weights start at $\mathcal N(0, s^2 \cdot 2/\text{fan\_in})$: Kaiming's
# initialization (Lesson 3) times a **weight scale** $s$ from 0.25 to 4. It is trained for 100
# SGD steps on minibatches of 32 at learning rates from 0.01 to 1, with and without batch norm
# after every hidden Linear layer; the final loss is the mean of the last 10 minibatch losses.
# Five seeds each (own initialization, own minibatch order): 250 networks, trained at once as one
# batched model (`lab.sweep_experiment`). The **control** is the left panel — the same network
# without batch norm.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
sweep = lab.sweep_experiment()
print(f"trained 2 x {sweep.final['bn'].size} networks in {sweep.seconds:.1f} s")
plain, with_bn = sweep.final["plain"], sweep.final["bn"]
small = plain[:, :2]  # weight scales 0.25 and 0.5, every seed and learning rate
print(f"no BN, scales 0.25 and 0.5: {np.sum(np.abs(small - np.log(3)) >= 0.03)} of {small.size} runs left chance; "
      f"scale 4: {np.isinf(plain[:, -1]).sum()} of {plain[:, -1].size} runs diverged")
print(f"with BN: largest cell median {np.median(with_bn, 0).max():.2f}; runs above 0.8: "
      f"{np.sum(with_bn >= 0.8)} of {with_bn.size} (worst {with_bn.max():.2f})")
lab.plot_sweep_heatmaps(sweep)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the heat maps.** Without batch norm, weight scale 0.25 stays at the chance loss
# $\ln 3 \approx 1.10$ at every learning rate on every seed, and 0.5 on almost every run — after
# eight layers the signal has shrunk by $s^8$ and the gradient with it — and at weight scale 4
# every run diverges at every learning rate. Only a narrow band trains: the Kaiming scale at
# learning rates up to 0.3, and weight scale 2 at the smallest learning rate; every other cell
# stays at chance or diverges. With batch norm all 25 cells train: every cell's median final loss
# is below 0.85, and almost every run ends below 0.8. The scale of the weights no longer matters,
# because every layer's pre-activations are re-standardized. Runs differ most in the corner of
# small weights and large learning rates; "Scale invariance meets SGD" below says why.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Why the weight scale stops mattering
#
# If a Linear layer is followed by batch norm, multiplying its weight by $a > 0$ changes nothing:
# $\text{BN}(aWx) = \text{BN}(Wx)$, since the mean scales by $a$ and the standard deviation by $a$
# (up to $\varepsilon$). So the loss is **scale invariant** in $W$, $L(aW) = L(W)$, and
# differentiating both sides gives $\nabla L(aW) = \nabla L(W)/a$: larger weights get
# proportionally smaller gradients, and their *relative* update $\eta\|\nabla L\|/\|W\|$ shrinks by
# $a^2$. The check below scales one layer of a small BN network by 10.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
net = nn.Sequential(nn.Linear(2, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).double()
xs = torch.randn(64, 2, dtype=torch.float64, generator=gen)
ys = torch.randint(0, 3, (64,), generator=gen)


def first_layer_grad(scale):
    with torch.no_grad():
        net[0].weight.mul_(scale)
    net.zero_grad()
    loss = F.cross_entropy(net(xs), ys)
    loss.backward()
    with torch.no_grad():
        net[0].weight.div_(scale)
    return loss.item(), net[0].weight.grad.clone()


loss_1, grad_1 = first_layer_grad(1.0)
loss_10, grad_10 = first_layer_grad(10.0)
print(f"loss at W: {loss_1:.6f}, at 10 W: {loss_10:.6f}")
print(f"||grad at 10 W|| / ||grad at W|| = {(grad_10.norm() / grad_1.norm()).item():.5f} (predicted 0.1)")
assert abs(loss_1 - loss_10) < 1e-4 and torch.allclose(grad_10, grad_1 / 10, rtol=1e-2, atol=1e-5)  # up to eps

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Scale invariance meets SGD: the norm grows, weight decay sets the step
#
# Differentiate $L(aW) = L(W)$ with respect to $a$ at $a = 1$: $\langle \nabla L(W), W\rangle = 0$.
# The gradient of a weight that batch norm follows is **orthogonal** to the weight, so an SGD step
# $W' = W - \eta\nabla L$ obeys Pythagoras,
#
# $$
# \|W'\|^2 = \|W\|^2 + \eta^2 \|\nabla L(W)\|^2 ,
# $$
#
# and without weight decay the norm can only grow. The function depends on the direction
# $W/\|W\|$ alone, and since $\nabla L(W) = \nabla L(W/\|W\|)/\|W\|$ that direction moves by about
# $\eta\,\|\nabla L(W/\|W\|)\|/\|W\|^2$ per step: an **effective learning rate** $\eta/\|W\|^2$. Two
# consequences:
#
# - The heat map's noisiest corner is weight scale 0.25 at learning rate 1: weights 4 times
#   smaller see a step 16 times larger.
# - Weight decay, $W \leftarrow W - \eta(\nabla L + \lambda W)$, cannot make a scale-invariant
#   function simpler; what it changes is the norm, and with it the effective learning rate, which it
#   keeps from decaying (van Laarhoven 2017; Zhang et al. 2019). That is also why γ, β and biases —
#   not scale invariant — are usually left out of weight decay.
#
# **Setup.** A BN network (2 hidden layers of width 32, batch norm after each) trained on the
# spirals by SGD at learning rate 0.2 for 300 steps on minibatches of 32, with and without weight
# decay $\lambda = 0.02$ on the hidden weights, five seeds, float64; tracked: the second hidden
# layer's weight.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
norms = lab.weight_norm_experiment()
no_decay, decay = norms.norms[0.0], norms.norms[norms.weight_decay]
print(f"largest |cos(W, grad)| over all steps: {norms.max_cosine:.1e}; largest error of the Pythagoras identity: "
      f"{norms.max_identity_error:.1%}")
print(f"no weight decay: the norm grew at every step on every seed: {bool(np.all(np.diff(no_decay, axis=1) > 0))}; "
      f"by {(no_decay[:, -1] / no_decay[:, 0]).min() - 1:.1%} to {(no_decay[:, -1] / no_decay[:, 0]).max() - 1:.1%} in "
      f"{no_decay.shape[1] - 1} steps")
ratio = norms.effective_lr(norms.weight_decay)[:, -1] / norms.effective_lr(0.0)[:, -1]
shrink = decay[:, -1] / decay[:, 0]
print(f"weight decay: the norm ends at {shrink.min():.2f} to {shrink.max():.2f} of its start; effective step "
      f"{ratio.min():.1f} to {ratio.max():.1f} times the one without")
lab.plot_weight_norms(norms)

# %% [markdown] slideshow={"slide_type": "fragment"}
# The gradient is orthogonal to the weight to within $|\cos| < 10^{-3}$ at every step (ε breaks the
# invariance slightly), and the Pythagoras identity holds to within 1 %. Without weight decay the
# norm grows at every step on every seed — by a few per cent here, more at larger learning rates.
# With $\lambda = 0.02$ the norm falls to about 40 % of its start within 300 steps (between 30 % and
# 50 % on every seed), so the step its direction sees ends 5 to 9 times larger than without weight
# decay.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Why batch norm helps
#
# Ioffe and Szegedy motivated batch norm by *internal covariate shift*: every layer's input
# distribution changes as the layers before it learn, and normalizing should stop it. Santurkar,
# Tsipras, Ilyas and Madry (2018) tested that story. Adding random noise with a changing mean and
# variance after every batch-norm layer — a deliberate covariate shift — left training about as
# good as with plain batch norm; and in a standard network batch norm did not reduce the measured
# shift. What it does change is the loss landscape: with batch norm the loss and its gradient change
# less along a step (smaller Lipschitz constants), so the gradient stays a good guide for a longer
# step and larger learning rates are safe. This lesson's measurements point the same way: with batch
# norm every cell of the heat map trains up to learning rate 1, where without it every weight scale
# stays at chance or diverges; the scale invariance makes the step adapt to the weight norm by
# itself; and the gradient norms no longer depend on the weight scale (next).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Gradient norm per layer
#
# **Setup.** A 20-hidden-layer ReLU MLP of width 64 at initialization, weight scales 0.5, 1 and 2,
# with and without batch norm; one batch of 128 spiral points; the norm of $\partial L/\partial W_l$
# for every layer $l$, over five seeds (median and range), in float64.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
grad_norms = lab.gradient_norm_experiment()
n = grad_norms.norms
print(f"no BN: scale 2 / scale 0.5, smallest ratio over layers and seeds: "
      f"{(n['plain', 2.0] / n['plain', 0.5]).min():.1e}")
with_bn = np.stack([n["bn", s] for s in (0.5, 1.0, 2.0)])
print(f"with BN: largest spread over the three scales: {(with_bn.max(0) / with_bn.min(0)).max():.2f}x")
towards_input = with_bn[:, :, 1] / with_bn[:, :, -2]
print(f"with BN: second layer / last hidden layer: {towards_input.min():.0f}x to {towards_input.max():.0f}x")
lab.plot_gradient_norms(grad_norms)

# %% [markdown] slideshow={"slide_type": "fragment"}
# Without batch norm the weight scale sets everything: the gradient norms at weight scales 0.5
# and 2 differ by about twelve orders of magnitude (more than $10^{11}$ at every layer on every
# seed). With batch norm, the three weight scales give gradient norms within a factor of 3 of each
# other at every layer, on every seed: the curves **overlap**. They do not shift by $1/s$, as the
# scale invariance alone would have them: each hidden layer's own factor $s$ divides its gradient by
# $s$, but the output layer, which no batch norm follows, is $s$ times larger as well and scales
# every gradient flowing back into the network up by about $s$ — the two largely cancel.
#
# Batch norm does **not** make every layer's gradient the same: at initialization the gradient
# grows towards the input — the second layer's gradient is more than 25 times the last hidden
# layer's on every seed. This is a known property of deep batch-normalized ReLU networks (Yang et
# al., 2019); in practice residual connections (Lesson 6), warm-up or a smaller learning rate for
# the first steps handle it.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Batch size, and the train/eval gap
#
# **Setup.** An MLP with 3 hidden ReLU layers of width 32 and batch norm, trained on the spirals
# for 400 SGD steps at learning rate 0.05, at batch sizes 2 to 64, five seeds each; the control is
# the same network without batch norm, trained on the same minibatches. After training, the *same
# weights* are evaluated twice on the training set: in training mode (batch statistics, batches of
# the training batch size) and in evaluation mode (running statistics). A third evaluation
# recalibrates the running statistics on the whole training set first (below).

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
sizes = lab.batch_size_experiment()
dis = np.median(sizes.disagreement["bn"], axis=0)
for b, d, acc_bn, acc_plain in zip(sizes.batch_sizes, dis, np.median(sizes.test_accuracy["bn"], 0),
                                   np.median(sizes.test_accuracy["plain"], 0)):
    print(f"batch {b:2d}: predictions that change between train and eval mode {d:5.1%}; "
          f"test accuracy with BN {acc_bn:.3f}, without {acc_plain:.3f}  (medians)")
b2, b64 = sizes.batch_sizes.index(2), sizes.batch_sizes.index(64)
train2, eval2, plain2 = sizes.train_mode["bn"][:, b2], sizes.eval_mode["bn"][:, b2], sizes.eval_mode["plain"][:, b2]
print(f"batch 2, loss on the training set: BN training mode {train2.min():.2f} to {train2.max():.2f}, BN evaluation "
      f"mode {eval2.min():.2f} to {eval2.max():.2f}, control {plain2.min():.2f} to {plain2.max():.2f} "
      f"(chance ln 3 = {np.log(3):.2f})")
d2, d64 = sizes.disagreement["bn"][:, b2], sizes.disagreement["bn"][:, b64]
lead = sizes.test_accuracy["plain"][:, b2] - sizes.test_accuracy["bn"][:, b2]
print(f"predictions that change, every seed: batch 2 {d2.min():.0%} to {d2.max():.0%}, batch 64 {d64.min():.0%} to "
      f"{d64.max():.0%}; at batch 2 the control's test accuracy leads by {lead.min():.2f} to {lead.max():.2f}; "
      f"BN at batch 64: {sizes.test_accuracy['bn'][:, b64].min():.3f} or more")
gap = sizes.train_mode["bn"][:, 2:] - sizes.eval_mode["bn"][:, 2:]
print(f"from batch 8 on, training-mode loss minus evaluation-mode loss: at least {gap.min():.2f}")
lab.plot_batch_size(sizes)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **At batch 2 the network learns almost nothing.** Its training-mode loss stays within 0.15 of the
# chance level $\ln 3 \approx 1.10$ on every seed, while the control reaches below 0.6 on the same
# minibatches. Section 2 says why: with two samples every batch-norm output is $\beta \pm \gamma$,
# so the first batch-norm layer passes on only *which* of the two samples is larger along each of
# its 32 directions — not where the pair lies, nor how far apart its points are. The cell below
# checks it on a small network: a pair, and the same pair moved 50 units away and stretched 7
# times, give the same training-mode logits. A spiral point's class depends on where it lies, and
# that is what two-sample statistics erase.
#
# Evaluation mode then sees what training never used: the running statistics, averaged over
# hundreds of pairs, describe the real inputs, and the same weights compute a different function.
# Between a fifth and two thirds of the training points (about 40 % on a typical seed) change their
# predicted class when the network switches modes, and the evaluation-mode loss is hardly better
# than chance (within 0.3 of $\ln 3$). At batch 64 about a tenth change (below 15 % on every seed).
# From batch 8 on, the training-mode loss lies above the evaluation-mode loss by more than 0.05 on
# every seed: the batch statistics are a noisy version of the running ones, and the noise costs
# loss. (The control gives the same prediction in both modes, by construction.) Test accuracy
# follows: with batch norm it is more than 0.1 below the control's at batch 2 on every seed, and
# above 0.95 at batch 64. Small batches are where batch norm breaks down; layer norm (Lesson 6)
# does not depend on the batch at all.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
# a two-layer BN network; eps = 1e-9 so that nothing but the +-1 of Section 2 is left
pair_net = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32, eps=1e-9), nn.ReLU(), nn.Linear(32, 32),
                         nn.BatchNorm1d(32, eps=1e-9), nn.ReLU(), nn.Linear(32, 3)).double()
a, b = torch.tensor([1.0, -0.8], dtype=torch.float64), torch.tensor([-0.6, 0.9], dtype=torch.float64)
centre = torch.tensor([40.0, -25.0], dtype=torch.float64)
same, far_away = torch.stack([a, b]), torch.stack([centre + 7 * (a - b) / 2, centre - 7 * (a - b) / 2])
with torch.no_grad():
    pair_net.train()  # batch statistics of the pair
    shift = (pair_net(same) - pair_net(far_away)).abs().max().item()
    pair_net.eval()  # running statistics: where the pair lies matters again
    shift_eval = (pair_net(same) - pair_net(far_away)).abs().max().item()
print(f"training mode: the pair, and the pair moved 50 units away and stretched 7 times, give logits that differ by "
      f"{shift:.1e}")
print(f"evaluation mode: they differ by {shift_eval:.1f}")
assert shift < 1e-3 and shift_eval > 0.3

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Recalibrating the statistics, and freezing them
#
# The running statistics are an exponential average (momentum 0.1: 90 % of the weight on the last
# 22 batches), taken while the weights were still moving. To recompute them for the final weights, reset
# them, set `momentum=None` (a plain average) and run the training data through the model in
# training mode under `torch.no_grad()` — `torch.optim.swa_utils.update_bn(loader, model)` does
# exactly this. It is required whenever weights change without training steps: after averaging
# weights (SWA), pruning or quantizing. It does not rescue batch 2: the right panel's
# "recalibrated" curve recomputes the statistics of the batch-2 networks on the whole training set,
# and their test accuracy stays more than 0.1 below the control's on every seed. What batch 2
# spoiled is the weights, not the statistics. At batch 64 recalibration changes little (test
# accuracy above 0.95 either way).
#
# **Freezing batch norm when fine-tuning.** Fine-tuning a pretrained network on a small dataset,
# often with small batches, would replace its running statistics with noisy ones from a few
# samples. The usual recipe keeps them: put the batch-norm layers in evaluation mode, and often
# freeze $\gamma$ and $\beta$ as well. The trap is `model.train()`: it switches every submodule back
# to training mode, so the freeze must be repeated after it (or `train()` overridden).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def freeze_batchnorm(model):
    """Keep the running statistics, gamma and beta of every batch-norm layer as they are."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.eval()  # use the running statistics and update none of them
            module.requires_grad_(False)  # keep gamma and beta


tuned = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
kept = tuned[1].running_mean.clone()
freeze_batchnorm(tuned)
tuned.train()  # the usual first line of a training loop...
tuned(torch.randn(4, 2, generator=gen))
print(f"after model.train(): running statistics changed: {not torch.equal(tuned[1].running_mean, kept)}")
tuned[1].running_mean.copy_(kept)
tuned.train()
freeze_batchnorm(tuned)  # ...so freeze after it
tuned(torch.randn(4, 2, generator=gen))
print(f"frozen after model.train(): running statistics changed: {not torch.equal(tuned[1].running_mean, kept)}")
assert torch.equal(tuned[1].running_mean, kept) and not tuned[1].weight.requires_grad

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Towards Lesson 6: batch norm down-weights residual branches
#
# A residual network adds each block's branch to a stream, $x_{l+1} = x_l + f_l(x_l)$. When the
# branch **ends in batch norm**, as in a ResNet block, $f_l$ has variance 1 per feature at
# initialization whatever came before, so the stream's variance grows by about one per block,
# $\operatorname{Var}(x_l) \approx \operatorname{Var}(x_0) + l$, and block $l$'s branch contributes
# only a share of about $1/(l+1)$ of its output: deep blocks start close to the identity, and the
# network behaves like a much shallower one. Without the normalization, the same Kaiming branches
# nearly double the stream's variance at every block. De and Smith (2020) argued that this is the
# main reason deep batch-normalized ResNets train, and reproduced it without batch norm: a learned
# scalar on each branch, initialised at 0 (SkipInit); Fixup (Zhang, Dauphin and Ma, 2019) rescales
# the branches' initialization instead. Lesson 6 builds residual networks on this idea with layer
# norm.
#
# **Setup.** 32 residual blocks of width 64, $f_l = \text{BN}(\text{ReLU}(x_l) W_l)$ with Kaiming
# $W_l$, one batch of 512 standard-normal inputs at initialization, five seeds, float64; the control
# is the same branch without batch norm.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
stream = lab.residual_stream_experiment()
v_bn, v_plain = stream.variance["bn"], stream.variance["plain"]
growth = (v_plain[:, -1] / v_plain[:, 0]) ** (1 / stream.blocks)
print(f"branch ending in BN: Var(x_{stream.blocks}) = {v_bn[:, -1].min():.1f} to {v_bn[:, -1].max():.1f} "
      f"(1 + l = {stream.blocks + 1}); the last branch's share: {stream.branch_share()[:, -1].max():.1%} or less")
print(f"branch without BN: Var(x_{stream.blocks}) = {v_plain[:, -1].min():.1e} to {v_plain[:, -1].max():.1e}, "
      f"a factor {growth.min():.2f} to {growth.max():.2f} per block")
lab.plot_residual_stream(stream)

# %% [markdown] slideshow={"slide_type": "fragment"}
# With batch norm ending each branch, the variance after 32 blocks is close to $1 + 32 = 33$
# (within 20 % on every seed), so the last branch adds about 3 % of the stream. Without it, each
# block multiplies the variance by nearly 2 (between 1.6 and 2.2 on every seed).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Explore: one batch through batch norm
#
# The widget shows a batch of 64 values of three features with different means and spreads, before
# and after batch norm. Move $\gamma$ and $\beta$; switch between training mode (the batch's own
# statistics) and evaluation mode with running statistics gathered over some number of earlier
# batches (momentum 0.1). Questions:
#
# - In training mode with $\gamma = 1, \beta = 0$: what are the mean and standard deviation of every
#   feature after batch norm? Which slider changes which?
# - In evaluation mode with **0** batches seen (running statistics still at 0 and 1): what does
#   batch norm do to the features? After how many batches do the outputs look normalized?
# - Why can the eval-mode output of a feature have a mean different from $\beta$ even after 50
#   batches?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.BatchNormExplorer()
print(f"one update took {explorer.last_update_s * 1000:.0f} ms")
explorer.widget

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes (explorer).** Training mode, γ = 1, β = 0: every feature has mean 0.00 and
# standard deviation 1.00 (up to eps) — the text in the right panel shows it; γ sets the standard
# deviation, β the mean. Evaluation with 0 batches seen: running mean 0 and variance 1, so batch
# norm is (almost) the identity: the features keep their means 3, −1 and 0.5 and spreads 2, 0.5
# and 4. The running mean after k batches is $(1 - 0.9^k)$ times the true mean (plus noise), so it
# reaches 90 % of it after 22 batches and 99 % after 44; the outputs look normalized after about 20
# to 30. After 50 batches the eval-mode mean still differs from β because the running statistics
# are an average over *other* batches: this batch's own mean differs from them by sampling noise
# (about σ/√64 for the mean), which is exactly the train/eval mismatch of Section 7, small at
# batch 64.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Questions
#
# 1. Why do networks with batch norm usually leave out the bias of the Linear layer before it?
# 2. A model gets 95 % test accuracy when evaluated in batches of 256, and 60 % when the same test
#    set is fed one sample at a time. What is the most likely bug?
# 3. Your model trains with batches of 10. After a few hundred steps your running variance sits
#    about 10 % below PyTorch's on the same data. Which convention did you miss? How large is the
#    difference after the very first step (momentum 0.1, running variance starting at 1)?
# 4. You train with batches of 2 because the model is large. What would you try instead of batch
#    norm?
# 5. You add weight decay to a layer that batch norm follows. The network computes the same
#    function at every scale of that layer's weight, so what does the weight decay change?
# 6. You fine-tune a pretrained ResNet on 200 images with batches of 4, calling
#    `freeze_batchnorm(model)` once before the loop, which starts with `model.train()`. What
#    happens to the running statistics, and how do you fix it?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor answers.**
# 1. Batch norm subtracts the batch mean, which removes any constant added before it: the bias
#    gets a zero gradient (exactly, in training mode) and only wastes parameters; β takes its role.
# 2. The model is evaluated in training mode (no `model.eval()`): with batches of 256, batch
#    statistics are close to the running ones; one sample at a time, training-mode batch norm
#    either raises (one value per channel) or, with $(N, C, L)$ inputs, normalizes each sample by
#    itself. Check that `model.eval()` is called.
# 3. The running variance uses the unbiased batch variance, $M/(M-1) = 10/9$ times the biased one.
#    Once the running average has forgotten its start it averages biased variances, $9/10$ of the
#    unbiased ones: 10 % smaller. After the first step only the new tenth differs: with batch
#    variance $v$ the two are $0.9 + 0.1 v$ and $0.9 + 0.1 \cdot 0.9 v$, about 1 % apart for $v$
#    near 1 (`tests/test_claims_05_batch_norm.py` checks both numbers).
# 5. The effective learning rate of that layer's direction, $\eta/\|W\|^2$: weight decay shrinks the
#    norm, which the gradient (orthogonal to $W$) would otherwise only grow, so training keeps
#    moving instead of slowing down by itself. In the lesson's run, $\lambda = 0.02$ made the
#    effective step 5 to 9 times larger after 300 steps. It is a learning-rate schedule, not a
#    constraint on the function.
# 6. `model.train()` switches the batch-norm layers back to training mode, so every step overwrites
#    the pretrained statistics with those of 4 images (and with momentum 0.1 they are gone after a
#    few dozen steps). Call `freeze_batchnorm(model)` after every `model.train()`, or override
#    `train()` to re-freeze; γ and β stay frozen either way, since `requires_grad` is not touched by
#    `train()`.
# 4. Layer norm or group norm (no dependence on the batch), or batch norm with statistics
#    accumulated over several micro-batches (or synchronized across devices); also: freeze the
#    running statistics late in training.
#    Section 7 measured the symptom: at batch 2, a fifth to two thirds of the predictions change
#    between the modes.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes (numbers this notebook produces, and how much they vary).** The ranges below
# are over 30 runs: seeds 0–14 with this machine's kernels, and seeds 0–4 with torch's AVX2 and
# generic kernels and with a 10⁻⁶ jitter of the initial weights
# (`tests/test_claims_05_batch_norm.py`). A student's five seeds fall inside them; the exact values
# move with the CPU wherever training is chaotic (large learning rates), by up to 0.2 in a single
# run's final loss. Standardization (float64, the same on every CPU): condition number 2.5–4 × 10⁹
# raw against 1.5–2.0 standardized; raw gradient descent keeps 23–75 % of its initial excess loss
# after 100 steps (seeds 0–4: 48–71 %). Heat map: without BN the band that trains is the Kaiming row
# (median 0.3–0.4 at lr 0.1) and scale 2 at lr 0.01 (median about 0.5, where some seeds diverge: 2
# of 5 in every 5-seed run, 3 of 15 natively); scale 0.5 left chance on 1 of 150 runs (seed 5, lr
# 0.3). With BN the largest cell median is 0.64–0.71 and the best 0.32–0.37, at lr 0.1 (or 0.3: the
# best cell moves with the CPU's kernels); the noisiest cell is weight scale 0.25 at lr 1 (runs from
# 0.37 to 0.91 — the one run above 0.8 came from the generic kernels). Gradient norms: with BN the
# spread across the three weight scales is at most 2.2× at any layer; the second layer's gradient is
# 30–95× the last hidden layer's. Batch size: with BN, 27–59 % of predictions change between the
# modes at batch 2 and 7–10 % at batch 64; test accuracy 0.38–0.71 at batch 2 and 0.98–0.99 at batch
# 64 (without BN 0.75–0.97 and 0.97–0.98). At batch 2 the training-mode loss is 1.01–1.12 and the
# evaluation-mode loss 0.88–1.10 (the control 0.23–0.48); from batch 8 on the training-mode loss is
# 0.10 or more above the evaluation-mode one. Recalibrating moves BN's batch-2 test accuracy by up
# to 0.16 in either direction and leaves the control ahead by 0.14 or more; at batch 64 it stays at
# 0.96 or above. Weight norm (float64, the same on every CPU to three digits): the cosine of W and
# its gradient at most 2 × 10⁻⁴ in size, Pythagoras to 0.5 %, growth 3–5 % in 300 steps; with λ =
# 0.02 the norm ends at 0.38–0.41 of its start and the effective step is 6.4–7.3 times larger.
# Residual stream: Var(x₃₂) = 30–36 with BN branches; without, a factor 1.77–1.97 per block (10⁸ to
# 2.5 × 10⁹ after 32 blocks).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - Standardize the **inputs** with training-set statistics; it turns a condition number of
#   $10^9$ into one near 1, and gradient descent converges in a few steps instead of never.
# - Batch norm standardizes every feature of every layer over the batch:
#   $y = \gamma (x - \mu)/\sqrt{\sigma^2 + \varepsilon} + \beta$, $\varepsilon$ inside the root.
# - PyTorch: the output uses the **biased** batch variance; the running statistics move as
#   $(1 - m)\,r + m\,\text{batch}$ with the **unbiased** variance; `momentum=None` is a cumulative
#   average; evaluation uses the running statistics and changes nothing.
# - Backward: $dx = \frac{s}{M}(M\,d\hat x - \sum d\hat x - \hat x\sum d\hat x\,\hat x)$,
#   $d\gamma = \sum dy\,\hat x$, $d\beta = \sum dy$; in evaluation $dx = dy\,\gamma s$.
# - A module keeps the running statistics in **buffers**; autograd needs the batch statistics
#   in the graph.
# - In evaluation, batch norm is affine and folds into the previous Linear:
#   $W' = \operatorname{diag}(s) W$, $b' = s(b - r_{mean}) + \beta$.
# - With batch norm the loss is scale invariant in each normalized layer's weights: weight scales
#   from 0.25 to 4 all train. The gradient is orthogonal to such a weight, so SGD only grows its
#   norm and the effective learning rate is $\eta/\|W\|^2$; weight decay keeps it up.
# - It breaks down with very small batches: at batch 2 every output is $\beta \pm \gamma$ and the
#   network learns almost nothing; training and evaluation mode then disagree.
# - Images: one mean, variance, γ and β per channel over $N H W$ values (`BatchNorm2d`).
# - Recalibrate the statistics after changing weights outside training (`update_bn`); freeze them
#   for fine-tuning, again after every `model.train()`.
# - At the end of a residual branch, batch norm makes the stream grow by one variance unit per
#   block, so deep blocks start near the identity (SkipInit, Fixup: Lesson 6).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# - **CS231n's momentum convention** in PyTorch code: `momentum * running + (1 - momentum) * batch`
#   with `momentum = 0.1` keeps only 10 % of the history.
# - **The biased variance in the running average** (or the unbiased one in the output).
# - **eps outside the square root**: `(x - mu) / (np.sqrt(var) + eps)` barely protects a feature
#   with tiny variance.
# - **Statistics over the wrong axis**: axis 0 is the batch; axis 1 would be layer norm.
# - **Rebinding instead of updating in place**: `running_mean = ...` inside the function leaves the
#   caller's array unchanged.
# - **Evaluation that uses batch statistics or updates the running ones**; forgetting
#   `model.eval()`, or peeking at test data in training mode.
# - **Detaching the batch statistics** in a module: the gradient loses two terms.
# - **Running statistics as plain attributes** instead of buffers: they vanish from the
#   `state_dict` and stay behind on `.to(device)`; without `num_batches_tracked` a torch state_dict
#   does not load. As `Parameter`s they reach the optimizer.
# - **Updating the buffers inside the graph** (`self.running_mean = ...` outside `no_grad`): every
#   step's graph stays alive, and a backward pass through an evaluation output fails.
# - **$M$ counted wrong** in the unbiased variance: the values of one channel ($N$, or $N L$), not
#   `x.size` or the number of rows of an $(N, C, L)$ input.
# - **Autograd for the backward exercise**, or $\gamma$ forgotten in $d\hat x = dy\,\gamma$.
# - **A training loop that is not the one asked for**: a full batch (no minibatch statistics),
#   momentum or weight decay instead of plain SGD, gradients never reset.
# - **`model.train()` after freezing batch norm** for fine-tuning: it unfreezes the statistics.
# - **Folding without the Linear's bias** (or without scaling it by $s$), or folding a model still
#   in training mode.
# - **Standardizing the test set with its own statistics**, or dividing a constant feature by zero.
#
# **References.** S. Ioffe, C. Szegedy, *Batch Normalization: Accelerating Deep Network Training by
# Reducing Internal Covariate Shift*, ICML 2015. S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, *How
# Does Batch Normalization Help Optimization?*, NeurIPS 2018. T. van Laarhoven, *L2 Regularization
# versus Batch and Weight Normalization*, arXiv 1706.05350, 2017. G. Zhang, C. Wang, B. Xu, R. Grosse,
# *Three Mechanisms of Weight Decay Regularization*, ICLR 2019. G. Yang, J. Pennington, V. Rao,
# J. Sohl-Dickstein, S. Schoenholz, *A Mean Field Theory of Batch Normalization*, ICLR 2019. S. De,
# S. Smith, *Batch Normalization Biases Residual Blocks Towards the Identity Function in Deep
# Networks*, NeurIPS 2020. H. Zhang, Y. Dauphin, T. Ma, *Fixup Initialization: Residual Learning
# Without Normalization*, ICLR 2019. Stanford CS231n, assignment 2 (batch normalization, spatial
# batch normalization). d2l.ai, §8.5 "Batch Normalization". PyTorch documentation of
# `torch.nn.BatchNorm1d`, `torch.nn.BatchNorm2d` and `torch.optim.swa_utils.update_bn`.
