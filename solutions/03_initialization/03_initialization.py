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
# # Lesson 3 — Initialization: the variance math
#
# Before the first step of training, every weight of a network has to have *some* value. Choose
# them badly and the signal that flows forward through the layers shrinks to nothing or blows up,
# the gradient that flows backward does the same, and training never starts — however good the
# optimizer. Choose them well and a 50-layer network trains from the first step. The difference is
# a single number per layer, the **variance** of its weights, and the whole lesson is about
# computing that number.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. explain why weights must be **random** (zero or constant weights keep hidden units identical
#    for ever);
# 2. derive $\operatorname{Var}[y] = n\,\operatorname{Var}[w]\,\operatorname{Var}[x]$ for a linear layer, the
#    forward (fan_in) and backward (fan_out) conditions, and **Xavier's** compromise between them;
# 3. derive the **gain** an activation needs — ReLU's $\sqrt 2$ from
#    $\mathbb E[\mathrm{relu}(z)^2] = \operatorname{Var}[z]/2$, tanh's 5/3 — and compute fans of conv weights;
# 4. implement `calculate_gain`, `variance_scaling_` — the general form every Xavier, Kaiming and
#    LeCun initializer is a case of, in PyTorch and in Keras — the mapping from each name to it, and
#    a Haar-distributed `orthogonal_`;
# 5. predict the std of activations and gradients layer by layer for any widths, check the
#    prediction by measurement, and use per-layer statistics to find a badly initialised layer;
# 6. initialise a whole model for its activation, and its output layer so that the loss at init is
#    what it should be (ln C for C balanced classes).
#
# **How this notebook works.** You implement nine functions. After each one, a test cell runs
# visible checks that say what was expected, what came back and the likely misconception; hidden
# tests grade more cases — run them yourself with `check(fn, "name", level="hidden")`. Random
# initializers are graded by **properties** (in place, the variance within a band that a correct
# implementation leaves less than once in a million gradings, bounded or not, orthogonal…), never by
# comparing random draws, so draw your numbers however you like. Every formula is followed by a
# cell that checks it by Monte Carlo. Experiments use the course's reference implementation, so
# they run before you finish the exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math

import numpy as np
import torch
from torch import nn

import stabletrain
from stabletrain.exercises import check
from stabletrain.lessons import init_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are small: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Why random? The symmetry of zero and constant init
#
# Take a hidden layer $h = \tanh(W_1 x + b_1)$ followed by $\hat y = W_2 h + b_2$. If every weight
# starts at the same value $c$, every hidden unit computes the same function of the input, so
# $h_1 = h_2 = \dots$ — and by the chain rule their gradients are the same too:
#
# $$
# \frac{\partial L}{\partial W_{1,i\cdot}} = \frac{\partial L}{\partial h_i}\,\tanh'(\cdot)\,x^\top,
# \qquad \frac{\partial L}{\partial h_i} = \sum_k \frac{\partial L}{\partial \hat y_k} W_{2,ki} = \sum_k \frac{\partial L}{\partial \hat y_k}\, c ,
# $$
#
# the same for every unit $i$. A gradient step changes all rows of $W_1$ by the same amount, so
# they stay equal **for ever**: the layer has the capacity of a single unit. With $c = 0$ it is
# worse still: $\partial L/\partial h_i = 0$, so $W_1$ never moves at all. Random weights **break the
# symmetry**. Below, a 2 → 8 → 3 tanh network is trained on three interleaved spirals by full-batch
# gradient descent from zero, constant (0.5) and random (Xavier) weights, with the five seeds of
# every experiment in this lesson (`lab.SEEDS`: a seed changes the data and the random weights).

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
symmetry = lab.symmetry_sweep(("zero", "constant", "random"), steps=100)
for init in symmetry.spread:
    print(f"{init:9s} largest difference between two hidden units over 100 steps: "
          f"{symmetry.spread[init].max():.2e}; final loss per seed: {np.round(symmetry.loss[init][:, -1], 3)}")
lab.plot_symmetry(symmetry)

# %% [markdown] slideshow={"slide_type": "fragment"}
# With **zero** init the difference between any two hidden units stays **exactly** 0 at every step,
# on every seed and on any CPU: every product that could tell the units apart has an exact 0 in it,
# and $W_1$ does not move at all. With **constant** init the units are identical in exact
# arithmetic; in floating point the difference is either exactly 0 (the CPU's matrix kernels round
# every unit's sum alike, as on most machines) or a rounding error that stays below $10^{-3}$ over
# the 100 steps — the printout shows which your CPU does (some CPUs' vector kernels round one column
# of a product differently from the next). Random init separates the units from the start. The loss
# confirms it: with zero or constant weights the network stays a one-unit network and ends above the
# random-init loss on every seed. (Biases do not help: they start equal too.)
#
# ### Rounding breaks the symmetry — slowly
#
# The symmetric state is a fixed point of gradient descent, but an *unstable* one. Nudge every
# weight of the constant init by one part in a million, $w \leftarrow w\,(1 + 10^{-6}\varepsilon)$
# with $\varepsilon \sim \mathcal N(0, 1)$ — about eight float32 roundings, the size of difference that a
# CPU's kernels can make on their own — and train six times longer:

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
breaking = lab.symmetry_sweep(("nudged", "random"), steps=600)
spread = breaking.spread["nudged"]
print("steps per tenfold growth of the difference (steps 50 to 150):",
      np.round(100 / np.log10(spread[:, 149] / spread[:, 49]), 1))
print("first step at which two units differ by more than 0.1:", lab.separation_step(spread))
print("loss after 600 steps, nudged:", np.round(breaking.loss["nudged"][:, -1], 3),
      " random:", np.round(breaking.loss["random"][:, -1], 3))
lab.plot_symmetry(breaking)

# %% [markdown] slideshow={"slide_type": "fragment"}
# The difference grows exponentially, about tenfold every 45 steps, and after a little over 200 steps the
# units differ by more than 0.1; then the loss leaves the constant init's plateau of 0.9 — and after
# 600 steps it is still above random init's on every seed. So rounding *can* break the symmetry of a
# constant init, but hundreds of steps late, at a speed set by your CPU's rounding, and from units
# that start as near-copies: no substitute for random init. Zero init never breaks: its zeros are
# exact, and no rounding moves them.
#
# *Question:* dropout also makes units different during training. Would it break the symmetry of a
# constant init?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — symmetry.** The cell prints a largest spread of 0.00e+00 for zero init on
# every machine; for constant init 0.00e+00 on the machines we ran (AMD EPYC with its AVX-512
# kernels, and with `ATEN_CPU_CAPABILITY=avx2` or `=default` there), while on an Intel CPU with
# AVX2 kernels rounding separates the units (issue 17 saw it; the claims test allows up to 1e-3, and
# a 1e-6 jitter of the start reaches 1.6e-4 after 100 steps). Random init: about 2. Median final
# losses over the 5 seeds: zero 1.10 (ln 3: only the output bias learns), constant 0.90, random 0.73
# (0.89–0.90 and 0.73–0.74 over our blocks of five seeds; the claims test checks ±0.03, the
# ordering on every seed and the exact zeros). The nudged runs: tenfold every 42.5–46 steps,
# separation at steps 215–242, loss after 600 steps 0.52–0.68 against random init's
# 0.23–0.39 (30 runs: 15 seeds and three other arithmetics; they barely differ, since the nudge is
# what breaks the symmetry). Answer to the question: yes, partly — dropout masks differ between
# units, so the gradients differ and the units drift apart; it is a poor substitute (the units start
# identical and separate only by noise, as the nudged run shows). Zero init of the *last* layer
# alone is fine and common (e.g. the final projection of a residual branch): the layers below are
# random, so the symmetry is already broken.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The variance of a linear layer
#
# One unit of a linear layer computes $y = \sum_{j=1}^{n} w_j x_j$ over its $n$ inputs. Assume the
# $w_j$ are independent with mean 0 and variance $\operatorname{Var}[w]$, independent of the inputs, and
# the $x_j$ are independent with mean 0. Each product has mean 0, so
#
# $$
# \operatorname{Var}[y] = \sum_{j=1}^{n} \mathbb E[w_j^2]\,\mathbb E[x_j^2]
#   = n\,\operatorname{Var}[w]\,\operatorname{Var}[x].
# $$
#
# (Cross terms vanish: $\mathbb E[w_j x_j w_k x_k] = \mathbb E[w_j]\,\mathbb E[w_k]\cdots = 0$ for
# $j \ne k$.) The output variance is the input variance times the factor $n\operatorname{Var}[w]$. Stack
# $L$ layers and the factors multiply: $\operatorname{Var}[y_L] = (n\operatorname{Var}[w])^L \operatorname{Var}[x]$. With
# $n = 256$ and the popular "small random numbers" $w \sim \mathcal N(0, 0.01^2)$ the factor is
# $0.0256$: after 10 layers the signal's variance is $10^{-16}$ of what it was.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
gen = torch.Generator().manual_seed(0)
n, var_w, var_x = 256, 0.01**2, 3.0
W = torch.randn(512, n, generator=gen, dtype=torch.float64) * math.sqrt(var_w)  # 512 units
x = torch.randn(4000, n, generator=gen, dtype=torch.float64) * math.sqrt(var_x)  # 4000 inputs
y = x @ W.T
print(f"measured Var[y] = {y.var():.5f}    n·Var[w]·Var[x] = {n * var_w * var_x:.5f}")
assert abs(y.var().item() / (n * var_w * var_x) - 1) < 0.05

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Forward and backward conditions, and Xavier's compromise
#
# A weight matrix $W$ of shape (fan_out, fan_in) is used twice. **Forward**, each output sums
# fan_in products: $\operatorname{Var}[y] = \text{fan\_in}\cdot\operatorname{Var}[w]\cdot\operatorname{Var}[x]$. **Backward**, the
# gradient $\partial L/\partial x = W^\top\,\partial L/\partial y$ sums, for each input, over the fan_out
# outputs it feeds: $\operatorname{Var}[\partial L/\partial x] = \text{fan\_out}\cdot\operatorname{Var}[w]\cdot\operatorname{Var}[\partial L/\partial y]$.
# Keeping both variances unchanged asks for
#
# $$
# \operatorname{Var}[w] = \frac{1}{\text{fan\_in}} \quad\text{(forward)}
# \qquad\text{and}\qquad
# \operatorname{Var}[w] = \frac{1}{\text{fan\_out}} \quad\text{(backward)} .
# $$
#
# Both hold only for square layers. Glorot and Bengio (2010) took the compromise
# $\operatorname{Var}[w] = 2/(\text{fan\_in} + \text{fan\_out})$, one over the **average** fan — **Xavier**
# (or Glorot) initialization. LeCun et al. (1998) had used the forward condition alone,
# $1/\text{fan\_in}$. The cell checks both directions on a layer with fan_in = 128 and fan_out = 512.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
fan_in, fan_out = 128, 512
x = torch.randn(2000, fan_in, generator=gen, dtype=torch.float64, requires_grad=True)
for name, var_w in (("forward, 1/fan_in", 1 / fan_in), ("backward, 1/fan_out", 1 / fan_out),
                    ("Xavier, 2/(in+out)", 2 / (fan_in + fan_out))):
    W = torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64) * math.sqrt(var_w)
    y = x @ W.T
    (grad_x,) = torch.autograd.grad(y, x, torch.randn(y.shape, generator=gen, dtype=torch.float64))
    print(f"{name:20s} Var[y]/Var[x] = {y.var().item() / x.var().item():.3f} "
          f"(predicted {fan_in * var_w:.3f});  Var[dL/dx]/Var[dL/dy] = {grad_x.var().item():.3f} "
          f"(predicted {fan_out * var_w:.3f})")
    assert abs(y.var().item() / x.var().item() / (fan_in * var_w) - 1) < 0.05
    assert abs(grad_x.var().item() / (fan_out * var_w) - 1) < 0.05

