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
# # Lesson 2 — Activations and saturation
#
# A deep network is a chain of linear maps and elementwise nonlinearities. The linear maps get
# most of the attention, but the nonlinearity decides two things the rest of the course depends
# on: how large the signal stays on its way forward (it enters through the **second moment**
# $\mathbb E[f(z)^2]$, the quantity lesson 3's initialization gains come from) and how much gradient
# gets back (every layer multiplies it by the **slope** $f'(z)$). A sigmoid never passes more than
# a quarter of the gradient; a saturated tanh passes almost none; a ReLU passes all of it or none at
# all — and a ReLU unit that passes none for every example is **dead**, for good. This lesson
# measures all of it and gives you the tools to see it in your own networks.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. write sigmoid, tanh, ReLU, Leaky ReLU, ELU, GELU (exact and its tanh approximation) and SiLU
#    with their derivatives, **finite for every input** and with PyTorch's slope at the kinks, and
#    check them against autograd;
# 2. say which activations **saturate**, compute the slope from a layer's *output* (what a forward
#    hook sees), and measure the fraction of saturated units;
# 3. compute the **second moment** $\mathbb E[f(z)^2]$ for $z \sim \mathcal N(0, \sigma^2)$ — in
#    closed form where one exists, by quadrature otherwise — and derive from it the gain that keeps
#    a layer's variance fixed;
# 4. predict how the slopes multiply over depth (the bridge to lesson 1), and explain why SELU's
#    variance **returns** to 1 while ReLU's only stays where it happens to be;
# 5. find **dead** ReLU units, explain why they never recover, watch them appear after a burst of
#    too-high learning rate, and bring them back by recycling them without changing what the
#    network computes.
#
# **How this notebook works.** You implement six functions: `activation_and_grad`,
# `saturation_fraction`, `second_moment`, `variance_preserving_gain`, `count_dead_neurons` and
# `recycle_dead_units_`. After each one, a test cell calls `check(...)`, which runs visible cases
# and, when one fails, says what was expected, what came back and the **likely misconception**.
# Before handing in, run `check(your_function, "name", level="hidden")` yourself in a scratch
# cell: it runs the same *kinds* of cases as the grader (hidden tests), so every mistake in the
# course's catalogue shows up there first. Hidden tests give **partial credit per group of cases**.
# Every formula is followed by a cell that checks it numerically; every number in the prose is
# checked by a test over the experiments' seeds (and ten more, and other CPUs' arithmetic).
# Experiments use the course's reference implementation, so they run before you finish the
# exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math

import numpy as np
import torch
from scipy.special import erf
from torch import nn

import stabletrain
from stabletrain.exercises import check
from stabletrain.lessons import activations_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are small: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Eight activations and their slopes
#
# | name | $f(z)$ | $f'(z)$ |
# |---|---|---|
# | sigmoid | $\sigma(z) = \dfrac{1}{1 + e^{-z}}$ | $\sigma(z)\,(1 - \sigma(z))$ |
# | tanh | $\tanh z = 2\sigma(2z) - 1$ | $1 - \tanh^2 z$ |
# | ReLU | $\max(z, 0)$ | $1$ for $z > 0$, $0$ for $z \le 0$ |
# | Leaky ReLU | $z$ for $z > 0$, $s z$ otherwise ($s = 0.01$) | $1$ for $z > 0$, $s$ for $z \le 0$ |
# | ELU | $z$ for $z > 0$, $e^z - 1$ otherwise | $1$ for $z > 0$, $e^z$ for $z \le 0$ |
# | GELU | $z\,\Phi(z) = \tfrac12 z\,\bigl(1 + \operatorname{erf}(z/\sqrt2)\bigr)$ | $\Phi(z) + z\,\varphi(z)$ |
# | GELU (tanh) | $\tfrac12 z\,\bigl(1 + \tanh u\bigr)$, $u = \sqrt{2/\pi}\,(z + 0.044715\,z^3)$ | $\tfrac12(1 + \tanh u) + \tfrac12 z\,(1 - \tanh^2 u)\,u'$ |
# | SiLU (swish) | $z\,\sigma(z)$ | $\sigma(z)\,\bigl(1 + z\,(1 - \sigma(z))\bigr)$ |
#
# $\Phi$ is the standard normal CDF and $\varphi(z) = e^{-z^2/2}/\sqrt{2\pi}$ its density;
# $u' = \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,z^2)$. The first two **saturate**: for large $|z|$ they
# are flat and their slope vanishes. The ReLU family is linear for $z > 0$ — no saturation there —
# and flat (or nearly flat) for $z < 0$. GELU (BERT, GPT) and SiLU are smooth versions of ReLU that
# dip slightly below 0. The slopes at a kink are a **convention**; PyTorch's autograd uses the
# value of the left branch at $z = 0$: ReLU′(0) = 0, Leaky ReLU′(0) = $s$, ELU′(0) = 1.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
fig = lab.plot_activations()
fig.set_label("Two panels: the eight activations on [-4, 4] and their slopes; the sigmoid's slope "
              "peaks at 1/4, GELU's and SiLU's rise above 1.")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The largest slope, and products over depth
#
# Backpropagation through $L$ layers multiplies the gradient by the slopes of every layer (and by
# the weight matrices: lesson 1). The largest slope bounds what one layer can pass on: the
# sigmoid's is $\sigma'(0) = 1/4$, so 20 sigmoid layers pass at most $4^{-20}$ of the gradient
# through their slopes. The cell below finds each activation's largest slope on a fine grid.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
maxima = lab.derivative_maxima()
for name, (slope, where) in maxima.items():
    print(f"{lab.LABELS[name]:>20s}: largest slope {slope:.4f} at z = {where:+.3f}")
