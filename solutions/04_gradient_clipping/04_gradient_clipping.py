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
# # Lesson 4 — Gradient clipping
#
# A network can be well initialised and still blow up: one unlucky minibatch produces a gradient
# a thousand times larger than usual, the optimizer takes a step a thousand times too long, and the
# parameters land somewhere from which training never recovers. **Gradient clipping** bounds the
# size of the step *before* it is taken. It is a one-line fix, used in almost every recurrent
# network and large transformer — and, as you will see, there is more than one way to write that
# line, and the details matter.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Learning goals
#
# By the end of this lesson you can
#
# 1. explain why gradients explode, as a **product of Jacobians**, and why an exploding gradient
#    wrecks a gradient-descent step;
# 2. clip **by value** and **by global norm**, and say which one keeps the gradient's direction
#    (and prove it with a cosine);
# 3. implement `clip_grad_norm_` exactly as PyTorch does: the global norm of the per-parameter
#    norms, the $10^{-6}$ in the coefficient, the returned pre-clip norm, non-finite gradients and
#    `error_if_nonfinite`;
# 4. implement **adaptive gradient clipping** (AGC, Brock et al. 2021), which clips each unit
#    relative to the size of its own weights;
# 5. read the diagnostics of a training run — loss, gradient norm per step, fraction of steps
#    clipped — and pick a threshold.
#
# **How this notebook works.** You implement three functions: `clip_grad_value_`,
# `clip_grad_norm_` and `adaptive_clip_grad_`. After each one, a test cell runs visible checks
# that explain what went wrong; hidden tests grade more cases. Every formula is followed by a cell
# that checks it numerically. Experiments use the course's reference implementation, so they run
# even before you have finished the exercises.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import math

import numpy as np
import torch

import stabletrain
from stabletrain.exercises import check
from stabletrain.lessons import clipping_lab as lab

torch.manual_seed(0)  # fixed seeds: every number in this notebook is reproducible
torch.set_num_threads(1)  # the tensors here are tiny: one thread is faster than two

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Why gradients explode
#
# Take the simplest recurrent network, a scalar one, $h_t = w\,h_{t-1} + u_t$. By the chain rule
# the gradient of the last state with respect to the first is a product of $T$ identical factors:
#
# $$
# \frac{\partial h_T}{\partial h_0}
#   = \prod_{t=1}^{T} \frac{\partial h_t}{\partial h_{t-1}} = w^T .
# $$
#
# A product of many factors is almost never of moderate size: $1.1^{100} \approx 13\,781$ while
# $0.9^{100} \approx 2.7\times10^{-5}$. With a nonlinearity, $h_t = \tanh(w\,h_{t-1} + u_t)$, each
# factor becomes $w\,(1 - h_t^2)$ — smaller, since $0 < 1 - h_t^2 \le 1$, but still a product of
# $T$ numbers.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
print(f"1.1 ** 100 = {1.1 ** 100:,.0f}        0.9 ** 100 = {0.9 ** 100:.2e}")