# %% [markdown] slideshow={"slide_type": "fragment"}
# *Question:* a layer has fan_in = 3·fan_out. By what factor does Xavier's init multiply the
# variance of the forward signal, and of the backward gradient?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Xavier's compromise.** Forward factor fan_in·2/(fan_in + fan_out) =
# 2·3/4 = 1.5, backward fan_out·2/(fan_in + fan_out) = 2/4 = 0.5: neither is kept, and the product
# of the two factors is 0.75. The cell above shows the same for fan_out = 4·fan_in (0.4 and 1.6).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Fans of conv weights
#
# A Conv2d weight has shape (out_channels, in_channels, kh, kw). Each output value sums over
# in_channels × kh × kw inputs, and each input value feeds out_channels × kh × kw outputs, so both
# fans carry the **receptive field** $kh\cdot kw$ (the product of all kernel dimensions):
#
# $$
# \text{fan\_in} = \text{in} \cdot \prod_k k, \qquad \text{fan\_out} = \text{out} \cdot \prod_k k .
# $$
#
# A Linear weight (out, in) is the case with no kernel dimensions.
#
# ### Exercise 1 — `fan_in_and_fan_out` (3 points)
#
# Write `fan_in_and_fan_out(tensor_or_shape)`, torch's `_calculate_fan_in_and_fan_out` made
# public: it takes a tensor **or** a shape (`torch.Size`, tuple, list) of a weight laid out as
# (out, in, *kernel), returns `(fan_in, fan_out)` as ints, and raises `ValueError` for fewer than
# two dimensions (a bias has no fans).

