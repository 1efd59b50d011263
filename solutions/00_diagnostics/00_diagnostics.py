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
# # Lesson 0 — Diagnostics and gradient checking
#
# Before a network can be fixed it has to be seen. This lesson builds the two instruments the rest
# of the course uses. The first checks a **backward pass** against the definition of a derivative:
# if your gradients are wrong, nothing else you measure means anything. The second looks **inside a
# network while it trains**: what every layer's activations look like, how large the gradient is
# that reaches each layer, and how far each optimizer step moves the weights. You will use both on
# two networks that differ only in the scale of their initial weights — one that trains and one
# that never leaves the starting line — and read off, layer by layer, why.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. compare two gradients with a **relative error**, and say what $10^{-2}$, $10^{-4}$ and
#    $10^{-7}$ mean;
# 2. derive the error of **forward and centred differences** (truncation against round-off), pick
#    the step $h$, and explain why a gradient check must run in **float64**;
# 3. check a backward pass, and know where a check lies: at **kinks**, in **float32**, at
#    gradients that should be exactly zero;
# 4. record per-layer **activation statistics with forward hooks** (mean, std, % saturated,
#    % dead) and remove the hooks again;
# 5. read the **four diagnostic plots** of Karpathy's makemore part 3 — activation histograms,
#    activation-gradient histograms, weight gradients with their grad:data ratio, the
#    **update:data ratio** over training with its reference line at $10^{-3}$ — and fast.ai's
#    **heat map** of activation histograms over training;
# 6. explain from them *why* a network does not learn: here, a forward signal that shrinks
#    layer by layer, a backward signal that shrinks toward the input, and steps a thousand times
#    too small — and why **weight-gradient norms alone would have hidden it**;
# 7. log the update:data ratio in a real training loop from the weights **before and after** the
#    step, which is right for every optimizer, unlike $-\eta\,g$.
#
# **How this notebook works.** You write five pieces: `rel_error`, `numerical_gradient`,
# `ActivationStats`, `grad_norms_per_layer` and `train_and_log`. After each one, a test cell calls
# `check(...)`, which runs visible cases and, when one fails, says what was expected, what came
# back and the **likely misconception**. Before handing in, run
# `check(your_function, "name", level="hidden")` yourself in a scratch cell: it runs the same
# *kinds* of cases as the grader (hidden tests), so every mistake in the course's catalogue shows
# up there first. Hidden tests give **partial credit per group of cases** (each group is one
# behaviour, named in the feedback). Every formula is followed by a cell that checks it
# numerically; every number in the prose is checked by a test over the experiment's seeds (and
# over ten seeds this notebook never shows, and under other CPUs' arithmetic). Experiments use the
# course's reference implementation, so they run before you have finished the exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import stabletrain
from stabletrain.data import make_spirals
from stabletrain.exercises import check
from stabletrain.lessons import diagnostics_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are tiny: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Comparing two gradients
#
# A gradient check compares an **analytic** gradient $a$ (what your backward pass computes) with a
# **numerical** one $n$ (what finite differences give). Their absolute difference says little by
# itself: $10^{-6}$ is excellent for entries of size 1 and useless for entries of size $10^{-7}$.
# CS231n's **relative error** divides each difference by the size of the two entries,
#
# $$
# \operatorname{rel}(a, n) = \max_i \frac{|a_i - n_i|}{\max\!\left(10^{-8},\; |a_i| + |n_i|\right)} .
# $$
#
# - It is symmetric, and since $|a_i - n_i| \le |a_i| + |n_i|$ it lies in $[0, 1]$: 1 means an
#   entry of the wrong sign, or one that is 0 in one gradient and not in the other.
# - The **maximum** over entries, not the mean: one wrong entry among a million right ones is a bug.
# - The **floor** $10^{-8}$ makes it safe where both entries are 0 (a zero-initialised bias, a
#   dead unit): $0/0$ would be NaN.
#
# Rules of thumb (CS231n, for float64): above $10^{-2}$ the gradient is probably wrong; $10^{-4}$ is
# uncomfortable for a smooth function (acceptable with kinks); $10^{-7}$ and below is what a
# correct backward pass gives.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
a = np.array([0.0, 1.0, -2.0, 3e-9])
for n, what in ((np.array([0.0, 1.0 + 1e-8, -2.0, 3e-9]), "one entry off by 1e-8"),
                (np.array([0.0, 1.0, 2.0, 3e-9]), "one entry of the wrong sign"),
                (np.array([0.0, 1.0, -2.0, 0.0]), "a tiny entry lost")):
    print(f"{what:28s} rel_error = {stabletrain.rel_error(a, n):.2e}")
assert stabletrain.rel_error(a, a) == 0.0 and stabletrain.rel_error(a, -a) == 1.0

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Question.** The third pair differs by $3\cdot10^{-9}$ in absolute terms, yet its relative error
# is far above the $10^{-4}$ line. Is that a bug in the gradient, a weakness of the measure, or
# both? (Section 3 comes back to it.)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 1 — `rel_error` (2 points)
#
# Write `rel_error(x, y)`, CS231n's relative error above:
#
# - `x` and `y` are arrays (or lists, or numbers) of the **same shape**; compute in float64
#   (`np.asarray(x, dtype=np.float64)`);
# - raise `ValueError` when the shapes differ — a transposed or flattened gradient would otherwise
#   broadcast into a matrix of meaningless differences;
# - return the **largest** elementwise error as one Python `float`;
# - where both entries are 0 the error is 0 (the floor), and a NaN in either gradient gives NaN
#   (`np.max` propagates it; `np.nanmax` would hide it).
#
# Worked example (a visible case): `rel_error([1, 2], [1, 2.2])` $= 0.2/4.2 = 0.0476$.

# %% nbgrader={"grade": false, "grade_id": "rel_error", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def rel_error(x, y):
    """The largest elementwise |x - y| / max(1e-8, |x| + |y|), as a float."""
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error needs arrays of the same shape, got {x.shape} and {y.shape}")
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "rel_error_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(rel_error, "rel_error")

