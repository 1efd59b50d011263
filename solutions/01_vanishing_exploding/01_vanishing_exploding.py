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
# # Lesson 1 — Vanishing and exploding gradients
#
# Backpropagation multiplies. The gradient that reaches the first layer of a deep network is the
# gradient at the output multiplied by one factor per layer — a weight matrix and an activation's
# slope. A product of fifty factors is almost never of moderate size: if the typical factor is
# 0.8 the product is $0.8^{50} \approx 10^{-5}$, if it is 1.2 the product is $10^{4}$. The first
# layers then either stop learning (**vanishing** gradients) or take wild steps (**exploding**
# gradients). This lesson measures that product, predicts it from a formula, and shows which
# knob — weight scale, activation, depth — sets it.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. backpropagate through a deep MLP **by hand** in numpy and report the gradient norm at every
#    layer — and say which mistakes (a forgotten $f'$, $f'$ at the wrong place, a transposed
#    matrix) change which numbers;
# 2. explain why the sigmoid's slope $\sigma' \le 1/4$ makes 20 sigmoid layers at the usual
#    weight scale shrink a gradient by more than $4^{-20} \approx 10^{-12}$;
# 3. treat $\ln\|g\|$ through random layers as a **random walk** and predict its drift and spread;
# 4. predict the **slope of $\ln\|g\|$ per layer** from the per-layer gain
#    $n\,\sigma_w^2\,\mathbb E[f'(z)^2]$, and check the prediction against measurements over
#    depth × activation × weight scale;
# 5. compute the **singular values of the input–output Jacobian**, the full picture of what a deep
#    network does to every direction of a gradient;
# 6. monitor per-layer gradient norms **inside a training loop**, tell the activation gradients
#    (which show the trend with depth) from the weight gradients (which show a level), and pick a
#    weight scale that trains.
#
# **How this notebook works.** You implement four functions: `backprop_grad_norms`,
# `log_grad_slope`, `jacobian_singular_values` and `grad_norm_monitor`. After each, a test cell
# runs visible checks that explain what went wrong (expected, got, and the likely misconception);
# hidden checks grade more cases — run them yourself with `check(fn, "name", level="hidden")`
# before handing in. The experiments use the course's reference implementations, so they run even
# before you have finished the exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math

import numpy as np
import torch

import stabletrain
from stabletrain.exercises import check
from stabletrain.lessons import vanishing_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are small: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The sigmoid's slope is at most 1/4
#
# The logistic sigmoid $\sigma(z) = 1/(1 + e^{-z})$ has the derivative
#
# $$
# \sigma'(z) = \frac{e^{-z}}{(1 + e^{-z})^2} = \sigma(z)\,\bigl(1 - \sigma(z)\bigr).
# $$
#
# With $s = \sigma(z) \in (0, 1)$, the product $s(1-s)$ is largest at $s = 1/2$, i.e. at $z = 0$:
# $\sigma'(z) \le \tfrac14$, with equality only at $z = 0$, and it decays like $e^{-|z|}$ on both
# sides. Every sigmoid layer multiplies the gradient by its slopes — **at most a quarter** —
# and the cell below checks the bound and the formula numerically.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
z = np.linspace(-10, 10, 200_001)
s = 1 / (1 + np.exp(-z))
numerical = np.gradient(s, z)  # centred differences
print(f"max sigma'(z) on the grid = {numerical.max():.10f} at z = {z[numerical.argmax()]:+.4f}")
print(f"largest |sigma(1 - sigma) - numerical derivative| = {np.abs(s * (1 - s) - numerical).max():.1e}")
assert abs(numerical.max() - 0.25) < 1e-9 and np.abs(s * (1 - s) - numerical).max() < 1e-8

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_sigmoid_derivative()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What 20 sigmoid layers do
#
# Write the network as $y_l = h_{l-1}W_l^\top$, $h_l = \sigma(y_l)$ (rows are examples), and
# $g_l = \partial\mathcal L/\partial h_l$. The chain rule gives
# $g_{l-1} = (g_l \odot \sigma'(y_l))\,W_l$, so
#
# $$
# \|g_{l-1}\| \le \tfrac14\,\|W_l\|_2\,\|g_l\|
# \qquad\Longrightarrow\qquad
# \frac{\|g_0\|}{\|g_{20}\|} \le \prod_{l=1}^{20} \tfrac14\|W_l\|_2 .
# $$
#
# A gradient can only survive if the weights make up the factor 4 at every layer. With the usual
# scale $\sigma_w = 1/\sqrt n$, a random $n\times n$ matrix has $\|W\|_2 \approx 2$, so the bound alone
# allows a shrinkage of $2^{-20} \approx 10^{-6}$. The cell backpropagates a random gradient through
# 20 sigmoid layers of width 64 for 8 seeds, and splits every backward step
# $g_{l-1} = \delta_l W_l$ into the two factors of the bound: the **slope factor**
# $a_l = \|\delta_l\|/\|g_l\| \le \tfrac14$ (what $\sigma'$ does) and the **stretch**
# $b_l = \|\delta_l W_l\|/\|\delta_l\| \le \|W_l\|_2$ (what the matrix does). Then exactly
#
# $$
# \frac{\text{bound}}{\text{truth}} = \underbrace{\prod_l \frac{\|W_l\|_2}{b_l}}_{\text{from the weights}}
# \;\underbrace{\prod_l \frac{1/4}{a_l}}_{\text{from the slopes}} .
# $$

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
chain = lab.sigmoid_chain(depth=20)
print("||g_0|| / ||g_20|| per seed:", np.array2string(chain["ratio"], precision=2))
print("bound prod ||W_l||/4:       ", np.array2string(chain["bound"], precision=2))
print(f"(1/4)^20 = {0.25 ** 20:.2e}")
print("gap from the weights, prod ||W_l||_2 / b_l:", np.array2string(chain["weight_gap"], precision=1))
print("gap from the slopes,  prod (1/4) / a_l:    ", np.array2string(chain["slope_gap"], precision=2))
print(f"per layer: ||W_l||_2 = {chain['spectral'].min():.2f}..{chain['spectral'].max():.2f}, "
      f"stretch b_l = {chain['stretch'].min():.2f}..{chain['stretch'].max():.2f} (geometric means); "
      f"median sigma' = {np.median(chain['median_slope']):.3f}, at most {chain['below_0_2'].max():.0%} of them below 0.2")
assert np.all(chain["ratio"] <= chain["bound"])
assert np.allclose(chain["bound"] / chain["ratio"], chain["weight_gap"] * chain["slope_gap"])