# %% nbgrader={"grade": false, "grade_id": "fan_in_and_fan_out", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def fan_in_and_fan_out(tensor_or_shape):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel).

    Args:
        tensor_or_shape: a tensor, a torch.Size, or a tuple/list of ints.

    Returns:
        (fan_in, fan_out), two ints.

    Raises:
        ValueError: for fewer than 2 dimensions.
    """
    ### BEGIN SOLUTION
    shape = tuple(tensor_or_shape.shape) if isinstance(tensor_or_shape, torch.Tensor) else tuple(tensor_or_shape)
    if len(shape) < 2:
        raise ValueError(f"fan_in and fan_out need at least 2 dimensions, got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "fan_in_and_fan_out_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(fan_in_and_fan_out, "fan_in_and_fan_out")

# %% nbgrader={"grade": true, "grade_id": "fan_in_and_fan_out_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: tall Linear, Conv1d and Conv3d weights, a torch.Size, a tuple and a list, and the
# ValueError for a bias and a scalar shape.
### BEGIN HIDDEN TESTS
check(fan_in_and_fan_out, "fan_in_and_fan_out", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Activations change the variance: the gain
#
# Between two linear layers sits an activation $f$. What the next layer's formula needs is the
# **second moment** $\mathbb E[f(z)^2]$ of its input (the derivation above used $\mathbb E[x_j^2]$; for
# zero-mean $x$ that is the variance). With $z \sim \mathcal N(0, q)$ the pre-activation, a layer's
# recursion is $q_{l} = n\operatorname{Var}[w]\cdot\mathbb E[f(z_{l-1})^2]$. The **gain** $g$ of an activation
# is the factor that makes up for $f$: choose $\operatorname{Var}[w] = g^2/\text{fan\_in}$.
#
# **ReLU.** $z$ is symmetric, and relu keeps the positive half and zeroes the rest, so
#
# $$
# \mathbb E[\mathrm{relu}(z)^2] = \int_0^\infty z^2\,p(z)\,dz = \tfrac12\,\mathbb E[z^2] = \tfrac12\operatorname{Var}[z].
# $$
#
# ReLU halves the second moment: $g^2 = 2$, $g = \sqrt 2$ — **Kaiming** (He et al., 2015)
# initialization, $\operatorname{Var}[w] = 2/\text{fan\_in}$. The same argument on the backward pass
# ($\mathrm{relu}'(z) \in \{0, 1\}$, each with probability ½) gives $2/\text{fan\_out}$.
#
# **Leaky ReLU** with negative slope $s$ keeps $s z$ for $z < 0$: $\mathbb E[f(z)^2] = \tfrac{1 + s^2}{2}\operatorname{Var}[z]$,
# so $g = \sqrt{2/(1 + s^2)}$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
z = torch.randn(1_000_000, generator=gen, dtype=torch.float64) * 1.7  # Var[z] = 2.89
s = 0.2
print(f"E[relu(z)^2] = {torch.relu(z).pow(2).mean():.4f}   Var[z]/2 = {z.var() / 2:.4f}")
print(f"E[leaky_relu(z)^2] = {nn.functional.leaky_relu(z, s).pow(2).mean():.4f}   "
      f"(1+s²)/2·Var[z] = {(1 + s**2) / 2 * z.var():.4f}")
assert abs(torch.relu(z).pow(2).mean() / (z.var() / 2) - 1) < 0.01

# %% [markdown] slideshow={"slide_type": "subslide"}
# **tanh** is the identity near 0 and saturates at ±1, so $\mathbb E[\tanh(z)^2] < \operatorname{Var}[z]$: a
# tanh net with $g = 1$ loses variance at every layer. There is no exact gain — the loss depends on
# $q$ — so PyTorch uses $g = 5/3$, an empirical choice: with it the recursion
# $q \mapsto g^2\,\mathbb E[\tanh(\sqrt q\,\xi)^2]$, $\xi \sim \mathcal N(0,1)$, has a **fixed point** near 1, so the
# pre-activations keep a variance of order one (neither vanishing nor deep in saturation). The cell
# iterates the recursion for $g = 1$ and $g = 5/3$:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
for g in (1.0, 5 / 3):
    q = stabletrain.predicted_activation_variance(50, 64, g**2 / 64, "tanh", which="pre")
    print(f"gain {g:.3f}: pre-activation variance at layers 1, 10, 50 = {q[0]:.3f}, {q[9]:.3f}, {q[49]:.4f}")
xi = torch.randn(1_000_000, generator=gen, dtype=torch.float64)
q_star = stabletrain.predicted_activation_variance(200, 64, (5 / 3) ** 2 / 64, "tanh", which="pre")[-1]
mc = (5 / 3) ** 2 * torch.tanh(math.sqrt(q_star) * xi).pow(2).mean().item()
print(f"fixed point q* = {q_star:.4f}; Monte Carlo (5/3)²·E[tanh(√q*·ξ)²] = {mc:.4f}")
assert abs(mc / q_star - 1) < 0.01

# %% [markdown] slideshow={"slide_type": "fragment"}
# With $g = 1$ the variance drains away slowly (about like $1/l$), with $g = 5/3$ it settles at
# $q^* \approx 1.18$ within a few layers. **SELU** (Klambauer et al., 2017) was built the other way
# round: its constants make $\operatorname{Var}[w] = 1/\text{fan\_in}$ (LeCun) a stable fixed point with mean 0 and
# variance 1. PyTorch's `calculate_gain("selu")` returns 3/4, but its documentation says to
# initialize SELU networks with `nonlinearity="linear"` (gain 1) — a trap we come back to in
# Exercise 8.
#
# ### Exercise 2 — `calculate_gain` (3 points)
#
# Write `calculate_gain(nonlinearity, param=None)` with the semantics of
# `torch.nn.init.calculate_gain`: gain 1 for "linear", "conv1d/2d/3d", "conv_transpose1d/2d/3d" and
# "sigmoid"; 5/3 for "tanh"; √2 for "relu"; √(2/(1 + s²)) for "leaky_relu" with slope `param`
# (0.01 when `param` is None); 3/4 for "selu". Names are case-sensitive; an unknown name raises
# `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "calculate_gain", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def calculate_gain(nonlinearity, param=None):
    """The recommended gain for an activation (torch.nn.init.calculate_gain).

    Args:
        nonlinearity: the activation's name, e.g. "relu", "tanh", "leaky_relu", "conv2d".
        param: leaky_relu's negative slope (default 0.01); ignored otherwise.

    Returns:
        The gain, a float.
    """
    ### BEGIN SOLUTION
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
              "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "calculate_gain_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(calculate_gain, "calculate_gain")

# %% nbgrader={"grade": true, "grade_id": "calculate_gain_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: conv and transposed-conv names, sigmoid, selu, leaky_relu with several slopes
# (float, int, None), relu with a param, and ValueError for unknown or wrongly capitalised names.
### BEGIN HIDDEN TESTS
check(calculate_gain, "calculate_gain", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Xavier initialization, uniform and normal
#
# Any zero-mean distribution with the right variance will do; two are used. A uniform
# $U(-b, b)$ has variance $b^2/3$ (its density is $1/2b$, so $\int_{-b}^{b} w^2/2b\,dw = b^2/3$). For a
# target std $\sigma$ the bound is therefore $b = \sqrt3\,\sigma$, and Xavier's uniform bound is
#
# $$
# b = g\sqrt{3}\sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}} = g\sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}},
# \qquad\text{Xavier normal: } \mathcal N\!\left(0,\ g^2\,\frac{2}{\text{fan\_in} + \text{fan\_out}}\right).
# $$
#
# The gain argument $g$ multiplies the **std**; pass `calculate_gain("tanh")` for tanh.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
b = 0.7
u = torch.empty(1_000_000, dtype=torch.float64).uniform_(-b, b, generator=gen)
print(f"Var[U(-b, b)] = {u.var():.5f}   b²/3 = {b * b / 3:.5f}")
w = stabletrain.xavier_uniform_(torch.empty(300, 200), generator=gen)  # the reference, for comparison
print(f"xavier_uniform_ on (300, 200): max |w| = {w.abs().max():.4f} <= √(6/500) = {math.sqrt(6 / 500):.4f}, "
      f"Var = {w.var():.6f} vs 2/500 = {2 / 500:.6f}")
assert abs(u.var() / (b * b / 3) - 1) < 0.01 and w.abs().max() <= math.sqrt(6 / 500)

# %% [markdown] slideshow={"slide_type": "fragment"}
# You will not write Xavier's two initializers one by one: in Section 6 they become one line each,
# on top of the general form `variance_scaling_`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Kaiming initialization, and PyTorch's default
#
# Kaiming initialization keeps one direction exactly: $\operatorname{Var}[w] = g^2/\text{fan}$ with
# fan = fan_in (`mode="fan_in"`, the forward signal) or fan_out (`mode="fan_out"`, the backward
# gradient), $g$ = `calculate_gain(nonlinearity, a)`. `kaiming_uniform_` draws
# $U(-b, b)$ with $b = g\sqrt{3/\text{fan}}$, `kaiming_normal_` draws $\mathcal N(0, g^2/\text{fan})$. The
# defaults are `a=0, mode="fan_in", nonlinearity="leaky_relu"` — leaky_relu with slope 0, i.e. ReLU.
#
# **PyTorch's default.** `nn.Linear` and `nn.Conv2d` initialize their weights with
# `kaiming_uniform_(w, a=math.sqrt(5))`. With $a = \sqrt5$ the gain is $\sqrt{2/(1 + 5)} = 1/\sqrt3$, so
#
# $$
# b = \frac{1}{\sqrt3}\sqrt{\frac{3}{\text{fan\_in}}} = \frac{1}{\sqrt{\text{fan\_in}}}, \qquad
# \operatorname{Var}[w] = \frac{b^2}{3} = \frac{1}{3\,\text{fan\_in}} .
# $$
#
# That is a third of LeCun's variance and a sixth of what ReLU needs: in a deep ReLU net with
# the default init — **and its biases set to 0** — the variance shrinks by a factor
# $n\operatorname{Var}[w]/2 = 1/6$ at every layer.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
layer = nn.Linear(256, 256)
print(f"nn.Linear(256, 256).weight: max |w| = {layer.weight.abs().max():.5f} vs 1/√256 = {1 / 16:.5f}; "
      f"Var = {layer.weight.var():.3e} vs 1/(3·256) = {1 / (3 * 256):.3e}")
q = stabletrain.predicted_activation_variance(20, 256, 1 / (3 * 256), "relu", which="pre")
print(f"ReLU net with the default init, biases 0: predicted Var[y_l] / Var[y_(l-1)] = {q[5] / q[4]:.4f} "
      f"(1/6 = {1 / 6:.4f}); after 20 layers Var = {q[-1]:.1e}")
assert abs(layer.weight.var().item() * 3 * 256 - 1) < 0.02 and abs(q[5] / q[4] - 1 / 6) < 1e-12

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### With its biases: the mean field with bias variance
#
# `nn.Linear`'s default bias is $U(\pm 1/\sqrt{\text{fan\_in}})$ too, of variance
# $\sigma_b^2 = 1/(3\,\text{fan\_in})$, and a bias adds its variance to every pre-activation:
#
# $$
# q_l = n\operatorname{Var}[w]\,\mathbb E[h_{l-1}^2] + \sigma_b^2 .
# $$
#
# The weight part shrinks sixfold per layer, the bias part does not, so the variance no longer
# vanishes: it settles at the fixed point $q^* = \sigma_b^2/(1 - 1/6) = 2/(5n)$ — the activations
# *look* alive. But the bias is the same for every input. What carries information is the part of
# $h_l$ that changes from one input to the next, and a *difference* between two inputs passes a
# layer like a gradient does: multiplied by $\chi = n\operatorname{Var}[w]\,\mathbb E[f'(z)^2]$, here
# $1/3 \cdot 1/2 = 1/6$ in variance, biases or not. Mean-field theory (Poole et al., 2016;
# Schoenholz et al., 2017) calls $1/|\ln\chi|$ the **depth scale**: the number of layers over which a
# network forgets its input — $1/\ln 6 \approx 0.56$ layers here. The lab runs a 20-layer ReLU MLP of
# width 256 with the default weights, once with the default biases and once with the biases at 0:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
biases = lab.bias_profile(depth=20, width=256)
q_star = 2 / (5 * 256)
print(f"layer 20, default biases: std of all activations {np.median(biases.total[:, -1]):.4f} "
      f"(fixed point √(q*(1/2 − 1/2π)) = {math.sqrt(q_star * (0.5 - 0.5 / math.pi)):.4f}); "
      f"of their input-dependent part {np.median(biases.across[:, -1]):.1e}")
print(f"layer 20, biases 0: std of all activations {np.median(biases.total_zero_bias[:, -1]):.1e}; "
      f"per-layer factor of the input-dependent variance, layers 5–20: "
      f"{np.median((biases.across[:, 5:] / biases.across[:, 4:-1]) ** 2):.3f} (χ = 1/6 = {1 / 6:.3f})")
lab.plot_bias_profile(biases)

# %% [markdown] slideshow={"slide_type": "fragment"}
# With the biases the activations settle near the fixed point's std (0.023 at width 256; within
# 25 % from layer 5 on), while their input-dependent part shrinks about sixfold in variance per
# layer, just as the whole signal does without biases: after 20 layers the network gives every
# input the same output, up to a part in $10^{6}$. A network can have healthy-looking activation statistics and have
# forgotten its input — measure the spread across examples, not only the overall std.
#
# **Forward or backward — does it matter?** Kaiming's `mode="fan_in"` keeps the forward signal
# exactly; what does it cost backward? The backward factor of layer $l$ is
# $\text{fan\_out}_l\operatorname{Var}[w_l]\,\mathbb E[f'^2] = n_l \cdot \frac{2}{n_{l-1}} \cdot \frac12 = n_l/n_{l-1}$, and
# through the whole network the factors **telescope** (He et al., 2015):
# $\prod_{l} n_l/n_{l-1} = n_L/n_1$. The gradient at the first layer differs from the output's by
# the ratio of the end widths only, however deep the net and however the widths go up and down in
# between — so Xavier's compromise is not needed: either mode keeps both directions within a fixed
# factor. Section 8 checks this with your own prediction.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — biases.** Over our 30 runs: the std of all activations from layer 5 on with
# the default biases is 0.86–1.11 times the fixed point's 0.0231; at layer 20 their input-dependent
# part is at most 5.1e-7 of it and the bias-free activations' std at most 1.5e-8; the per-layer
# factor of the input-dependent variance (median over layers 5–20) is 0.159–0.171 per seed
# (1/6 = 0.167). Forward
# passes in float64, nothing chaotic: the numbers change with the seed, not with the CPU. The issue
# that prompted this section measured 0.034 for the std with width 128 (√(0.341·2/(5·128)) = 0.033).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. One formula for all: `variance_scaling_`
#
# Every scheme so far draws zero-mean weights with
#
# $$
# \operatorname{Var}[w] = \frac{\text{scale}}{n},\qquad n = \text{fan\_in},\ \text{fan\_out}\ \text{or}\ \tfrac{\text{fan\_in} + \text{fan\_out}}{2}\ (\text{mode "fan\_avg"}),
# $$
#
# from a uniform, a normal or a **truncated normal**. That is Keras's `VarianceScaling`, and the
# table below reads every named initializer as a case of it ($g$ = gain):
#
# | scheme | PyTorch | Keras | `variance_scaling_(scale, mode, distribution)` |
# |---|---|---|---|
# | LeCun normal | `kaiming_normal_(w, nonlinearity="linear")` | `LecunNormal` | PyTorch: (1, fan_in, normal); Keras: (1, fan_in, **truncated_normal**) |
# | LeCun uniform | `kaiming_uniform_(w, nonlinearity="linear")` | `LecunUniform` | (1, fan_in, uniform) |
# | Xavier / Glorot uniform | `xavier_uniform_(w, g)` | `GlorotUniform` (Keras's default) | ($g^2$, fan_avg, uniform) |
# | Xavier / Glorot normal | `xavier_normal_(w, g)` | `GlorotNormal` | PyTorch: ($g^2$, fan_avg, normal); Keras: (1, fan_avg, **truncated_normal**) |
# | Kaiming / He normal | `kaiming_normal_(w, a, mode, f)` | `HeNormal` | PyTorch: ($g^2$, mode, normal); Keras: (2, fan_in, **truncated_normal**) |
# | Kaiming / He uniform | `kaiming_uniform_(w, a, mode, f)` | `HeUniform` | ($g^2$, mode, uniform) |
# | PyTorch's Linear/Conv default | `kaiming_uniform_(w, a=√5)` | — | (1/3, fan_in, uniform) |
# | general | — | `VarianceScaling(scale, mode, distribution)` | the same; Keras's "untruncated_normal" is our "normal" |
# | orthogonal | `orthogonal_(w, g)` | `Orthogonal(gain)` | not a case: the entries are not independent (Section 7) |
#
# **Where the frameworks differ for the same name.** Keras's `HeNormal`, `GlorotNormal` and
# `LecunNormal` draw from a *truncated* normal; PyTorch's `kaiming_normal_` and `xavier_normal_` do
# not. Keras stores a conv kernel as (kh, kw, in, out), so it reads the fans from the last two axes
# (same numbers); its `Orthogonal` flattens all but the *last* axis into rows, PyTorch all but the
# *first*. And Keras's default is `GlorotUniform` for every layer, PyTorch's the $1/(3\,\text{fan\_in})$
# above.
#
# ### The truncated normal and its 0.8796
#
# Keras's truncated normal draws $\mathcal N(0, \sigma^2)$ and redraws any value beyond $\pm2\sigma$.
# Cutting the tails shrinks the std: a unit normal truncated to $[-2, 2]$ has std
# $\sqrt{1 - 4\varphi(2)/(2\Phi(2) - 1)} \approx 0.87962566$. To end with the intended std $s$,
# draw with $\sigma = s/0.87962566$ (Keras's `VarianceScaling` does; TensorFlow 1's
# `truncated_normal_initializer(stddev)` does not, so its weights have 77% of the variance the
# stddev suggests).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
z = torch.randn(2_000_000, generator=gen, dtype=torch.float64)
kept = z[z.abs() <= 2]
phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
formula = math.sqrt(1 - 4 * phi2 / math.erf(2 / math.sqrt(2)))
print(f"std of N(0,1) cut at ±2: Monte Carlo {kept.std():.5f}, formula {formula:.5f}; "
      f"variance without the correction: {kept.var():.4f} of the target")
assert abs(kept.std().item() - 0.8796256610342398) < 1e-3

# %% [markdown] slideshow={"slide_type": "fragment"}
# **PyTorch's `trunc_normal_` is a different function.** `torch.nn.init.trunc_normal_(w, mean=0,
# std=1, a=-2, b=2)` takes its cut points `a`, `b` as *absolute values*, not multiples of `std`, and
# applies no correction. With `std=0.02` (the transformer habit: GPT-2, ViT) the cut at ±2 sits at
# ±100 std — nowhere: the weights are an ordinary normal, largest weight about 5 std among a
# million. With `std=1` the cut is at ±2 std and the weights come out with std 0.88, not 1. Porting
# a Keras `HeNormal` to PyTorch by `trunc_normal_(w, std=math.sqrt(2 / fan_in))` changes both.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
w = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=0.02, generator=gen)
print(f"trunc_normal_(std=0.02): largest |w| = {w.abs().max() / 0.02:.2f} std, std = {w.std():.5f}")
w = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=1.0, generator=gen)
print(f"trunc_normal_(std=1):    largest |w| = {w.abs().max():.4f}, std = {w.std():.4f} "
      f"(Keras's VarianceScaling would give 1.0000)")

# %% [markdown] slideshow={"slide_type": "fragment"}
# *Question:* Keras's `HeNormal` and PyTorch's `kaiming_normal_(w, nonlinearity="relu")` on the same
# Linear weight: is the variance the same? The largest weight?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — HeNormal vs kaiming_normal_.** The same variance, 2/fan_in (Keras divides
# σ by 0.8796 to get it). Keras's weights never exceed 2σ = 2/0.8796 ≈ 2.27 standard deviations;
# PyTorch's are unbounded — among a million draws the largest lies between 4.5 and 6 standard
# deviations. For a 1024 × 1024 layer (a million weights) that is the difference between a largest
# weight around 5 std and none beyond 2.27. The `trunc_normal_` cell prints a largest weight of
# 4.7–5.1 std for `std=0.02` and a std of 0.879–0.880 for `std=1` (fixed draws; the claims test
# checks five seeds).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `variance_scaling_` (3 points)
#
# Write `variance_scaling_(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None)`:
# Var[w] = scale / n as above; `distribution` is "normal" ($\mathcal N(0, \text{scale}/n)$, untruncated),
# "uniform" ($U(\pm\sqrt{3\,\text{scale}/n})$) or "truncated_normal" (a normal with
# $\sigma = \sqrt{\text{scale}/n}/0.87962566103423978$, cut at $\pm2\sigma$ — redraw or sample the truncated
# distribution directly, e.g. by inverse CDF with `torch.special.ndtri` or `erfinv_`; do not
# clamp, and do not wrap around with `torch.fmod`). Unknown modes or distributions raise
# `ValueError` (exact spelling). The rules of every initializer:
#
# - fill `tensor` **in place** and return that same tensor (a model holds a reference to its
#   weight; a new tensor would never reach it);
# - do it inside `with torch.no_grad():` — a layer's weight is an `nn.Parameter` that requires grad,
#   and autograd refuses to change such a leaf in place;
# - draw every random number from `generator` (it may be None: then the global generator is used)
#   — `tensor.uniform_(a, b, generator=generator)`, `tensor.normal_(mean, std, generator=generator)`,
#   or `torch.rand(..., generator=generator)` followed by `tensor.copy_(...)`;
# - keep the tensor's shape and dtype; use your `fan_in_and_fan_out` (a 1-D tensor raises ValueError);
# - build on tensor operations: `torch.nn.init`'s initializers (`xavier_*`, `kaiming_*`,
#   `orthogonal_`, `trunc_normal_`, `calculate_gain`) and `stabletrain`'s are the answer key and are
#   switched off while grading (`torch.nn.init.uniform_`, `normal_` and `zeros_` are fine).
#
# How you draw is up to you: the checks look only at properties — the values' mean, their variance
# within a band a correct draw leaves less than once in $10^8$, whether they are bounded by $b$ and
# reach it (uniform), have normal tails (normal), or are cut at ±2σ with the normal's shape inside
# (truncated: on a large weight, the share within ±σ/2 must be the truncated normal's 40.1 %), and
# reproducibility with a seeded generator.

# %% nbgrader={"grade": false, "grade_id": "variance_scaling", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def variance_scaling_(tensor, scale=1.0, mode="fan_in", distribution="normal", generator=None):
    """Fill tensor in place with zero-mean weights of variance scale / n; return it."""
    ### BEGIN SOLUTION
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"mode must be fan_in, fan_out or fan_avg, got {mode!r}")
    if distribution not in ("normal", "truncated_normal", "uniform"):
        raise ValueError(f"distribution must be normal, truncated_normal or uniform, got {distribution!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / n)
    with torch.no_grad():
        if distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return tensor.uniform_(-bound, bound, generator=generator)
        if distribution == "normal":
            return tensor.normal_(0.0, std, generator=generator)
        sigma = std / 0.87962566103423978
        edge = math.erf(2 / math.sqrt(2))  # u ~ U(Φ(-2), Φ(2)) mapped to [-edge, edge]
        tensor.uniform_(-edge, edge, generator=generator)
        tensor.erfinv_().mul_(math.sqrt(2.0) * sigma)  # Φ⁻¹(u) = √2·erfinv(2u - 1)
        return tensor.clamp_(-2 * sigma, 2 * sigma)  # guards against rounding only
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "variance_scaling_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(variance_scaling_, "variance_scaling_")

# %% nbgrader={"grade": true, "grade_id": "variance_scaling_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: scale 2 and 3, fan_out and fan_avg (also on conv weights), truncated_normal
# (Keras's HeNormal, on a Conv2d, and the shape inside the cut on a 512 × 512 weight), uniform with
# fan_out, an nn.Parameter, float64, a seeded generator, and ValueError for an unknown mode or
# distribution.
### BEGIN HIDDEN TESTS
check(variance_scaling_, "variance_scaling_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 4 — `as_variance_scaling` (3 points)
#
# Every row of the table is `variance_scaling_` with the right three arguments. Write
# `as_variance_scaling(initializer, **kwargs)` that returns them as a tuple `(scale, mode, distribution)`:
#
# - PyTorch's `"xavier_uniform"` and `"xavier_normal"` with the keyword `gain` (default 1), and
#   `"kaiming_uniform"` and `"kaiming_normal"` with the keywords `a=0, mode="fan_in",
#   nonlinearity="leaky_relu"` — torch's defaults and semantics: use your `calculate_gain(nonlinearity,
#   a)`, read `mode` in any case as torch does (`"FAN_OUT"` is `"fan_out"`; return it lower-case), and
#   raise `ValueError` for any other mode;
# - `"nn.Linear"`: the default init of a Linear (or Conv) weight;
# - Keras's `"GlorotUniform"`, `"GlorotNormal"`, `"HeUniform"`, `"HeNormal"`, `"LecunUniform"` and
#   `"LecunNormal"` (no keywords);
# - anything else — `"orthogonal"` among them — raises `ValueError`.
#
# It is graded on the values it returns: the scale within a relative $10^{-6}$, mode and
# distribution spelled as `variance_scaling_` expects them.

# %% nbgrader={"grade": false, "grade_id": "as_variance_scaling", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def as_variance_scaling(initializer, **kwargs):
    """(scale, mode, distribution) for which variance_scaling_ draws like the named initializer."""
    ### BEGIN SOLUTION
    keras = {"GlorotUniform": (1.0, "fan_avg", "uniform"), "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
             "HeUniform": (2.0, "fan_in", "uniform"), "HeNormal": (2.0, "fan_in", "truncated_normal"),
             "LecunUniform": (1.0, "fan_in", "uniform"), "LecunNormal": (1.0, "fan_in", "truncated_normal")}
    if initializer in keras:
        return keras[initializer]
    distribution = "uniform" if initializer.endswith("uniform") else "normal"
    if initializer in ("xavier_uniform", "xavier_normal"):
        return kwargs.get("gain", 1.0) ** 2, "fan_avg", distribution
    if initializer in ("kaiming_uniform", "kaiming_normal"):
        mode = kwargs.get("mode", "fan_in").lower()
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"Mode {kwargs['mode']!r} not supported, please use one of fan_in, fan_out")
        gain = calculate_gain(kwargs.get("nonlinearity", "leaky_relu"), kwargs.get("a", 0))
        return gain**2, mode, distribution
    if initializer == "nn.Linear":
        return calculate_gain("leaky_relu", math.sqrt(5)) ** 2, "fan_in", "uniform"
    raise ValueError(f"{initializer!r} is not an initializer of the variance-scaling family")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "as_variance_scaling_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(as_variance_scaling, "as_variance_scaling")

# %% nbgrader={"grade": true, "grade_id": "as_variance_scaling_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: every PyTorch initializer with its keywords (modes in capitals and mixed case, tanh,
# leaky_relu slopes, a = √5, a ignored for relu), nn.Linear's default, all six Keras names, and
# ValueError for mode "fan_avg" and for orthogonal_.
### BEGIN HIDDEN TESTS
check(as_variance_scaling, "as_variance_scaling", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# With both, PyTorch's four initializers are one line each — the whole of `torch.nn.init`'s variance
# family, with its exact signatures. The cell writes two of them and compares their variance with
# torch's own on a (512, 256) weight:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    scaling = as_variance_scaling("kaiming_normal", a=a, mode=mode, nonlinearity=nonlinearity)
    return variance_scaling_(tensor, *scaling, generator=generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    return variance_scaling_(tensor, *as_variance_scaling("xavier_uniform", gain=gain), generator=generator)


try:
    for mine, theirs, kwargs in ((kaiming_normal_, nn.init.kaiming_normal_, {"mode": "FAN_OUT", "nonlinearity": "relu"}),
                                 (xavier_uniform_, nn.init.xavier_uniform_, {"gain": 5 / 3})):
        a, b = mine(torch.empty(512, 256), **kwargs), theirs(torch.empty(512, 256), **kwargs)
        print(f"{mine.__name__}({kwargs}): Var = {a.var():.3e} (torch: {b.var():.3e}); "
              f"max |w| = {a.abs().max():.4f} (torch: {b.abs().max():.4f})")
except NotImplementedError:
    print("Finish Exercises 3 and 4 first: variance_scaling_ or as_variance_scaling still raises NotImplementedError.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Orthogonal initialization
#
# Variance arguments hold on average. An **orthogonal** matrix $Q$ ($Q^\top Q = I$) does better: it
# preserves the length of *every* vector, $\|Qx\| = \|x\|$, because all its singular values are 1.
# In a deep linear network the product of orthogonal matrices is orthogonal, so signals keep their
# norm exactly at any depth (Saxe et al., 2014); with a nonlinearity, the gain scales
# $Q$ as before.
#
# To draw one, take a Gaussian matrix $A$ and its QR decomposition $A = QR$. $Q$ is orthogonal, but
# not *uniformly* distributed: QR routines fix the signs of $R$'s diagonal by a convention, and
# that convention leaks into $Q$ (with LAPACK's Householder QR, $Q_{11}$ is always negative). The
# fix (Mezzadri, 2007): multiply column $i$ of $Q$ by $\operatorname{sign}(R_{ii})$. The result is **Haar**
# distributed — as likely to be any orthogonal matrix as any other. Two consequences we can test:
# every entry of a Haar-distributed orthogonal matrix has mean 0 (it is as likely to be $-q$ as $q$),
# and its trace has mean 0 and variance 1.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
A = torch.randn(500, 32, 32, generator=gen, dtype=torch.float64)
Q, R = torch.linalg.qr(A)
Q_fixed = Q * torch.diagonal(R, dim1=-2, dim2=-1).sign().unsqueeze(-2)
for name, q in (("raw QR", Q), ("sign-corrected", Q_fixed)):
    traces = torch.diagonal(q, dim1=-2, dim2=-1).sum(-1)
    print(f"{name:15s} over 500 draws: mean Q[0,0] {q[:, 0, 0].mean():+.3f}, Q[0,0] < 0 in "
          f"{(q[:, 0, 0] < 0).float().mean():.0%} of draws; trace: mean {traces.mean():+.3f}, variance {traces.var():.3f}")
print("max |QᵀQ - I| =", f"{(Q_fixed.transpose(1, 2) @ Q_fixed - torch.eye(32, dtype=torch.float64)).abs().max():.1e}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# *Question:* the cell printed the trace's variance for the raw QR too. Why is a biased $Q$ a
# problem for initialization, when every $Q$ is orthogonal anyway? And does an orthogonal matrix
# alone keep a ReLU net's signal?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — orthogonal.** The concrete reason: the raw QR's $Q$ is not zero-mean.
# Householder QR makes every $Q_{11}$ negative, $\mathbb E[Q_{11}] = -\mathbb E|z|/\sqrt{32} \approx -0.14$
# (the cell prints about −0.14), and the traces average about −3.4 (variance about 0.6) where a Haar
# matrix has 0 and 1: $\mathbb E[Q] \approx -0.1\,I$, so each unit's output leans against the matching
# input coordinate — a systematic correlation between a layer's input and output that no draw of
# zero-mean independent weights has and that every variance argument of this lesson assumes away
# ($\mathbb E[w] = 0$). A residual block $x + Qx$ would shrink its input by about 10 % on average
# at every layer. A biased $Q$ is still norm-preserving, so a *linear* net's norms would not notice.
# The grader's check sees it as a sign bias: over 320 draws of a 2×2 matrix, raw QR makes $Q_{11}$
# negative every time, an SVD's $U$ in about 80 % of draws (a fair coin lands in 104–216 of 320
# with probability 1 − 1e-9). Second question, no: ReLU still halves the second moment at every
# layer (Section 3), so the orthogonal matrix needs the gain √2 (Section 9 shows orthogonal × √2
# keeping ReLU activations of order one).

# %% [markdown] slideshow={"slide_type": "subslide"}
# A weight that is not square is made orthogonal in the only way it can: a tall matrix
# (rows ≥ cols) gets orthonormal columns, $Q^\top Q = I$; a wide one orthonormal rows, $QQ^\top = I$
# (draw the transposed, tall matrix, decompose, transpose back). A conv weight is viewed as a
# matrix of shape (out, in·kh·kw).
#
# ### Exercise 5 — `orthogonal_` (3 points)
#
# Write `orthogonal_(tensor, gain=1.0, generator=None)` as `torch.nn.init.orthogonal_`: view the
# tensor as rows = `tensor.shape[0]` by cols = numel / rows; draw $A \sim \mathcal N(0, 1)$ of that shape
# from `generator`, transposed if rows < cols; `torch.linalg.qr`; the sign correction; transpose
# back; copy into the tensor (in place, under `torch.no_grad()`) and multiply by `gain`. Raise
# `ValueError` for fewer than 2 dimensions. The rules of Exercise 3 hold (in place, `torch.no_grad()`,
# the generator; `torch.nn.init.orthogonal_` is the answer key). The checks test $Q^\top Q = g^2 I$
# (or $QQ^\top$) and the Haar property: over 320 draws of a 2×2 matrix, every entry must be negative
# about half of the time.

# %% nbgrader={"grade": false, "grade_id": "orthogonal", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def orthogonal_(tensor, gain=1.0, generator=None):
    """Fill tensor in place with a Haar-distributed (semi-)orthogonal matrix times gain; return it."""
    ### BEGIN SOLUTION
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with torch.no_grad():
        a = tensor.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
        if rows < cols:
            a = a.T
        q, r = torch.linalg.qr(a)
        q = q * torch.diagonal(r).sign()
        if rows < cols:
            q = q.T
        tensor.view_as(q).copy_(q)
        tensor.mul_(gain)
    return tensor
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "orthogonal_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(orthogonal_, "orthogonal_")

# %% nbgrader={"grade": true, "grade_id": "orthogonal_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a wide matrix with gain 2, a Conv2d weight, gain √2, the Haar test (the signs of 320
# draws of a 2×2 matrix), an nn.Parameter, float64, a seeded generator, and a 1-D tensor.
### BEGIN HIDDEN TESTS
check(orthogonal_, "orthogonal_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Through depth: prediction against measurement
#
# Chain the one-layer result through $L$ layers of width $n$ (Poole et al., 2016; the module
# `stabletrain.variance` writes it out). Forward, the pre-activation variance follows
# $q_l = n\operatorname{Var}[w]\,\mathbb E[f(z)^2]$, $z \sim \mathcal N(0, q_{l-1})$; backward, with the usual assumption
# that the backward weights act independently of the forward ones,
#
# $$
# \operatorname{Var}\!\left[\frac{\partial L}{\partial h_{l-1}}\right] = n\operatorname{Var}[w]\;\mathbb E\!\left[f'(z_l)^2\right]\operatorname{Var}\!\left[\frac{\partial L}{\partial h_l}\right].
# $$
#
# `stabletrain.predicted_activation_variance` and `predicted_gradient_variance` iterate both. The
# experiment measures them on 50-layer MLPs of width 64 (5 seeds at once, a batch of 64 Gaussian
# inputs, a Gaussian output gradient) with `lab.profile` and compares.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
settings = lab.PREDICTION_SETTINGS  # ReLU with Kaiming and with the default; tanh with Xavier and with 5/3
measured = {name: lab.profile(init, act, depth=50, width=64) for name, (init, act) in settings.items()}
predicted = {}
for name, (init, act) in settings.items():
    var_w = lab.weight_variance(init, act, 64)
    predicted[name] = (stabletrain.predicted_activation_variance(50, 64, var_w, act),
                       stabletrain.predicted_gradient_variance(50, 64, var_w, act))
    ratio = np.median(measured[name].act_var[:, -1]) / predicted[name][0][-1]
    grad_ratio = np.median(measured[name].grad_var[:, 0]) / predicted[name][1][0]
    print(f"{name:22s} layer 50 Var[h]: measured/predicted = {ratio:.2f};  layer 1 gradient: {grad_ratio:.2f}")
last = measured["ReLU, Kaiming"].act_var[:, -1]
print(f"ReLU, Kaiming: the seeds' layer-50 variances span {np.log10(last.max() / last.min()):.1f} decades")
lab.plot_prediction(measured, predicted)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the plot.** The prediction follows the measurement over many orders of magnitude: with
# PyTorch's default, the ReLU net's activation variance falls by a factor 6 per layer — 39 orders
# of magnitude from the input to layer 50 predicted, about 40 measured (the median) — and the
# gradient falls with it; tanh with 5/3 holds its forward variance but its gradient *grows* backward
# by about 1.21 per layer (between 1.15 and 1.27 on every seed; at the fixed point
# $g^2\,\mathbb E[\tanh'(z)^2] > 1$): no gain keeps both directions of a tanh net exactly.
#
# The lower row divides measurement by prediction. For tanh the measured median stays within a
# factor 2 of the prediction at every layer, forward and backward. For ReLU the seeds spread
# widely — at layer 50 the five seeds' variances span one to three decades — and the median lies
# below the prediction on most sets of five seeds. The prediction is right, but about the **mean**
# over networks: at finite width each layer's factor fluctuates by $O(1/\sqrt n)$ around its mean,
# and ReLU makes these fluctuations compound with depth into a log-normal spread (Hanin & Rolnick,
# 2018): the log of one network's variance at layer $L$ has a standard deviation of about
# $\sqrt{5L/n}$ (in $\ln$; 0.86 decades for $L = 50$, $n = 64$; 0.8 measured), and since
# $\mathbb E[\ln X] < \ln \mathbb E[X]$, the median network sits below the mean, by about
# $e^{-5L/2n} = 0.14$ at layer 50 (0.23 measured over 400 networks). A few lucky networks carry
# the mean. Wide layers, normalization (Lesson 5) or residual connections (Lesson 6) tame the spread.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — prediction vs measurement.** Ratios measured/predicted printed by the cell
# (median of five seeds, width 64) — they change from one set of five seeds to the next, not from
# CPU to CPU (float64, nothing chaotic): ReLU + Kaiming layer-50 activations 0.03–1.2 (0.09 on
# seeds 0–4; the seeds span 1.7–2.5 decades), ReLU + default 0.05–0.3 (the same log-normal effect,
# on top of the $6^{-50}$), tanh + Xavier 0.6–0.8, tanh + 5/3 ≈ 1 forward (0.98–1.01) and 0.9–1.5
# for the gradient. Over 400 networks (a claims test runs them: 2 s) the ReLU + Kaiming ratio at
# layer 50 has median 0.22 and mean 1.15, the log10 of it a standard deviation of 0.79: the mean
# matches the prediction, the typical network does not. An earlier version of this note claimed
# "every median within a factor 30" and "seeds more than a factor 10 apart"; on other seed sets the
# first missed by a factor 50 and the second measured 8 — five draws of a log-normal with a spread
# of 0.8 decades are not a fact about networks, so the text now states the spread itself.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 6 — `predict_layer_stds` (3 points)
#
# Real networks are not square. Write `predict_layer_stds(widths, weight_vars, nonlinearity="relu",
# param=None, input_var=1.0, output_grad_var=1.0)` that predicts, for an MLP of any widths, the std of
# every layer's activations and of their gradients — the recursion of this section, with each
# layer's own fans:
#
# - `widths` = $[n_0, n_1, \dots, n_L]$: the input size, then every layer's width; layer $l$ has a
#   weight $W_l$ of shape $(n_l, n_{l-1})$ with iid zero-mean entries of variance `weight_vars[l-1]`, no
#   bias, and $h_l = f(W_l h_{l-1})$ for every layer (the last one too); $h_0$ has iid zero-mean
#   entries of variance `input_var`;
# - forward: $q_l = n_{l-1}\operatorname{Var}[w_l]\,\mathbb E[h_{l-1}^2]$ — the **second moment** of the
#   layer's input, $\mathbb E[h_0^2]$ = `input_var` — and the std of $h_l$ is
#   $\sqrt{\mathbb E[f(z)^2] - \mathbb E[f(z)]^2}$ with $z \sim \mathcal N(0, q_l)$;
# - backward, from $\partial L/\partial h_L$ with iid entries of variance `output_grad_var`: each
#   entry of $\partial L/\partial h_{l-1}$ sums over the $n_l$ outputs it feeds,
#   $\operatorname{Var}[\partial L/\partial h_{l-1}] = n_l\operatorname{Var}[w_l]\,\mathbb E[f'(z_l)^2]\operatorname{Var}[\partial L/\partial h_l]$;
# - `nonlinearity` is "linear", "relu" or "leaky_relu" with negative slope `param` (0.01 when None):
#   for $f(z) = z$ above 0 and $s z$ below, $\mathbb E[f(z)^2] = \frac{1 + s^2}{2} q$,
#   $\mathbb E[f(z)] = (1 - s)\sqrt{q/2\pi}$, $\mathbb E[f'(z)^2] = \frac{1 + s^2}{2}$.
#
# Return two lists of $L$ floats: the std of $h_1, \dots, h_L$ and of
# $\partial L/\partial h_1, \dots, \partial L/\partial h_L$ (so the last gradient std is $\sqrt{\text{output\_grad\_var}}$).
# Graded to a relative $10^{-6}$ against the closed forms.

# %% nbgrader={"grade": false, "grade_id": "predict_layer_stds", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def predict_layer_stds(widths, weight_vars, nonlinearity="relu", param=None, input_var=1.0, output_grad_var=1.0):
    """(std of h_l, std of dL/dh_l) for l = 1..L by the mean-field recursion, any widths."""
    ### BEGIN SOLUTION
    slope = {"linear": 1.0, "relu": 0.0}.get(nonlinearity, 0.01 if param is None else param)
    if nonlinearity not in ("linear", "relu", "leaky_relu"):
        raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")
    keep = (1 + slope**2) / 2  # E[f(z)²]/q, and E[f'(z)²]
    act_std, second = [], input_var
    for fan_in, var_w in zip(widths[:-1], weight_vars):
        q = fan_in * var_w * second
        second = keep * q
        mean = (1 - slope) * math.sqrt(q / (2 * math.pi))
        act_std.append(math.sqrt(second - mean**2))
    grad_var = [output_grad_var]
    for layer in range(len(weight_vars) - 1, 0, -1):  # from ∂L/∂h_L down to ∂L/∂h_1
        grad_var.insert(0, widths[layer + 1] * weight_vars[layer] * keep * grad_var[0])
    return act_std, [math.sqrt(v) for v in grad_var]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "predict_layer_stds_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(predict_layer_stds, "predict_layer_stds")

# %% nbgrader={"grade": true, "grade_id": "predict_layer_stds_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: ReLU with Xavier's and the default's variances, widths whose fan_out differs from
# fan_in at every layer, a single layer, leaky_relu with slopes 0.2 and 0.01, and input and
# output-gradient variances other than 1.
### BEGIN HIDDEN TESTS
check(predict_layer_stds, "predict_layer_stds", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Your prediction against a measurement, and He's telescoping.** A ReLU MLP of widths
# 32 → 256 → 64 → 512 → 128 → 16 with Kaiming's fan_in variance $2/n_{l-1}$ in every layer: the lab
# measures it (five seeds, 256 inputs, float64), your function predicts it. The activations should
# keep their std from layer to layer, and the gradient should change by $\sqrt{n_l/n_{l-1}}$ at each
# layer — from the output down to layer 1 by $\sqrt{n_L/n_1} = \sqrt{16/256} = 1/4$ in all:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
uneven = lab.uneven_profile(lab.UNEVEN_WIDTHS)
weight_vars = lab.kaiming_weight_vars(lab.UNEVEN_WIDTHS)
print("measured (median of 5 seeds), activation std:", np.round(np.median(uneven.act_std, axis=0), 3))
print("measured (median of 5 seeds), gradient std:  ", np.round(np.median(uneven.grad_std, axis=0), 3))
try:
    act, grad = predict_layer_stds(list(lab.UNEVEN_WIDTHS), weight_vars, "relu")
    print("your prediction, activation std:             ", np.round(act, 3))
    print("your prediction, gradient std:               ", np.round(grad, 3))
except NotImplementedError:
    print("Finish Exercise 6 to compare your prediction with the measurement.")

# %% [markdown] slideshow={"slide_type": "fragment"}
# The median of five seeds lands within 20 % of the prediction at every layer, forward and backward,
# and the gradient at layer 1 is a quarter of the output's: the backward factors $n_l/n_{l-1}$
# telescope, as He et al. argued, however the widths go up and down in between.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — uneven widths.** Prediction: activation std √(2·(1/2 − 1/2π)) = 0.826 at
# every layer (q = 2 throughout: Kaiming's gain 2 on an input of second moment 1, then on ReLU's
# E[h²] = q/2 = 1), gradient std 0.25, 0.5, 0.177, 0.354, 1. Over our 30 runs the five-seed
# medians are 0.88–1.05 times it at every layer (single seeds 0.7–1.3); float64 forward and
# backward passes, so the CPU does not change them.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Experiment: seven inits × three activations in a 50-layer MLP
#
# Now the full picture, in the style of Karpathy's *makemore part 3* and the UvA deep learning
# tutorial 4: per-layer std of the activations and of their gradients for seven initializations,
# with tanh, ReLU and SELU, in 50-layer MLPs of width 64 (5 seeds each, median and range):
#
# - **too small** ($\mathcal N(0, 0.01^2)$) and **too large** ($\mathcal N(0, 1)$): the "small random numbers" folklore and plain `randn`;
# - **Xavier** ($1/n$ here: the layers are square), **Kaiming** ($g^2/n$: 2/n for ReLU, (5/3)²/n
#   for tanh, LeCun's 1/n for SELU), **PyTorch's default** ($1/3n$);
# - **orthogonal** × the gain;
# - **LSUV** (*layer-sequential unit variance*, Mishkin & Matas, 2016): start orthogonal, then,
#   layer by layer on one batch, divide each weight matrix by the std of its output, so that every
#   layer's pre-activation has variance exactly 1 on that batch — an init that *measures* instead of
#   deriving, and works for any activation.
#
# `lab.depth_sweep()` runs all 21 combinations; nothing is clipped (float64 holds $10^{\pm300}$).

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
sweep = lab.depth_sweep()
print(f"{len(sweep)} settings × 5 seeds in {sum(p.seconds for p in sweep.values()):.1f} s")
lab.plot_depth_profiles(sweep, "act_std")

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_depth_profiles(sweep, "grad_std")

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the plots.** The upper rows span 100 orders of magnitude; the lower rows zoom into
# $10^{-2}$–$10^{3}$ and keep only the inits that stay there. Too small and PyTorch's default vanish
# for every activation, forward and backward (below $10^{-3}$ at layer 50 and in layer 1's gradient,
# on every seed); too large explodes for ReLU and SELU and, for tanh, *saturates*: the activations
# sit at ±1 (std between 0.9 and 1 — it looks healthy!) while the gradient explodes backward,
# because the few unsaturated units pass gradients through weights of std 1. Xavier keeps tanh alive
# but fading (the std at layer 50 is below layer 10's, between 0.01 and 0.5) and kills ReLU (the
# factor ½ per layer). Kaiming, orthogonal and LSUV keep the activations of order one with every
# activation (std between 0.04 and 5 at every layer, on every seed). The gradients tell a different
# story: with ReLU, Kaiming, orthogonal and LSUV keep the layer-1 gradient within a factor 10 of the
# output's (std 1); with SELU all four (Xavier = Kaiming there) let it grow 4- to 15-fold; with tanh
# Xavier lets it fade to between 0.08 and 0.3 of the output's, 5/3 (Kaiming, orthogonal) lets it
# grow 50- to 250-fold, as Section 8 predicted, and LSUV, which pins the forward variance, 40- to
# 80-fold. The histograms show *where* the activations sit:

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_histograms(sweep, "tanh", ["too large", "xavier", "kaiming"])

# %% [markdown] slideshow={"slide_type": "fragment"}
# With std-1 weights about three quarters of the tanh units are saturated ($|h| > 0.99$) at every
# layer from the first on; a gradient of almost 0 passes through a saturated unit (the "dead tanh"
# of makemore part 3). Xavier's activations concentrate near 0 as depth grows (the std at layer 50
# is less than a third of layer 1's); with 5/3 the shape settles within 10 layers (the std at layers
# 10, 25 and 50 agrees within 10%), with a mild pile-up near ±1 (under a quarter of the units
# beyond ±0.9).

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — the sweep.** Numbers from `depth_sweep()` (median over 5 seeds, width 64,
# batch 64), layer-50 activation std — tanh: too small ≈ 1e-55, too large ≈ 0.94, Xavier ≈ 0.08,
# Kaiming ≈ 0.65, default ≈ 1e-12, orthogonal ≈ 0.65, LSUV ≈ 0.63; ReLU: too small ≈ 1e-63,
# too large ≈ 1e37, Xavier ≈ 1e-8, Kaiming 0.15–0.9 (single seeds from 0.05 up), default ≈ 1e-20,
# orthogonal 0.45–0.75, LSUV ≈ 0.6; SELU: Xavier = Kaiming (both 1/n) ≈ 0.95, LSUV ≈ 1.00. The
# layer-1 gradient std for tanh + too large is ≈ 1e15 while its activations look healthy — the best
# example of why one must look at gradients too. What varies: the ReLU numbers move with the seed
# set (the ranges above are over our three blocks of five seeds), not with the CPU (float64, and
# nothing chaotic: the avx2, default and jittered runs agree to three digits). The claims test
# checks each sentence of the reading on all 30 runs (vanish: < 1e-3, measured ≤ 9e-5; explode:
# > 1e3; order one: 0.04–5, measured 0.051–4.0; ReLU gradients 0.15–3.6; SELU 4.8–11.9; tanh
# Xavier 0.11–0.22, 5/3 72–189, LSUV 48–65).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 7 — `find_init_bug` (3 points)
#
# Now use the statistics. A colleague's model arrives: a ReLU MLP that should have Kaiming weights
# and zero biases in every `nn.Linear` layer — but one layer was initialised differently. Write
# `find_init_bug(model, x)` that runs `model` on the batch `x` and returns `(index, verdict)`: the
# index of the odd layer among the model's `nn.Linear` layers, counted from 0 in the order the
# forward pass runs them, and `"too small"` or `"too large"` — whether that layer shrinks or inflates
# the signal compared with the others.
#
# Measure with **forward hooks**, the tool behind fast.ai's activation statistics:
# `handle = layer.register_forward_hook(fn)` makes every forward pass call `fn(layer, inputs,
# output)`, where `inputs` is the tuple of the layer's inputs; `handle.remove()` takes the hook off
# again (do it: hooks outlive your function). Think about *what* to compare: the sweep above showed
# that every layer after a bad one inherits its scale, so the layer whose activations look most off
# is not necessarily the culprit. And a layer can be wrong in ways its weights alone do not show.
# Graded on models with one bad layer anywhere (the first, the last, in a nested `nn.Sequential`),
# too small or too large by a factor of 4 or more in variance.

# %% nbgrader={"grade": false, "grade_id": "find_init_bug", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def find_init_bug(model, x):
    """(index of the odd nn.Linear layer, "too small" or "too large"), from the layers' statistics."""
    ### BEGIN SOLUTION
    moments = []  # (E[input²], E[output²]) of every Linear layer, in forward order

    def record(layer, inputs, output):
        moments.append((inputs[0].pow(2).mean().item(), output.pow(2).mean().item()))

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    handles = [m.register_forward_hook(record) for m in linears]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    # each layer's gain E[y²]/E[x²] = fan_in·Var[w] (2 for Kaiming), whatever came before it
    log_gains = np.log([out / inp for inp, out in moments])
    median = np.median(log_gains)
    index = int(np.argmax(np.abs(log_gains - median)))
    return index, "too small" if log_gains[index] < median else "too large"
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "find_init_bug_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(find_init_bug, "find_init_bug")