print(f"(1/4)^20 = {0.25 ** 20:.2e}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# The sigmoid's largest slope is $1/4$ (at 0), tanh's and the ReLU family's are 1. GELU's slope
# reaches **1.129** (at $z \approx \sqrt 2$), SiLU's **1.100** (at $z \approx 2.40$) and SELU's
# $\lambda\alpha \approx 1.758$ (just left of 0; $\lambda \approx 1.051$ on the right): a product of
# their slopes is not bounded by 1.
#
# **Question.** The sigmoid can pass at most a quarter of the gradient per layer through its slope.
# Does that alone doom a 20-layer sigmoid network? (Hint: what else multiplies the gradient in each
# layer?)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Finite for every input
#
# $e^{-z}$ overflows for $z < -709.8$ in float64 and for $z < -88.7$ in float32: numpy returns
# `inf` (with a warning), and $e^{-z}/(1 + e^{-z})^2$ becomes `inf/inf = nan`. The value itself
# happens to survive, $1/(1 + \infty) = 0$, but its slope does not. The fix is to never
# exponentiate a positive number: with $e = e^{-|z|} \in (0, 1]$,
#
# $$
# \sigma(z) = \begin{cases} \dfrac{1}{1 + e} & z \ge 0 \\[1ex] \dfrac{e}{1 + e} & z < 0 \end{cases},
# \qquad \sigma'(z) = \frac{e}{(1 + e)^2}.
# $$
#
# Activations built on the sigmoid (SiLU) and on $e^z$ (ELU: use `np.expm1` on $\min(z, 0)$)
# need the same care; `np.tanh` is safe by itself.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
z = np.array([-1000.0, -100.0, 0.0, 100.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(-z) / (1 + np.exp(-z)) ** 2
e = np.exp(-np.abs(z))
print("naive sigma'(z): ", naive)
print("stable sigma'(z):", e / (1 + e) ** 2)
z = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
for name, fn in (("relu", torch.relu), ("leaky_relu", nn.functional.leaky_relu), ("elu", nn.functional.elu)):
    (slope,) = torch.autograd.grad(fn(z).sum(), z)
    print(f"PyTorch's {name:10s} slopes at z = -1, 0, 1: {slope.tolist()}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 1 — `activation_and_grad` (4 points)
#
# Write `activation_and_grad(name, z)`: for a numpy array `z` (float32 or float64, any shape)
# return the pair `(f(z), f′(z))` for `name` in `"sigmoid"`, `"tanh"`, `"relu"`, `"leaky_relu"`
# (slope 0.01), `"elu"` ($\alpha = 1$), `"gelu"` (exact: `erf`, imported above from
# `scipy.special`, or `math.erf`), `"gelu_tanh"` and `"silu"`, using the table above and numpy:
#
# - both arrays have the shape and the **dtype** of `z` (a float32 `z` gives float32 results;
#   `np.where(z > 0, 1.0, 0.01)` is float64 — add `.astype(z.dtype)`);
# - both stay **finite** for every finite `z` — the sigmoid at $z = -1000$ is 0 with slope 0, not
#   `nan`;
# - the slopes at the kinks are PyTorch's: ReLU′(0) = 0, Leaky ReLU′(0) = 0.01, ELU′(0) = 1;
# - an unknown name raises `ValueError`.
#
# The checks compare with the course's reference, which agrees with PyTorch's autograd; one dict of
# small functions, or one `if` per name, is the natural shape for it.

# %% nbgrader={"grade": false, "grade_id": "activation_and_grad", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def activation_and_grad(name, z):
    """(f(z), f'(z)) for an activation name, numpy arrays of z's shape and dtype.

    Args:
        name: "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh" or "silu".
        z: a numpy array of pre-activations (float32 or float64).

    Returns:
        (f(z), f'(z)), both finite for finite z, with PyTorch's slopes at the kinks.
    """
    ### BEGIN SOLUTION
    z = np.asarray(z)
    dtype = z.dtype

    def sigmoid(x):
        e = np.exp(-np.abs(x))  # never overflows
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    if name == "sigmoid":
        s = sigmoid(z)
        f, slope = s, s * (1 - s)
    elif name == "tanh":
        f = np.tanh(z)
        slope = 1 - f * f
    elif name == "relu":
        f, slope = np.maximum(z, 0), (z > 0)
    elif name == "leaky_relu":
        f, slope = np.where(z > 0, z, 0.01 * z), np.where(z > 0, 1.0, 0.01)
    elif name == "elu":
        negative = np.minimum(z, 0)  # exp of a positive z is never computed
        f, slope = np.where(z > 0, z, np.expm1(negative)), np.where(z > 0, 1.0, np.exp(negative))
    elif name == "gelu":
        x = z.astype(np.float64)
        cdf = 0.5 * (1 + erf(x / math.sqrt(2)))
        f, slope = x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    elif name == "gelu_tanh":
        x = np.clip(z.astype(np.float64), -1e6, 1e6)  # beyond, tanh u is ±1 exactly (and x³ stays finite)
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        f = 0.5 * z.astype(np.float64) * (1 + t)
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
    elif name == "silu":
        s = sigmoid(z)
        f, slope = z * s, s * (1 + z * (1 - s))
    else:
        raise ValueError(f"unknown activation {name!r}")
    return np.asarray(f, dtype=dtype), np.asarray(slope, dtype=dtype)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "activation_and_grad_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(activation_and_grad, "activation_and_grad")

# %% nbgrader={"grade": true, "grade_id": "activation_and_grad_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: sigmoid and tanh far out (|z| up to 1000, float32 near its
# overflow at 88.7); ReLU, Leaky ReLU and ELU at and around 0 and far out; GELU, its tanh
# approximation and SiLU far out and in float32; 3-D float32 arrays, and an unknown name.
### BEGIN HIDDEN TESTS
check(activation_and_grad, "activation_and_grad", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Your slopes against autograd.** The cell below runs your function and PyTorch's autograd on
# the same points — a grid, the kinks, their float32 neighbours and far-out values — in float32
# and float64, and prints the largest relative difference per activation.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
points = np.concatenate([np.linspace(-6, 6, 241), [-1e-30, -1e-7, 1e-7, 1e-30, -500.0, 500.0]])
torch_fns = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "leaky_relu": nn.functional.leaky_relu,
             "elu": nn.functional.elu, "gelu": nn.functional.gelu,
             "gelu_tanh": lambda t: nn.functional.gelu(t, approximate="tanh"), "silu": nn.functional.silu}
try:
    for name, fn in torch_fns.items():
        worst = []
        for dtype in (np.float64, np.float32):
            f, slope = activation_and_grad(name, points.astype(dtype))
            t = torch.tensor(points, dtype=torch.float64, requires_grad=True)
            (want,) = torch.autograd.grad(fn(t).sum(), t)
            worst.append(np.max(np.abs(slope - want.numpy()) / (np.abs(want.numpy()) + 1e-6)))
        print(f"{name:10s}: largest relative difference of f' from autograd: float64 {worst[0]:.1e}, "
              f"float32 {worst[1]:.1e}")
except NotImplementedError:
    print("Finish Exercise 1 first (activation_and_grad still raises NotImplementedError).")

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 1.** The largest slopes (grid spacing 5·10⁻⁵): sigmoid 0.2500 at 0,
# tanh 1 at 0, ReLU and Leaky ReLU 1 just right of 0, ELU 1, GELU 1.1289 at $z \approx 1.414$
# (the exact maximum is at $z = \sqrt 2$), its tanh approximation 1.1290, SiLU 1.0998 at
# $z \approx 2.40$, SELU 1.7581 just left of 0. $(1/4)^{20} = 9.1\cdot10^{-13}$. The naive
# $\sigma'$ prints `nan` at $z = -1000$ only: at $-100$ it is still finite in float64
# ($3.7\cdot10^{-44}$), though not in float32, where $e^{100}$ overflows. The exact
# GELU and its tanh approximation differ by at most $4.7\cdot10^{-4}$ (at $z \approx 2.70$).
# Answer to the question: not by itself — the weights multiply the gradient too, and larger weights
# could make up for the quarter; but larger weights push the sigmoid's inputs out where it
# saturates (Section 2), its slopes fall far below 1/4, and Section 4 shows that even at the gain
# that holds its forward variance the squared gradient shrinks about 6.5-fold per layer. The
# autograd cell prints differences at rounding level in float64; in float32 they are largest for
# tanh far out, where $1 - a^2$ of an output rounded to float32 keeps few digits (the checks'
# tolerance allows for it).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Saturation: where the slope vanishes
#
# A forward hook sees a layer's **output** $a = f(z)$, not its input. For the saturating
# activations the slope is a function of the output, which is also how PyTorch's backward of
# `torch.sigmoid` and `torch.tanh` computes it (it saves the output, not the input):
#
# $$
# \sigma'(z) = a\,(1 - a) \le \tfrac14, \qquad \tanh'(z) = 1 - a^2 \le 1, \qquad
# \mathrm{ELU}'(z) = e^z = a + 1 \ \ (z \le 0),
# $$
#
# and the ReLU family's slope is read off the sign of $a$ (ReLU's output is exactly 0 on its flat
# side). We call an entry **saturated** when its slope is below a small fraction `tol` of the
# activation's largest slope — it passes less than `tol` of what the activation can pass. With
# `tol = 0.06` a tanh unit is saturated when $|a| > \sqrt{0.94} = 0.9695$: Karpathy's rule of
# thumb, $|a| > 0.97$ (makemore, part 3).
#
# For $z \sim \mathcal N(0, \sigma^2)$ the fraction follows in closed form: tanh saturates where
# $|z| > \operatorname{artanh}\sqrt{0.94} = 2.0845$, so the fraction is
# $2\,\Phi(-2.0845/\sigma)$. Since $4\,\sigma(z)(1 - \sigma(z)) = 1 - \tanh^2(z/2)$, the sigmoid
# saturates at **twice** tanh's threshold, $|z| > 4.169$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
from scipy.special import ndtr

x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
threshold = math.atanh(math.sqrt(0.94))
for sigma in (1.0, 2.0, 5.0):
    a = np.tanh(sigma * x)
    print(f"sigma = {sigma:g}: tanh saturated {np.mean(1 - a * a < 0.06):.4f} measured, "
          f"{2 * ndtr(-threshold / sigma):.4f} by the formula; sigmoid {2 * ndtr(-2 * threshold / sigma):.4f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Explore: histograms under a pre-activation std
#
# Pick an activation and the std $\sigma$ of its pre-activations $z \sim \mathcal N(0, \sigma^2)$
# (20 000 samples): the left panel shows $f(z)$, the right one $f'(z)$ with the saturation line at
# 6 % of the largest slope; below, the saturated share, $\mathbb E[f(z)^2]$ and $\mathbb E[f'(z)^2]$.
# Questions:
#
# 1. At which $\sigma$ is a third of tanh's entries saturated? And of the sigmoid's?
# 2. Why does ReLU's slope histogram show two bars whatever $\sigma$, and how tall is each?
# 3. GELU's and SiLU's slopes go negative. Below which $z$, and what share at $\sigma = 1$?
# 4. The sigmoid at $\sigma = 0.1$: its outputs are all near 0.5. What is $\mathbb E[f(z)^2]$ —
#    and what does that mean for the next layer (Section 3)?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.HistogramExplorer(activation="tanh", sigma=2.0)
explorer.widget

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 2 and the explorer.** The check cell prints, for tanh, 0.0371 at
# $\sigma = 1$, 0.2973 at 2 and 0.6768 at 5, sample and formula agreeing to within 0.001; the
# sigmoid's formula gives $3.1\cdot10^{-5}$, 0.0371 and 0.4044. Explorer answers:
# (1) tanh reaches a third between $\sigma = 2$ (30 %) and 3 (49 %), the sigmoid between 3 (16 %) and
# 5 (40 %) — the formula puts it at $\sigma = 2.15$ for tanh and twice that, 4.3, for the sigmoid.
# (2) ReLU's slope is exactly 0 or 1: half the entries each, for every $\sigma$ ($z$ is symmetric).
# (3) GELU's slope $\Phi(z) + z\varphi(z)$ is negative for $z < -0.7518$, SiLU's for
# $z < -1.2785$; at $\sigma = 1$ that is 22.6 % and 10.1 % of the entries (the explorer's sample
# shows about the same). (4) $\mathbb E[\sigma(z)^2] \approx 0.2506$: almost all of it is the mean
# $1/2$ squared. The next layer's pre-activation variance is $n\,\mathrm{Var}[w]\,\mathbb E[h^2]$,
# so the sigmoid's mean keeps feeding it even when its input carries no signal.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 2 — `saturation_fraction` (2 points)
#
# Write `saturation_fraction(a, activation, tol=0.06)`: the fraction of the entries of `a` — the
# **outputs** of `activation`, a numpy array or a tensor of any shape — whose slope is below
# `tol` times the activation's largest slope, as a Python float. `activation` is `"sigmoid"`,
# `"tanh"`, `"relu"`, `"leaky_relu"` (slope 0.01) or `"elu"` ($\alpha = 1$). Compute each slope from
# `a` alone, with the formulas above: no inverse function, no activation applied again. (GELU and
# SiLU are left out: they are not monotonic, so their slope is not a function of their output.)

# %% nbgrader={"grade": false, "grade_id": "saturation_fraction", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def saturation_fraction(a, activation, tol=0.06):
    """The share of entries of a = f(z) with f'(z) < tol * max f' (the slope computed from a)."""
    ### BEGIN SOLUTION
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if activation == "sigmoid":
        relative = a * (1 - a) / 0.25
    elif activation == "tanh":
        relative = 1 - a * a
    elif activation == "relu":
        relative = (a > 0).astype(np.float64)
    elif activation == "leaky_relu":
        relative = np.where(a > 0, 1.0, 0.01)
    elif activation == "elu":
        relative = np.where(a > 0, 1.0, a + 1)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    return float(np.mean(relative < tol))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "saturation_fraction_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(saturation_fraction, "saturation_fraction")

# %% nbgrader={"grade": true, "grade_id": "saturation_fraction_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: sigmoid and tanh at other stds (including none saturated);
# ReLU, Leaky ReLU and ELU; tensors, 3-D batches and other tol values.
### BEGIN HIDDEN TESTS
check(saturation_fraction, "saturation_fraction", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Your function on a network.** Forward hooks on the `nn.Tanh` modules of a 6-layer tanh MLP
# (width 256, bias-free, inputs $\mathcal N(0, 1)$) hand each layer's output to your
# `saturation_fraction`, at three weight gains: Var[W] = gain²/fan_in.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def tanh_mlp(gain, depth=6, width=256, seed=0):
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(width, width, bias=False)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(width, width, generator=generator) * gain / math.sqrt(width))
        layers += [linear, nn.Tanh()]
    return nn.Sequential(*layers)


inputs = torch.randn(512, 256, generator=torch.Generator().manual_seed(1))
try:
    for gain in (1.0, 5 / 3, 4.0):
        model, per_layer = tanh_mlp(gain), []
        handles = [m.register_forward_hook(lambda m, i, out: per_layer.append(saturation_fraction(out, "tanh")))
                   for m in model if isinstance(m, nn.Tanh)]
        with torch.no_grad():
            model(inputs)
        for handle in handles:
            handle.remove()
        print(f"gain {gain:.3g}: saturated share per layer " + "  ".join(f"{s:.3f}" for s in per_layer))
except NotImplementedError:
    print("Finish Exercise 2 first (saturation_fraction still raises NotImplementedError).")

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Question.** At gain 4 more than half of the entries are saturated in every layer. What does that
# do to the gradient of the first layer's weights — and why would a larger learning rate not help?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — the hooks cell.** With the reference solution: gain 1 gives 0.037 in layer 1
# (the inputs have variance 1: the formula's 3.7 %) and at most 0.001 after (the variance drains
# away); gain 5/3 gives 0.211 in layer 1 (std 5/3: the formula's $2\Phi(-2.0845\cdot3/5) = 0.211$),
# then 0.10, 0.07 and 0.05–0.06 from layer 4 on; gain 4 gives 0.55–0.61 in every layer. Answer: each
# saturated unit multiplies its share of the backward signal by less than 0.06, so the gradient
# reaching layer 1 is a small, noisy remainder; a larger learning rate scales the update but not
# the slopes — it cannot bring units out of saturation, and its large steps on the unsaturated
# weights push more units into it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The second moment, and the gain it gives
#
# A layer computes $y_i = \sum_{j=1}^{n} W_{ij} h_j$. With independent weights of mean 0,
#
# $$
# \operatorname{Var}[y_i] = \sum_j \mathbb E[W_{ij}^2]\,\mathbb E[h_j^2] = n\,\operatorname{Var}[W]\;\mathbb E[h^2] .
# $$
#
# It is the **second moment** $\mathbb E[h^2]$ that enters, not $\operatorname{Var}[h]$: with
# zero-mean weights, the mean of $h$ does not cancel (He et al. 2015). If the previous layer's
# pre-activations are $z \sim \mathcal N(0, \sigma^2)$ (a sum of many terms: the central limit
# theorem), $\mathbb E[h^2] = \mathbb E[f(z)^2]$ — a property of the activation and of $\sigma$ alone.
#
# - **Piecewise linear**, $f(z) = a z$ for $z > 0$ and $b z$ for $z < 0$: each half-line holds half
#   of $\mathbb E[z^2] = \sigma^2$, so $\mathbb E[f(z)^2] = (a^2 + b^2)\,\sigma^2/2$ — $\sigma^2/2$ for
#   ReLU, $(1 + s^2)\sigma^2/2$ for Leaky ReLU.
# - **ELU and SELU**: from $\mathbb E[e^{tz};\, z < 0] = e^{t^2\sigma^2/2}\,\Phi(-t\sigma)$,
#   $\ \mathbb E[(e^z - 1)^2;\, z < 0] = e^{2\sigma^2}\Phi(-2\sigma) - 2e^{\sigma^2/2}\Phi(-\sigma) + \tfrac12$.
# - **Everything else** (sigmoid, tanh, GELU, SiLU): numerically,
#   $\mathbb E[f(z)^2] = \int_0^\infty \bigl(f(\sigma x)^2 + f(-\sigma x)^2\bigr)\,\varphi(x)\,dx$ — the two
#   half-lines folded onto one, so a kink at 0 sits at the end of the interval, never inside it.
#   `scipy.integrate.quad` does it, or Gauss–Legendre nodes on $[0, 12]$ (beyond 12, $\varphi$ is
#   below $10^{-31}$): 200 of them (`np.polynomial.legendre.leggauss`) reach $10^{-13}$ for every
#   activation here. Gauss–Hermite quadrature over the whole line is fast for smooth $f$ at moderate
#   $\sigma$, but loses accuracy at kinks and for steep functions such as tanh at large $\sigma$.
#
# The cell checks the reference implementation against Monte Carlo with $10^6$ samples, whose own
# error is about $10^{-3}$ relative.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
for name in ("relu", "leaky_relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu"):
    exact = stabletrain.second_moment(name, 2.0)
    sampled = (lab.torch_activation(name, 2.0 * x) ** 2).mean().item()
    print(f"{lab.LABELS[name]:>10s}: E[f(z)^2] at sigma = 2: {exact:.6f}, Monte Carlo {sampled:.6f} "
          f"(relative difference {abs(sampled - exact) / exact:.1e})")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `second_moment` (3 points)
#
# Write `second_moment(activation, sigma)`: $\mathbb E[f(z)^2]$ for $z \sim \mathcal N(0, \sigma^2)$,
# accurate to a relative $10^{-6}$, for `activation` in `"linear"`, `"relu"`, `"leaky_relu"`
# (slope 0.01), `"sigmoid"`, `"tanh"`, `"elu"`, `"selu"` ($\lambda \approx 1.0507$,
# $\alpha \approx 1.6733$: `torch.nn.functional.selu`'s constants), `"gelu"` (exact) and `"silu"`.
#
# - Use the closed form for the piecewise-linear ones; for the others, an integral (the ELU/SELU
#   closed form above is welcome; `from scipy.integrate import quad` if you use quad). Monte Carlo
#   is **not** accurate enough.
# - `sigma` is the standard deviation; $\sigma = 0$ means $z = 0$ exactly: return $f(0)^2$
#   ($1/4$ for the sigmoid).
# - `sigma` may be a float (return a float) or a numpy array (return an array, one value per entry).

# %% nbgrader={"grade": false, "grade_id": "second_moment", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def second_moment(activation, sigma):
    """E[f(z)^2] for z ~ N(0, sigma^2): closed forms where they exist, quadrature otherwise."""
    ### BEGIN SOLUTION
    lam, alpha = 1.0507009873554804934, 1.6732632423543772848
    slopes = {"linear": (1.0, 1.0), "relu": (1.0, 0.0), "leaky_relu": (1.0, 0.01)}

    def sigmoid(z):
        return 0.5 * (1 + np.tanh(z / 2))  # finite everywhere

    functions = {
        "sigmoid": sigmoid,
        "tanh": np.tanh,
        "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        "selu": lambda z: lam * np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))),
        "gelu": lambda z: z * 0.5 * (1 + erf(z / math.sqrt(2))),
        "silu": lambda z: z * sigmoid(z),
    }
    if activation not in slopes and activation not in functions:
        raise ValueError(f"unknown activation {activation!r}")
    # Gauss–Legendre on x in [0, 12] (beyond, the normal density is below 1e-31), both half-lines folded
    # onto it: f(σx)² + f(−σx)², so the kink at 0 is an end of the interval, never inside it
    nodes, weights = np.polynomial.legendre.leggauss(200)
    x, w = 6.0 * (nodes + 1), 6.0 * weights
    density = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def one(s):
        if activation in slopes:
            a, b = slopes[activation]
            return (a * a + b * b) * s * s / 2
        f = functions[activation]
        return float(np.sum(w * density * (f(s * x) ** 2 + f(-s * x) ** 2)))  # σ = 0 gives f(0)²

    if np.ndim(sigma) == 0:
        return one(float(sigma))
    return np.array([one(float(s)) for s in np.asarray(sigma, dtype=np.float64).ravel()]).reshape(np.shape(sigma))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "second_moment_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(second_moment, "second_moment")

# %% nbgrader={"grade": true, "grade_id": "second_moment_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: linear, ReLU and Leaky ReLU (arrays of sigma, a large sigma);
# sigmoid, tanh (sigma = 7.5), ELU, SELU (at its fixed point and elsewhere), GELU and SiLU;
# sigma = 0 and arrays of sigma.
### BEGIN HIDDEN TESTS
check(second_moment, "second_moment", level="hidden")
### END HIDDEN TESTS

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
try:
    for name in ("relu", "tanh", "sigmoid", "selu", "gelu"):
        mine = second_moment(name, 2.0)
        sampled = (lab.torch_activation(name, 2.0 * x) ** 2).mean().item()
        print(f"{lab.LABELS[name]:>8s}: your E[f(z)^2] at sigma = 2: {mine:.6f}, Monte Carlo {sampled:.6f}")
except NotImplementedError:
    print("Finish Exercise 3 first (second_moment still raises NotImplementedError).")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### From the second moment to the gain
#
# Give the weights the variance $\operatorname{Var}[W] = g^2/n$ — the **gain** $g$ multiplies their
# standard deviation. A layer that receives pre-activations of variance $q$ hands the next one
#
# $$
# q' = n \cdot \frac{g^2}{n} \cdot \mathbb E[f(z)^2] = g^2\,\mathbb E[f(z)^2], \qquad z \sim \mathcal N(0, q),
# $$
#
# and keeps the variance where it is, $q' = q$, exactly when
#
# $$
# g = \sqrt{\frac{q}{\mathbb E[f(z)^2]}}\,, \qquad \mathbb E \text{ taken at the standard deviation } \sqrt q .
# $$
#
# For ReLU, $\mathbb E[f(z)^2] = q/2$ whatever $q$, so $g = \sqrt 2$ — Kaiming's gain (He et al.
# 2015). Saturating activations are not homogeneous, so their gain depends on the $q$ you want to
# hold.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 4 — `variance_preserving_gain` (2 points)
#
# Write `variance_preserving_gain(activation, second_moment, q=1.0)`: the gain $g$ above, as a
# Python float. Compute $\mathbb E[f(z)^2]$ by calling the `second_moment` you are given —
# `second_moment(activation, sigma)`, with `sigma` the standard deviation (the checks hand you an
# exact one, so this exercise does not depend on your Exercise 3, and they record how you call it).

# %% nbgrader={"grade": false, "grade_id": "variance_preserving_gain", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def variance_preserving_gain(activation, second_moment, q=1.0):
    """The gain g with Var[W] = g^2/fan_in that keeps a pre-activation variance q fixed."""
    ### BEGIN SOLUTION
    return math.sqrt(q / second_moment(activation, math.sqrt(q)))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "variance_preserving_gain_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(variance_preserving_gain, "variance_preserving_gain")

# %% nbgrader={"grade": true, "grade_id": "variance_preserving_gain_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: the formula for sigmoid, linear (q = 3) and Leaky ReLU; the
# standard deviation √q for GELU, SiLU and tanh at q = 2, 4, 9.
### BEGIN HIDDEN TESTS
check(variance_preserving_gain, "variance_preserving_gain", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Your gains next to PyTorch's.** `torch.nn.init.calculate_gain` gives the gains PyTorch
# recommends (it knows no gain for ELU, GELU or SiLU). The cell uses your two functions, at $q = 1$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
torch_gain = {"relu": nn.init.calculate_gain("relu"), "leaky_relu": nn.init.calculate_gain("leaky_relu"),
              "tanh": nn.init.calculate_gain("tanh"), "sigmoid": nn.init.calculate_gain("sigmoid"),
              "selu": nn.init.calculate_gain("selu")}
try:
    for name in ("relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu", "gelu", "silu"):
        mine = variance_preserving_gain(name, second_moment)
        theirs = f"{torch_gain[name]:.4f}" if name in torch_gain else "—"
        print(f"{lab.LABELS[name]:>10s}: E[f(z)^2] = {second_moment(name, 1.0):.4f}, gain {mine:.4f}   "
              f"PyTorch: {theirs}")
except NotImplementedError:
    print("Finish Exercises 3 and 4 first (a function still raises NotImplementedError).")

# %% [markdown] slideshow={"slide_type": "fragment"}
# ReLU's and Leaky ReLU's gains are PyTorch's. For tanh, PyTorch's 5/3 is larger than the
# 1.593 that holds $q = 1$ (lesson 3: with 5/3 the variance settles a little above 1). For the
# sigmoid PyTorch says 1 where holding $q = 1$ takes 1.846: at gain 1 the pre-activations shrink
# to a variance of about a quarter, where the sigmoid is nearly linear. For SELU, PyTorch's 3/4 differs
# from the 1 that SELU was designed for — PyTorch's own documentation tells you to initialise SELU
# networks with `nonlinearity="linear"`, gain 1 (Section 4 shows why 1).
#
# **Question.** ReLU's gain does not depend on $q$; tanh's does. Why — and which $q$ would you
# choose for tanh?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 3.** The Monte-Carlo cell prints relative differences of a few
# $10^{-4}$ to about $10^{-3}$, the sampling error of $10^6$ draws. The gains at $q = 1$:
# ReLU $\sqrt2 = 1.4142$ ($\mathbb E = 0.5$), Leaky ReLU 1.4141 (0.50005), tanh 1.5925 (0.3943),
# sigmoid 1.8462 (0.2934), SELU 1.0000 (1.0000), ELU 1.2452 (0.6449), GELU 1.5335 (0.4252),
# SiLU 1.6765 (0.3558); PyTorch: 1.4142, 1.4141, 1.6667, 1, 0.75. Answer to the question: ReLU is
# positively homogeneous, $f(cz) = cf(z)$ for $c > 0$, so $\mathbb E[f(z)^2] \propto q$ and $q$
# cancels from $g$; tanh is linear near 0 and bounded far out, so $\mathbb E[\tanh(z)^2]/q$ falls
# with $q$ and the gain grows with it. Choose $q$ where the activation is useful: around 1 tanh is
# neither linear (small $q$) nor saturated (4 % of the entries at $q = 1$, Section 2).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Through depth: slopes multiply, variances find a fixed point (or not)
#
# Backward, layer $l$ computes $\partial L/\partial h_{l-1} = W_l^\top\bigl(\partial L/\partial h_l
# \odot f'(y_l)\bigr)$. Treating the backward weights as independent of the forward signal (exact
# in the wide limit for Gaussian weights — the *gradient independence* assumption), the same
# argument as Section 3 gives, per layer,
#
# $$
# \mathbb E\,\bigl\|\partial L/\partial h_{l-1}\bigr\|^2 = \chi \cdot \mathbb E\,\bigl\|\partial L/\partial h_{l}\bigr\|^2,
# \qquad \chi = g^2\,\mathbb E[f'(z)^2], \quad z \sim \mathcal N(0, q),
# $$
#
# so over $L$ layers the squared gradient changes by $\chi^L$ — lesson 1's slope,
# $\tfrac12\ln\chi$ per layer. At the variance-preserving gain of a piecewise-linear $f$,
# $\mathbb E[f'(z)^2] = (a^2 + b^2)/2$ and $g^2 = q/\mathbb E[f(z)^2] = 2/(a^2 + b^2)$: $\chi = 1$
# exactly. **ReLU at Kaiming's gain keeps the forward variance and the backward one.** For the
# others, holding the forward variance does not hold the backward one. The cell computes $\chi$ at
# $q = 1$ and measures it: 30 bias-free layers of width 256, each activation at the gain of
# Exercise 4, five seeds, in float64.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
depth_sweep = lab.gradient_through_depth()
for name in depth_sweep.grad_sq:
    measured = depth_sweep.per_layer_factor(name)
    print(f"{lab.LABELS[name]:>8s}: gain {depth_sweep.gains[name]:.4f}, chi = {depth_sweep.chi[name]:.4f}; measured "
          f"per-layer factor {measured.min():.4f}-{measured.max():.4f} over the seeds; "
          f"||g_1||^2/||g_30||^2 = {np.median(depth_sweep.grad_sq[name][:, 0]):.3g} (median)")

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
fig = lab.plot_gradient_through_depth(depth_sweep)
fig.set_label("Squared gradient norm per layer relative to the last, log scale, median and range over five "
              "seeds with the mean-field prediction: the sigmoid's falls by 24 orders of magnitude over 30 "
              "layers, tanh's grows about a hundredfold, SELU's sevenfold, ReLU's stays near 1.")
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# Every measured per-layer factor lies within 5 % of its $\chi$, on every seed. The sigmoid, even
# at the gain that holds its forward variance, shrinks the squared gradient by $\chi = 0.153$ per
# layer: about $10^{-24}$ over 29 layers. tanh at its forward gain **grows** it by 1.178 per layer
# (about a hundredfold over the network), SELU by 1.072 (about sevenfold); ReLU keeps it, up to
# the seed-to-seed wander of a finite network.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### SELU's fixed point
#
# Klambauer et al. (2017) chose SELU's two constants so that, with weights of gain 1 (LeCun's
# $\operatorname{Var}[W] = 1/n$), a layer whose pre-activations have variance $q = 1$ hands on
# activations with mean $0$ **and** second moment $1$: $\mathbb E[\mathrm{selu}(z)] = 0$ and
# $\mathbb E[\mathrm{selu}(z)^2] = 1$ at $z \sim \mathcal N(0, 1)$. So $q = 1$ is a fixed point of the
# map $q \mapsto \mathbb E[\mathrm{selu}(z)^2]$, and its slope there is **0.78**: a deviation shrinks
# by about a fifth per layer. ReLU at $\sqrt 2$ has the map $q \mapsto q$: every $q$ is a fixed
# point, the slope is exactly 1 and nothing pulls a deviation back — the fluctuations of a finite
# layer add up from layer to layer (a random walk of $\ln q$, Hanin and Rolnick 2018). The cell
# checks both claims with the reference `second_moment` and measures networks of width 256 fed
# inputs of second moment 0.25, 1 and 4, over five seeds.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
h = 1e-4
selu_map = lambda q: stabletrain.second_moment("selu", math.sqrt(q))  # noqa: E731
print(f"SELU at q = 1: E[selu(z)] = {stabletrain.first_moment('selu', 1.0):.2e}, "
      f"E[selu(z)^2] = {selu_map(1.0):.6f}, slope of the map {(selu_map(1 + h) - selu_map(1 - h)) / (2 * h):.4f}")
fixed = lab.second_moment_through_depth()
for (name, q0), values in fixed.measured.items():
    print(f"{lab.LABELS[name]:>5s} from {q0:4g}: E[y^2] at layer 10 {values[:, 9].min():.3f}-{values[:, 9].max():.3f}, "
          f"at layer 40 {values[:, -1].min():.3f}-{values[:, -1].max():.3f} (mean field "
          f"{fixed.predicted[(name, q0)][-1]:.3f})")

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
fig = lab.plot_fixed_point(fixed)
fig.set_label("Per-layer second moment of the pre-activations over 40 layers, log scale, from three input "
              "scales, median and range over five seeds: SELU's curves all converge to 1; ReLU's stay at "
              "their start on average and spread apart between seeds.")
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# From every start, SELU's second moment is back **within 10 % of 1** by layer 40 on every seed.
# ReLU's stays at its start in the mean field — but a single network's wanders: by layer 40 the
# seeds disagree by a factor of **more than five**. Self-normalisation is a forward property, though:
# SELU's $\chi = 1.072$ still grows the gradient (the figure above). The fixed point also needs
# what the derivation assumed — zero-mean weights of variance $1/n$ and no dropout that changes
# the variance (Klambauer et al. use *alpha dropout* for that reason).
#
# **Question.** In the ReLU panel the median curve stays near the mean field, yet single seeds end
# far from it. Why does averaging over seeds not describe the network you actually train?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 4** (numbers from the cells, seeds 0–4; they vary by a few in the
# last digit on other CPUs). $\chi$: sigmoid 0.1528, tanh 1.1778, ReLU 1, SELU 1.0716; measured
# factors: sigmoid 0.150–0.153, tanh 1.17–1.19, ReLU 0.98–1.02, SELU 1.07–1.08. Predicted
# $\chi^{29}$: $2.2\cdot10^{-24}$, 115, 1, 7.4. The SELU map: mean $\approx 10^{-16}$, second moment
# 1.000000, slope 0.7826. At layer 40, SELU from every start lies between about 0.96 and 1.08;
# ReLU's seeds span about 0.1–1.0 (start 0.25), 0.4–3.8 (start 1) and 1.6–15 (start 4) — a factor
# of about ten (over 15 seeds, too). Answer to the question: each network multiplies its variance by its own random
# per-layer factors, and their logarithms add up like a random walk with a spread that grows as
# $\sqrt{\text{depth}/\text{width}}$; the mean over networks is the mean field, but you train one
# network, not the average. An attracting fixed point (SELU, tanh at its gain) removes the walk.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Dead units
#
# Take unit $j$ of a ReLU layer, $h_j = \max(z_j, 0)$ with $z_j = w_j^\top h_{\text{prev}} + b_j$. If
# $z_j \le 0$ for **every** training example, then $h_j = 0$ and $\mathrm{relu}'(z_j) = 0$ on every
# example, so
#
# $$
# \frac{\partial L}{\partial w_j} = \sum_{\text{examples}} \frac{\partial L}{\partial h_j}\,\mathrm{relu}'(z_j)\,h_{\text{prev}} = 0,
# \qquad \frac{\partial L}{\partial b_j} = 0 ,
# $$
#
# on every minibatch: SGD never moves its incoming weights again. In the **first** hidden layer the
# inputs are the data, which do not change — the unit is **dead for good**. In deeper layers its
# inputs change as the layers below learn, so it can come back. A Leaky ReLU's slope is $s = 0.01$
# on the negative side: a unit that is off for every example still gets $s$ times the gradient —
# **inactive**, but never exactly dead. Large steps kill units: one step that moves $b_j$ far down
# (or $w_j$ away from the data) switches the unit off everywhere.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 5 — `count_dead_neurons` (3 points)
#
# Write `count_dead_neurons(model, data)`: the number of units of `model` that are dead on `data`
# (a batch of shape (N, features)), as an int.
#
# - A unit is one feature of the input of an `nn.ReLU` or `nn.LeakyReLU` module, and it is dead
#   when that input — the pre-activation — is $\le 0$ for **every** example (so also when it is
#   exactly 0: ReLU′(0) = 0).
# - Register **forward hooks** on those modules (`model.modules()` finds them at any depth), run
#   `model(data)` under `torch.no_grad()`, and remove the hooks afterwards, also when something
#   fails (`try`/`finally`).
# - Each *call* of a module is a layer of its own: one `nn.ReLU` object may be applied after
#   several layers in a custom `forward`.
# - Leave the model as it was (its mode, its hooks).

# %% nbgrader={"grade": false, "grade_id": "count_dead_neurons", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def count_dead_neurons(model, data):
    """The number of ReLU/LeakyReLU units whose input is <= 0 for every example of data."""
    ### BEGIN SOLUTION
    alive = []  # one boolean vector per call of an activation module

    def hook(module, inputs, output):
        z = inputs[0]  # an in-place ReLU has overwritten it with max(z, 0): still > 0 exactly where z > 0
        alive.append((z > 0).reshape(z.shape[0], -1).any(dim=0))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        with torch.no_grad():
            model(data)
    finally:
        for handle in handles:
            handle.remove()
    return int(sum(int((~a).sum()) for a in alive))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "count_dead_neurons_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(count_dead_neurons, "count_dead_neurons")

# %% nbgrader={"grade": true, "grade_id": "count_dead_neurons_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: units on for a single example, zero rows, outputs that are
# negative everywhere, deeper networks; nested blocks, one ReLU object used after every layer,
# in-place ReLUs, Leaky ReLU; the function called twice (hooks removed).
### BEGIN HIDDEN TESTS
check(count_dead_neurons, "count_dead_neurons", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Experiment: a burst of too-high learning rate
#
# Spirals (three classes, 600 points), an MLP 2 → 64 → 64 → 64 → 3 with Kaiming-normal weights and
# zero biases, plain SGD on minibatches of 64 for 400 steps, five seeds. The **control** trains at
# learning rate 0.1 throughout. The others take their first 30 steps at **1.75** — the kind of
# mistake a missing warm-up or a learning-rate finder makes — and then go on at 0.1: with ReLU, with
# Leaky ReLU, and with ReLU whose dead units are recycled every 50 steps from step 30 on (Exercise 6
# below). Each setting of a seed starts from the same network and sees the same minibatches. Every
# 10 steps the experiment counts the units that are off for every training example and records
# the loss on the whole training set.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
dead = lab.dead_unit_experiment()
burst = dead.at_step(dead.cfg.burst_steps)
print(f"{dead.units} hidden units; {len(dead.settings) * len(dead.seeds)} networks in {dead.seconds:.1f} s")
for setting in dead.settings:
    i = dead.index(setting)
    print(f"{lab.SETTING_LABELS[setting]:>42s}: off everywhere at step 30 {dead.dead_total(setting)[burst].tolist()}, "
          f"at step 400 {dead.dead_total(setting)[-1].tolist()}; final loss "
          + " ".join(f"{v:.3f}" for v in dead.final_loss(setting)))
print("ReLU after the burst: layer 1's dead set only grew after step 30 on every seed:",
      bool(dead.first_layer_monotone[dead.index("relu")].all()))
print("gradient of the units off everywhere / of the others (median, end of training): ReLU "
      + " ".join(f"{v:.3f}" for v in dead.inactive_grad[dead.index("relu")]) + "; Leaky ReLU "
      + " ".join(f"{v:.3f}" for v in dead.inactive_grad[dead.index("leaky_relu")]))

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
fig = lab.plot_dead_units(dead)
fig.set_label("Two panels over 400 steps, median and range over five seeds: the share of hidden units off for "
              "every example jumps during the 30-step burst and stays for ReLU and Leaky ReLU, drops to near "
              "zero with recycling, and stays low in the control; the loss on the right.")
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the figure** (each number is checked over 15 seeds and other CPUs' arithmetic). The
# control never has more than one unit in seven off everywhere. The burst switches off
# **between a sixth and four fifths** of the hidden ReLUs, and they stay off: in the first layer
# the dead set **only grows** after the burst, on every seed, as the derivation says, and the dead
# units' gradient is **exactly 0**. Leaky ReLU does *not* keep units from switching off — after the
# burst about as many are inactive — but none is dead: each still gets **a few per cent** of the
# gradient of an active unit (1–20 % in our runs), too little to bring most of them back within
# 370 steps. Recycling brings the count **below 2 %** by the end. The loss is the harder
# read: all three burst settings end above the control (median losses 0.06–0.11 against about
# 0.05) — a few bad steps still cost something 370 steps later — but between the burst settings the
# medians differ by less than the seeds do: with this much capacity, the spirals are fitted anyway.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
try:
    x_train, _ = lab.spirals(0)
    for setting in ("control", "relu", "leaky_relu"):
        net = lab.sequential_model(dead, setting, 0)
        print(f"{lab.SETTING_LABELS[setting]:>30s}, seed 0: your count {count_dead_neurons(net, x_train)}, "
              f"the experiment's {int(dead.dead_total(setting)[-1, 0])}")
except NotImplementedError:
    print("Finish Exercise 5 first (count_dead_neurons still raises NotImplementedError).")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Recycling dead units
#
# Sokar et al. (2023, *ReDo*) recycle dead ("dormant") units instead of living with them: draw
# fresh incoming weights for the unit and set its **outgoing** weights to 0. The outgoing weights
# are column $j$ of the next layer's weight $W_{l+1}$, shape (out, in). Right after recycling the
# network computes **the same function**: before, $h_j = 0$ on the data, so column $j$ contributed
# nothing; after, the column is 0, so it contributes nothing either. At the next step the unit,
# now on for some examples, gives column $j$ a gradient $\delta_{l+1} h_j \ne 0$; one step later
# the column is non-zero and the unit's incoming weights learn too. Zero incoming weights would not
# do: they give $z_j = 0$ on every example, where $\mathrm{relu}'(0) = 0$ — still dead.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 6 — `recycle_dead_units_` (3 points)
#
# Write `recycle_dead_units_(model, data)` for an `nn.Sequential` of `nn.Linear` layers, each but
# the last followed by an `nn.ReLU`. For every hidden unit $j$ of Linear layer $l$ that is dead on
# `data` (pre-activation $\le 0$ for every example):
#
# - draw row $j$ of layer $l$'s weight afresh from $U(-1/\sqrt{\text{fan\_in}},\ 1/\sqrt{\text{fan\_in}})$,
#   `nn.Linear`'s default, and set its bias to 0;
# - set column $j$ of the **next** Linear's weight to 0;
# - change the parameters **in place** (under `torch.no_grad()`, write into `layer.weight[...]`):
#   an optimizer holds the Parameter objects;
# - find all dead units first (one forward pass), and never touch the last Linear's outputs:
#   they are not hidden units.
#
# Return the number of units recycled. The checks run your function on networks with planted dead
# units, then train them for a few SGD steps: the outputs must not change when you recycle, and the
# revived units must learn.

# %% nbgrader={"grade": false, "grade_id": "recycle_dead_units", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def recycle_dead_units_(model, data):
    """Re-initialise the dead ReLU units of an nn.Sequential MLP in place; return how many."""
    ### BEGIN SOLUTION
    modules = list(model)
    linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
    with torch.no_grad():
        dead, h = {}, data
        for i, module in enumerate(modules):
            h = module(h)
            if i in linears[:-1]:
                dead[i] = (h <= 0).all(dim=0)
        recycled = 0
        for i, nxt in zip(linears[:-1], linears[1:]):
            mask, layer = dead[i], modules[i]
            k = int(mask.sum())
            if k:
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight[mask] = torch.empty(k, layer.in_features).uniform_(-bound, bound)
                layer.bias[mask] = 0.0
                modules[nxt].weight[:, mask] = 0.0
                recycled += k
    return recycled
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "recycle_dead_units_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(recycle_dead_units_, "recycle_dead_units_")

# %% nbgrader={"grade": true, "grade_id": "recycle_dead_units_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: which units (zero rows, units on for one example, outputs that are
# negative everywhere); recycling many units and deeper networks, each followed by SGD steps.
### BEGIN HIDDEN TESTS
check(recycle_dead_units_, "recycle_dead_units_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your functions in the loop
#
# This cell needs your `count_dead_neurons` and `recycle_dead_units_`. It trains the experiment's
# network for seed 0 as a plain `nn.Sequential` — the same data, initial weights, minibatches and
# learning rates — and recycles with your function every 50 steps after the burst, counting with
# yours. Compare with the batched experiment's "recycled" run above (the fresh weights are drawn
# differently, so the numbers differ a little).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def train_with_recycling(recycle, count, seed=0, cfg=lab.DEAD_CONFIG):
    """The experiment's network for one seed, trained by a plain loop that recycles dead units."""
    x_data, y_data = lab.spirals(seed, cfg)
    model = lab.fresh_model(seed, cfg)
    generator = torch.Generator().manual_seed(7_919 + seed)  # the experiment's minibatches
    log = []
    for step in range(cfg.steps):
        if step >= cfg.burst_steps and (step - cfg.burst_steps) % cfg.recycle_every == 0:
            before = count(model, x_data)
            log.append((step, before, recycle(model, x_data), count(model, x_data)))
        idx = torch.randint(0, len(x_data), (cfg.batch,), generator=generator)
        loss = nn.functional.cross_entropy(model(x_data[idx]), y_data[idx])
        model.zero_grad()
        loss.backward()
        lr = cfg.burst_lr if step < cfg.burst_steps else cfg.lr
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    with torch.no_grad():
        final = nn.functional.cross_entropy(model(x_data), y_data).item()
    return log, count(model, x_data), final


try:
    log, dead_at_end, final_loss = train_with_recycling(recycle_dead_units_, count_dead_neurons)
    for step, before, recycled, after in log:
        print(f"step {step:3d}: {before:3d} dead, {recycled:3d} recycled, {after:3d} dead right after")
    print(f"step 400: {dead_at_end} dead; loss on the training set {final_loss:.3f} "
          f"(batched run: {dead.final_loss('recycled')[0]:.3f})")
except NotImplementedError:
    print("Finish Exercises 5 and 6 first (a function still raises NotImplementedError).")

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Question.** Can a unit with fresh random weights still be off for every example right after
# recycling? In which layer is that more likely?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 5** (seeds 0–4; the counts vary from machine to machine, since a
# burst at a high learning rate is chaotic: the ranges in the prose hold over 15 seeds and the
# avx2/default/jitter runs). Right after the burst the ReLU networks have about 40–125 of their
# 192 hidden units dead, the Leaky ones between half and twice as many inactive; afterwards the
# counts change little (units of layers 2–3 can revive as the layers below change, layer 1's never
# do). The control stays below one unit in seven, about 5 % most of the time. The inactive Leaky
# units' median gradient is 1–20 % of the active ones'. With recycling, fewer than one unit in
# fifteen is dead right after the first recycling (step 30: fresh units born dead, 0–9 of 192 in our
# runs) and 0–2 at the end. Answer to the question: fresh weights
# $w$ make $z = w^\top h$ a random projection of the inputs; in the first layer the inputs point in
# all directions, so some example is almost surely positive, but a deeper unit's inputs are ReLU
# outputs — all non-negative and correlated — so $w^\top h$ can have the same sign for every
# example and the recycled unit is born dead. The next recycling catches it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - The slope multiplies the gradient at every layer: the sigmoid's is at most 1/4, tanh's and the
#   ReLU family's at most 1, GELU's and SiLU's up to 1.13 and 1.10. Compute activations so that
#   they stay finite ($e^{-|z|}$, `expm1` on $\min(z, 0)$) and use PyTorch's slopes at the kinks.
# - A unit is **saturated** when its slope is a small fraction of the largest: for tanh,
#   $|a| > 0.97$. The slope follows from the output — $a(1 - a)$, $1 - a^2$, $a + 1$ — which is what
#   a forward hook (and PyTorch's backward) uses. tanh saturates $2\Phi(-2.08/\sigma)$ of its
#   entries, the sigmoid the same at twice the $\sigma$.
# - The next layer's variance is $n\,\mathrm{Var}[W]\,\mathbb E[f(z)^2]$, the **second moment**;
#   $(a^2 + b^2)\sigma^2/2$ for piecewise-linear $f$, quadrature otherwise. The gain that holds $q$ is
#   $\sqrt{q/\mathbb E[f(z)^2]}$: $\sqrt2$ for ReLU, 1.59 for tanh at $q = 1$, 1 for SELU.
# - Backward, each layer multiplies the squared gradient by $\chi = g^2\,\mathbb E[f'(z)^2]$: exactly 1
#   for ReLU at Kaiming's gain, 0.15 for the sigmoid and 1.18 for tanh at theirs.
# - SELU's $q = 1$ is an **attracting** fixed point (slope 0.78); ReLU's map has slope 1, so a finite
#   network's variance wanders.
# - A ReLU unit that is off for every example gets **no gradient** and, in the first layer, never
#   comes back. Too-high learning rates kill many at once; Leaky ReLU keeps a small gradient;
#   recycling (fresh incoming weights, zero outgoing ones) revives them without changing the
#   network's function.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# Each of these is in the exercises' catalogue: the visible checks or
# `check(fn, "name", level="hidden")` name it when your function makes it.
#
# - **Overflow**: $e^{-z}$ for large negative $z$ (1000 in float64, 89 in float32) turns slopes into
#   `nan`. Use $e^{-|z|}$.
# - **Slopes at the kinks**: ReLU′(0) is 0 in PyTorch (`z > 0`, not `z >= 0`); Leaky ReLU′(0) is the
#   negative slope.
# - **A forgotten product or chain rule**: GELU′ = Φ + zφ (not Φ), SiLU′ = σ + zσ(1 − σ) (not σ),
#   and the tanh approximation's inner $u'$.
# - **A changed dtype**: `np.where(z > 0, 1.0, 0.01)` is float64 for a float32 `z`.
# - **The output taken for the input**: tanh′ = $1 - a^2$ from the output, not $1 - \tanh(a)^2$;
#   the sigmoid's slope is relative to its largest, 1/4.
# - **Variance instead of second moment** in $\mathrm{Var}[y] = n\,\mathrm{Var}[W]\,\mathbb E[h^2]$,
#   and $\sigma$ (std) confused with $q$ (variance) — in `second_moment` and in the gain.
# - **Monte Carlo or a coarse quadrature** where an exact value is asked; a kink inside a
#   quadrature interval.
# - **Dead on one example** is not dead: a unit is dead when it is off for **every** example. Count
#   hidden units only (not the outputs), every call of a shared module, and remove your hooks.
# - **Recycling with zero weights** (the unit stays dead), without zeroing the outgoing column (the
#   outputs jump), with rows for columns, or by assigning new `nn.Parameter`s (the optimizer keeps
#   the old ones).
#
# **References.** X. Glorot, Y. Bengio, *Understanding the difficulty of training deep feedforward
# neural networks*, AISTATS 2010. A. Maas, A. Hannun, A. Ng, *Rectifier nonlinearities improve
# neural network acoustic models*, ICML 2013 workshop (Leaky ReLU). K. He, X. Zhang, S. Ren, J. Sun,
# *Delving deep into rectifiers*, ICCV 2015. D.-A. Clevert, T. Unterthiner, S. Hochreiter, *Fast and
# accurate deep network learning by exponential linear units (ELUs)*, ICLR 2016. D. Hendrycks,
# K. Gimpel, *Gaussian error linear units (GELUs)*, 2016. G. Klambauer, T. Unterthiner, A. Mayr,
# S. Hochreiter, *Self-normalizing neural networks*, NeurIPS 2017 (SELU). S. Elfwing, E. Uchibe,
# K. Doya, *Sigmoid-weighted linear units*, Neural Networks 2018 (SiLU). B. Hanin, D. Rolnick, *How
# to start training: the effect of initialization and architecture*, NeurIPS 2018. L. Lu, Y. Shin,
# Y. Su, G. Karniadakis, *Dying ReLU and initialization*, 2019. G. Sokar, R. Agarwal, P. S. Castro,
# U. Evci, *The dormant neuron phenomenon in deep reinforcement learning*, ICML 2023 (ReDo).
# A. Karpathy, *Building makemore part 3: activations & gradients, BatchNorm* (2022). PyTorch
# documentation of `torch.nn.init.calculate_gain` and `torch.nn.functional.gelu`.