# %% [markdown] slideshow={"slide_type": "fragment"}
# On every seed the gradient at the input is below $4^{-20} \approx 9\times10^{-13}$ of the
# gradient at the output, though the bound allows about $10^{-6}$. The gap is the **weights**, not
# the slopes. The bound charges every layer its largest stretch $\|W_l\|_2 \approx 1.94$, but a
# random matrix stretches a typical direction by its RMS gain $\sqrt{n\sigma_w^2} = 1$ (the
# measured $b_l$ is within 5 % of 1): over 20 layers that is a factor of about $10^{6}$. The slopes
# cost only a factor of 3 to 5, because the pre-activations stay near 0 and most $\sigma'$ are just
# under $\tfrac14$ (median 0.24, more than 85 % of them above 0.2). The first layers of a 20-layer sigmoid network do not
# learn, and at the usual weight scale it is the $\tfrac14$ per layer — not a few bad units — that
# does it: $4^{-20}$ is all the slopes allow even at their best.
#
# **Question 1.** Could larger weights rescue the sigmoid network? (Think about what larger
# weights do to the pre-activations $y_l$, and where $\sigma'$ is small.)

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 1.** The grid check prints max σ′ ≈ 0.2499999998 at z = 0 (the
# centred difference's own error) and an agreement of the closed form with it to about 2e-9. The
# 20-layer chain gives ‖g₀‖/‖g₂₀‖ ≈ 2–3·10⁻¹³ on all 8 seeds, against a bound ∏‖W_l‖/4 ≈ 5·10⁻⁷ and
# (1/4)²⁰ ≈ 9.1·10⁻¹³. The split: from the weights ×4–10·10⁵ (‖W_l‖₂ ≈ 1.92–1.98 against a
# stretch of 0.97–1.02, geometric means per network), from the slopes ×3.3–4.2 (median σ′ 0.241–0.243,
# 6–10 % of the σ′ below 0.2), over 18 seeds and the CPU variants the tests run. A common
# wrong explanation is "most slopes are far below 1/4": here they are not, and the truth is still
# 10⁶ times below the bound. Over the seeds and CPUs the tests run these move little (see the
# claims file); the per-seed values differ by seed, not by machine.
# *Answer to Question 1:* only partly. Larger weights (σ_w = c/√n) raise every layer's stretch —
# the RMS gain c — but also spread the pre-activations, so more units sit in the flat tails where
# σ′ ≈ 0; the sweep of Section 5 shows
# the sigmoid's slope per layer stays negative at every scale tried (from −2.1 at c = 0.5 to
# −0.5 at c = 4 per layer). The fix is a different activation (lesson 2) or a normalization that
# keeps y_l near 0 (lesson 5).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Backpropagation by hand
#
# The network of this lesson: weights $W_l$ of shape $(n_l, n_{l-1})$ — PyTorch's `(out, in)` —,
# biases $b_l$, an activation $f$ applied elementwise, and a batch of inputs $x$ of shape
# $(B, n_0)$:
#
# $$
# h_0 = x, \qquad y_l = h_{l-1} W_l^\top + b_l, \qquad h_l = f(y_l), \qquad l = 1, \dots, L.
# $$
#
# $y_l$ is the **pre-activation**, $h_l$ the **post-activation**. The gradient at the output,
# $G = \partial\mathcal L/\partial h_L$ of shape $(B, n_L)$, is given. Backward, with $g_L = G$,
# for $l = L, L-1, \dots, 1$:
#
# $$
# \delta_l = \frac{\partial\mathcal L}{\partial y_l} = g_l \odot f'(y_l), \qquad
# \frac{\partial\mathcal L}{\partial W_l} = \delta_l^\top h_{l-1}, \qquad
# g_{l-1} = \frac{\partial\mathcal L}{\partial h_{l-1}} = \delta_l\, W_l .
# $$
#
# Three places to go wrong: $f'$ is taken at the **pre**-activation $y_l$ (or written with the
# output, $\sigma' = h(1-h)$, $\tanh' = 1 - h^2$, which is the same number); the weight gradient
# pairs $\delta_l$ with the layer's **input** $h_{l-1}$; and in this row convention the backward
# product is $\delta_l W_l$, not $\delta_l W_l^\top$ (check the shapes: $(B, n_l)\,@\,(n_l, n_{l-1})$).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 1 — `backprop_grad_norms` (3 points)
#
# Write `backprop_grad_norms(weights, biases, x, grad_output, activation)` in numpy:
#
# - `weights`: a list of $L$ arrays, `weights[l-1]` of shape $(n_l, n_{l-1})$; `biases`: a list of
#   $L$ arrays of shape $(n_l,)$; `x`: $(B, n_0)$; `grad_output`: $G$, $(B, n_L)$;
#   `activation`: `"linear"`, `"sigmoid"`, `"tanh"` or `"relu"` (with $\mathrm{relu}'(0) = 0$);
# - return a pair of float arrays of shape $(L,)$, **in layer order** (entry $l-1$ is layer $l$):
#   `input_grad_norms[l-1]` $= \|\partial\mathcal L/\partial h_{l-1}\|_F$, the gradient arriving at
#   layer $l$'s input (entry 0: the gradient with respect to $x$), and
#   `weight_grad_norms[l-1]` $= \|\partial\mathcal L/\partial W_l\|_F$;
# - the loss is $\mathcal L = \sum G \odot h_L$: sum over the batch, do not average.
#
# Write the backward pass yourself, in numpy: that is the exercise (autograd would compute the
# same numbers without you; the cell after the checks shows how to compare with it). Allowed: any numpy
# or torch code of your own. Switched off while grading — a call raises — are only the course's
# answer keys (`stabletrain.backprop_grad_norms` and the other exercises' functions) and
# autograd's ready-made Jacobians (`torch.autograd.functional.jacobian`, `torch.func.jacrev`,
# `torch.func.jacfwd`). `np.linalg.norm(M)` of a matrix is its Frobenius norm;
# `np.linalg.norm(M, 2)` is its largest singular value, a different number.

# %% nbgrader={"grade": false, "grade_id": "backprop_grad_norms", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def backprop_grad_norms(weights, biases, x, grad_output, activation):
    """Gradient norms at every layer of an MLP, by manual backpropagation.

    Args:
        weights: list of L arrays, weights[l-1] of shape (n_l, n_{l-1}).
        biases: list of L arrays, biases[l-1] of shape (n_l,).
        x: input batch, shape (B, n_0).
        grad_output: dL/dh_L, shape (B, n_L).
        activation: "linear", "sigmoid", "tanh" or "relu".

    Returns:
        (input_grad_norms, weight_grad_norms): two arrays of shape (L,), layer order;
        input_grad_norms[l-1] = ||dL/dh_{l-1}||_F, weight_grad_norms[l-1] = ||dL/dW_l||_F.
    """
    ### BEGIN SOLUTION
    def f_and_fprime(y):
        if activation == "sigmoid":
            s = 1 / (1 + np.exp(-y))
            return s, s * (1 - s)
        if activation == "tanh":
            t = np.tanh(y)
            return t, 1 - t**2
        if activation == "relu":
            return np.maximum(y, 0), (y > 0).astype(float)
        return y, np.ones_like(y)

    hs, fprimes = [np.asarray(x, dtype=float)], []
    for W, b in zip(weights, biases):
        h, d = f_and_fprime(hs[-1] @ W.T + b)
        hs.append(h)
        fprimes.append(d)
    L = len(weights)
    input_norms, weight_norms = np.zeros(L), np.zeros(L)
    g = np.asarray(grad_output, dtype=float)
    for l in range(L, 0, -1):
        delta = g * fprimes[l - 1]
        weight_norms[l - 1] = np.linalg.norm(delta.T @ hs[l - 1])
        g = delta @ weights[l - 1]
        input_norms[l - 1] = np.linalg.norm(g)
    return input_norms, weight_norms
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "backprop_grad_norms_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(backprop_grad_norms, "backprop_grad_norms")

# %% nbgrader={"grade": true, "grade_id": "backprop_grad_norms_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: deep sigmoid and tanh networks, ReLU and linear networks, layers of different
# widths, saturated units (large biases and weights), one layer with one example.
### BEGIN HIDDEN TESTS
check(backprop_grad_norms, "backprop_grad_norms", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# Does the hand-written backward pass agree with autograd? The cell runs the course's reference
# `stabletrain.backprop_grad_norms` and PyTorch's autograd on the same 6-layer tanh network
# (replace it with your own function to test yours the same way).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
rng = np.random.default_rng(0)
widths = [5, 8, 8, 8, 8, 8, 3]
Ws = [rng.normal(0, 1 / math.sqrt(a), size=(b, a)) for a, b in zip(widths[:-1], widths[1:])]
bs = [rng.normal(0, 0.1, size=b) for b in widths[1:]]
x, G = rng.normal(size=(4, widths[0])), rng.normal(size=(4, widths[-1]))

tW = [torch.tensor(W, requires_grad=True) for W in Ws]
hs = [torch.tensor(x, requires_grad=True)]
for W, b in zip(tW, bs):
    hs.append(torch.tanh(hs[-1] @ W.T + torch.tensor(b)))
    hs[-1].retain_grad()
hs[-1].backward(torch.tensor(G))
autograd_inputs = np.array([h.grad.norm().item() for h in hs[:-1]])
autograd_weights = np.array([W.grad.norm().item() for W in tW])

mine_inputs, mine_weights = stabletrain.backprop_grad_norms(Ws, bs, x, G, "tanh")
print("||dL/dh_(l-1)||:", np.array2string(mine_inputs, precision=4))
print("rel_error vs autograd: inputs", stabletrain.rel_error(mine_inputs, autograd_inputs),
      " weights", stabletrain.rel_error(mine_weights, autograd_weights))
assert stabletrain.rel_error(mine_inputs, autograd_inputs) < 1e-12
assert stabletrain.rel_error(mine_weights, autograd_weights) < 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Products of random matrices: the log-norm is a random walk
#
# Leave the activation out for a moment: $v_l = W_l v_{l-1}$ with Gaussian $W_l$, entries of variance
# $\sigma_w^2$. Because a Gaussian matrix looks the same in every rotated basis, $\|W u\|^2$ for
# any unit vector $u$ is $\sigma_w^2$ times a chi-squared variable with $n$ degrees of freedom, and
# it is independent of everything before. So
#
# $$
# \ln\|v_L\| = \ln\|v_0\| + \sum_{l=1}^{L} \xi_l, \qquad
# \xi_l = \tfrac12\ln\!\left(\sigma_w^2\chi^2_n\right) \ \text{iid}:
# $$
#
# **the log-norm is a random walk.** Its steps have mean and variance (digamma $\psi$, trigamma
# $\psi'$, from $\mathbb E\ln\chi^2_n = \psi(n/2) + \ln 2$ and $\operatorname{Var}\ln\chi^2_n = \psi'(n/2)$)
#
# $$
# \mu = \tfrac12\bigl(\ln(2\sigma_w^2) + \psi(n/2)\bigr) \approx \tfrac12\ln(n\sigma_w^2) - \frac{1}{2n},
# \qquad s^2 = \tfrac14\psi'(n/2) \approx \frac{1}{2n} .
# $$
#
# After $L$ layers: mean $L\mu$, standard deviation $s\sqrt L$. Two lessons in one formula. The
# drift $\tfrac12\ln(n\sigma_w^2)$ is zero exactly when $\sigma_w^2 = 1/n$ — the *scale* decides
# between vanishing and exploding. And even at that scale, a single network's gradient wanders
# by $\sqrt{L/(2n)}$ in log-space: deep **and** narrow networks are lottery tickets.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
walks = lab.random_walk(width=16, depth=50, samples=1000, scale=1.0, seed=0)
mu, s2 = lab.random_walk_prediction(width=16, scale=1.0)
steps = np.diff(walks, axis=1)
print(f"per layer: predicted mean {mu:+.4f}, measured {steps.mean():+.4f};  "
      f"predicted variance {s2:.4f}, measured {steps.var():.4f}")
print(f"after 50 layers: predicted mean {50 * mu:+.2f} and std {math.sqrt(50 * s2):.2f}; "
      f"measured {walks[:, -1].mean():+.2f} and {walks[:, -1].std():.2f}")
assert abs(steps.mean() - mu) < 4 * math.sqrt(s2 / steps.size) and abs(steps.var() / s2 - 1) < 0.05

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_random_walk(walks, width=16, scale=1.0)

# %% [markdown] slideshow={"slide_type": "fragment"}
# With $n = 16$ the drift is $-0.032$ per layer — from the $-1/(2n)$ term alone — and the spread
# after 50 layers is about $\pm 1.3$ in $\ln$, a factor of $e^{1.3} \approx 3.7$ either way for one
# network. The median path follows the predicted line, and the band widens like $\sqrt l$.
#
# **Question 2.** By how much does the width $n$ have to grow to halve the spread after 50 layers?

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 3.** With n = 16, 1000 draws: predicted step mean −0.0319 and
# variance 0.0333; measured within 4 standard errors and 5 % (the cell asserts it). After 50
# layers: predicted mean −1.60 and std 1.29. *Answer to Question 2:* the standard deviation is
# $\sqrt{L\,\psi'(n/2)/4} \approx \sqrt{L/(2n)}$, so halving it takes a 4× wider network (n = 64).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The per-layer gain, and the slope of $\ln\|g\|$
#
# Now put the activation back, with iid weights of variance $\sigma_w^2$ in a network of width
# $n$. One backward step is $g_{l-1} = (g_l \odot f'(y_l))\,W_l$; each entry of $g_{l-1}$ sums $n$
# terms $W_{ij}\,\delta_i$. Treating the weights of the backward pass as independent of the
# forward quantities (exact for wide networks, the usual "gradient independence" assumption),
#
# $$
# \mathbb E\|g_{l-1}\|^2 = \underbrace{n\,\sigma_w^2\,\mathbb E\!\left[f'(z)^2\right]}_{r_l,\ \text{the per-layer gain}}\,\mathbb E\|g_l\|^2,
# \qquad z \sim \mathcal N(0, q_l),
# $$
#
# where $q_l = \operatorname{Var} y_l$ is the variance of the layer's pre-activations. The *norm*
# changes by $\sqrt{r_l}$, so $\ln\|g\|$ changes per layer travelled backward by
#
# $$
# \boxed{\;s_l = \tfrac12\ln\!\left(n\,\sigma_w^2\,\mathbb E[f'(z)^2]\right),\quad z\sim\mathcal N(0,q_l)\;}
# \qquad
# \ln\|g_{L-k}\| \approx \ln\|g_L\| + \sum_{\text{the } k \text{ layers}} s_l .
# $$
#
# Negative $s$: vanishing; positive: exploding. The factor $\mathbb E[f'(z)^2]$ is where the
# activation enters: 1 for a linear layer, exactly $\tfrac12$ for ReLU (half the units pass the
# gradient unchanged, half block it — whatever $q$), and for tanh and sigmoid it depends on how
# spread out $z$ is: near 1 and near $1/16$ respectively for small $q$, smaller for large $q$.
# With $\sigma_w = c/\sqrt n$ the gain is $c^2\,\mathbb E[f'(z)^2]$: **ReLU is flat at $c = \sqrt2$**
# (Kaiming's scale, lesson 3), tanh near $c = 1$ for small $q$, and the sigmoid would need
# $c \approx 4$ — where its pre-activations are so spread that $\mathbb E[\sigma'^2]$ has dropped.
# Below, $q_l$ comes from the forward recursion $q_l = c^2\,\mathbb E[f(z)^2]$,
# $z\sim\mathcal N(0, q_{l-1})$ (Section 5 uses it; lesson 3 derives it).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 2 — `log_grad_slope` (2 points)
#
# Write `log_grad_slope(weight_std, width, activation, preact_var=1.0)` returning the float
# $s = \tfrac12\ln\bigl(n\,\sigma_w^2\,\mathbb E[f'(z)^2]\bigr)$ with $z\sim\mathcal N(0, q)$,
# $n$ = `width`, $\sigma_w$ = `weight_std`, $q$ = `preact_var` — natural log, the change of
# $\ln\|g\|$ per layer going backward. For `"linear"` and `"relu"` use the closed forms; for
# `"sigmoid"` and `"tanh"` compute the expectation numerically, accurate to about $10^{-4}$:
# Gauss–Hermite quadrature is the tool (`x, w = np.polynomial.hermite_e.hermegauss(100)` gives
# $\mathbb E[u(z)] \approx \sum_i w_i\,u(\sqrt q\,x_i)/\sqrt{2\pi}$; its sibling
# `np.polynomial.hermite.hermgauss` has the weight $e^{-x^2}$ and needs
# $\sum_i w_i\,u(\sqrt{2q}\,x_i)/\sqrt{\pi}$ instead — do not mix the two), or a fine grid over
# the Gaussian density. (A Monte-Carlo average needs about $10^6$ draws for that accuracy.)

# %% nbgrader={"grade": false, "grade_id": "log_grad_slope", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def log_grad_slope(weight_std, width, activation, preact_var=1.0):
    """Predicted change of ln||g|| per layer going backward: 0.5 * ln(n * sigma_w^2 * E[f'(z)^2]).

    Args:
        weight_std: sigma_w, the standard deviation of the weights.
        width: n, the number of units per layer.
        activation: "linear", "sigmoid", "tanh" or "relu".
        preact_var: q, the variance of the pre-activations z ~ N(0, q).

    Returns:
        A float: negative when gradients vanish, positive when they explode.
    """
    ### BEGIN SOLUTION
    if activation == "linear":
        mean_square = 1.0
    elif activation == "relu":
        mean_square = 0.5
    else:
        nodes, weights = np.polynomial.hermite_e.hermegauss(150)
        z = math.sqrt(preact_var) * nodes
        if activation == "sigmoid":
            s = 1 / (1 + np.exp(-z))
            fprime = s * (1 - s)
        else:
            fprime = 1 - np.tanh(z) ** 2
        mean_square = np.sum(weights * fprime**2) / math.sqrt(2 * math.pi)
    return 0.5 * math.log(width * weight_std**2 * mean_square)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "log_grad_slope_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(log_grad_slope, "log_grad_slope")

# %% nbgrader={"grade": true, "grade_id": "log_grad_slope_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: linear and ReLU at any q, tanh and sigmoid at small and large q, exploding settings.
### BEGIN HIDDEN TESTS
check(log_grad_slope, "log_grad_slope", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# The formula against a measurement. Inside a real network $q$ changes from layer to layer, so
# for a clean check we backpropagate through 40 random layers of width 256 at $c = 1$ (a batch of
# 64) and give every layer fresh pre-activations with exactly $q = 1$; the average change of
# $\ln\|g\|$ per backward step is compared with `stabletrain.log_grad_slope` (the reference).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
n, layers, q = 256, 40, 1.0
gen = torch.Generator().manual_seed(0)
for activation in ("linear", "sigmoid", "tanh", "relu"):
    changes = []
    g = torch.randn(64, n, generator=gen, dtype=torch.float64)
    for _ in range(layers):
        W = torch.randn(n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        y = math.sqrt(q) * torch.randn(64, n, generator=gen, dtype=torch.float64)  # z ~ N(0, q)
        g_new = (g * lab.derivative(activation, y)) @ W
        changes.append(math.log(g_new.norm() / g.norm()))
        g = g_new / g_new.norm() * g.norm()  # keep the scale: only the ratios matter
    predicted = stabletrain.log_grad_slope(1 / math.sqrt(n), n, activation, q)
    print(f"{activation:8s} predicted slope {predicted:+.4f}   measured {np.mean(changes):+.4f}")
    assert abs(np.mean(changes) - predicted) < 0.01

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The depth scale
#
# Deep in a network the pre-activation variance settles at a fixed point $q^*$ of the forward
# recursion — with biases of variance $\sigma_b^2$ it reads $q_{l+1} = c^2\,\mathbb E[f(z)^2] + \sigma_b^2$.
# There every layer multiplies $\|g\|^2$ by the same gain $\chi = c^2\,\mathbb E[f'(z)^2]$,
# $z \sim \mathcal N(0, q^*)$, so the squared gradient norm changes by a factor $e$ over
#
# $$
# \xi = \frac{1}{|\ln \chi|}\ \text{layers},
# $$
#
# the **depth scale** of Schoenholz et al. (2017): a gradient cannot cross many more than $\xi$
# layers, and at $\chi = 1$ — the critical scale, "the edge of chaos" — $\xi$ is infinite.
# `lab.depth_scale` runs the recursion until it settles and returns $q^*$, $\chi$ and $\xi$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
settings = [("sigmoid", 1.0, 0.0), ("sigmoid", 4.0, 0.0), ("relu", 1.0, 0.0), ("relu", math.sqrt(2), 0.0),
            ("tanh", 1.0, 0.0), ("tanh", 1.0, 0.1), ("tanh", 1.0, 0.3), ("tanh", 2.0, 0.0)]
for activation, c, bias_std in settings:
    d = lab.depth_scale(activation, c, bias_std)
    xi = f"{d['xi']:.3g} layers" if d["xi"] < 1000 else f"{d['xi']:.3g}: critical (infinite in the limit)"
    print(f"{activation:8s} c = {c:.3g}, sigma_b = {bias_std:.1f}: q* = {d['q_star']:.3g}, "
          f"chi = {d['chi']:.4f}, xi = {xi}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# The sigmoid's depth scale is about one layer even at its best scale, $c = 4$, and a third of a
# layer at $c = 1$. ReLU at $c = 1$ halves $\|g\|^2$ at every layer ($\xi = 1/\ln 2 \approx 1.44$)
# and is critical at Kaiming's $\sqrt 2$, whatever $q$. Tanh without biases is critical at $c = 1$
# — its $q^*$ is 0, where tanh is linear — but only just: biases of standard deviation 0.1 give
# $q^* \approx 0.08$ and $\xi \approx 7.6$ layers, and 0.3 gives $\xi \approx 2.8$. Bias variance
# moves tanh off the edge, and its critical weight scale then lies above $c = 1$; at $c = 2$ it has
# overshot ($\chi > 1$: exploding, $\xi \approx 3.2$).

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 4.** At c = 1, q = 1 the predicted slopes are 0 (linear),
# −1.55 (sigmoid: E[σ′²] ≈ 0.045), −0.38 (tanh: E[tanh′²] ≈ 0.46) and −0.35 (ReLU: ½ ln ½);
# measured agree within 0.01 (asserted). Typical student errors the checks catch: log10 instead
# of ln (slopes 2.3× too small), σ_w for σ_w² (the visible sigmoid case already fails),
# (E f′)² for E[f′²], E[f²] (the forward gain) for E[f′²], f′(0)² ignoring q, forgetting ½,
# and the nodes of `hermite.hermgauss` (weight e^(−x²)) used in the formula of
# `hermite_e.hermegauss` (weight e^(−x²/2)). Depth scales (a closed form and quadrature, the same
# on every machine): sigmoid ξ ≈ 0.35 (c = 1) and 1.09 (c = 4); ReLU 1.44 at c = 1, infinite at
# √2; tanh at c = 1: critical without bias (q → 0 like 1/(2l)), ξ ≈ 7.6 with σ_b = 0.1 (q* ≈
# 0.078, χ ≈ 0.876), 2.8 with σ_b = 0.3; tanh at c = 2: χ ≈ 1.36, ξ ≈ 3.2 (exploding).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The sweep: depth × activation × weight scale
#
# Now real networks: bias-free MLPs of width 64, depths 5, 20 and 50, sigmoid, tanh and ReLU, and
# weight scales $\sigma_w = c/\sqrt{64}$ for $c \in \{0.5, 1, 1.5, 2, 3, 4\}$. For each setting,
# 8 seeds: random weights, a batch of 32 Gaussian inputs and a random upstream gradient $G$, and
# we record $\ln\|\partial\mathcal L/\partial h_l\|$ at every layer. All settings share the same random
# draws (only $c$ and the activation change), and the **control** is a *linear* network at
# $c = 1$, where the gain is 1 up to the random walk's tiny drift. `lab.gradient_sweep` computes
# every setting at once, all seeds batched.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
sweep = lab.gradient_sweep()
print(f"{len(sweep.log_norms)} settings x {sweep.seeds} seeds in {sweep.seconds:.1f} s")
sigmoid_4 = sweep.log_norms[50, "sigmoid", 4.0]
print("sigmoid, 50 layers, c = 4: log10 ||g_0|| / ||g_50|| per seed",
      np.array2string((sigmoid_4[:, 0] - sigmoid_4[:, -1]) / math.log(10), precision=1))
drift = max(np.abs(v - v[:, -1:]).max() for v in sweep.control.values())
print(f"linear control: ||g_l|| / ||g_L|| stays within a factor of {math.exp(drift):.2f} (every depth, layer, seed)")
lab.plot_sweep(sweep, depth=50)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the plot** (log base 10, relative to the output layer; median and range over 8 seeds).
# The sigmoid's gradient vanishes at every scale tried: at 50 layers, by about 10 orders of
# magnitude even at the best scale, $c = 4$ (more than 8 on every network). Tanh and ReLU each
# have one scale near which the line is nearly flat — tanh at $c = 1$ to $1.5$, ReLU at $c = 1.5$,
# next to Kaiming's $\sqrt2$ — and on either side of it the gradient vanishes or explodes
# geometrically with depth: a straight line on a log axis. The linear control stays flat within a
# factor of 4 at every depth (the random walk of Section 3, with a batch of 32 smoothing it). The next figure
# compares every measured slope with the formula of Section 4 (the predicted slope averaged over
# the 50 layers, using the $q_l$ of each layer).

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_slopes(sweep, depth=50)

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
worst = max(abs((v[:, 0] - v[:, -1]).mean() / 50 - lab.predicted_log_norms(50, a, c)[0] / 50)
            for (d, a, c), v in sweep.log_norms.items() if d == 50)
print(f"largest |measured - predicted| slope per layer at depth 50: {worst:.3f}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Every measured slope lies within 0.03 per layer of the prediction (mean over the seeds), for
# every activation and scale — the mean-field formula is not an approximation you have to
# squint at. Small per-layer numbers compound: a slope of $-0.35$ (ReLU at $c = 1$) is
# $e^{-0.35\cdot 50} \approx 10^{-7.6}$ after 50 layers.
#
# **Question 3.** For tanh at $c = 1$ the slope is close to 0 at depth 50 but clearly negative at
# depth 5 (look at the explorer below). Why does the depth change the *per-layer* slope? (Hint:
# what happens to $q_l$ as $l$ grows?)

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 5.** Measured slopes per layer at depth 50 (median of 8 seeds):
# sigmoid −2.10 (c = 0.5) … −0.48 (c = 4); tanh −0.70, −0.05, +0.06, +0.15, +0.30, +0.42;
# ReLU −1.05, −0.35, +0.05, +0.34, +0.74, +1.03 for c = 0.5, 1, 1.5, 2, 3, 4. These medians move by
# up to ±0.02 from machine to machine and with other seeds; the sigmoid at c = 4 loses 9.9–11.0
# orders of magnitude per network (median 10.4), and the linear control's largest factor is about
# 2.2 — over the 18 seeds and the CPU variants the tests run. The sweep takes about 1.5 s.
# *Answer to Question 3:* at c = 1, tanh shrinks the forward signal slowly
# (q_l ≈ 1/(2l) far from the input: q_{l+1} = E[tanh(z)²] ≈ q_l − 2q_l² for small q), so the deep layers see small z where tanh′ ≈ 1 and the gain
# c²E[tanh′²] → 1; in the first layers q ≈ 1 and E[tanh′²] ≈ 0.46. Averaged over 5 layers the
# slope is about −0.2, over 50 layers −0.05. ReLU's slope does not depend on q, so it is the same
# at every depth.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The singular values of the input–output Jacobian
#
# A norm is one number. The full story of what the network does to a gradient is the
# **input–output Jacobian** of one input $x$ (now a vector of $n_0$ numbers),
#
# $$
# J = \frac{\partial h_L}{\partial x} = D_L W_L\, D_{L-1} W_{L-1} \cdots D_1 W_1,
# \qquad D_l = \operatorname{diag}\bigl(f'(y_l)\bigr),
# $$
#
# a product with the newest layer on the left (the chain rule for $h_l = f(W_l h_{l-1} + b_l)$).
# Backpropagation computes $g_0 = J^\top g_L$, so $\sigma_{\min}(J)\,\|g_L\| \le \|g_0\| \le \sigma_{\max}(J)\,\|g_L\|$:
# the **singular values** of $J$ are the factors by which every direction of a gradient is
# stretched. A well-trainable network keeps them all near 1 ("dynamical isometry", Saxe et al.
# 2014, Pennington et al. 2017).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `jacobian_singular_values` (2 points)
#
# Write `jacobian_singular_values(weights, biases, x, activation)`: the same network as in
# Exercise 1, but `x` is **one** input of shape $(n_0,)$. Build $J$ as the product
# $D_L W_L \cdots D_1 W_1$ (shape $(n_L, n_0)$) in numpy and return its singular values, largest
# first, as an array of shape $(\min(n_L, n_0),)$ — `np.linalg.svd(J, compute_uv=False)` returns
# exactly that. Allowed: any numpy or torch code of your own. Switched off while grading — a call
# raises — are only autograd's ready-made Jacobians (`torch.autograd.functional.jacobian`,
# `torch.func.jacrev`, `torch.func.jacfwd`) and the course's answer keys
# (`stabletrain.jacobian_singular_values` and the other exercises' functions).

# %% nbgrader={"grade": false, "grade_id": "jacobian_singular_values", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def jacobian_singular_values(weights, biases, x, activation):
    """Singular values of the input-output Jacobian dh_L/dx of an MLP at one input x.

    Args:
        weights: list of L arrays, weights[l-1] of shape (n_l, n_{l-1}).
        biases: list of L arrays, biases[l-1] of shape (n_l,).
        x: one input, shape (n_0,).
        activation: "linear", "sigmoid", "tanh" or "relu".

    Returns:
        Array of shape (min(n_L, n_0),): the singular values of J = D_L W_L ... D_1 W_1, largest first.
    """
    ### BEGIN SOLUTION
    h = np.asarray(x, dtype=float)
    J = np.eye(len(h))
    for W, b in zip(weights, biases):
        y = W @ h + b
        if activation == "sigmoid":
            h = 1 / (1 + np.exp(-y))
            d = h * (1 - h)
        elif activation == "tanh":
            h = np.tanh(y)
            d = 1 - h**2
        elif activation == "relu":
            h = np.maximum(y, 0)
            d = (y > 0).astype(float)
        else:
            h, d = y, np.ones_like(y)
        J = d[:, None] * (W @ J)
    return np.linalg.svd(J, compute_uv=False)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "jacobian_singular_values_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(jacobian_singular_values, "jacobian_singular_values")

# %% nbgrader={"grade": true, "grade_id": "jacobian_singular_values_hidden", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: deep tanh and sigmoid networks, ReLU and linear networks, wide-to-narrow and
# narrow-to-wide layers, a single layer.
### BEGIN HIDDEN TESTS
check(jacobian_singular_values, "jacobian_singular_values", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# The manual product against autograd: the reference's singular values and numpy's SVD of
# autograd's Jacobian, on the tanh network of Section 2 (first input).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def network(v):
    for W, b in zip(Ws, bs):
        v = torch.tanh(torch.tensor(W) @ v + torch.tensor(b))
    return v


J_autograd = torch.autograd.functional.jacobian(network, torch.tensor(x[0])).numpy()
from_autograd = np.linalg.svd(J_autograd, compute_uv=False)
manual = stabletrain.jacobian_singular_values(Ws, bs, x[0], "tanh")
print("singular values:", np.array2string(manual, precision=5))
print("rel_error vs SVD of autograd's Jacobian:", stabletrain.rel_error(manual, from_autograd))
assert stabletrain.rel_error(manual, from_autograd) < 1e-10

# %% [markdown] slideshow={"slide_type": "subslide"}
# Six setups, width 32, 5 seeds, depths 5, 20 and 50: linear, tanh and ReLU networks at their
# "flat" scales ($c = 1$, $1$ and Kaiming's $\sqrt2$), each with **Gaussian** weights of std
# $c/\sqrt n$ and with **orthogonal** weights ($c$ times a random orthogonal matrix). The control is
# the orthogonal linear network: $J$ is a product of orthogonal matrices, so every singular value
# is exactly 1. A float64 SVD cannot resolve a singular value below about $10^{-16}$ of the largest
# (round-off in the product), so the plot draws everything below $10^{-16}$ on one line.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
spectra = lab.jacobian_spectra()
for (activation, c, kind, depth), values in spectra.items():
    if depth == 50:
        lost = (values < 1e-12 * values[:, :1]).sum(axis=1)
        print(f"{activation:6s} {kind:10s} 50 layers: largest {np.median(values[:, 0]):.2g} (median); "
              f"smallest/largest down to {np.min(values[:, -1] / values[:, 0]):.1e}; "
              f"below 1e-12 of the largest, per network: {lost}")
fig = lab.plot_jacobian_spectra(spectra)
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# Flat on average is not flat in every direction. With **Gaussian** weights, even at the scales
# where the *norm* of a random gradient is preserved, the spectrum spreads with depth — in the
# linear network too, so it is the random matrices, not the activation, that spread it. At 50
# layers about a third of the 32 singular values of the linear and tanh networks (at least 8 on
# every network) are below $10^{-12}$ of the largest: they sit at the round-off floor, where the
# SVD returns noise of about $10^{-16}\sigma_{\max}$ and the true values are smaller still. Those
# directions are lost, numerically and for training. With **orthogonal** weights the linear network
# keeps every singular value at 1 (to $10^{-12}$) at every depth, and the tanh network keeps all 32
# within 6 orders of magnitude of the largest — the positive result of Saxe et al. (2014) and
# Pennington et al. (2017): orthogonal weights and a nearly linear regime of tanh ("dynamical
# isometry") keep every direction alive. ReLU is different: a unit that is off for this input
# zeroes its row of $D_l$, so $J$ has rank at most the fewest active units of any layer, and at
# least 14 of the 32 singular values (typically 20) are exactly 0 — with orthogonal weights as
# with Gaussian ones. Orthogonal initialization (lesson 3) rescues tanh; ReLU networks need
# another fix (normalization, residuals: lessons 5 and 6).

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 6.** The manual and autograd singular values agree to ~1e-15. At
# 50 layers, over the seeds and CPU variants the tests run: Gaussian linear and tanh networks have
# 11–13 of their 32 singular values below 1e-12 of the largest, the smallest at 1e-20–1e-17 — that
# is round-off (eps·σ_max ≈ 2e-16·σ_max, and a few orders lower once the product is formed), not a
# measurement: a product of 50 Gaussian 32×32 matrices has its smallest Lyapunov exponent at
# ½(ln(2/32) + ψ(1/2)) ≈ −2.37 per layer, so its smallest singular value is near e^(−118) ≈ 10⁻⁵¹.
# So "the tanh network spans 17–18 orders" would be a statement about float64, not about the
# network. Orthogonal tanh: largest 0.22–0.31, smallest 5·10⁻⁶–10⁻³ (2.5–4.8 orders). ReLU: 17–24
# exact zeros per network at every depth, Gaussian or orthogonal. At depth 5 the Gaussian tanh
# network already spans 6–11 orders.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. In a real training loop: a gradient-norm monitor
#
# In practice you do not know $q_l$ or the Jacobian; you look at the gradients. After
# `loss.backward()`, every `nn.Linear` layer holds `layer.weight.grad`, and its norm per layer,
# step after step, is the first diagnostic of vanishing and exploding gradients (lesson 0 builds
# the full dashboard). A monitor reports those norms and flags the layers outside a healthy
# range; a training loop can act on the flags. Backpropagation passes two kinds of gradient,
# though: the **activation gradients** $\partial\mathcal L/\partial h_l$, which travel from layer to
# layer and are what Sections 1–6 measured, and the **weight gradients**
# $\partial\mathcal L/\partial W_l = \delta_l^\top h_{l-1}$, which the optimizer steps with and which
# a monitor of `weight.grad` sees. They do not tell the same story, as the end of this section shows.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 4 — `grad_norm_monitor` (3 points)
#
# Write `grad_norm_monitor(model, low=1e-4, high=1e2)`:
#
# - the layers are the `torch.nn.Linear` modules of `model`, **at any nesting depth, in the
#   order `model.named_modules()` yields them** (for an `nn.Sequential`, the order they are
#   applied): `for name, module in model.named_modules(): ...` visits every submodule, nested ones
#   included (`model.children()` sees only the top level);
# - return `(norms, flags)`: `norms` a float array with one entry per Linear layer, the
#   Frobenius norm of its **weight gradient** `layer.weight.grad` (the bias is not included; use
#   0.0 where the gradient is None — a frozen layer, `requires_grad=False`, has none); `flags` a
#   list of strings: `"vanishing"` where the norm is below `low`, `"exploding"` where it is above
#   `high` **or not finite** (NaN or inf: every comparison with NaN is False, so `n > high` alone
#   would call a NaN `"ok"`), `"ok"` otherwise;
# - only read the gradients: the training loop steps with them after your monitor returns (no
#   `zero_grad()` or rescaling inside).
#
# It is graded **in a training loop**: the checks train small models with SGD, call your monitor
# after every `backward()`, and — where it flags a layer as exploding — rescale that layer's
# gradient to norm `high` using your norm before the step. The norms, the flags and the whole
# loss curve must match the reference's. The loop keeps a copy of the gradients while your monitor
# runs; a monitor that changes or clears them fails the check that looks for it, not the others.

# %% nbgrader={"grade": false, "grade_id": "grad_norm_monitor", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def grad_norm_monitor(model, low=1e-4, high=1e2):
    """Per-layer weight-gradient norms of a model after backward(), with a flag per layer.

    Args:
        model: a torch.nn.Module; its layers are its nn.Linear submodules,
            in model.named_modules() order.
        low, high: thresholds; a norm below low is "vanishing", above high or not finite
            "exploding", else "ok".

    Returns:
        (norms, flags): a float array of shape (number of Linear layers,) of ||layer.weight.grad||_F
        (0.0 where the gradient is None), and a list of flags of the same length.
    """
    ### BEGIN SOLUTION
    norms = []
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            grad = module.weight.grad
            norms.append(0.0 if grad is None else grad.detach().double().norm().item())
    flags = []
    for n in norms:
        if n < low:
            flags.append("vanishing")
        elif math.isfinite(n) and n <= high:
            flags.append("ok")
        else:  # above high, NaN or inf
            flags.append("exploding")
    return np.array(norms), flags
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "grad_norm_monitor_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
check(grad_norm_monitor, "grad_norm_monitor")

# %% nbgrader={"grade": true, "grade_id": "grad_norm_monitor_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: norms per layer in order (tanh and sigmoid networks, different widths), vanishing
# and exploding flags and the rescaling they trigger (NaN gradients included), Linear layers nested
# in Sequentials, layers without bias and frozen layers, and a monitor that must leave the
# gradients as it found them.
### BEGIN HIDDEN TESTS
check(grad_norm_monitor, "grad_norm_monitor", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What a weight-gradient monitor sees
#
# A 20-layer ReLU MLP (width 32) on the three-class spirals at three weight scales: $c = 1$ (slope
# $-0.35$ per layer: vanishing), Kaiming's $c = \sqrt2$ (flat) and $c = 2$ (slope $+0.35$:
# exploding). `gradient_profile` runs one forward and backward pass at the initial weights and
# reads both kinds of gradient: `retain_grad()` keeps the gradient of an intermediate tensor, which
# PyTorch frees otherwise (forward hooks, as in fast.ai's course, are the other way in).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
from stabletrain.data import make_spirals

points, labels = make_spirals(50, classes=3, seed=0)


def relu_mlp(c, depth=20, width=32, seed=0):
    """Weights N(0, c^2 / fan_in), zero biases; the same draws as seed `seed` of lab.train_deep_batch."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [2] + [width] * (depth - 1) + [3]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(n_out, n_in, generator=gen) * (c / math.sqrt(n_in)))
            linear.bias.zero_()
        layers += [linear, torch.nn.ReLU()] if i < depth - 1 else [linear]
    return torch.nn.Sequential(*layers)


def gradient_profile(model, x, y):
    """One forward and backward pass; per Linear layer l: ||dL/dh_(l-1)||, the gradient arriving at
    its input (h_0 = x), and ||dL/dW_l||."""
    h, inputs, linears = x.clone().requires_grad_(), [], []
    for module in model:
        if isinstance(module, torch.nn.Linear):
            h.retain_grad()  # keep this intermediate tensor's gradient after backward()
            inputs.append(h)
            linears.append(module)
        h = module(h)
    model.zero_grad()
    torch.nn.functional.cross_entropy(h, y).backward()
    return (np.array([t.grad.norm().item() for t in inputs]),
            np.array([layer.weight.grad.norm().item() for layer in linears]))


shown = [2, 5, 10, 15, 20]
print("layer l:                       " + "".join(f"{l:7d}" for l in shown))
for c in (1.0, math.sqrt(2), 2.0):
    activation_grads, weight_grads = gradient_profile(relu_mlp(c), points, labels)
    print(f"c = {c:.2f}  log10 ||dL/dh_(l-1)||: " + "".join(f"{math.log10(activation_grads[l - 1]):7.1f}" for l in shown))
    print("           log10 ||dL/dW_l||:     " + "".join(f"{math.log10(weight_grads[l - 1]):7.1f}" for l in shown))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same over 5 seeds (each its own weights and its own spirals; seed 0 is the model above), all
# models at once by `lab.train_deep_batch`, which also trains them below. The cell prints the
# fitted slope of $\ln\|\cdot\|$ per layer for both kinds of gradient (hidden layers 2–20).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
training = lab.train_deep_batch(activation="relu", scales=(1.0, math.sqrt(2), 2.0), seeds=(0, 1, 2, 3, 4), steps=100)


def fitted_slope(log_norms):
    """Least-squares slope of each row against the layer index."""
    layers = np.arange(log_norms.shape[-1]) - (log_norms.shape[-1] - 1) / 2
    return (log_norms - log_norms.mean(axis=-1, keepdims=True)) @ layers / np.sum(layers**2)


for i, c in enumerate(training.scales):
    at_init = slice(1, None)  # hidden layers: the first layer's input is x, 2 numbers per example
    act = fitted_slope(np.log(training.input_grad_norms[i, :, 0, at_init]))
    weight = fitted_slope(np.log(training.grad_norms[i, :, 0, at_init]))
    print(f"c = {c:.2f}: slope of ln ||dL/dh|| per layer {np.array2string(act, precision=2)}, "
          f"of ln ||dL/dW|| {np.array2string(weight, precision=2)}")
fig = lab.plot_gradient_profiles(training)
fig

# %% [markdown] slideshow={"slide_type": "fragment"}
# The activation gradients follow Section 4: at $c = 1$ they shrink by about $e^{-0.35}$ per layer
# on the way to the input, at $c = 2$ they grow by as much, and at $c = \sqrt2$ they are flat. The
# weight gradients do not: at every scale they have **no trend with depth** (fitted slopes below
# 0.12 per layer in size, against about 0.35 for the activation gradients) — only a *level*: all
# tiny at $c = 1$, all huge at $c = 2$. This is Glorot & Bengio's (2010) observation, and the
# reason is in the formula $\partial\mathcal L/\partial W_l = \delta_l^\top h_{l-1}$: the backward
# signal $\delta_l$ shrinks toward the input by $\sqrt r$ per layer while the forward signal
# $h_{l-1}$ grows toward the input by the same $\sqrt r$ (at $c = 1$ the forward signal halves its
# variance at every layer it passes), so $\|\delta_l\|\,\|h_{l-1}\| \propto r^{(L-l)/2}\,r^{(l-1)/2}
# = r^{(L-1)/2}$ is the same at every layer. A weight-gradient monitor therefore sees a vanishing
# or exploding network as every layer flagged alike, not as a trend from output to input; to see
# the trend, look at the activation gradients (hooks or `retain_grad`).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The monitor in a loop: picking a weight scale
#
# Full-batch SGD at learning rate 0.05 for 100 steps, the monitor (with $10^{-3}$ and $10^{2}$ as
# thresholds) called after every `backward()`. The loop below is the whole experiment for one
# seed; it prints the monitor's flags and the range of the weight-gradient norms at a few steps.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
monitor = stabletrain.grad_norm_monitor  # the reference; use your own once Exercise 4 passes
for c in (1.0, math.sqrt(2), 2.0):
    model = relu_mlp(c)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(points), labels)
        loss.backward()
        norms, flags = monitor(model, low=1e-3, high=1e2)
        if step in (0, 99) or not math.isfinite(loss.item()):
            summary = {f: flags.count(f) for f in ("vanishing", "ok", "exploding")}
            print(f"c = {c:.2f}, step {step:3d}: loss {loss.item():8.4f}, layers {summary}, "
                  f"weight-gradient norms {norms.min():.1e} to {norms.max():.1e}")
        if not math.isfinite(loss.item()):
            break
        optimizer.step()

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same experiment over the 5 seeds of `training` (median and range over seeds; a loss of
# $\ln 3 \approx 1.10$ is guessing).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
for i, c in enumerate(training.scales):
    lowest = np.min(training.losses[i], axis=1)  # NaN where a run diverged
    print(f"c = {c:.3f}: lowest loss per seed {np.array2string(lowest, precision=3)}, "
          f"final (mean of the last 10 steps) {np.array2string(training.final_loss(c), precision=3)}")
lab.plot_training(training)

# %% [markdown] slideshow={"slide_type": "fragment"}
# The weight scale decides. At $c = 1$ every layer's weight gradient is tiny — the monitor flags
# all 20 layers vanishing at the first step — and after 100 steps the loss is still within 0.01 of
# $\ln 3$ on every seed. At $c = 2$ every layer's weight gradient is huge, the first steps are far
# too long, and every seed diverges to NaN within the first three steps. At Kaiming's
# $c = \sqrt2$, where $\ln\|\partial\mathcal L/\partial h\|$ is flat, the loss of every seed falls
# below 0.7 within 100 steps. It does not fall smoothly: full-batch SGD at this step size jumps back
# up now and then, so where a run *ends* differs from seed to seed — and from one CPU to another,
# since a spike amplifies the last bit of a rounding difference. Compare the lowest losses, not the
# last ones. The flat scale is not "nice to have": at this depth it is the difference between
# training and not.
#
# **Question 4.** The loop of the graded check rescales every exploding layer's weight gradient to
# norm `high` before the step. Would that rescue the $c = 2$ network? Predict, then run the cell
# below: the $c = 2$ networks of the experiment, rescaled at `high` $= 100$. Would anything rescue
# the $c = 1$ network without changing its weights?

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
rescued = lab.train_deep_batch(activation="relu", scales=(2.0,), seeds=(0, 1, 2, 3, 4), steps=100,
                               rescale_above=100.0)
print(f"layers rescaled at step 0, per seed: {rescued.rescaled[0, :, 0]} of {rescued.depth}")
for s in range(rescued.seeds):
    loss = rescued.losses[0, s]
    dead = rescued.dead[0, s]  # per hidden layer: the fraction of units that output 0 for every example
    print(f"seed {s}: loss {loss[0]:.3g}, at step 1 {loss[1]:.3g}, at step 99 {loss[-1]:.6f} "
          f"(ln 3 = {math.log(3):.6f}); dead units per hidden layer {dead.min():.0%} to {dead.max():.0%}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your `grad_norm_monitor` in the loop
#
# This cell runs the $c = \sqrt 2$ model with **your** monitor and with the reference; a correct
# monitor gives the same norms at every step.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
try:
    model = relu_mlp(math.sqrt(2))
    torch.nn.functional.cross_entropy(model(points), labels).backward()
    yours, your_flags = grad_norm_monitor(model, low=1e-3, high=1e2)
except NotImplementedError:
    print("Finish Exercise 4 first: grad_norm_monitor still raises NotImplementedError.")
else:
    reference, reference_flags = stabletrain.grad_norm_monitor(model, low=1e-3, high=1e2)
    print("your norms:     ", np.array2string(np.asarray(yours)[:6], precision=4), "...")
    print("reference norms:", np.array2string(reference[:6], precision=4), "...")
    print("same flags:", list(your_flags) == reference_flags)

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Section 7.** The loop and `gradient_profile` use seed 0 of the batch. At
# the initial weights, over the seeds and CPU variants the tests run: the fitted slope of
# ln‖∂L/∂h‖ per layer is +0.31…+0.41 at c = 1 (vanishing toward the input), −0.40…−0.28 at c = 2
# and within ±0.07 at c = √2 — 2–3.5 orders over the hidden layers at c = 1 and at c = 2; the
# weight-gradient slopes stay within ±0.1 at every scale, and their level is about 10^-3.6, 10^-0.6
# and 10^2.5 (medians over the layers, ±0.7 over networks). In the figure, layer 1's
# weight gradient sits lower than the others (its input x has 2 numbers per example, not 32). In the loop,
# at step 0: at c = 1 all 20 layers are flagged vanishing (norms 3e-5 to 8e-4 over our runs); by
# step 99 most have grown past 1e-3, but the loss is still within 0.01 of ln 3. At c = √2 every
# layer is "ok" (norms 0.02 to 2). At c = 2 the first loss is between 30 and 830 (825 on seed 0),
# 17 to 20 of the 20 layers are flagged exploding, and the loss is NaN at step 2 on every run
# (with the reference monitor, the NaN step's layers are flagged exploding, not ok). What varies
# from machine to machine is the c = √2 training after the first ~10 steps: the lowest loss per
# seed ranges over 0.08–0.57 and the final one over 0.21–1.09 across the seeds and CPU variants
# the tests run (a 1e-6 change of the initial weights moves a final loss by up to 0.5).
# *Answer to Question 4:* no — the rescaling kills the network. At step 0 it rescales most of the
# 20 layers (17–20 in our runs), and each still moves by lr·100 = 5 in Frobenius norm, about half
# of its weights' own norm (2·√32 ≈ 11). The loss jumps from 30–830 to more than 5,000 (up to a few
# 10⁸) at step 1, the
# ReLUs are thrown into their flat negative side for every example, and every network ends with at
# least one hidden layer whose units are all dead (and every hidden layer at least a quarter dead).
# A dead layer passes nothing forward or backward, so the output no longer depends on the input:
# the last biases learn the class frequencies and the loss settles at ln 3 (to within 0.001 on
# every run) for good. Rescaling each layer to a fixed norm is per-layer clipping (lesson 4) with
# a threshold these weights cannot take: it bounds the step, not the damage. Nothing rescales the
# c = 1 network's vanishing gradients usefully: a larger learning rate multiplies every layer
# alike, while the problem is that the forward and backward signals both fade with depth. The
# fixes change the network: the init (lesson 3), normalization (lesson 5), residuals (lesson 6).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Explore
#
# Every setting of the sweep is precomputed; the explorer only redraws. Pick a depth, an
# activation and a weight scale $c$ ($\sigma_w = c/\sqrt{64}$): the plot shows the measured
# $\log_{10}\|g_l\|/\|g_L\|$ (median and range over 8 seeds), the prediction from Section 4
# (dotted) and the linear control. Questions:
#
# - For each activation, which $c$ is closest to flat at depth 50? Is it the same at depth 5?
# - How many orders of magnitude does ReLU lose over 50 layers at $c = 1$? Gain at $c = 2$?
# - For which settings does the range over seeds get wide, and why (Section 3)?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.VanishingExplorer(sweep, depth=20, activation="tanh", scale=1.0)
explorer.widget

# %% [markdown] tags=["instructor"] slideshow={"slide_type": "skip"}
# **Instructor notes — Explorer.** Closest to flat at depth 50: tanh c = 1 (−0.05 per layer;
# c = 1.5 gives +0.06), ReLU c = 1.5 (+0.05, near √2 where it is exactly 0), sigmoid none (best
# c = 4 at −0.48). At depth 5 tanh's best is c = 1.5 (−0.01) because q is still large. ReLU at
# c = 1 loses 7.7–7.8 orders of magnitude over 50 layers (median of 8 seeds); at c = 2 it gains
# 7.3–7.4. These move by about ±0.1 from machine to machine and with other seeds. The range
# over seeds grows with depth, like √L (Section 3): at depth 5 it is at most 0.2 orders of
# magnitude in every setting, at depth 50 between 0.35 and 1.1 (median over the settings about
# 0.5–0.8). For ReLU the band has the same width at every c: a ReLU network is positively
# homogeneous, so multiplying every weight by c multiplies ‖g_l‖/‖g_L‖ by exactly c^(L−l) and only
# tilts the line. A redraw takes well under 0.1 s (`explorer.last_update_s`).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. The bridge: which fix does what
#
# Everything above says one thing: $\ln\|g\|$ changes by $\tfrac12\ln(n\sigma_w^2\,\mathbb E[f'^2])$
# per layer, and small per-layer numbers compound over depth. Each of the next lessons changes
# one term of that product:
#
# | lesson | fix | what it changes in the product | what it cannot do |
# |---|---|---|---|
# | 2 — activations | ReLU-like, GELU, SiLU instead of sigmoid | $\mathbb E[f'(z)^2]$: ½ for ReLU at any $q$ instead of $\le 1/16$ | fix a wrong weight scale; dead ReLUs |
# | 3 — initialization | Xavier, Kaiming, orthogonal, LSUV | $n\sigma_w^2$: chosen so the gain is 1 (Kaiming: $2/n$ for ReLU); orthogonal also flattens the Jacobian's spectrum | keep the gain at 1 once training moves the weights |
# | 4 — gradient clipping | clip by norm or value, AGC | caps the step when $\|g\|$ explodes | anything for vanishing gradients |
# | 5 — batch norm | normalize each layer's pre-activations | keeps $q_l$ fixed, so $\mathbb E[f'^2]$ stays where it should, at any weight scale | remove the dependence on batch statistics |
# | 6 — layer norm, residuals | $h_l = h_{l-1} + F(h_{l-1})$ | the Jacobian becomes $I + \partial F/\partial h$: an identity path that carries the gradient through any depth | stop the residual stream's variance from growing (it needs scaling) |

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - The gradient at layer $l$ is the output gradient times a product of per-layer factors
#   $D_l W_l$; its log-norm is a sum, and through random layers a **random walk** with drift
#   $\tfrac12\ln(n\sigma_w^2) - \tfrac1{2n}$ (linear layers) and spread $\sqrt{L/(2n)}$.
# - The **per-layer gain** $r = n\sigma_w^2\,\mathbb E[f'(z)^2]$, $z\sim\mathcal N(0, q)$, predicts the
#   slope $\tfrac12\ln r$ of $\ln\|g\|$ per layer: negative vanishes, positive explodes, and the
#   measurement follows the formula closely.
# - $\sigma' \le 1/4$: sigmoid networks vanish at every weight scale; ReLU is flat at
#   $\sigma_w^2 = 2/n$; tanh near $1/n$.
# - The **Jacobian's singular values** tell the whole story, direction by direction: a flat
#   *average* can hide directions that vanish; orthogonal weights keep them all at 1 in a linear
#   network and within a few orders of magnitude in a tanh network (dynamical isometry); ReLU's
#   switched-off units leave exact zeros with any weights.
# - The **depth scale** $\xi = 1/|\ln\chi|$ says how many layers a gradient can cross; it is
#   infinite only at a critical scale, and bias variance moves tanh off it.
# - In training, **monitor the per-layer gradient norms**; the weight scale alone decides between
#   no learning, learning and divergence in a 20-layer ReLU network. At initialization the
#   *activation* gradients show the trend with depth; the *weight* gradients
#   $\delta_l^\top h_{l-1}$ are about the same at every layer (Glorot & Bengio), so a weight-gradient
#   monitor sees vanishing or exploding as a level, every layer flagged alike.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# - **$f'$ at the wrong place**: the derivative is taken at the pre-activation $y_l$; $\sigma(1-\sigma)$
#   and $1-\tanh^2$ are that derivative written with the output $h_l$ — applying $f'$ to $h_l$, or
#   $h(1-h)$ to $y_l$, gives another number.
# - **Forgetting the activation's derivative** in the backward pass (it is what makes sigmoid
#   networks vanish).
# - **A transposed weight matrix**: with rows as examples ($y = hW^\top$), the backward step is
#   $\delta W$; check every shape.
# - **Off by one layer**: $\partial\mathcal L/\partial W_l = \delta_l^\top h_{l-1}$ uses the layer's input;
#   the gradient "at layer $l$" must say whether it means $h_{l-1}$, $y_l$ or $h_l$.
# - **Results in the wrong order**: backprop visits layers backward; report them forward.
# - **$\sigma_w$ for $\sigma_w^2$, or log10 for ln**, in the gain and the slope.
# - **$(\mathbb E f')^2$ for $\mathbb E[f'^2]$**, or $f'(0)^2$ ignoring the spread of the pre-activations.
# - **Multiplying the layers' singular values** instead of the matrices: the singular values of
#   a product are not the products of singular values.
# - **Monitoring the weights instead of their gradients**, or only `model.children()` (nested
#   layers are missed); calling `.norm()` on a `None` gradient (a frozen layer); a NaN norm
#   flagged `"ok"` (every comparison with NaN is False); `zero_grad()` inside a monitor.
# - **Reading a depth trend off weight-gradient norms**: at initialization they are nearly the
#   same at every layer; the activation gradients carry the trend.
# - **No activation on the output layer** where the network has one (Exercises 1 and 3).
# - **`np.linalg.norm(M, 2)` for the Frobenius norm**: for a matrix it is the largest singular value.
# - **Singular values as $\sqrt{\operatorname{eig}(J^\top J)}$**: forming $J^\top J$ squares the
#   condition number, and every singular value below about $10^{-8}\sigma_{\max}$ drowns in
#   round-off; take the SVD of $J$.
# - **A spread "measured" at the round-off floor**: float64 resolves nothing below about
#   $10^{-16}$ of the largest singular value.
# - **Trusting one seed**: the log-norm is a random walk; look at several networks.
#
# **References.** S. Hochreiter, *Untersuchungen zu dynamischen neuronalen Netzen*, 1991;
# Y. Bengio, P. Simard, P. Frasconi, *Learning long-term dependencies with gradient descent is
# difficult*, 1994; X. Glorot, Y. Bengio, *Understanding the difficulty of training deep
# feedforward neural networks*, AISTATS 2010; K. He et al., *Delving deep into rectifiers*, ICCV
# 2015; A. Saxe, J. McClelland, S. Ganguli, *Exact solutions to the nonlinear dynamics of learning
# in deep linear neural networks*, ICLR 2014; J. Pennington, S. Schoenholz, S. Ganguli,
# *Resurrecting the sigmoid in deep learning through dynamical isometry*, NeurIPS 2017;
# S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, *Deep information propagation*, ICLR 2017;
# B. Hanin, D. Rolnick, *How to start training: the effect of initialization and architecture*,
# NeurIPS 2018.