# %% nbgrader={"grade": true, "grade_id": "find_init_bug_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a layer at a tenth of Kaiming's std, an early layer four times too large, the first
# layer at PyTorch's default, the output layer too small, fans swapped on a widening layer, right
# weights with a large bias, and a nested model.
### BEGIN HIDDEN TESTS
check(find_init_bug, "find_init_bug", level="hidden")
### END HIDDEN TESTS

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
mystery, points, answer = lab.mystery_model(seed=0)  # an 8-layer spiral classifier with one odd layer
try:
    print(f"your find_init_bug says: {find_init_bug(mystery, points)}")
except NotImplementedError:
    print("Finish Exercise 7 to examine the mystery model.")

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — find_init_bug.** The mystery model's answer is `lab.mystery_model(0)[2]` =
# (3, 'too large'): layer 3's weights are 5× Kaiming's std. The robust statistic is each layer's
# gain $\mathbb E[y^2]/\mathbb E[x^2]$ against the median gain: it is $\text{fan\_in}\operatorname{Var}[w]$ for a bias-free
# layer whatever its input, so it points at the layer itself; the layer with the most extreme
# activations is often a later one (everything downstream inherits the scale), and weight
# statistics miss the hidden test whose weights are right but whose bias has std 5. Alternatives
# that pass: a leave-one-out mean instead of the median, walking `model.modules()` without hooks.
# `tests/test_init_lab.py` rebuilds every graded case from 20 seeds: the planted layer's log-gain is
# always at least 3.8 times farther from the median than any other layer's (batch 128).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. What a good init buys: training a deep ReLU net
#
# The same question in a real training loop. Ten-layer ReLU MLPs of width 32 (2 → 32 → … → 3,
# biases 0) learn the three spirals with SGD (learning rate 0.01, momentum 0.9, batches of 128),
# 250 steps, from PyTorch's default init (the **control**: what you get by doing nothing), Xavier
# and Kaiming, 5 seeds each (a seed draws the spirals, the weights and the minibatches; the three
# inits of one seed see the same data and minibatches). The loop is the ordinary one —
#
# ```python
# for step in range(250):
#     loss = F.cross_entropy(model(x_batch), y_batch)
#     optimizer.zero_grad(); loss.backward(); optimizer.step()
# ```
#
# — run for all 15 models at once by `lab.train_sweep`. A second control separates the effect of
# depth from everything else: the same three inits in a **3-layer** net.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
INIT_CHOICES = lab.TRAIN_INITS  # ("pytorch default", "xavier", "kaiming")
deep = lab.train_sweep(INIT_CHOICES, depth=10, steps=250, lr=0.01, record=True)  # record: see below
shallow = lab.train_sweep(INIT_CHOICES, depth=3, steps=250, lr=0.01)
for name in INIT_CHOICES:
    print(f"{lab.LABELS[name]:24s} final loss, 10 layers: median {np.median(deep.final(name)):.3f} "
          f"(seeds {deep.final(name).min():.3f}–{deep.final(name).max():.3f});  "
          f"3 layers: worst seed {shallow.final(name).max():.3f}")