# %% nbgrader={"grade": true, "grade_id": "rel_error_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: the largest elementwise error, symmetric, opposite signs; zeros
# and NaN; scalars, lists and shapes that differ.
### BEGIN HIDDEN TESTS
check(rel_error, "rel_error", level="hidden")
### END HIDDEN TESTS

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 1.** The cell prints 5.00e-09, 1.00e+00 and 3.00e-01
# ($3\cdot10^{-9}/10^{-8}$: the floor). Answer to the question: both. The entry $3\cdot10^{-9}$ is
# lost completely (relative to itself the error is 100 %; the floor brings it to 0.3), so as a
# statement about that entry the alarm is right; but an entry that small next to entries of size 1
# is usually round-off, and CS231n's floor $10^{-8}$ is an absolute number that does not know the
# scale of the gradient. Section 3 shows the same effect with an entry that should be
# exactly 0 and comes out as $10^{-12}$; the grader of Exercise 2 therefore floors the denominator
# at a thousandth of the gradient's largest entry.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Numerical gradients: truncation against round-off
#
# The derivative is a limit, $f'(x) = \lim_{h\to0} (f(x+h) - f(x))/h$; a computer has to stop at
# some $h$. Taylor's theorem says what that costs:
#
# $$
# f(x \pm h) = f(x) \pm h f'(x) + \tfrac{h^2}{2} f''(x) \pm \tfrac{h^3}{6} f'''(x) + O(h^4).
# $$
#
# - The **forward difference** $\dfrac{f(x+h) - f(x)}{h} = f'(x) + \tfrac{h}{2} f''(x) + O(h^2)$
#   has a truncation error of order $h$.
# - The **centred difference** $\dfrac{f(x+h) - f(x-h)}{2h} = f'(x) + \tfrac{h^2}{6} f'''(x) +
#   O(h^4)$: the even terms cancel, and the error is of order $h^2$.
#
# A smaller $h$ is not always better. $f$ is computed with a relative rounding error of about
# $\varepsilon$ (machine epsilon: $2.2\cdot10^{-16}$ in float64, $1.2\cdot10^{-7}$ in float32), so
# each $f(x\pm h)$ is off by about $\varepsilon|f|$, and the difference quotient by about
# $\varepsilon|f|/h$ — **round-off grows as $h$ shrinks**. For the centred difference the total
#
# $$
# E(h) \approx \frac{h^2}{6}|f'''| + \frac{\varepsilon |f|}{h}
# \quad\text{is smallest at}\quad h^\ast = \left(\frac{3\varepsilon|f|}{|f'''|}\right)^{1/3},
# \qquad E(h^\ast) \sim \varepsilon^{2/3}.
# $$
#
# With $|f| \approx |f'''|$: $h^\ast \approx 10^{-5}$ and $E \approx 10^{-11}$ in float64, but
# $h^\ast \approx 7\cdot10^{-3}$ and $E \approx 10^{-5}$ in float32. The forward difference's best is
# $h^\ast \sim \sqrt{\varepsilon}$ with $E \sim \sqrt{\varepsilon}$: about $10^{-8}$ in float64.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
for name, eps in (("float64", np.finfo(np.float64).eps), ("float32", np.finfo(np.float32).eps)):
    print(f"{name}: eps = {eps:.1e}; centred: h* = {(3 * eps) ** (1 / 3):.1e}, best error ~ eps^(2/3) = "
          f"{eps ** (2 / 3):.0e}; forward: h* = {math.sqrt(eps):.1e}, best error ~ {math.sqrt(eps):.0e}")
errors = lab.step_size_errors()
for key in ("centred64", "forward64", "centred32", "forward32"):
    i = int(np.argmin(errors[key]))
    print(f"measured {key:9s}: smallest error {errors[key][i]:.1e} at h = {errors['h'][i]:.0e}; "
          f"at h = 1e-5: {np.interp(-5, np.log10(errors['h']), errors[key]):.0e}")

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
fig = lab.plot_step_size(errors)
fig.set_label("Log-log plot of the relative error of finite-difference derivatives against the step h: "
              "V-shaped curves whose left arm is round-off and right arm truncation; the float64 centred "
              "curve reaches about 1e-11 near h = 1e-5, float32 never goes below about 1e-5.")
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# The curves are the median over 16 points of $f(x) = \tanh(x)\,e^{x/2}$. Right of its minimum each
# curve is truncation: slope 1 for forward differences, slope 2 for centred ones. Left of it,
# round-off: slope $-1$. In float64 the centred difference at $h = 10^{-5}$ is accurate to about
# $10^{-11}$ — four orders of magnitude below the $10^{-7}$ a check asks for — while **no step
# brings float32 much below $10^{-5}$** (its best, near $h = 2\cdot10^{-3}$, is about
# $7\cdot10^{-6}$), and at $h = 10^{-5}$ float32 is off by about $10^{-3}$.
#
# **Question.** A bug that changes a gradient by a relative $2\cdot10^{-5}$ — layer norm's
# $\epsilon$ left out of its backward pass, say. Which of the four curves can see it at $h = 10^{-5}$?

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 2 — `numerical_gradient` (4 points)
#
# Write `numerical_gradient(f, x, h=1e-5)`: the gradient of a scalar function `f` at `x` by
# **centred differences**, one coordinate at a time.
#
# - Work in **float64**: when `x` is a float64 array, perturb **`x` itself, in place** — `f` may
#   ignore its argument and read `x` through a closure, as in CS231n's `f = lambda _: loss(W)`;
#   for any other input (float32, a list) make a float64 copy and perturb that.
# - For every index `i` (`np.ndindex(x.shape)` walks every entry of any shape): remember
#   `old = x[i]`, evaluate `f` at `x[i] = old + h` and at `x[i] = old - h`, **put `old` back**, and
#   store `(f_plus - f_minus) / (2 * h)`. One coordinate per probe; `x` comes back unchanged.
# - Use the `h` you are given; return a float64 array shaped like `x`.
#
# **How it is graded: on what it is for.** The grader hands your function the forward functions of
# backward passes it wrote — correct ones and planted bugs — and flags a backward pass when the
# relative error between its gradient and yours reaches the tolerance ($10^{-6}$ for float64
# inputs, $10^{-3}$ for float32 ones; the denominator is floored at a thousandth of the gradient's
# largest entry instead of $10^{-8}$). Your function earns its points when **every correct backward
# pass passes and every bug is flagged** — among them a bug of relative size about $10^{-5}$, an
# overflow that only float32 inputs meet, a NaN at the kink of $|x|$, and a ReLU probed closer to
# its kink than $10^{-5}$. The visible cases include the worked example $f(x) = \sum x^3$ at
# $x = [1, 2]$: the backward pass $3x^2 = [3, 12]$ must pass and the buggy $3x$ must be flagged.

# %% nbgrader={"grade": false, "grade_id": "numerical_gradient", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def numerical_gradient(f, x, h=1e-5):
    """Centred-difference gradient of the scalar function f at x, in float64.

    Args:
        f: a function of an array, returning a number.
        x: the point; a float64 array is perturbed in place (and restored), anything else copied
            to float64 first.
        h: the step.

    Returns:
        A float64 array shaped like x.
    """
    ### BEGIN SOLUTION
    point = x if isinstance(x, np.ndarray) and x.dtype == np.float64 else np.array(x, dtype=np.float64)
    grad = np.zeros(point.shape, dtype=np.float64)
    for i in np.ndindex(point.shape):
        old = point[i]
        point[i] = old + h
        f_plus = float(f(point))
        point[i] = old - h
        f_minus = float(f(point))
        point[i] = old  # restore before the next probe
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "numerical_gradient_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(numerical_gradient, "numerical_gradient")