# Check the chain rule on the tanh recurrence: autograd against the product of the factors.
w, T = 1.5, 30
u = 0.5 * torch.randn(T, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
h0 = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
h, factors = h0, []
for t in range(T):
    h = torch.tanh(w * h + u[t])
    factors.append(w * (1 - h.item() ** 2))  # dh_t/dh_{t-1} = w (1 - h_t^2)
(autograd,) = torch.autograd.grad(h, h0)
print(f"autograd: dh_T/dh_0 = {autograd.item():.10e}")
print(f"product of the {T} factors  = {math.prod(factors):.10e}")
assert math.isclose(autograd.item(), math.prod(factors), rel_tol=1e-10)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Vectors: a product of Jacobian matrices
#
# A real RNN has a hidden vector, $h_t = \tanh(u_t + W h_{t-1})$ with $u_t = W_x x_t + b$. The
# one-step Jacobian is the matrix
#
# $$
# J_t = \frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}\!\left(1 - h_t^2\right) W,
# \qquad
# \frac{\partial h_T}{\partial h_0} = J_T\, J_{T-1} \cdots J_1 .
# $$
#
# Write $W = s\,Q$ with $Q$ orthogonal (all singular values 1). Then $\|J_t\|_2 \le s$, so the
# product is at most $s^T$: for $s < 1$ gradients **vanish** geometrically. For $s > 1$ they *can*
# **explode** — and do once $s$ is large enough that saturation ($1 - h_t^2 \ll 1$) no longer
# compensates. The loss gradient with respect to early parameters contains these products, so it
# inherits their size. The cell below checks the product formula against autograd.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
Q, drive = lab.random_tanh_rnn(hidden=32, T=12, seed=0)
h0 = torch.zeros(32, dtype=torch.float64)
s = 2.0
jac_autograd = torch.autograd.functional.jacobian(lambda h: lab.rnn_final_state(h, Q, s, drive), h0)
norms, product = lab.jacobian_norms(s, Q, drive)
print("rel_error(autograd Jacobian, J_T ... J_1) =", stabletrain.rel_error(jac_autograd.numpy(), product.numpy()))
print(f"||dh_T/dh_0|| = {norms[-1]:.2f}  <=  s^T = {s ** 12:.0f}")
assert stabletrain.rel_error(jac_autograd.numpy(), product.numpy()) < 1e-10 and norms[-1] <= s**12

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
Q, drive = lab.random_tanh_rnn(hidden=32, T=60, seed=0)
lab.plot_jacobian_norms({s: lab.jacobian_norms(s, Q, drive)[0] for s in (0.9, 1.0, 1.5, 2.0, 3.0)})

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### What an exploding gradient does to a step
#
# Gradient descent moves the parameters by $\Delta\theta = -\eta\, g$: the step is as long as the
# gradient, $\|\Delta\theta\| = \eta\,\|g\|$. A learning rate tuned for gradients of norm 1 takes a
# step ten thousand times too long when $\|g\| = 10^4$. Pascanu, Mikolov and Bengio (2013) pictured
# the loss surface of an RNN as having **cliffs**: narrow regions where the gradient is huge. A
# step off a cliff throws the parameters far away, often into a region with even larger
# gradients, and the next step is longer still — a runaway you will watch happen in Section 5.
#
# Gradient clipping does not change *where* the cliffs are; it caps how far one step can go.
# It does nothing for **vanishing** gradients — initialization (Lesson 3), normalization
# (Lesson 5) and residual connections (Lesson 6) deal with those.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Clipping by value
#
# The bluntest fix: clamp every entry of every gradient into $[-c, c]$,
#
# $$
# \hat g_j = \min\bigl(\max(g_j, -c),\ c\bigr) \qquad \text{for every entry } j .
# $$
#
# It bounds the largest entry, $\|\hat g\|_\infty \le c$, and therefore the length,
# $\|\hat g\|_2 \le c\sqrt{P}$ for $P$ entries in all. But each entry is clipped on its own, so large
# entries shrink while small ones stay: **the direction of the gradient changes**. In two
# dimensions, value clipping moves $g$ to the nearest point of a box, norm clipping shrinks it
# onto a disc:

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
lab.plot_clipping_geometry(g=(2.4, 0.6), c=1.0)

# %% [markdown] slideshow={"slide_type": "subslide"}
# The cosine between the raw and the clipped gradient measures the change of direction: 1 means
# the same direction. Below, a heavy-tailed gradient with $P = 10\,000$ entries is clipped by value
# at $c = 1$ and, for comparison, by norm to the same guaranteed bound $c\sqrt P = 100$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
g = torch.randn(10_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) ** 3  # heavy tails
c = 1.0
bound = c * math.sqrt(g.numel())
by_value = g.clamp(-c, c)
by_norm = g * min(1.0, bound / g.norm().item())
print(f"raw ||g|| = {g.norm():.1f}; {(g.abs() > c).float().mean():.0%} of the entries exceed c = {c}")
print(f"by value: ||g|| = {by_value.norm():6.1f}  cos(raw, clipped) = {lab.cosine(g, by_value):.4f}")
print(f"by norm:  ||g|| = {by_norm.norm():6.1f}  cos(raw, clipped) = {lab.cosine(g, by_norm):.4f}")
assert by_value.abs().max() <= c and by_value.norm() <= bound
assert math.isclose(lab.cosine(g, by_norm), 1.0, rel_tol=1e-12) and lab.cosine(g, by_value) < 0.99

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 1 — `clip_grad_value_` (3 points)
#
# Write `clip_grad_value_(parameters, clip_value)` with the semantics of
# `torch.nn.utils.clip_grad_value_`:
#
# - `parameters` is a single tensor **or** any iterable of tensors: a list, a tuple,
#   `model.parameters()` (a generator, which can be walked only once);
# - every gradient `p.grad` is clamped into `[-clip_value, clip_value]` **in place** — the
#   optimizer reads `p.grad` afterwards, so do not rebind it to a new tensor;
# - a tensor whose `.grad` is `None` (it took no part in the loss) is skipped and stays `None`;
# - NaN entries stay NaN; the function returns `None`.
#
# Use tensor operations only (`torch.nn.utils` would be the answer key).

# %% nbgrader={"grade": false, "grade_id": "clip_grad_value", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient entry into [-clip_value, clip_value], in place.

    Args:
        parameters: a tensor or an iterable of tensors whose .grad is clipped; tensors whose
            .grad is None are skipped.
        clip_value: c >= 0, the largest magnitude an entry may keep.

    Returns:
        None.
    """
    ### BEGIN SOLUTION
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    c = float(clip_value)
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                p.grad.clamp_(min=-c, max=c)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "clip_grad_value_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
w = torch.zeros(3, requires_grad=True)
w.grad = torch.tensor([-3.0, 0.5, 2.0])
assert clip_grad_value_([w], 1.0) is None, "clip_grad_value_ works in place and returns None"
assert torch.allclose(w.grad, torch.tensor([-1.0, 0.5, 1.0])), (
    f"clamping [-3, 0.5, 2] into [-1, 1] should give [-1, 0.5, 1] in w.grad, got {w.grad}")
check(clip_grad_value_, "clip_grad_value_")

# %% nbgrader={"grade": true, "grade_id": "clip_grad_value_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: a parameter whose .grad is None, a single tensor, a generator, NaN and inf
# entries, float64 conv weights, and clip_value = 0.
### BEGIN HIDDEN TESTS
check(clip_grad_value_, "clip_grad_value_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Clipping by global norm
#
# Norm clipping rescales the gradient as a whole. With gradients $g_1, \dots, g_k$ (one per
# parameter tensor), the **global** $p$-norm is the norm of the per-tensor norms,
#
# $$
# \|g\|_p = \bigl\|\, (\|g_1\|_p,\ \dots,\ \|g_k\|_p) \,\bigr\|_p ,
# \qquad
# \hat g_i = g_i \cdot \min\!\left(1,\ \frac{\text{max\_norm}}{\|g\|_p + 10^{-6}}\right)
# \quad\text{for every } i .
# $$
#
# Every tensor gets the **same** coefficient, so the full gradient keeps its direction:
# $\hat g = \alpha g$ with $\alpha > 0$, hence $\cos(g, \hat g) = 1$, and its norm becomes
# $\alpha\|g\|_p < \text{max\_norm}$ whenever clipping acts. (Clipping each tensor by its own norm
# would give each its own coefficient, and change the direction again.)
#
# Why the norm of norms? For $0 < p < \infty$,
# $\|g_i\|_p^p = \sum_j |g_{ij}|^p$, so
# $\sum_i \|g_i\|_p^p = \sum_{i,j} |g_{ij}|^p$: the norm of the per-tensor norms **equals** the norm
# of all gradients flattened into one vector, and for $p = \infty$ the max of maxes is the max. It
# is computed tensor by tensor, without concatenating anything. (For $p = 0$, the "norm" that counts
# non-zero entries, the identity fails: the outer count counts tensors, not entries.)

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
gen = torch.Generator().manual_seed(0)
grads = [torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen), torch.randn(2, 2, 2, generator=gen)]
for p in (1.0, 2.0, 3.0, math.inf):
    norm_of_norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, p) for g in grads]), p)
    flattened = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]), p)
    print(f"p = {p}: norm of the per-tensor norms = {norm_of_norms:.6f}, "
          f"norm of everything flattened = {flattened:.6f}")
    assert torch.isclose(norm_of_norms, flattened)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The $10^{-6}$, and the norm that comes back
#
# PyTorch **always** multiplies by the coefficient $\min(1, m / (\|g\| + 10^{-6}))$; it never
# writes "`if norm > max_norm`". The $10^{-6}$ keeps the division finite when every gradient is
# zero, and it means a gradient whose norm is *exactly* `max_norm` is still scaled, by
# $m/(m + 10^{-6})$. Tiny, but it is how the reference behaves, and the hidden tests check it.
#
# `clip_grad_norm_` **returns the total norm before clipping**. That is the most useful single
# number to log during training: a healthy run has a stable gradient norm, and a spike in it is
# usually the first sign of trouble — often visible steps before the loss reacts.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
w.grad = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)  # norm exactly 5
total = torch.nn.utils.clip_grad_norm_([w], max_norm=5.0)  # PyTorch itself, for reference
print(f"returned: {total.item()} (the norm before clipping)")
print(f"gradient after: {w.grad.tolist()} (norm {w.grad.norm().item():.8f})")
assert torch.allclose(w.grad, torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64) * 5.0 / (5.0 + 1e-6), rtol=1e-15)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Non-finite gradients
#
# Clipping cannot repair a gradient that already contains NaN or $\pm\infty$ — it spreads it:
#
# - one NaN entry makes the total norm NaN, the coefficient NaN, and then **every** gradient NaN;
# - one $\infty$ entry makes the total $\infty$ and the coefficient $m/\infty = 0$: finite entries
#   become 0, and the infinite one becomes $0 \cdot \infty = $ NaN.
#
# With `error_if_nonfinite=True`, `clip_grad_norm_` instead raises a `RuntimeError` **before it
# changes any gradient**, so the caller can skip the step — as mixed-precision training's
# `GradScaler` does whenever it finds inf or NaN gradients.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
def clip_norm_of(values, **kwargs):
    """Clip a single gradient with PyTorch's clip_grad_norm_ (max_norm = 1); return (total, grad)."""
    p = torch.zeros(len(values), requires_grad=True)
    p.grad = torch.tensor(values)
    total = torch.nn.utils.clip_grad_norm_([p], max_norm=1.0, **kwargs)
    return total.item(), p.grad.tolist()


print("NaN entry:", clip_norm_of([1.0, math.nan, 2.0]))
print("inf entry:", clip_norm_of([1.0, math.inf, 2.0]))
p = torch.zeros(3, requires_grad=True)
p.grad = torch.tensor([1.0, math.nan, 2.0])
try:
    torch.nn.utils.clip_grad_norm_([p], max_norm=1.0, error_if_nonfinite=True)
except RuntimeError as err:
    print("error_if_nonfinite=True raised RuntimeError:", str(err)[:60], "...")
print("gradient left untouched:", p.grad.tolist())

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 2 — `clip_grad_norm_` (3 points)
#
# Write `clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False)` with the
# semantics of `torch.nn.utils.clip_grad_norm_`:
#
# 1. accept a single tensor or any iterable; skip tensors whose `.grad` is `None` (turn a
#    generator into a list **first**: you need to walk the gradients twice);
# 2. compute the total norm as the `norm_type`-norm of the per-tensor norms
#    (`torch.linalg.vector_norm` does one tensor; `norm_type` may be `math.inf` or the string
#    `"inf"` — `float("inf")` understands both);
# 3. if `error_if_nonfinite` and the total is NaN or infinite, raise `RuntimeError` before touching
#    any gradient;
# 4. multiply **every** gradient in place by `clamp(max_norm / (total + 1e-6), max=1.0)`;
# 5. return the total norm **before** clipping, as a 0-dim tensor — `torch.tensor(0.0)` when there
#    are no gradients at all.
#
# Gradients may mix float32 and float64; each keeps its own dtype.

# %% nbgrader={"grade": false, "grade_id": "clip_grad_norm", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Rescale all gradients together so that their global norm is at most max_norm.

    Args:
        parameters: a tensor or an iterable of tensors whose .grad is clipped; tensors whose
            .grad is None are skipped.
        max_norm: the largest total norm allowed.
        norm_type: p of the p-norm: a number, math.inf or the string "inf".
        error_if_nonfinite: raise RuntimeError, before changing anything, if the total norm is
            NaN or infinite.

    Returns:
        The total norm of the gradients before clipping, a 0-dim tensor.
    """
    ### BEGIN SOLUTION
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]  # a list: walked twice below
    if not grads:
        return torch.tensor(0.0)
    order = float(norm_type)  # 2, 2.0, math.inf and "inf" all work
    with torch.no_grad():
        per_tensor = torch.stack([torch.linalg.vector_norm(g, order) for g in grads])
        total = torch.linalg.vector_norm(per_tensor, order)
        if error_if_nonfinite and not torch.isfinite(total):
            raise RuntimeError(f"the total norm of order {order} of the gradients is non-finite: {total.item()}")
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef)
    return total
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "clip_grad_norm_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
a = torch.zeros(2, requires_grad=True)
a.grad = torch.tensor([3.0, 0.0])
b = torch.zeros(1, requires_grad=True)
b.grad = torch.tensor([4.0])
total = clip_grad_norm_([a, b], max_norm=1.0)
assert isinstance(total, torch.Tensor) and abs(total.item() - 5.0) < 1e-5, (
    f"the global norm of [3, 0] and [4] is sqrt(9 + 16) = 5; return it (measured before clipping), got {total!r}")
after = torch.cat([a.grad, b.grad])
assert torch.allclose(after, torch.tensor([0.6, 0.0, 0.8]), atol=1e-5), (
    f"both gradients are scaled by the same factor 1/5: expected [0.6, 0] and [0.8], got {after.tolist()}")
check(clip_grad_norm_, "clip_grad_norm_")

# %% nbgrader={"grade": true, "grade_id": "clip_grad_norm_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: several parameters that are small alone but not together, None gradients, no
# gradients at all, a single tensor, a generator, the inf-norm (also as "inf"), a 3-norm, the
# 1e-6 with tiny float64 gradients and with a total exactly equal to max_norm, mixed float32 and
# float64, max_norm = 0, NaN and inf gradients, and error_if_nonfinite=True.
### BEGIN HIDDEN TESTS
check(clip_grad_norm_, "clip_grad_norm_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Value or norm?
#
# | | by value | by global norm |
# |---|---|---|
# | bounds | every entry, $\|\hat g\|_\infty \le c$ | the whole gradient, $\|\hat g\|_2 \le m$ |
# | direction | changes whenever some entries are clipped | kept: $\hat g = \alpha g$ |
# | threshold means | a size per entry, independent of the model's size | a size for the whole step |
# | typical use | older RNN code; rarely today | RNNs, transformers (`max_norm = 1.0` in BERT and GPT-3) |
#
# Norm clipping is the default choice. Its one weakness is that a single threshold serves every
# layer, however large or small that layer's weights are — which is what the next method fixes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Adaptive gradient clipping (AGC)
#
# What makes a step dangerous is not the absolute size of the gradient but its size **relative to
# the weights** it changes: with SGD, $\|\Delta W\| / \|W\| = \eta\,\|G\| / \|W\|$. A gradient of norm
# 1 is a negligible nudge for weights of norm 100 and a demolition for weights of norm 0.01. Brock,
# De, Smith and Simonyan (2021) used this to train very deep **normalizer-free** ResNets (NFNets)
# with large batches. AGC clips **unit-wise**: for every output unit $i$ of a layer — row $i$ of a
# Linear weight of shape (out, in), filter $i$ of a conv weight (out, in, kh, kw) — with $W_i$ its
# weights and $G_i$ their gradient,
#
# $$
# G_i \leftarrow
# \begin{cases}
#   \lambda\,\dfrac{\max(\|W_i\|, \epsilon)}{\|G_i\|}\; G_i
#     & \text{if } \dfrac{\|G_i\|}{\max(\|W_i\|, \epsilon)} > \lambda, \\[2ex]
#   G_i & \text{otherwise.}
# \end{cases}
# $$
#
# All norms are Frobenius norms over every dimension but the first; a bias (one dimension) is a
# single unit. The **clip factor** $\lambda$ bounds the ratio; in NFNets the best $\lambda$ was
# smaller for larger batches (0.01 at batch size 4096). $\epsilon = 10^{-3}$ keeps zero-initialised weights (whose
# norm is 0) from having their gradients clipped to zero forever. NFNets leave the final linear
# layer unclipped.
#
# The consequence, for plain SGD: every unit's update is bounded relative to its own weights,
# $\|\Delta W_i\| = \eta\,\|\hat G_i\| \le \eta\,\lambda \max(\|W_i\|, \epsilon)$.

# %% [markdown] slideshow={"slide_type": "subslide"}
# The cell below applies the reference `stabletrain.adaptive_clip_grad_` to the gradients of a
# 3-layer tanh MLP on a spiral data set and checks the three claims: after clipping no unit's ratio
# exceeds $\lambda$; units below $\lambda$ are untouched; and one SGD step changes each unit by at
# most $\eta\lambda\max(\|W_i\|, \epsilon)$.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
from stabletrain.data import make_spirals
from stabletrain.models import make_mlp

x, y = make_spirals(100, classes=3, seed=0)
mlp = make_mlp(2, 64, 3, 3, activation="tanh", seed=0)
torch.nn.functional.cross_entropy(mlp(x), y).backward()
params = list(mlp.parameters())
lam, eps, lr = 0.02, 1e-3, 0.1

w_norms = lab.unit_norms(params)
g_before = lab.unit_norms([p.grad for p in params])
before = [p.detach().clone() for p in params]
stabletrain.adaptive_clip_grad_(params, clip_factor=lam, eps=eps)
g_after = lab.unit_norms([p.grad for p in params])
ratio_before, ratio_after = g_before / np.maximum(w_norms, eps), g_after / np.maximum(w_norms, eps)
print(f"{(ratio_before > lam).sum()} of {len(w_norms)} units above lambda = {lam}; "
      f"largest ratio before {ratio_before.max():.3f}, after {ratio_after.max():.5f}")
assert np.all(ratio_after <= lam * (1 + 1e-6))
assert np.allclose(g_after[ratio_before < lam], g_before[ratio_before < lam])

torch.optim.SGD(params, lr=lr).step()
step_sizes = lab.unit_norms([p.detach() - b for p, b in zip(params, before)])
assert np.all(step_sizes <= lr * lam * np.maximum(w_norms, eps) * (1 + 1e-5))
print(f"largest relative update ||dW_i|| / max(||W_i||, eps) = {(step_sizes / np.maximum(w_norms, eps)).max():.5f} "
      f"<= lr * lambda = {lr * lam}")

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_agc_units(w_norms, g_before, g_after, clip_factor=lam, eps=eps)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Exercise 3 — `adaptive_clip_grad_` (3 points)
#
# Write `adaptive_clip_grad_(parameters, clip_factor=0.01, eps=1e-3)`, in place, following the
# formula above:
#
# - a single tensor or any iterable; skip tensors whose `.grad` is `None`;
# - for a tensor with 2 or more dimensions, the unit norms run over every dimension but dim 0
#   (`torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)` gives shape
#   `(out, 1, ..., 1)`, which broadcasts against the tensor); a tensor with 0 or 1 dimensions is one
#   unit;
# - a unit is rescaled to norm $\lambda\max(\|W_i\|, \epsilon)$ when its gradient norm is at least
#   that limit, and left alone when it is below; when rescaling, divide by
#   $\max(\|G_i\|, 10^{-6})$ so that a zero gradient cannot divide by zero;
# - compute the weight norms from the parameter's values (`p.detach()`), not from its gradient.

# %% nbgrader={"grade": false, "grade_id": "adaptive_clip_grad", "locked": false, "schema_version": 3, "solution": true, "task": false} slideshow={"slide_type": "fragment"}
def adaptive_clip_grad_(parameters, clip_factor=0.01, eps=1e-3):
    """Adaptive gradient clipping, unit-wise and in place (Brock et al. 2021).

    Args:
        parameters: a tensor or an iterable of tensors whose .grad is clipped; tensors whose
            .grad is None are skipped.
        clip_factor: lambda, the largest allowed ratio ||G_i|| / max(||W_i||, eps).
        eps: the floor on a unit's weight norm.

    Returns:
        None.
    """
    ### BEGIN SOLUTION
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    with torch.no_grad():
        for p in parameters:
            if p.grad is None:
                continue
            g = p.grad
            if p.ndim <= 1:
                w_norm = torch.linalg.vector_norm(p.detach())
                g_norm = torch.linalg.vector_norm(g)
            else:
                dims = tuple(range(1, p.ndim))
                w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True)
                g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
            limit = w_norm.clamp(min=eps) * clip_factor
            clipped = g * (limit / g_norm.clamp(min=1e-6))
            g.copy_(torch.where(g_norm < limit, g, clipped))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "adaptive_clip_grad_visible", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "-"}
W = torch.tensor([[3.0, 4.0], [0.6, 0.8]], requires_grad=True)  # unit (row) norms 5 and 1
W.grad = torch.tensor([[0.0, 0.01], [0.3, 0.4]])  # gradient norms 0.01 and 0.5
adaptive_clip_grad_([W], clip_factor=0.1)  # limits 0.1 * 5 = 0.5 and 0.1 * 1 = 0.1
assert torch.allclose(W.grad[0], torch.tensor([0.0, 0.01])), (
    f"row 0 has ||G|| = 0.01 < 0.1 * ||W|| = 0.5 and must stay [0, 0.01], got {W.grad[0]}")
assert torch.allclose(W.grad[1], torch.tensor([0.06, 0.08]), atol=1e-6), (
    f"row 1 has ||G|| = 0.5 > 0.1 * ||W|| = 0.1: rescale it to norm 0.1, i.e. [0.06, 0.08]; got {W.grad[1]}")
check(adaptive_clip_grad_, "adaptive_clip_grad_")

# %% nbgrader={"grade": true, "grade_id": "adaptive_clip_grad_hidden", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false} slideshow={"slide_type": "skip"}
# Hidden tests: zero weights (the eps floor), conv filters as units, a matrix where only one unit
# is clipped, a None gradient, a single tensor, a generator, float64, and the default arguments.
### BEGIN HIDDEN TESTS
check(adaptive_clip_grad_, "adaptive_clip_grad_", level="hidden")
### END HIDDEN TESTS

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Experiment: an RNN that blows up
#
# **The task** is the *adding problem* (Hochreiter & Schmidhuber, 1997): each input is a sequence
# of $T = 10$ steps with two channels, a random value $v_t \sim U(0, 1)$ and a marker that is 1 at
# exactly two steps; the target is the sum of the two marked values. Always answering the mean, 1,
# gives a mean squared error of $\operatorname{Var} y = 2/12 \approx 0.167$: a model has to carry
# information across the sequence to do better.
#
# **The model** is a tanh RNN with 16 hidden units (321 parameters), trained with SGD with
# momentum 0.9 at learning rate 0.2 on minibatches of 64, for 300 steps — a learning rate that is
# too high for this network without help. Clipping goes between `backward()` and `step()`:
#
# ```python
# optimizer.zero_grad()
# loss = F.mse_loss(model(x_batch), y_batch)
# loss.backward()
# total_norm = clip_grad_norm_(model.parameters(), max_norm=1.0)   # log it!
# optimizer.step()
# ```
#
# `lab.train_rnn(kind, threshold)` is that loop for one run. To compare many settings we train
# them **all at once**: `lab.train_grid()` stacks 21 copies of the RNN — same initialisation, same
# minibatches — and clips each one its own way: no clipping; by value and by norm at seven
# thresholds; AGC at six clip factors (the final layer left unclipped, as in NFNets). To compare
# value and norm clipping fairly, value clipping with threshold `max_norm` uses
# $c = \text{max\_norm}/\sqrt{P}$, the clip value that guarantees the same bound
# $\|\hat g\|_2 \le \text{max\_norm}$.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
grid = lab.train_grid()
print(f"trained {len(grid.runs)} RNNs x {grid.cfg.steps} steps in {grid.seconds:.1f} s")
none, by_value, by_norm, agc = grid["none", None], grid["value", 1.0], grid["norm", 1.0], grid["agc", 0.1]
for run in (none, by_value, by_norm, agc):
    final = f"diverged at step {run.diverged_at}" if run.diverged_at is not None else f"final loss {run.final_loss:.3f}"
    print(f"{run.label:38s} {final:24s} steps clipped {run.clipped_fraction:4.0%}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Is the batched grid really the same computation as the plain loop? The cell below trains one
# run with `lab.train_rnn` and compares. They agree to float32 rounding at first, and then drift
# apart after some tens of steps: at this learning rate training is **chaotic**, and a difference
# in the last bit grows exponentially — just like the gradients of Section 1. The qualitative
# outcome (diverges or not, loss level) is what to read from a single run.

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
single = lab.train_rnn("norm", 1.0)
relative = np.abs(single.losses - by_norm.losses) / by_norm.losses
print(f"largest relative difference of the losses over the first 40 steps: {relative[:40].max():.1e}")
print(f"final loss: train_rnn {single.final_loss:.4f}, grid {by_norm.final_loss:.4f}")
assert relative[:40].max() < 1e-3

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_loss_and_norms([none, by_value, by_norm, agc], max_norm=1.0)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Reading the plot.** Without clipping, the gradient norm grows by about an order of magnitude
# every few steps from the very start, and the loss follows it until it overflows: each long
# step lands where the gradient is larger still. Clipping by global norm at `max_norm = 1` acts
# in most of the first twenty steps — the gradient norm starts near 5 — and during later bursts
# of large gradients, about one step in five overall. That is enough: the run trains to a loss
# far below the 0.167 of predicting the mean. The right panel is exactly what you would log in
# practice: the value `clip_grad_norm_` returns.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_clipping_stats([by_value, by_norm, agc])

# %% [markdown] slideshow={"slide_type": "fragment"}
# Norm clipping changes the length of the gradient and nothing else: its cosine with the raw
# gradient is 1 at every step. Value clipping, held to the same guarantee, acts at almost every
# step and bends the gradient (cosine well below 1), which costs progress. AGC also changes the
# direction — by design: it rebalances the step across units so that none of them moves too far
# relative to its weights.

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
lab.plot_threshold_sweep(grid)

# %% [markdown] slideshow={"slide_type": "fragment"}
# **Choosing the threshold.** From `max_norm = 0.1` to 2, norm clipping trains well: because it
# keeps the direction, a tight threshold acts like a smaller learning rate on the steps it
# touches. At 5 and 10 the run no longer overflows — clipping still bounds every step — but the
# steps it allows are too long to make progress, and the loss stays high although clipping acts
# at almost every step. Value clipping, at the same guarantee, is worse wherever norm clipping
# works. AGC trains at every $\lambda$ tried here; its threshold is relative to the weights, so
# one value carries over between layers and models. In practice, start from the typical gradient
# norm of a healthy run (log it!) or from `max_norm = 1.0`, which many transformer recipes use.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Your `clip_grad_norm_` in the loop
#
# This cell needs **your** `clip_grad_norm_` from Exercise 2. It trains the RNN with it and with the
# reference; a correct implementation gives the same losses (at first to the last digits — later,
# as above, rounding differences may grow).

# %% tags=["experiment"] slideshow={"slide_type": "fragment"}
try:
    mine = lab.train_rnn("norm", 1.0, clip_fn=lambda params: clip_grad_norm_(params, 1.0))
except NotImplementedError:
    print("Finish Exercise 2 first: clip_grad_norm_ still raises NotImplementedError.")
else:
    difference = np.abs(mine.losses[:40] - single.losses[:40]).max()
    print(f"your clip_grad_norm_: final loss {mine.final_loss:.4f} (reference {single.final_loss:.4f}); "
          f"largest difference over the first 40 steps {difference:.1e}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Explore
#
# Every run of the grid is already trained, so the explorer only redraws. Pick a clipping method
# and a threshold, and watch the loss (the unclipped run in grey), the gradient norm before and
# after clipping, and the cosine between the raw and the clipped gradient. Questions to answer:
#
# - Which is the largest `max_norm` at which norm clipping still trains? Where on the gradient-norm
#   panel does the threshold sit when it stops working?
# - At the same `max_norm`, how much more often does value clipping act than norm clipping?
# - For AGC, which $\lambda$ clips at almost every step, and which almost never? How does the
#   cosine change between them?

# %% tags=["experiment"] slideshow={"slide_type": "subslide"}
explorer = lab.ClippingExplorer(grid, kind="norm", max_norm=1.0, clip_factor=0.1)
explorer.widget

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Recap
#
# - Backpropagation through $T$ steps or layers multiplies $T$ Jacobians; the product explodes or
#   vanishes geometrically. An exploding gradient makes a step $\eta\|g\|$ far too long, and a
#   runaway follows.
# - **Clipping by value** clamps each entry into $[-c, c]$; it changes the gradient's direction.
# - **Clipping by global norm** multiplies all gradients by
#   $\min(1, m/(\|g\| + 10^{-6}))$ with $\|g\|$ the norm of the per-parameter norms; the direction is
#   kept (cosine 1). It returns the norm *before* clipping — log it.
# - Clipping spreads NaN and $\infty$ rather than fixing them; `error_if_nonfinite=True` raises
#   before anything changes.
# - **AGC** clips each unit where $\|G_i\|/\max(\|W_i\|, \epsilon) > \lambda$, bounding every unit's
#   relative update; the final layer is usually left out.
# - Clipping goes between `loss.backward()` and `optimizer.step()`, and a good threshold sits near
#   the gradient norm of a healthy run.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Common mistakes
#
# - **Clipping each parameter by its own norm** instead of the global norm: the direction of the
#   full gradient changes, and the bound on the step is $\sqrt{k}$ times looser.
# - **Clipping after `optimizer.step()`** (or before `backward()`): the step has already used the
#   raw gradient. With gradient accumulation, clip once, after the last micro-batch.
# - **Mixed precision without unscaling**: with a `GradScaler`, call `scaler.unscale_(optimizer)`
#   before clipping, or the threshold applies to gradients multiplied by the loss scale.
# - **Passing a generator twice**: `model.parameters()` is consumed by the first loop; make a list.
# - **Forgetting that `.grad` may be `None`** for parameters that did not take part in the loss.
# - **Expecting clipping to fix NaN**: it spreads NaN to every gradient; find the cause instead.
# - **Rebinding a local name instead of writing in place**: `g = g.clamp(-c, c)` makes a new
#   tensor and leaves `p.grad` unchanged; the optimizer reads `p.grad`, so use `g.clamp_(-c, c)`.
# - **A threshold far above every gradient norm**: clipping that never acts protects nothing. Log
#   the returned norm and look.
#
# **References.** R. Pascanu, T. Mikolov, Y. Bengio, *On the difficulty of training recurrent
# neural networks*, ICML 2013. A. Brock, S. De, S. L. Smith, K. Simonyan, *High-Performance
# Large-Scale Image Recognition Without Normalization*, ICML 2021. PyTorch documentation of
# `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.