kaiming, xavier = deep.final("kaiming"), deep.final("xavier")
print(f"10 layers: Kaiming below 0.1 on {np.sum(kaiming < 0.1)} of {len(kaiming)} seeds, "
      f"below Xavier on {np.sum(kaiming < xavier)} of {len(kaiming)}")
lab.plot_training(deep)

# %% [markdown] slideshow={"slide_type": "fragment"}
# In 3 layers all three inits train (every final loss is at least 0.3 below ln 3 ≈ 1.10, the loss
# of guessing); at 10 layers the default-initialized nets do not move from ln 3 in 250 steps
# (within 0.01 on every seed) — their signal loses a factor 6 of variance at every layer
# (Section 5) — while Kaiming's median run reaches a loss below 0.05 and Xavier's median lands in
# between (0.1–0.3). Single runs vary: Kaiming ends below 0.1 and below Xavier on most seeds, not
# on all (SGD with momentum on a 10-layer net is sensitive to its start; an unlucky seed can stall
# on a plateau for a while). Same data, same optimizer, same architecture: the only difference is
# one number per layer.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — training.** Over our 30 runs (seeds 0–14, and seeds 0–4 under the avx2 and
# default kernels and with a 1e-6 jitter of the initial weights): the default stays within 8e-4
# of ln 3; Kaiming's median of five seeds 0.022–0.028, Xavier's 0.13–0.23 (the printout's median
# and range change from CPU to CPU: on seed 2 Xavier ends at 0.56 with one kind of kernels and
# 0.16 with another — training at this learning rate amplifies rounding); Kaiming below 0.1 in 28 of
# 30 runs (seed 7 ends at 0.49, seed 11 at 0.13) and below Xavier in 29 of 30 (seed 7). The
# shallow control's worst final losses: default 0.71, Xavier 0.68, Kaiming 0.39. An earlier version
# said "Kaiming below 0.1 on every seed; every Xavier seed above every Kaiming seed": held-back
# seeds contradicted both, so the text now gives medians and "most seeds".

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 8 — `init_model_` (3 points)
#
# Write `init_model_(model, nonlinearity)` that prepares any model for training with the activation
# `nonlinearity`:
#
# - every `nn.Linear`, `nn.Conv1d`, `nn.Conv2d`, `nn.Conv3d` in the model — **nested ones too** —
#   gets weights with mean 0 and $\operatorname{Var}[w] = g^2/\text{fan\_in}$, $g$ =
#   `calculate_gain(nonlinearity)`, except for "selu", which needs LeCun's $1/\text{fan\_in}$ (gain 1).
#   Normal or uniform: your choice;
# - every bias of those layers is set to 0;
# - every other layer (a `LayerNorm`, a `BatchNorm1d`, say) keeps its parameters;
# - return the model.
#
# **What you may use.** Walk the model however you like: `model.apply(fn)`, or a loop over
# `model.modules()` or `model.named_modules()` — all three visit nested modules; `model.children()`
# lists only the top level. Choose the layers by type, `isinstance(m, (nn.Linear, nn.Conv1d, ...))`,
# or skip the others by type (`isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d))`).
# Draw the weights with your own functions from above, with tensor methods (`weight.normal_`,
# `uniform_`, `zero_` under `torch.no_grad()`), or with `torch.nn.init` (`kaiming_normal_`,
# `zeros_`, …): in this exercise they are building blocks, not the answer. Only the lesson's answer
# key is off limits: `stabletrain`'s own functions (`stabletrain.init_model_`, …).
#
# It is graded by the per-layer statistics of the model it returns, and you can watch it train
# right after.