# %% nbgrader={"grade": true, "grade_id": "numerical_gradient_hidden", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: smooth functions in float64 (a softmax classifier, a tanh layer,
# layer norm with a 1e-5 bug); float32 inputs (a float32 classifier, sigmoid overflow); kinks (an
# L1 penalty at zeros, a ReLU 3e-6 to 8e-6 from its kink probed with h = 1e-6); x perturbed in place
# and restored (functions that read x through a closure).
### BEGIN HIDDEN TESTS
check(numerical_gradient, "numerical_gradient", level="hidden")
### END HIDDEN TESTS

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 2.** Deterministic (elementwise float arithmetic on fixed inputs):
# the cell prints, for float64, $h^\ast = 8.7\cdot10^{-6}$ and $\varepsilon^{2/3} = 4\cdot10^{-11}$
# (centred), $1.5\cdot10^{-8}$ (forward); for float32 $h^\ast = 7.1\cdot10^{-3}$ and
# $\varepsilon^{2/3} = 2\cdot10^{-5}$. Measured: the centred float64 curve bottoms out at about
# $7\cdot10^{-12}$ near $h = 6\cdot10^{-6}$ and is $2\cdot10^{-11}$ at $h = 10^{-5}$; forward
# float64 $3\cdot10^{-9}$ near $h = 6\cdot10^{-8}$ and $2\cdot10^{-7}$ at $10^{-5}$; float32 centred
# $7\cdot10^{-6}$ at its best ($h \approx 2\cdot10^{-3}$) and $8\cdot10^{-4}$ at $h = 10^{-5}$, forward
# float32 $6\cdot10^{-5}$ at best. Answer to the question: only the centred float64 curve
# (error $10^{-11}$); forward float64 ($2\cdot10^{-7}$) sees it only barely, float32 not at all —
# which is why the grader's layer-norm case catches forward differences and float32 arithmetic.
# Students who cast to float32 "to match the model" fail the float32 group: the step $x + h$ is
# itself rounded to float32, an error of about $\varepsilon|x|/h \approx 1\,\%$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Checking a backward pass — and where a check lies
#
# A two-layer network on the spiral data set (CS231n's), written out by hand: $h = \tanh(XW_1 + b_1)$,
# scores $s = hW_2 + b_2$, loss $L = $ mean cross-entropy of $\operatorname{softmax}(s)$. Its
# backward pass, by the chain rule, with $P = \operatorname{softmax}(s)$ and $Y$ the one-hot labels:
#
# $$
# \frac{\partial L}{\partial s} = \frac{P - Y}{N},\quad
# \frac{\partial L}{\partial W_2} = h^\top \frac{\partial L}{\partial s},\quad
# \frac{\partial L}{\partial h} = \frac{\partial L}{\partial s} W_2^\top,\quad
# \frac{\partial L}{\partial W_1} = X^\top\!\left(\frac{\partial L}{\partial h} \odot (1 - h^2)\right).
# $$

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
X_t, y_t = make_spirals(20, classes=3, seed=0)
X, y = X_t.double().numpy(), y_t.numpy()
rng = np.random.default_rng(0)
params = {"W1": rng.normal(0, 1, (2, 16)), "b1": rng.normal(0, 0.1, 16),
          "W2": rng.normal(0, 0.25, (16, 3)), "b2": np.zeros(3)}


def two_layer_loss(p):
    h = np.tanh(X @ p["W1"] + p["b1"])
    s = h @ p["W2"] + p["b2"]
    s = s - s.max(axis=1, keepdims=True)
    log_p = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean()