# %% nbgrader={"grade": false, "grade_id": "init_model", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def init_model_(model, nonlinearity):
    """Initialise every Linear/Conv layer of model for the activation nonlinearity; return model."""
    ### BEGIN SOLUTION
    gain = 1.0 if nonlinearity == "selu" else calculate_gain(nonlinearity)

    def init_layer(module):
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            fan_in, _ = fan_in_and_fan_out(module.weight)
            with torch.no_grad():
                module.weight.normal_(0.0, gain / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.zero_()

    model.apply(init_layer)  # visits every submodule, nested ones included
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "init_model_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(init_model_, "init_model_")

# %% nbgrader={"grade": true, "grade_id": "init_model_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a tanh MLP, a conv net, a nested model with a LayerNorm (leaky_relu), and SELU.
### BEGIN HIDDEN TESTS
check(init_model_, "init_model_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The loss at init, and Exercise 9 — `init_output_layer_` (3 points)
#
# Karpathy's first check of a new network: before any training, the loss should be what a network
# that knows nothing scores — for $C$ balanced classes the cross-entropy of a uniform guess,
# $\ln C$ ($\ln 3 \approx 1.0986$ for the spirals). A loss far above $\ln C$ means confident, wrong
# logits at init, and the first steps are spent shrinking them (the "hockey stick" of a loss
# curve). The cell below prints the first-step loss of the training sweep above: the default nets
# sit exactly at $\ln 3$ — for the wrong reason, their signal vanished and their logits are 0 —
# while Kaiming's logits have a std of order one, and their first loss depends on the draw.
#
# The fix is to initialise the output layer on purpose: weights 0, so that every input gets the
# same logits (the layers below are random, so Section 1's symmetry is broken already), and a bias
# $b_k = \ln p_k$, with $p$ the class frequencies of the training labels, so that
# $\operatorname{softmax}(b) = p$. The loss at init is then the labels' entropy
# $H(p) = -\sum_k p_k \ln p_k$: $\ln C$ for balanced classes, less for imbalanced ones (Karpathy's
# "init well": for 1:10 classes, predict 0.1 at init rather than spending steps to learn it).
#
# Write `init_output_layer_(model, y)`: the output layer is the model's last `nn.Linear` (its
# out_features are the $C$ classes); set its weight to 0 and its bias to $\ln p$ from the labels `y`
# (every class occurs in them), in place, and return the model. No other layer changes. It is
# graded on the cross-entropy at init (within 0.01 of $H(p)$ on the grader's inputs) and on
# $\operatorname{softmax}(b) = p$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
first = {name: deep.losses[deep.inits.index(name), :, 0] for name in INIT_CHOICES}
print(f"loss at the first step, 10 layers (ln 3 = {math.log(3):.4f}):")
for name in INIT_CHOICES:
    print(f"  {lab.LABELS[name]:24s} {np.round(first[name], 3)}")

# %% nbgrader={"grade": false, "grade_id": "init_output_layer", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def init_output_layer_(model, y):
    """Zero the last Linear layer's weights and set its bias to ln(class frequencies); return model."""
    ### BEGIN SOLUTION
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    counts = torch.bincount(y, minlength=last.out_features).to(torch.float64)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.log(counts / counts.sum()))
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "init_output_layer_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(init_output_layer_, "init_output_layer_")

# %% nbgrader={"grade": true, "grade_id": "init_output_layer_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: four balanced classes (loss ln 4), ten imbalanced classes, a binary 9:1 problem,
# and a nested model whose output layer sits two levels down.
### BEGIN HIDDEN TESTS
check(init_output_layer_, "init_output_layer_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your initialization in the loop
#
# This cell builds an ordinary `nn.Sequential` 10-layer ReLU MLP, initialises it with **your**
# `init_model_` (and then your `init_output_layer_`) and trains it exactly as above (one model, the
# plain loop); the same model left at PyTorch's default is the control. It prints the loss at the
# first step — Karpathy's check — and at the last.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
from stabletrain.data import make_spirals


def spiral_mlp(depth=10, width=32, seed=0):
    torch.manual_seed(seed)
    sizes = [2] + [width] * (depth - 1) + [3]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < depth - 1 else [])
    return nn.Sequential(*layers)


x_train, y_train = make_spirals(200, classes=3, seed=0)


def train(model, steps=250, lr=0.01, seed=0):
    batches = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, len(x_train), (128,), generator=batches)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def report(name, losses):
    print(f"{name:48s} loss at the first step {losses[0]:.4f}, at the last {losses[-1]:.3f}")


report("PyTorch default (control)", train(spiral_mlp()))
try:
    report("your init_model_(model, 'relu')", train(init_model_(spiral_mlp(), "relu")))
    report("... and your init_output_layer_(model, y_train)",
           train(init_output_layer_(init_model_(spiral_mlp(), "relu"), y_train)))
except NotImplementedError:
    print("Finish Exercises 8 and 9 first: init_model_ or init_output_layer_ still raises NotImplementedError.")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Statistics during training: activations and the update:data ratio
#
# An init is judged at step 0, but what it is for shows in the steps after. fast.ai's hooks record
# every layer's activation statistics *during* training, and Karpathy adds the **update:data
# ratio**: how far an optimizer step moves a weight matrix relative to its size,
# $\|\Delta W\|/\|W\|$ — about $10^{-3}$ is a healthy rule of thumb; far below, the layer is not
# learning; far above, it is being thrown around. The training sweep above recorded both at every
# step (what a forward hook on each `nn.Linear` sees: the std of its output; and $\|\text{lr}\cdot v\|/\|W\|$
# for SGD with momentum $v$):

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
for name in ("pytorch default", "kaiming"):
    i = deep.inits.index(name)
    print(f"{lab.LABELS[name]:24s} layer-10 output std at the first and last step: "
          f"{np.median(deep.out_std[i, :, 0, 9]):.1e} → {np.median(deep.out_std[i, :, -1, 9]):.2f}; "
          f"largest update:data ratio after step 10: {deep.update_ratio[i, :, 10:].max():.1e}")