def two_layer_backward(p, bug=None):
    h = np.tanh(X @ p["W1"] + p["b1"])
    s = h @ p["W2"] + p["b2"]
    P = np.exp(s - s.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    ds = (P - np.eye(3)[y]) / len(y)
    dh = ds @ p["W2"].T
    dz = dh * (1 - np.tanh(h) ** 2) if bug == "cached output" else dh * (1 - h**2)
    grads = {"W2": h.T @ ds, "b2": ds.sum(axis=0), "W1": X.T @ dz, "b1": dz.sum(axis=0)}
    if bug == "mean":
        grads["b2"] = grads["b2"] * len(y)  # the 1/N forgotten in one place
    return grads


def gradient_check(backward, numerical=stabletrain.numerical_gradient):
    """rel_error of every parameter's analytic gradient against centred differences."""
    analytic = backward(params)
    return {name: stabletrain.rel_error(analytic[name], numerical(lambda _: two_layer_loss(params), params[name]))
            for name in params}


for bug in (None, "cached output", "mean"):
    errors_by_name = gradient_check(lambda p: two_layer_backward(p, bug))
    print(f"{'correct' if bug is None else 'bug: ' + bug:20s}", "  ".join(f"{k} {v:.1e}" for k, v in errors_by_name.items()))

# %% [markdown] slideshow={"slide_type": "fragment"}
# The correct backward pass agrees to better than $10^{-8}$ in every parameter. The two planted
# bugs — $\tanh'$ computed from the cached *output* ($1 - \tanh(h)^2$ instead of $1 - h^2$), and a
# $1/N$ forgotten in one bias — show as relative errors far above $10^{-4}$, **in the parameters
# they touch and not elsewhere**: a check per parameter also says where to look. The cached-output
# bug shows in $W_1$ and $b_1$ only, since $W_2$ and $b_2$ are computed before it.
#
# Three places where a check misleads:
#
# - **Float32.** The same check on the same float64 functions, but with the differences taken in
#   float32, flags the correct backward pass.
# - **Kinks.** $\operatorname{ReLU}(x) = \max(0, x)$ has no derivative at 0; a centred difference
#   that straddles the kink returns an average of the two slopes. Probe closer to a kink than $h$
#   and a correct backward pass fails; use a smaller $h$, or points away from kinks.
# - **Gradients that should be 0.** An entry that is exactly 0 analytically and $10^{-12}$ after
#   rounding has a relative error near 1 with CS231n's floor of $10^{-8}$, although nothing is
#   wrong. Look at the entries behind a large error.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
def float32_differences(f, x, h=1e-5):
    """A checker that works in float32, as a model's parameters are: do not do this."""
    x32 = np.array(x, dtype=np.float32)
    grad = np.zeros(x32.shape)
    for i in np.ndindex(x32.shape):
        old = x32[i]
        x32[i] = old + np.float32(h)
        plus = np.float32(f(x32))
        x32[i] = old - np.float32(h)
        minus = np.float32(f(x32))
        x32[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def float32_loss(p32):
    return lambda w: two_layer_loss({**p32, "W1": w})


p32 = {k: v.astype(np.float32) for k, v in params.items()}
analytic_W1 = two_layer_backward(params)["W1"]
print("float32 differences, correct backward pass: rel_error(W1) =",
      f"{stabletrain.rel_error(analytic_W1, float32_differences(float32_loss(p32), p32['W1'])):.1e}")

relu_sum = lambda v: np.maximum(v, 0.0).sum()  # noqa: E731 — its gradient is 1 where v > 0
near_kink = np.array([3e-6, -0.5, 0.8])
print("ReLU at 3e-6 from its kink, h = 1e-5:", stabletrain.numerical_gradient(relu_sum, near_kink.copy()),
      " h = 1e-7:", stabletrain.numerical_gradient(relu_sum, near_kink.copy(), h=1e-7), " analytic:", (near_kink > 0) * 1.0)

print("an entry that should be 0, after rounding 1e-12: rel_error =",
      f"{stabletrain.rel_error(np.array([0.5, 0.0]), np.array([0.5, 1e-12])):.1e}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# In float32 the correct backward pass scores a relative error of **1**: several of $W_1$'s 32
# entries come out as exactly 0 (their effect on the loss is below float32's resolution at
# $h = 10^{-5}$) and the median entry is off by a few per cent. At $3\cdot10^{-6}$ from the kink the
# centred difference with
# $h = 10^{-5}$ returns $0.65$ instead of 1; with $h = 10^{-7}$ both probes stay on the same side
# and it is exact.
#
# **Question.** You check your own ReLU network at random inputs and one entry of $W_1$'s gradient
# has relative error 0.3 while all others are below $10^{-8}$. Bug or kink? What would you look at?

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your checker at work
#
# This cell checks the two-layer backward pass with **your** `numerical_gradient` and `rel_error`
# (the correct one and the two planted bugs). The numbers should match the ones above.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
try:
    for bug in (None, "cached output", "mean"):
        analytic = two_layer_backward(params, bug)
        mine = {name: rel_error(analytic[name], numerical_gradient(lambda _: two_layer_loss(params), params[name]))
                for name in params}
        print(f"{'correct' if bug is None else 'bug: ' + bug:20s}", "  ".join(f"{k} {v:.1e}" for k, v in mine.items()))
except NotImplementedError as err:
    print(f"Finish Exercises 1 and 2 first: a function you have not written yet raised {type(err).__name__}.")

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 3.** Deterministic (float64 on fixed inputs; the float32 line
# depends on the BLAS's rounding in its last digits): the correct pass prints errors between
# $8\cdot10^{-10}$ ($b_2$) and $7\cdot10^{-9}$ ($W_1$); "cached output" gives 0.71 in $W_1$ and 0.14 in
# $b_1$ and the same tiny numbers as the correct pass in $W_2, b_2$; "mean" gives 0.97 in $b_2$ only
# ($N = 60$: $|60g - g|/(61|g|) = 59/61$). Float32 differences: 1.0 — 6 of the 32 entries of $W_1$'s
# gradient come out as 0, the median entry is 4 % off. The ReLU
# probe returns $[0.65, 0, 1]$ at $h = 10^{-5}$ and $[1, 0, 1]$ at $h = 10^{-7}$. The entry that
# should be 0: rel_error $10^{-4}$ ($10^{-12}/10^{-8}$). Answer to the question: look at that entry's
# input — if the unit's pre-activation is within $h$ of 0 it is a kink (recheck with a smaller $h$
# or at another point); a bug rarely hits a single entry. In the student's cell, a correct
# `numerical_gradient` reproduces the reference's numbers to the digits shown.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Looking inside a network: forward hooks
#
# Now the second instrument. The experiment of this lesson trains two tanh MLPs, $2 \to 64 \to
# \dots \to 64 \to 3$ with five hidden layers, on the spiral data set, with plain SGD (learning rate
# 0.1, batches of 64, 400 steps). Both start from the **same** standard-normal draws, scaled two
# ways:
#
# - **healthy**: standard deviation $\frac{5/3}{\sqrt{\text{fan\_in}}}$ (Kaiming's gain for tanh;
#   the output layer scaled by a further 0.1, as in makemore, so that it starts unsure);
# - **broken**: a fixed standard deviation $0.05$ — Keras' `RandomNormal` default, and the kind of
#   "small random numbers" older tutorials recommend.
#
# First, Karpathy's first check: a classifier with $C$ classes that has learned nothing predicts
# $1/C$ for each, so its loss at initialisation should be $\ln C$ — here $\ln 3 \approx 1.0986$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
d = lab.run_experiment()  # both networks, every seed of lab.SEEDS, trained at once (a few seconds)
for net in lab.NETS:
    losses = d.loss[d.net(net), :, 0]
    print(f"{net:8s} loss at step 0 over the seeds: {losses.min():.4f} to {losses.max():.4f}   (ln 3 = {math.log(3):.4f})")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Both pass: the healthy network starts within 10 % of $\ln 3$, the broken one within $10^{-3}$ of it —
# **for the wrong reason**, as we will see: its output is almost exactly zero whatever the input.
# A loss at init far above $\ln C$ means overconfident logits; one at $\ln C$ is necessary, not
# sufficient.
#
# To see more, we need every layer's output. PyTorch lets you attach a function to a module that
# runs after each of its forward calls, a **forward hook**:
#
# ```python
# handle = module.register_forward_hook(hook)   # hook(module, inputs, output) -> None
# ...                                           # every model(x) now calls hook after module's forward
# handle.remove()                               # and now it no longer does
# ```
#
# `inputs` is the tuple of what went in, `output` what came out. A hook that **returns** something
# replaces the module's output — one that only records must return `None`. Hooks stay until removed:
# forget a handle and the model records (and slows down) for the rest of the session.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
model = lab.make_model("broken", seed=0)
shapes = []
handles = [m.register_forward_hook(lambda mod, inputs, output: shapes.append((type(mod).__name__, tuple(output.shape))))
           for m in model if isinstance(m, nn.Tanh)]
with torch.no_grad():
    model(torch.randn(5, 2))
for h in handles:
    h.remove()
print(model[:2], "...")
print("the hooks saw:", shapes)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What to record
#
# For a layer's output $h$ (a batch of $N$ examples, each a vector of units):
#
# - **mean** and **standard deviation** over all entries (the population std, `correction=0`);
# - **% saturated**: the fraction of entries in the flat tails of the activation. For tanh,
#   $|h| > 0.97$: there $\tanh'(z) = 1 - h^2 < 0.06$, so less than 6 % of the gradient passes. A
#   sigmoid's output lies in $[0, 1]$ and saturates at both ends: map it to $2h - 1$ first;
# - **% dead**: for a ReLU, the fraction of **units** that output $\le 0$ for **every** example of
#   the batch. Such a unit passes no gradient to its weights on this batch; if it stays so on all
#   data, it never recovers. (The fraction of zero *entries* — about half in a healthy ReLU layer —
#   is a different, harmless number.)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `ActivationStats` (3 points)
#
# Write a class `ActivationStats(model, layer_types=(nn.Tanh, nn.Sigmoid, nn.ReLU),
# saturation_threshold=0.97)`:
#
# - on construction, register a forward hook on **every module of `model` that is an instance of
#   `layer_types`** (a class or a tuple of classes), walking `model.named_modules()`;
# - `self.history` is a dict `{layer name: list}` — the name from `named_modules()` (`"1"`, `"3"`,
#   `"0.1"` for nested modules) — and each forward call appends **one record per layer**: a dict
#   with `"mean"`, `"std"`, `"saturated"` and `"dead"` as defined above, each a Python float
#   (`.item()`; a tensor would keep the batch's autograd graph alive);
# - the hook records and returns nothing; `remove()` removes every hook (keep the handles).
#
# "saturated" is graded on tanh and sigmoid layers, "dead" on ReLU layers, mean and std on all;
# with the checks' batch sizes the unbiased std (torch's default) is accepted too. Worked example
# (a visible case): a Tanh after an identity Linear on 128 rows $[3, -3, 0.5, -0.5]$ records mean
# 0, std 0.7758 and saturated 0.5 at each call.

# %% nbgrader={"grade": false, "grade_id": "ActivationStats", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
class ActivationStats:
    """Forward hooks that record mean, std, % saturated and % dead of chosen layers' outputs."""

    def __init__(self, model, layer_types=(nn.Tanh, nn.Sigmoid, nn.ReLU), saturation_threshold=0.97):
        ### BEGIN SOLUTION
        self.threshold = saturation_threshold
        self.history = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, layer_types):
                self.history[name] = []
                self.handles.append(module.register_forward_hook(self._make_hook(name)))
        ### END SOLUTION

    def _make_hook(self, name):
        ### BEGIN SOLUTION
        def hook(module, inputs, output):
            h = output.detach()
            centred = 2 * h - 1 if isinstance(module, nn.Sigmoid) else h
            units = h.reshape(h.shape[0], -1)
            self.history[name].append({
                "mean": h.mean().item(),
                "std": h.std(correction=0).item(),
                "saturated": (centred.abs() > self.threshold).float().mean().item(),
                "dead": (units <= 0).all(dim=0).float().mean().item(),
            })

        return hook
        ### END SOLUTION

    def remove(self):
        ### BEGIN SOLUTION
        for handle in self.handles:
            handle.remove()
        self.handles = []
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "ActivationStats_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(ActivationStats, "ActivationStats")

# %% nbgrader={"grade": true, "grade_id": "ActivationStats_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: statistics per layer and per call; saturation of tanh and
# sigmoid, dead ReLU units and another threshold; hooks that are removable, leave the output alone
# and keep no autograd graph; only the layer types asked for, by name, nested modules, float32.
### BEGIN HIDDEN TESTS
check(ActivationStats, "ActivationStats", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your hooks at initialisation
#
# **Your** `ActivationStats` on three networks of the same shape at step 0: the broken one, the
# healthy one, and for contrast a ReLU network whose biases start at $-1$ (a classic way to kill
# units). Compare the columns: which statistic tells each problem?

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
relu_model = lab.make_model("healthy", seed=0)
relu_model = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.Tanh) else m for m in relu_model])
with torch.no_grad():
    for m in relu_model:
        if isinstance(m, nn.Linear):
            m.bias.fill_(-1.0)
x0, _ = lab.make_batches(seed=0, steps=1)[0]
try:
    for name, net in (("broken", lab.make_model("broken", 0)), ("healthy", lab.make_model("healthy", 0)),
                      ("ReLU, bias -1", relu_model)):
        stats = ActivationStats(net)
        with torch.no_grad():
            net(x0)
        stats.remove()
        print(f"{name:14s}" + " | ".join(f"{layer}: std {r[0]['std']:.4f} sat {r[0]['saturated']:.0%} dead {r[0]['dead']:.0%}"
                                       for layer, r in stats.history.items()))
except NotImplementedError as err:
    print(f"Finish Exercise 3 first: a function you have not written yet raised {type(err).__name__}.")

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 4.** Loss at step 0 over seeds 0–4: healthy 1.11–1.17 (1.03–1.17
# over the 15 seeds of the tests: within 7 % of ln 3), broken 1.0986–1.0988 (within $10^{-3}$). The hook
# cell prints `[('Tanh', (5, 64))] × 5`. With the reference solution, the last cell prints for the
# broken network stds 0.031, 0.011, 0.0043, 0.0017, 0.0007 (nothing saturated, "dead" 0 % for tanh:
# a std that small still has both signs); the healthy one stds 0.46–0.61, 1–5 % saturated; the
# ReLU network with biases −1 has 47, 80, 100, 100, 100 % of its units dead (over seeds 0–14: a
# third to a half of layer 1's, 70–94 % of layer 2's, 98–100 % of layer 3's, all of layers 4 and
# 5's, whose std is 0). Answer: the std column shows the broken network's
# collapse, the dead column the ReLU's, the saturated column would show a tanh network with too
# large weights. Seeds, data and machines barely move these numbers (the tests check the ranges on
# 15 seeds and three CPU arithmetics).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The four diagnostic plots
#
# The experiment recorded, for every network and seed, the statistics of your `ActivationStats`
# and histograms of every hidden layer every 5 steps (computed for the ten networks at once rather
# than with hooks), the activation gradients $\partial L/\partial h_l$, the weight gradients, and the
# size of every step. First the outcome: the broken network learns **nothing** in 400 steps.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
for net in lab.NETS:
    final = d.final_loss(net)
    print(f"{net:8s} loss over the last 50 steps, per seed: " + ", ".join(f"{v:.4f}" for v in final))
fig = lab.plot_loss(d)
fig.set_label("Training loss over 400 steps, median and range over five seeds: the healthy network falls to "
              "about 0.03, the broken one stays on the ln 3 line.")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Plot 1: activations per layer
#
# The histograms of the tanh outputs at step 0 (median over the seeds). The healthy network keeps
# a broad distribution in every layer, standard deviation between 0.35 and 0.7, with a few per cent
# saturated. The broken network's activations **collapse toward 0, layer by layer**.
#
# The variance formula of lesson 3 predicts how fast: a pre-activation $z_l = W_l h_{l-1}$ with
# independent weights of variance $\sigma_w^2$ has $\operatorname{Var} z_l = n_{l-1}\,\sigma_w^2
# \operatorname{Var} h_{l-1}$, and $\tanh z \approx z$ for small $z$. With $n = 64$ and
# $\sigma_w = 0.05$, each layer multiplies the standard deviation by $\sqrt{64}\cdot0.05 = 0.4$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
std0 = d.act_std[:, :, 0]  # (network, seed, layer) at step 0
for net in lab.NETS:
    print(f"{net:8s} activation std per layer (median over seeds):",
          np.array2string(np.median(std0[d.net(net)], axis=0), precision=4))
ratios = std0[d.net("broken"), :, 1:] / std0[d.net("broken"), :, :-1]
print(f"broken: std(layer l+1) / std(layer l) from {ratios.min():.2f} to {ratios.max():.2f}; "
      f"predicted sqrt(64) * 0.05 = {math.sqrt(64) * 0.05:.2f}")
fig = lab.plot_activation_histograms(d, step=0)
fig.set_label("Histograms of the tanh outputs of the five hidden layers at step 0: broad for the healthy "
              "network, a spike at zero that narrows with depth for the broken one.")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Plot 2: activation gradients per layer
#
# The backward pass runs the same product the other way: $\partial L/\partial h_{l-1} = W_l^\top
# \left(\partial L/\partial h_l \odot \tanh'(z_l)\right)$, and with $\tanh' \approx 1$ near 0 each
# layer multiplies the gradient's standard deviation by the same $0.4$ — **toward the input**. The
# histograms show $\log_{10}|\partial L/\partial h_l|$, so a factor of 0.4 is a shift of 0.4 to the
# left per layer.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
g0 = d.act_grad_std[:, :, 0]
for net in lab.NETS:
    print(f"{net:8s} activation-gradient std per layer (median):",
          "  ".join(f"{v:.1e}" for v in np.median(g0[d.net(net)], axis=0)))
back = g0[d.net("broken"), :, :-1] / g0[d.net("broken"), :, 1:]
print(f"broken: std(layer l) / std(layer l+1) from {back.min():.2f} to {back.max():.2f}; layer 1 gets "
      f"1/{1 / np.median(g0[d.net('broken'), :, 0] / g0[d.net('broken'), :, 4]):.0f} of what layer 5 gets")
fig = lab.plot_gradient_histograms(d, step=0)
fig.set_label("Histograms of log10 of the activation gradients of the five hidden layers at step 0: stacked "
              "together for the healthy network, shifted left layer by layer for the broken one.")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Plot 3: weight gradients and the grad:data ratio
#
# What the optimizer sees is not $\partial L/\partial h_l$ but the weight gradient
# $\partial L/\partial W_l = (\partial L/\partial z_l)^\top h_{l-1}$: a **backward** factor that
# shrinks toward the input times a **forward** factor that shrinks toward the output. In the broken
# network the two cancel (Glorot and Bengio's observation): the weight gradients of layers 2–5 have
# nearly the **same size** — within a factor 1.6 of each other — although the backward signal
# differs 25- to 50-fold between layer 1 and layer 5. A plot of weight-gradient norms alone would show four level layers and hide the mechanism.
# The legend gives makemore's **grad:data ratio**, $\operatorname{std}(\partial L/\partial W)
# / \operatorname{std}(W)$: about $10^{-2}$ in the healthy network's hidden layers, below
# $10^{-3}$ in the broken one's. (The healthy output layer's large ratio comes from its weights
# having been scaled down by 0.1.)

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
fig = lab.plot_weight_gradients(d)
fig.set_label("Histograms of log10 of the weight gradients of the six weight matrices at step 0, with "
              "grad:data ratios: the broken network's hidden layers 2 to 5 lie on top of each other.")
fig

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
w0 = d.weight_grad_std[:, :, 0, 1:5]  # hidden layers 2-5 at step 0
spread = w0.max(axis=2) / w0.min(axis=2)
print(f"weight-gradient std, largest / smallest of layers 2-5: broken {spread[d.net('broken')].min():.2f} to "
      f"{spread[d.net('broken')].max():.2f}, healthy {spread[d.net('healthy')].min():.2f} to "
      f"{spread[d.net('healthy')].max():.2f}")
fig = lab.plot_layer_profile(d, step=0)
fig.set_label("Per-layer standard deviations at step 0 on a log scale: activations, activation gradients and "
              "weight gradients; in the broken network activations fall and activation gradients rise with "
              "depth while weight gradients stay level.")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 4 — `grad_norms_per_layer` (2 points)
#
# Write `grad_norms_per_layer(model)`: after `loss.backward()`, return a dict
# `{parameter name: 2-norm of its gradient}` with one entry per parameter tensor, named as in
# `model.named_parameters()` (`"0.weight"`, `"0.bias"`, …), each a Python float. Parameters whose
# `.grad` is `None` (frozen, or not used by the forward pass) are **left out** — a frozen layer
# has no gradient, which is not the same as a gradient of norm 0.

# %% nbgrader={"grade": false, "grade_id": "grad_norms_per_layer", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def grad_norms_per_layer(model):
    """{name: ||grad||_2} for every parameter of model that has a gradient."""
    ### BEGIN SOLUTION
    return {name: torch.linalg.vector_norm(p.grad).item()
            for name, p in model.named_parameters() if p.grad is not None}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "grad_norms_per_layer_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(grad_norms_per_layer, "grad_norms_per_layer")

# %% nbgrader={"grade": true, "grade_id": "grad_norms_per_layer_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: norms per parameter by name (deeper models, no biases, large
# losses); parameters without a gradient left out (frozen layers, unused layers); nested modules,
# float32 and an infinite gradient.
### BEGIN HIDDEN TESTS
check(grad_norms_per_layer, "grad_norms_per_layer", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Your** `grad_norms_per_layer` on the broken network's first minibatch, next to the norms of the
# activation gradients, which need a hook of another kind — a **tensor** hook,
# `h.register_hook(fn)`, called with $\partial L/\partial h$ during `backward()`:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
model = lab.make_model("broken", seed=0)
x0, y0 = lab.make_batches(seed=0, steps=1)[0]
act_grads = []


def watch_gradient(module, inputs, output):
    output.register_hook(lambda grad: act_grads.append(grad.norm().item()))  # called with dL/dh in backward()


hooks = [m.register_forward_hook(watch_gradient) for m in model if isinstance(m, nn.Tanh)]
F.cross_entropy(model(x0), y0).backward()
for hook in hooks:
    hook.remove()
try:
    norms = grad_norms_per_layer(model)
    print("weight-gradient norms:     ", "  ".join(f"{norms[f'{2 * i}.weight']:.1e}" for i in range(5)))
    print("activation-gradient norms: ", "  ".join(f"{v:.1e}" for v in reversed(act_grads)), "(layers 1 to 5)")
except NotImplementedError as err:
    print(f"Finish Exercise 4 first: a function you have not written yet raised {type(err).__name__}.")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Plot 4: the update:data ratio over training
#
# The last plot asks the question that decides whether a layer learns: **how far does each step
# move its weights, relative to their size?** With $\Delta W$ the change one optimizer step makes,
#
# $$
# \text{update:data} = \log_{10} \frac{\operatorname{std}(\Delta W)}{\operatorname{std}(W)},
# \qquad \text{for plain SGD}\quad \Delta W = -\eta\, \frac{\partial L}{\partial W}.
# $$
#
# Karpathy's rule of thumb puts healthy training near $-3$: each step changes the weights by
# about a thousandth. Far above, the steps are large relative to the weights (unstable); far below,
# the layer learns too slowly to matter.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
ud = d.log10_update[:, :, 100:, 1:5]  # steps 100-399, hidden layers 2-5
print(f"healthy, layers 2-5: median log10 update:data over steps 100-399 per seed and layer from "
      f"{np.median(ud[d.net('healthy')], axis=1).min():.2f} to {np.median(ud[d.net('healthy')], axis=1).max():.2f}")
print(f"broken,  layers 2-5: every step of every seed between {d.log10_update[d.net('broken'), :, :, 1:5].min():.2f} "
      f"and {d.log10_update[d.net('broken'), :, :, 1:5].max():.2f}")
fig = lab.plot_update_ratio(d)
fig.set_label("log10 of the update to weight ratio of every weight matrix over training, median and range over "
              "five seeds, with a dashed line at -3: the healthy network's hidden layers settle near -3, the "
              "broken network's stay near -4.2.")
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# The healthy network's hidden layers start near $-3$; from step 100 on, the median ratio of each
# of layers 2–5 lies between $-3.6$ and $-2.8$ on every seed. The broken network's hidden layers sit
# **below $-3.5$ at every step** — around $-4.2$: every step
# moves them by less than a ten-thousandth of their size, and 400 steps are not enough to leave the
# starting point. All four plots point at the same cause, the scale of the initial weights, and the
# healthy network — the same draws, scaled by $(5/3)/\sqrt{64} \approx 0.21$ instead of 0.05 — is
# the fix.
#
# **Question.** The broken network's first weight matrix and its output layer sit higher, near
# $-3.4$. Why are these two different from layers 2–5? (Look at what each multiplies.)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The colorful dimension: histograms over training
#
# fast.ai's "colorful dimension" stacks a layer's activation histogram at every step side by side:
# time runs left to right, the activation value bottom to top, brightness is the count. A healthy
# layer is a broad band that changes slowly; a layer that saturates grows bright rows at $\pm1$; a
# collapsed layer is **one bright line at 0**, from the first step to the last.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
fig = lab.plot_heatmap(d, seed_index=0)
fig.set_label("Heat maps of activation histograms over 400 steps for the five hidden layers: broad bands for "
              "the healthy network (top row), a single bright line at zero for every layer of the broken one.")
fig

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 5** (seeds 0–4; the tests check every range on 15 seeds and on the
# avx2, default and jittered arithmetics. This experiment is not chaotic: another CPU's arithmetic or
# a 1e-6 jitter of the initial weights moves these numbers by about one part in a million; what
# varies is the seed, and the ranges below are over seeds).
#
# - Final loss (mean of the last 50 steps): healthy 0.023–0.031, broken 1.097–1.099 (15 seeds:
#   0.021–0.034 and 1.096–1.099). The broken minibatch loss never leaves $\ln 3 \pm 0.03$.
# - Activation std at step 0: healthy 0.43–0.63 in every layer; broken 0.029, 0.012, 0.0045,
#   0.0017, 0.0007 (medians); layer-to-layer ratio 0.35–0.45 against the predicted 0.40 (layer 1 is
#   fed the 2-D input, std of $x$ about 0.5). Saturation: at most 5 % in the healthy network at step
#   0 (8 % at the end), exactly 0 in the broken one.
# - Activation gradients: broken, each layer gets 0.36–0.46 of the next one's; layer 1 about 1/35 of
#   layer 5. Healthy: layer 1 gets 2.7–4 times what layer 5 gets (5/3 slightly over-compensates the
#   tanh slope in the backward direction).
# - Weight gradients, layers 2–5: within a factor 1.35 of each other in the broken network (1.55 in
#   the healthy one). grad:data at step 0: healthy hidden layers 0.007–0.016, broken 0.0004–0.0008.
# - Update:data, layers 2–5: healthy medians (steps 100–399) −3.43 to −2.94 per seed and layer;
#   broken between −4.55 and −3.59 at every step. Answer to the question: $\Delta W_1 \propto x^\top
#   \delta_1$ multiplies the input, which is not shrunk ($x$ has std 0.5, not 0.03), and $\Delta
#   W_{\text{out}} \propto h_5^\top\,\partial L/\partial s$ multiplies the full-size output gradient;
#   layers 2–5 multiply one shrunken factor from each side.
# - A larger learning rate is not the fix: with `lab.train_batch(cfg=lab.Config(lr=1.5))` (the
#   15-fold that would lift −4.2 to −3) both networks diverge to losses around 30 within 400 steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The update:data ratio in a real training loop
#
# Plain SGD's update is $-\eta g$, so makemore computes the ratio as $\eta\operatorname{std}(g)/
# \operatorname{std}(W)$. For every other optimizer that formula is wrong:
#
# - **momentum** steps along a running sum of past gradients, $\Delta W = -\eta v_t$ with
#   $v_t = \mu v_{t-1} + g_t$: up to $1/(1-\mu) = 10$ times $\eta g$;
# - **Adam** divides each coordinate by the root of its running mean square: its steps are about
#   $\eta$ per coordinate **whatever the gradient's size**, so $\operatorname{std}(\Delta W) \approx
#   \eta$ even where $\eta\operatorname{std}(g)$ is a millionth of that;
# - **weight decay** adds $-\eta\lambda W$ to every step.
#
# The update is what `optimizer.step()` did: copy the weights before the step, subtract them after.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
model = lab.make_model("broken", seed=0)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x0, y0 = lab.make_batches(seed=0, steps=1)[0]
F.cross_entropy(model(x0), y0).backward()
W = model[4].weight  # hidden layer 3
before = W.detach().clone()
g = W.grad.detach().clone()
optimizer.step()
measured = math.log10(((W.detach() - before).std() / W.detach().std()).item())
shortcut = math.log10((1e-3 * g.std() / W.detach().std()).item())
print(f"Adam, lr 1e-3, broken network, W3: measured log10 update:data = {measured:.2f}; "
      f"from lr * grad: {shortcut:.2f}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Adam moves the broken network's weights by about **two hundredths** of their size in its first
# step, not the millionth that $\eta g$ suggests: the shortcut is off by more than four orders of
# magnitude. (Adam's per-coordinate scaling is also why it starts to train the broken network where
# SGD does not — it rescues the step size, not the vanished forward signal.)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 5 — `train_and_log` (3 points)
#
# Write `train_and_log(model, optimizer, loss_fn, batches)`: train `model` for one optimizer step
# per `(x, y)` in `batches` and log, at every step,
#
# - the loss of the step (computed before its update) as a float;
# - for every parameter that trains (`p.requires_grad`) and is a weight matrix (`p.ndim >= 2` —
#   biases start at 0, where the ratio is meaningless), the
#   $\log_{10}\bigl(\operatorname{std}(W_\text{after} - W_\text{before}) /
#   \operatorname{std}(W_\text{after})\bigr)$ of the step, measured from the weights **before and
#   after** `optimizer.step()` (a `.clone()` before; `p.detach()` alone shares memory with `p`).
#
# Each step: `optimizer.zero_grad()`, forward, `loss_fn(model(x), y)`, `backward()`, `step()`.
# Return `(losses, ratios)`: a list of floats and a dict `{name: list of floats}` with the names
# of `model.named_parameters()`. The checks use plain SGD, momentum, Adam, AdamW and weight decay;
# dividing by the weights' std before the step instead of after is accepted.

# %% nbgrader={"grade": false, "grade_id": "train_and_log", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def train_and_log(model, optimizer, loss_fn, batches):
    """One optimizer step per (x, y) in batches; return (losses, {name: log10 update:data per step})."""
    ### BEGIN SOLUTION
    watched = {name: p for name, p in model.named_parameters() if p.requires_grad and p.ndim >= 2}
    losses, ratios = [], {name: [] for name in watched}
    for x, y in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        before = {name: p.detach().clone() for name, p in watched.items()}
        optimizer.step()
        losses.append(loss.item())
        with torch.no_grad():
            for name, p in watched.items():
                ratios[name].append(math.log10(((p - before[name]).std() / p.std()).item()))
    return losses, ratios
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "train_and_log_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(train_and_log, "train_and_log")

# %% nbgrader={"grade": true, "grade_id": "train_and_log_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests, graded per group: the update of momentum, AdamW and SGD with weight decay; one step
# per batch with zero_grad and the loss before the step (five steps, cross-entropy, a deeper
# model); which parameters are logged (frozen layers left out).
### BEGIN HIDDEN TESTS
check(train_and_log, "train_and_log", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your functions in the loop
#
# **Your** `train_and_log` trains the healthy and the broken network of seed 0 for 150 steps with
# plain SGD (the experiment's minibatches), while **your** `ActivationStats` watches the tanh
# layers. Then the same broken network with Adam. Compare the ratios with the −3 line, and the last
# layer's activation std with the first's.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def run_mine(net, optimizer_class, lr, steps=150):
    model = lab.make_model(net, seed=0)
    stats = ActivationStats(model, layer_types=nn.Tanh)
    losses, ratios = train_and_log(model, optimizer_class(model.parameters(), lr=lr), F.cross_entropy,
                                   lab.make_batches(seed=0, steps=steps))
    stats.remove()
    first, last = stats.history["1"][-1]["std"], stats.history["9"][-1]["std"]
    med = "  ".join(f"{np.median(v[50:]):.2f}" for v in ratios.values())
    print(f"{net:8s} {optimizer_class.__name__:4s} loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}; "
          f"activation std layer 1 {first:.3f}, layer 5 {last:.4f}; median log10 update:data W1..W6: {med}")


try:
    run_mine("healthy", torch.optim.SGD, 0.1)
    run_mine("broken", torch.optim.SGD, 0.1)
    run_mine("broken", torch.optim.Adam, 1e-3)
except NotImplementedError as err:
    print(f"Finish Exercises 3 and 5 first: a function you have not written yet raised {type(err).__name__}.")

# %% [markdown] slideshow={"slide_type": "fragment"}
# With SGD the broken network's loss does not move in 150 steps and its hidden layers' ratios stay
# near $-4.2$. With Adam the same network's loss falls (to 0.7–0.8 after 150 steps) and its layer-5
# activations grow to the healthy network's size — Adam's steps are about $\eta = 10^{-3}$ per
# weight, a fiftieth of the broken weights' standard deviation 0.05, which the update:data ratio
# (near $-2.4$) shows and $\eta g$ would not.

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 6** (the tests check these ranges on seeds 0–14 and the avx2,
# default and jittered arithmetics; the arithmetic moves them by about 1e-5 at most, the seed by
# the ranges given). The Adam cell prints a measured ratio of −1.71 against −6.22
# from the shortcut (−1.71 to −1.69 and −6.33 to −6.11 over the seeds). With the reference
# solutions the loop cell prints, for seed 0: healthy SGD loss 0.87 → 0.04 (over 15 seeds the mean
# of the last 10 steps is 0.04–0.40: 150 steps is early, and some seeds are still on a plateau),
# hidden ratios −2.7 to −3.2 (−3.4 to −2.4 over the seeds); broken SGD loss 1.099 → 1.098, layer-5 std 0.005, ratios −4.1 to −4.2
# (−4.4 to −4.0 over the seeds); broken Adam loss 1.096 → 0.74 (0.68–0.78), layer-5 std 0.39
# (0.35–0.47), ratios −2.3 to −2.5. Discuss: Adam "fixes" the size of the update, not the
# initialisation — the forward signal at step 0 is the same collapsed one — and the update:data plot
# is how you would notice Adam taking steps of 2 % of the weights. A student whose printed ratios
# sit near −7 used $-\eta g$ with Adam.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Explore
#
# Every run is already trained; the explorer only redraws. Pick a hidden layer and a step: the top
# row shows that layer's heat map for both networks with the step marked, the bottom row its
# activation histogram and its activation-gradient histogram at that step (median over the
# seeds), and the line below the picture the numbers.
#
# 1. At step 0, how many decades apart are the two networks' activation gradients in layer 1, and
#    in layer 5?
# 2. Follow the healthy network's layer 5 over training: do its activations saturate? Is that a
#    problem here?
# 3. The healthy network's activation gradients grow during the first 100 steps, layer 1's the
#    most. Is that an exploding gradient? (Compare with the loss and the update:data ratio.)
# 4. Is there any step at which the broken network's layer 3 looks different from step 0?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.DiagnosticsExplorer(d, layer=1, step=0)
explorer.widget

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — explorer answers** (medians over seeds 0–4).
#
# 1. Layer 1: the broken network's activation-gradient std is $1.8\cdot10^{-5}$ against
#    $8.7\cdot10^{-4}$ (healthy) — 1.7 decades; layer 5: $6.7\cdot10^{-4}$ against $2.8\cdot10^{-4}$ —
#    the broken one is *larger* (the healthy output layer starts scaled by 0.1). The size is not the
#    point, the trend is: level in the healthy network (3 times larger at layer 1 than at layer 5),
#    falling 35-fold toward the input in the broken one.
# 2. Yes, a little: layer 5 of the healthy network has at most 4–10 % of its units saturated at
#    any step (by seed), visible as bright rows near ±1 in the heat map; the loss keeps falling, so
#    it is no problem — a few per cent is normal, tens of per cent would be a warning.
# 3. No. The output layer's weights grow from their ×0.1 start, so every $\partial L/\partial h$
#    grows with them (layer 1: $8.7\cdot10^{-4}$ at step 0, $7.4\cdot10^{-3}$ at step 100), and the
#    tanh slopes let layer 1 get about 15 times what layer 5 gets by step 100. Meanwhile the loss
#    falls from 1.1 to 0.07 and the update:data ratios stay near −3: in a five-layer network this
#    is harmless; in a fifty-layer one the same factor per layer would compound (lessons 1, 5, 6).
# 4. No: the bright line at 0 never moves. Its std grows by 10–80 % over 400 steps (by seed), from
#    0.004 to below 0.01.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - Compare gradients with the **relative error**, the max over entries of
#   $|a-n|/\max(10^{-8}, |a|+|n|)$: about $10^{-7}$ or less for a correct float64 backward pass,
#   above $10^{-2}$ for a wrong one.
# - **Centred differences** have error $O(h^2)$, forward ones $O(h)$; round-off adds
#   $\varepsilon|f|/h$. In float64, $h = 10^{-5}$ gives about $10^{-11}$; in float32 no step gets
#   much below $10^{-5}$. Check in float64, perturb one coordinate at a time and restore it.
# - A check misleads at **kinks** (probe farther from them than $h$), in **float32**, and at entries
#   that should be exactly 0; a bug shows in the parameters it touches.
# - **Forward hooks** (`register_forward_hook`, return `None`, keep the handle, `remove()`) record
#   per-layer mean, std, % saturated (tanh: $|h| > 0.97$) and % dead (ReLU units off for the whole
#   batch); **tensor hooks** (`h.register_hook`) see $\partial L/\partial h$.
# - The four plots: activation histograms, activation-gradient histograms, weight gradients with
#   grad:data, and $\log_{10}$ update:data over steps (healthy near $-3$). The heat map shows a whole
#   training run per layer.
# - A network whose weights are too small shrinks its forward signal and its backward signal by the
#   same factor per layer ($\sqrt{n}\,\sigma_w = 0.4$ here); the **weight** gradients of the hidden
#   layers stay level and hide it, the **activation** gradients and the update:data ratio show it.
# - The update is what the optimizer did, $W_\text{after} - W_\text{before}$; $-\eta g$ is right for
#   plain SGD only.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# Each of these is in the exercises' catalogue: the visible checks or
# `check(fn, "name", level="hidden")` name it when your function makes it.
#
# - **A relative error without the floor** (0/0 = NaN at zero gradients), with the **mean** instead
#   of the max, or with **`np.nanmax`**, which hides a NaN gradient.
# - **Forward differences**, or centred ones **divided by $h$** instead of $2h$.
# - **A gradient check in float32**, or one that **copies `x`** when `f` reads it through a
#   closure, or **does not restore** each coordinate, or **ignores the step `h`** it is given.
# - **A forward hook that reads `inputs[0]`** (the pre-activation) instead of `output`, or that
#   **returns a value** (it replaces the output), or that stores **tensors** (the autograd graph
#   of every batch stays alive).
# - **"Dead" as the fraction of zero entries** instead of units that are off for the whole batch;
#   `h < 0` instead of `h <= 0` for a ReLU; a sigmoid's saturation tested without mapping it to
#   $2h - 1$.
# - **Hooks never removed** (`remove()` that forgets handles): they keep recording and slow every
#   forward pass.
# - **Reading weight-gradient norms as the backward signal**: level weight gradients can hide
#   vanishing activation gradients.
# - **The update as $-\eta g$** with momentum, Adam or weight decay; **`before = p.detach()`**
#   without `.clone()` (it changes with `p`, so the update is 0); a natural log where the −3 line
#   is log10.
#
# **References.** A. Karpathy, *Building makemore Part 3: Activations & Gradients, BatchNorm*
# (2022), for the four plots and the loss-at-init check. CS231n, *Neural Networks Part 3* and
# assignment 1–2, for gradient checking and `rel_error`. J. Howard, S. Gugger, fast.ai course
# part 2 (2022), lesson 16, `10_activations`, for hooks and the "colorful dimension". X. Glorot,
# Y. Bengio, *Understanding the difficulty of training deep feedforward neural networks*, AISTATS
# 2010. K. He et al., *Delving Deep into Rectifiers*, ICCV 2015. PyTorch documentation of
# `register_forward_hook` and `Tensor.register_hook`.