lab.plot_training_stats(deep)

# %% [markdown] slideshow={"slide_type": "fragment"}
# The default-initialized net is not dead — its layer-10 outputs start three to four orders of
# magnitude below Kaiming's and creep up towards $10^{-2}$ — but its layers move by less than a fifth
# of the $10^{-3}$ rule of thumb at every step after the first ten: the gradients that reach them
# are too small to change anything in 250 steps. Kaiming's layers move fastest in the first steps,
# the deeper ones most (medians of $10^{-4}$ to $10^{-2}$ over the first ten steps), and several
# times less by step 250; their outputs grow as the net learns larger logits. Neither number alone
# is a verdict; the two plots side by side tell a frozen layer from a learning one.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — loss at init and statistics during training.** First-step losses over our
# 30 runs: the default within 3e-5 of ln 3 on every seed; Xavier 1.097–1.100; Kaiming from 1.09 to
# 1.48 (it depends on the draw). After `init_output_layer_` the first loss is ln 3 to the digits the
# cell prints (3 balanced classes, zero output weights: exact). Statistics: the default's layer-10
# output std starts at 2e-5–1.3e-4 and ends at 5e-3–3.5e-2, its update:data ratio stays below 2e-4
# in every layer after step 10 (largest measured 1.3e-4); Kaiming's layer-10 std goes from 0.1–1.2
# to 3–11, its ratios have medians of 3e-4, 1.3e-3 and 3.8e-3 (layers 1, 5, 10) over the first ten
# steps and 6e-5–5e-4 at step 250. These come from SGD at a learning rate that amplifies rounding:
# the exact values change from CPU to CPU (Kaiming's final layer-10 std: 6.1–9.2 with avx2 kernels,
# 5.4–9.2 with the default ones on the same seeds), the orders of magnitude do not.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 11. Explore
#
# The explorer recomputes the 50-layer experiment for any setting (5 seeds, small widths, cached)
# and redraws in well under half a second. Questions to answer:
#
# - With ReLU and Kaiming, how does the spread between seeds at layer 50 change from width 8 to 64?
# - Which init keeps tanh's *gradients* closest to 1 through 50 layers — and what does it pay in
#   the forward direction?
# - With "too large", at which depth does the ReLU net's activation std pass $10^{10}$ at width 8, and
#   at width 64? Why does width matter for a fixed std but not for Kaiming?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.InitExplorer(init="kaiming", act="relu", depth=50, width=32)
explorer.widget

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — explorer answers.** (1) ReLU + Kaiming, layer-50 activation std over 5
# seeds spans two decades or more at width 8 (2.5 and 3.8 on our blocks of five seeds; a narrow
# net can even die — every unit of some layer off for every input, std exactly 0, as one of our 15
# seeds does) and about one decade at width 64 (0.9–1.2): the log-variance random walk has a spread
# $\propto\sqrt{L/n}$ (Section 8). (2) Xavier (gain 1) keeps tanh's gradients closest to 1
# (layer-1 gradient std 0.1–0.3 at width 64, median of five; 0.14–0.16 measured), paying with
# activations that fade (layer 50: median 0.08, single seeds 0.05–0.13); 5/3 multiplies the
# gradient by about 100 (Kaiming's and orthogonal's medians 85–119). (3) Fixed std 1 means
# $n\operatorname{Var}[w] = n$, a per-layer variance factor $n/2$ for ReLU: the mean-field estimate
# $20/\log_{10}(n/2)$ says the std passes $10^{10}$ after 13 layers at width 64, and the median of
# five seeds does so at layer 14 on every seed set. At width 8 the estimate says 33, but the median
# passes late — at layer 45 or later, or not within 50 layers (46 and 49 on our seed sets) — and
# single seeds anywhere from layer 36 on, a third of them never. Hanin–Rolnick's drift explains
# most of it: the median log-variance grows by $\ln(n/2) - 5/(2n)$ per layer, which moves the
# estimate to $20\ln 10/(\ln 4 - 5/16) \approx 43$. Kaiming scales the variance by $1/n$, which
# removes the width from the mean but not from the spread. These numbers vary with the seed set,
# not with the CPU (float64).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - Weights must be random: equal weights make equal units with equal gradients, for ever in exact
#   arithmetic (zero init on any CPU); rounding can break a constant init's symmetry, but only after
#   hundreds of steps.
# - A linear layer multiplies the variance by $n\operatorname{Var}[w]$: forward $n$ = fan_in, backward
#   $n$ = fan_out; conv fans include the receptive field. Xavier takes $2/(\text{fan\_in} + \text{fan\_out})$.
# - Activations change the second moment; the gain makes up for it: ReLU $\sqrt2$ (from
#   $\mathbb E[\mathrm{relu}(z)^2] = \operatorname{Var}[z]/2$), leaky ReLU $\sqrt{2/(1 + s^2)}$, tanh 5/3 (a fixed
#   point near 1), SELU with LeCun's $1/\text{fan\_in}$.
# - Uniform or normal: the same variance, $b = \sqrt3\,\sigma$; a truncated normal needs
#   $\sigma/0.8796$. All of it is `variance_scaling_(scale, mode, distribution)`; Keras's `HeNormal` is
#   truncated, PyTorch's `kaiming_normal_` is not.
# - PyTorch's default Linear/Conv init has $\operatorname{Var}[w] = 1/(3\,\text{fan\_in})$: fine for shallow nets,
#   a vanishing signal in deep ReLU nets — hidden, with its default biases, behind activations that
#   settle at a bias-driven fixed point while the input-dependent part vanishes ($\chi = 1/6$).
# - Kaiming's fan_in costs only $n_L/n_1$ backward: the per-layer factors telescope.
# - PyTorch's `trunc_normal_` cuts at absolute values and does not correct the std; Keras's
#   truncated normals do.
# - Orthogonal init preserves every vector's norm; the QR sign correction makes it Haar (raw QR's
#   $Q$ has $\mathbb E[Q_{11}] \approx -0.14$).
# - The mean-field recursion predicts activation and gradient variances through depth and for any
#   widths — the mean over networks; narrow ReLU nets spread log-normally around it. Measure per
#   layer (std, histograms, each layer's gain with forward hooks) to diagnose an init — activations
#   alone can look healthy while gradients explode, and the layer with the worst activations is not
#   always the culprit.
# - Check the loss at init ($\ln C$; the labels' entropy with a $\ln p$ output bias), and watch the
#   update:data ratio (about $10^{-3}$) during training.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# - **Swapping the fans**: `nn.Linear.weight` has shape (out, in), so fan_in is `shape[1]`.
# - **Forgetting the receptive field** of conv weights: fan_in is in·kh·kw, not in.
# - **Passing a variance where a std is expected**: `normal_(0, 2 / fan_in)` instead of
#   `normal_(0, math.sqrt(2 / fan_in))`; and the uniform bound is $\sqrt3$ times the std.
# - **The wrong gain**: √2 (ReLU) for tanh, ignoring leaky ReLU's slope, or selu's 3/4 for a SELU
#   net that needs 1.
# - **Not in place / not under `torch.no_grad()`**: `w = torch.randn(...)` rebinds a name and leaves
#   the model's weight unchanged; `weight.normal_()` on a Parameter outside `no_grad` raises.
# - **Ignoring `generator`**: a seeded generator must reproduce the weights.
# - **Orthogonal without the sign correction**: orthogonal, but biased by the QR convention (an
#   SVD's $U$ is biased too; its polar factor $UV^\top$ is not).
# - **A truncated normal without the 0.8796 correction**, "truncating" by clamping or by
#   `torch.fmod` (which wraps the tails back to 0), or cutting at ±2·std instead of ±2σ; and
#   `trunc_normal_(w, std=0.02)` believed to cut anything.
# - **$\operatorname{Var}[h]$ instead of $\mathbb E[h^2]$** in the forward recursion, and fan_in instead of fan_out
#   backward.
# - **Trusting the default init in a deep ReLU net**, and **looking only at activations**: a
#   saturated tanh net has healthy-looking activation std and exploding gradients.
# - **`model.children()` instead of `model.apply` / `model.named_modules()`**: nested layers are
#   missed.
#
# **References.** Y. LeCun, L. Bottou, G. Orr, K.-R. Müller, *Efficient BackProp*, 1998. X. Glorot,
# Y. Bengio, *Understanding the difficulty of training deep feedforward neural networks*, AISTATS
# 2010. K. He, X. Zhang, S. Ren, J. Sun, *Delving Deep into Rectifiers*, ICCV 2015. A. Saxe,
# J. McClelland, S. Ganguli, *Exact solutions to the nonlinear dynamics of learning in deep linear
# neural networks*, ICLR 2014. F. Mezzadri, *How to generate random matrices from the classical
# compact groups*, Notices AMS 2007. D. Mishkin, J. Matas, *All you need is a good init*, ICLR 2016.
# G. Klambauer et al., *Self-Normalizing Neural Networks*, NeurIPS 2017. B. Poole et al., *Exponential
# expressivity in deep neural networks through transient chaos*, NeurIPS 2016. B. Hanin, D. Rolnick,
# *How to start training: the effect of initialization and architecture*, NeurIPS 2018. S. Schoenholz,
# J. Gilmer, S. Ganguli, J. Sohl-Dickstein, *Deep information propagation*, ICLR 2017. A. Karpathy,
# *Building makemore part 3* and *A recipe for training neural networks* (2019); J. Howard, fast.ai
# course part 2, *Initialization* and *Activation statistics* (hooks); UvA Deep Learning tutorial 4,
# *Optimization and initialization*.
