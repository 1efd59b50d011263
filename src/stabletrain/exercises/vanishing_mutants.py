"""Lesson 01's mutant catalogue: plausible wrong implementations, each with its misconception.

Imported by the grader and the project's tests only (never in a student's grading kernel).
"""

from __future__ import annotations

import math

import numpy as np

from ..vanishing import activation_and_derivative as _act
from ..vanishing import derivative_square_mean, mlp_forward
from .base import Mutant

# ----------------------------------------------------------------------------------------------
# backprop_grad_norms


def _spectral(a):
    """np.linalg.norm(M, 2): the largest singular value of a matrix (the 2-norm of a vector)."""
    return np.linalg.norm(a, 2)


def _backprop(weights, biases, x, grad_output, activation, *, transpose=False, derivative="pre", weight_input="prev",
              report="input", use_bias=True, squared=False, linear_output=False, norm_of_weights=None,
              norm_of_inputs=None):
    """The reference's loop with one thing changed (the keyword arguments name what)."""
    if not use_bias:
        biases = [np.zeros_like(b) for b in biases]
    pre, post = mlp_forward(weights, biases, x, activation)
    L = len(weights)
    input_norms, weight_norms = np.empty(L), np.empty(L)
    g = np.asarray(grad_output, dtype=np.float64)
    norm = (lambda a: float(np.sum(a**2))) if squared else np.linalg.norm
    weight_norm, input_norm = norm_of_weights or norm, norm_of_inputs or norm
    for l in range(L, 0, -1):  # noqa: E741
        if linear_output and l == L:  # as if the last layer had no activation (h_L = y_L)
            fprime = np.ones_like(pre[l - 1])
        elif derivative == "pre":
            fprime = _act(activation, pre[l - 1])[1]
        elif derivative == "post":  # f'(h_l): the derivative evaluated at the layer's output
            fprime = _act(activation, post[l])[1]
        elif derivative == "output_formula_on_pre":  # sigmoid: y(1-y), tanh: 1 - y^2
            y = pre[l - 1]
            fprime = {"sigmoid": y * (1 - y), "tanh": 1 - y**2}.get(activation, _act(activation, y)[1])
        else:  # no derivative at all
            fprime = np.ones_like(pre[l - 1])
        delta = g * fprime
        if weight_input == "pre":  # the layer's input before its activation: y_(l-1) (x for the first layer)
            h_in = pre[l - 2] if l > 1 else post[0]
        else:
            h_in = post[l - 1] if weight_input == "prev" else post[l]
        weight_norms[l - 1] = weight_norm(delta.T @ h_in)
        before = g
        W = np.asarray(weights[l - 1], dtype=np.float64)
        g = delta @ (W.T if transpose else W)
        input_norms[l - 1] = input_norm({"input": g, "delta": delta, "output": before}[report])
    return input_norms, weight_norms


def _bp_transposed(w, b, x, g, a):
    return _backprop(w, b, x, g, a, transpose=True)


def _bp_no_derivative(w, b, x, g, a):
    return _backprop(w, b, x, g, a, derivative="none")


def _bp_post(w, b, x, g, a):
    return _backprop(w, b, x, g, a, derivative="post")


def _bp_output_formula(w, b, x, g, a):
    return _backprop(w, b, x, g, a, derivative="output_formula_on_pre")


def _bp_weight_off_by_one(w, b, x, g, a):
    return _backprop(w, b, x, g, a, weight_input="this")


def _bp_reports_delta(w, b, x, g, a):
    return _backprop(w, b, x, g, a, report="delta")


def _bp_reports_output_grad(w, b, x, g, a):
    return _backprop(w, b, x, g, a, report="output")


def _bp_reversed(w, b, x, g, a):
    inputs, weights = _backprop(w, b, x, g, a)
    return inputs[::-1].copy(), weights[::-1].copy()


def _bp_no_bias(w, b, x, g, a):
    return _backprop(w, b, x, g, a, use_bias=False)


def _bp_squared(w, b, x, g, a):
    return _backprop(w, b, x, g, a, squared=True)


def _bp_linear_output(w, b, x, g, a):
    return _backprop(w, b, x, g, a, linear_output=True)


def _bp_spectral(w, b, x, g, a):
    return _backprop(w, b, x, g, a, norm_of_weights=_spectral, norm_of_inputs=_spectral)


def _bp_spectral_weights(w, b, x, g, a):
    return _backprop(w, b, x, g, a, norm_of_weights=_spectral)


def _bp_weight_with_pre_activation(w, b, x, g, a):
    return _backprop(w, b, x, g, a, weight_input="pre")


def _bp_mean_over_batch(w, b, x, g, a):
    inputs, weights = _backprop(w, b, x, g, a)
    return inputs, weights / np.asarray(x).shape[0]


BACKPROP: dict[str, Mutant] = {
    "transposed_weights": Mutant(_bp_transposed, "going backward multiplies by W_l, not W_lᵀ, in the row "
                                 "convention y = h Wᵀ + b: g_(l-1) = δ_l W_l (shape (B, n_l) @ (n_l, n_(l-1)))."),
    "no_activation_derivative": Mutant(_bp_no_derivative, "the chain rule passes through the activation: "
                                       "δ_l = g_l ⊙ f′(y_l) before multiplying by the weights."),
    "derivative_at_post_activation": Mutant(_bp_post, "f′ is evaluated at the pre-activation y_l, not at the "
                                            "layer's output h_l = f(y_l) (f′(h_l) is a different number)."),
    "output_formula_on_pre_activation": Mutant(_bp_output_formula, "σ′ = h(1 − h) and tanh′ = 1 − h² are written "
                                               "with the layer's output h = f(y); applied to y itself they are wrong."),
    "weight_gradient_off_by_one": Mutant(_bp_weight_off_by_one, "∂L/∂W_l = δ_lᵀ h_(l-1) uses the layer's *input* "
                                         "h_(l-1), not its output h_l (an off-by-one layer index)."),
    "reports_pre_activation_gradient": Mutant(_bp_reports_delta, "input_grad_norms holds ‖∂L/∂h_(l-1)‖ = ‖δ_l W_l‖ "
                                              "(after the weights), not ‖δ_l‖ = ‖∂L/∂y_l‖ (the pre-activation "
                                              "gradient)."),
    "reports_output_gradient": Mutant(_bp_reports_output_grad, "entry l-1 is the gradient at layer l's *input* "
                                      "h_(l-1); ‖∂L/∂h_l‖ (its output) belongs one layer later (off by one)."),
    "reversed_layer_order": Mutant(_bp_reversed, "backprop visits layers from the output down, but the results "
                                   "are returned in layer order: entry 0 is the first layer."),
    "biases_ignored": Mutant(_bp_no_bias, "the biases are part of the forward pass: y_l = h_(l-1) W_lᵀ + b_l, and "
                             "f′(y_l) depends on them."),
    "squared_norm": Mutant(_bp_squared, "the Frobenius norm is the square root of the sum of squares."),
    "mean_over_batch": Mutant(_bp_mean_over_batch, "the loss is the sum Σ G ⊙ h_L over the batch, so ∂L/∂W_l sums "
                              "the examples' contributions; do not divide by the batch size."),
    "no_activation_on_the_output_layer": Mutant(_bp_linear_output, "in this exercise's network every layer applies "
                                                "the activation, the last one too (h_L = f(y_L)), so the backward "
                                                "pass starts with δ_L = G ⊙ f′(y_L). (Section 7's models end in a "
                                                "plain Linear layer; this one does not.)"),
    "spectral_norm": Mutant(_bp_spectral, "np.linalg.norm(M, 2) of a matrix is its spectral norm, the largest "
                            "singular value; the exercise asks for the Frobenius norm, np.linalg.norm(M) (or "
                            "np.linalg.norm(M, 'fro')): the square root of the sum of all squared entries."),
    "spectral_norm_of_the_weight_gradient": Mutant(_bp_spectral_weights, "np.linalg.norm(M, 2) of the weight "
                                                   "gradient δᵀh is its largest singular value; ‖∂L/∂W_l‖_F is "
                                                   "np.linalg.norm(M) (or 'fro'), the root of the sum of squares."),
    "weight_gradient_with_pre_activation": Mutant(_bp_weight_with_pre_activation, "∂L/∂W_l = δ_lᵀ h_(l-1) pairs "
                                                  "δ_l with what layer l multiplies, the previous layer's output "
                                                  "h_(l-1) = f(y_(l-1)), not its pre-activation y_(l-1)."),
}

# ----------------------------------------------------------------------------------------------
# log_grad_slope


def _mc(activation, preact_var, fn, n=200_001):
    z = math.sqrt(preact_var) * np.linspace(-8, 8, n)
    w = np.exp(-np.linspace(-8, 8, n) ** 2 / 2)
    return float(np.sum(w * fn(activation, z)) / np.sum(w))


def _d2(a, q):
    return derivative_square_mean(a, q)


def _slope_base10(weight_std, width, activation, preact_var=1.0):
    return 0.5 * math.log10(width * weight_std**2 * _d2(activation, preact_var))


def _slope_sigma_not_squared(weight_std, width, activation, preact_var=1.0):
    return 0.5 * math.log(width * weight_std * _d2(activation, preact_var))


def _slope_no_half(weight_std, width, activation, preact_var=1.0):
    return math.log(width * weight_std**2 * _d2(activation, preact_var))


def _slope_mean_derivative_squared(weight_std, width, activation, preact_var=1.0):
    mean = _mc(activation, preact_var, lambda a, z: _act(a, z)[1])
    return 0.5 * math.log(width * weight_std**2 * mean**2)


def _slope_forward_moment(weight_std, width, activation, preact_var=1.0):
    m2 = _mc(activation, preact_var, lambda a, z: _act(a, z)[0] ** 2)
    return 0.5 * math.log(width * weight_std**2 * m2)


def _slope_derivative_at_zero(weight_std, width, activation, preact_var=1.0):
    d0 = {"linear": 1.0, "sigmoid": 1 / 16, "tanh": 1.0, "relu": 1.0}[activation]
    return 0.5 * math.log(width * weight_std**2 * d0)


def _slope_sign_flipped(weight_std, width, activation, preact_var=1.0):
    return -0.5 * math.log(width * weight_std**2 * _d2(activation, preact_var))


def _slope_variance_as_std(weight_std, width, activation, preact_var=1.0):
    return 0.5 * math.log(width * weight_std**2 * _d2(activation, preact_var**2))


def _slope_hermgauss_nodes(weight_std, width, activation, preact_var=1.0):
    """Nodes and weights of np.polynomial.hermite.hermgauss (weight e^(-x²)) in the formula for hermegauss
    (weight e^(-x²/2)): z = √q·x and a division by √(2π)."""
    if activation in ("linear", "relu"):
        d2 = _d2(activation, preact_var)
    else:
        nodes, weights = np.polynomial.hermite.hermgauss(100)
        d2 = float(np.sum(weights * _act(activation, math.sqrt(preact_var) * nodes)[1] ** 2) / math.sqrt(2 * math.pi))
    return 0.5 * math.log(width * weight_std**2 * d2)


def _slope_no_width(weight_std, width, activation, preact_var=1.0):
    return 0.5 * math.log(weight_std**2 * _d2(activation, preact_var))


SLOPE: dict[str, Mutant] = {
    "base10_log": Mutant(_slope_base10, "the slope is of the natural log ln‖g‖ (numpy's np.log); log10 gives a "
                         "slope 2.3 times smaller."),
    "sigma_not_squared": Mutant(_slope_sigma_not_squared, "the gain is n·σ_w²·E[f′(z)²]: the variance of the "
                                "weights, σ_w², not their standard deviation σ_w."),
    "no_half": Mutant(_slope_no_half, "the gain r multiplies the *squared* norm ‖g‖²; the norm itself changes by "
                      "√r, so ln‖g‖ changes by ½·ln r per layer."),
    "mean_derivative_squared": Mutant(_slope_mean_derivative_squared, "the gain needs the second moment E[f′(z)²], "
                                      "not the squared mean (E[f′(z)])², which is smaller."),
    "forward_second_moment": Mutant(_slope_forward_moment, "the backward gain uses the derivative, E[f′(z)²]; "
                                    "E[f(z)²] is the forward (activation) gain."),
    "derivative_at_zero": Mutant(_slope_derivative_at_zero, "z ~ N(0, q) spreads over the nonlinearity: average "
                                 "f′(z)² over that distribution instead of using f′(0)²."),
    "sign_flipped": Mutant(_slope_sign_flipped, "the slope is the change of ln‖g‖ per layer going backward "
                           "(towards the input): negative when gradients vanish."),
    "variance_as_std": Mutant(_slope_variance_as_std, "preact_var is the variance q of z: sample z = √q·x with "
                              "x ~ N(0, 1), not q·x."),
    "no_width": Mutant(_slope_no_width, "each entry of g_(l-1) sums n terms W_ij·δ_i: the gain has the factor n "
                       "(the width)."),
    "hermgauss_nodes_with_the_hermegauss_formula": Mutant(
        _slope_hermgauss_nodes, "np.polynomial.hermite.hermgauss is for the weight e^(−x²): with it, "
        "E[u(z)] = Σ wᵢ·u(√(2q)·xᵢ)/√π. The formula Σ wᵢ·u(√q·xᵢ)/√(2π) belongs to "
        "np.polynomial.hermite_e.hermegauss (weight e^(−x²/2)); do not mix the two."),
}

# ----------------------------------------------------------------------------------------------
# jacobian_singular_values


def _jac(weights, biases, x, activation, *, order="forward", derivative="pre", transpose=False, last_only=False,
         use_bias=True, linear_output=False, weight_then_derivative=False):
    if not use_bias:
        biases = [np.zeros_like(np.asarray(b, dtype=np.float64)) for b in biases]
    pre, post = mlp_forward(weights, biases, x, activation)
    factors = []
    for i, W in enumerate(weights):
        W = np.asarray(W, dtype=np.float64)
        W = W.T if transpose else W
        if linear_output and i == len(weights) - 1:
            d = np.ones(W.shape[0])
        elif derivative == "pre":
            d = _act(activation, pre[i])[1]
        elif derivative == "post":
            d = _act(activation, post[i + 1])[1]
        else:
            d = np.ones(W.shape[0])
        factors.append(W @ np.diag(d) if weight_then_derivative else d[:, None] * W)  # W·D raises unless square
    if last_only:
        factors = factors[-1:]
    J = factors[0]
    for F in factors[1:]:
        J = F @ J if order == "forward" else J @ F
    return J


def _jac_no_derivative(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, derivative="none"), compute_uv=False)


def _jac_post(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, derivative="post"), compute_uv=False)


def _jac_wrong_order(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, order="reversed"), compute_uv=False)


def _jac_transposed_weights(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, transpose=True), compute_uv=False)


def _jac_last_layer(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, last_only=True), compute_uv=False)


def _jac_ascending(w, b, x, a):
    return np.sort(np.linalg.svd(_jac(w, b, x, a), compute_uv=False))


def _jac_eigenvalues(w, b, x, a):
    return np.sort(np.abs(np.linalg.eigvals(_jac(w, b, x, a))))[::-1].copy()


def _jac_squared(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a), compute_uv=False) ** 2


def _jac_no_bias(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, use_bias=False), compute_uv=False)


def _jac_linear_output(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, linear_output=True), compute_uv=False)


def _jac_weight_then_derivative(w, b, x, a):
    return np.linalg.svd(_jac(w, b, x, a, weight_then_derivative=True), compute_uv=False)


def _jac_root_of_gram_eigenvalues(w, b, x, a):
    """√(eigenvalues of JᵀJ) (or J Jᵀ, the smaller of the two), largest first: the squared condition number."""
    J = _jac(w, b, x, a)
    gram = J.T @ J if J.shape[1] <= J.shape[0] else J @ J.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))[::-1].copy()


def _jac_product_of_layer_values(w, b, x, a):
    """Multiplies the singular values of the layers: right only if all of them were aligned."""
    pre, _ = mlp_forward(w, b, x, a)
    values = None
    for W, y in zip(w, pre):
        s = np.linalg.svd(_act(a, y)[1][:, None] * np.asarray(W), compute_uv=False)
        values = s if values is None else values[: len(s)] * s[: len(values)]
    return values


JACOBIAN: dict[str, Mutant] = {
    "no_activation_derivative": Mutant(_jac_no_derivative, "each layer contributes D_l W_l with "
                                       "D_l = diag(f′(y_l)); without D_l it is the Jacobian of a linear network."),
    "derivative_at_post_activation": Mutant(_jac_post, "D_l = diag(f′(y_l)) is evaluated at the pre-activation y_l, "
                                            "not at h_l = f(y_l)."),
    "wrong_product_order": Mutant(_jac_wrong_order, "the chain rule multiplies from the output side: "
                                  "J = D_L W_L ⋯ D_1 W_1, each new layer on the left."),
    "transposed_weights": Mutant(_jac_transposed_weights, "∂y_l/∂h_(l-1) = W_l (shape (n_l, n_(l-1))), not W_lᵀ."),
    "last_layer_only": Mutant(_jac_last_layer, "the input-output Jacobian is the product over all layers, not "
                              "one layer's D_L W_L."),
    "ascending_order": Mutant(_jac_ascending, "singular values are returned largest first, as numpy.linalg.svd "
                              "returns them."),
    "eigenvalues": Mutant(_jac_eigenvalues, "singular values of J (square roots of the eigenvalues of JᵀJ) are not "
                          "the magnitudes of J's eigenvalues."),
    "squared": Mutant(_jac_squared, "the eigenvalues of JᵀJ are the squared singular values: take the square root."),
    "product_of_layer_values": Mutant(_jac_product_of_layer_values, "the singular values of a product are not the "
                                      "products of the layers' singular values (their directions are not aligned); "
                                      "multiply the matrices first."),
    "biases_ignored": Mutant(_jac_no_bias, "the biases move the pre-activations y_l = W_l h_(l-1) + b_l, so they "
                             "decide D_l = diag(f′(y_l)): compute the forward pass with them."),
    "no_activation_on_the_output_layer": Mutant(_jac_linear_output, "every layer of this network applies the "
                                                "activation, the last one too: J starts with D_L W_L, not W_L."),
    "weight_then_derivative": Mutant(_jac_weight_then_derivative, "the chain rule for h_l = f(W_l h_(l-1) + b_l) "
                                     "gives D_l W_l (the slopes scale the rows, the outputs of the layer), not "
                                     "W_l D_l; D_l has n_l entries, one per output."),
    "root_of_gram_eigenvalues": Mutant(_jac_root_of_gram_eigenvalues, "√(eigenvalues of JᵀJ) squares the condition "
                                       "number: singular values below about 1e-8 of the largest drown in "
                                       "round-off. Take np.linalg.svd(J, compute_uv=False) of J itself."),
}

# ----------------------------------------------------------------------------------------------
# grad_norm_monitor


def _linears(model, top_level_only=False):
    from torch import nn

    modules = model.children() if top_level_only else model.modules()
    return [m for m in modules if isinstance(m, nn.Linear)]


def _flags(norms, low, high, swapped=False, nan_is_ok=False):
    names = ("exploding", "vanishing") if swapped else ("vanishing", "exploding")
    if nan_is_ok:
        return [names[0] if n < low else names[1] if n > high else "ok" for n in norms]
    return [names[0] if n < low else "ok" if n <= high else names[1] for n in norms]


def _mon(model, low, high, *, what="grad", reverse=False, top_level_only=False, swapped=False, nan_is_ok=False):
    import torch

    norms = []
    for layer in _linears(model, top_level_only):
        if layer.weight.grad is None:
            if what == "crash_on_none":
                layer.weight.grad.norm()  # AttributeError: 'NoneType' object has no attribute 'norm'
            norms.append(0.0)
            continue
        g = layer.weight.grad.double()
        if what in ("grad", "crash_on_none"):
            norms.append(float(torch.linalg.vector_norm(g)))
        elif what == "weight":
            norms.append(float(torch.linalg.vector_norm(layer.weight.detach().double())))
        elif what == "with_bias":
            total = g.pow(2).sum() + (layer.bias.grad.double().pow(2).sum() if layer.bias is not None else 0.0)
            norms.append(float(total.sqrt()))
        elif what == "squared":
            norms.append(float(g.pow(2).sum()))
        elif what == "max_abs":
            norms.append(float(g.abs().max()))
        elif what == "spectral":
            norms.append(float(torch.linalg.matrix_norm(g, ord=2)))
    if reverse:
        norms = norms[::-1]
    return np.array(norms), _flags(norms, low, high, swapped, nan_is_ok)


def _mon_variant(**options):
    """The reference monitor with one thing changed (``_mon``'s keyword arguments name what)."""
    def monitor(model, low=1e-4, high=1e2):
        return _mon(model, low, high, **options)

    return monitor


def _mon_zero_grad(model, low=1e-4, high=1e2):
    """Right norms and flags, then model.zero_grad() 'to clean up'."""
    norms, flags = _mon(model, low, high)
    model.zero_grad()
    return norms, flags


def _mon_every_parameter(model, low=1e-4, high=1e2):
    norms = [float(p.grad.double().norm()) for p in model.parameters() if p.grad is not None]
    return np.array(norms), _flags(norms, low, high)


def _mon_global(model, low=1e-4, high=1e2):
    norms, _ = _mon(model, low, high)
    total = float(np.sqrt(np.sum(norms**2)))
    return np.full(len(norms), total), _flags([total] * len(norms), low, high)


def _mon_normalises(model, low=1e-4, high=1e2):
    """Right norms, but it rescales each gradient to norm 1 'to fix' it."""
    norms, flags = _mon(model, low, high)
    for layer in _linears(model):
        if layer.weight.grad is not None:
            layer.weight.grad.div_(layer.weight.grad.norm().clamp(min=1e-12))
    return norms, flags


MONITOR: dict[str, Mutant] = {
    "reversed_layer_order": Mutant(
        _mon_variant(reverse=True),
        "report the layers in the order the model applies them (model.named_modules()), first layer first."),
    "weight_norms": Mutant(
        _mon_variant(what="weight"),
        "the monitor measures the gradients, layer.weight.grad, not the weights themselves."),
    "weight_and_bias": Mutant(
        _mon_variant(what="with_bias"),
        "the norm is of the weight gradient only; the bias's gradient is left out."),
    "squared_norm": Mutant(
        _mon_variant(what="squared"), "the Frobenius norm is the square root of the sum of squares."),
    "max_abs": Mutant(
        _mon_variant(what="max_abs"),
        "the Frobenius (2-)norm sums the squares of every entry; the largest entry alone is the max-norm."),
    "top_level_only": Mutant(
        _mon_variant(top_level_only=True),
        "model.children() sees only the top level: Linear layers nested in Sequentials are found by "
        "model.named_modules()."),
    "flags_swapped": Mutant(
        _mon_variant(swapped=True), "a norm below `low` is vanishing, above `high` exploding."),
    "every_parameter": Mutant(
        _mon_every_parameter,
        "one entry per Linear layer (its weight gradient), not one per parameter tensor (weights and biases)."),
    "global_norm": Mutant(
        _mon_global, "each layer gets its own norm; one global norm for all layers cannot say which layers vanish."),
    "changes_gradients": Mutant(
        _mon_normalises,
        "a monitor only reads the gradients: rescaling them changes the training step (that is clipping, lesson 4)."),
    "nan_is_ok": Mutant(
        _mon_variant(nan_is_ok=True),
        "every comparison with NaN is False, so a NaN norm is neither below `low` nor above `high` and falls "
        "through to 'ok'. A norm that is not finite (NaN or inf) is 'exploding': test math.isfinite(n) (or write "
        "the test as n <= high for 'ok')."),
    "crashes_on_a_none_gradient": Mutant(
        _mon_variant(what="crash_on_none"),
        "a layer whose weight is frozen (requires_grad=False) or not used in the forward pass has weight.grad = "
        "None after backward(): report 0.0 for it instead of calling .norm() on None."),
    "spectral_norm": Mutant(
        _mon_variant(what="spectral"),
        "torch.linalg.norm(G, 2) / matrix_norm(G, ord=2) of a matrix is its largest singular value; the monitor "
        "reports the Frobenius norm, torch.linalg.vector_norm(G) or G.norm()."),
    "zero_grad_after_reading": Mutant(
        _mon_zero_grad,
        "a monitor only reads: model.zero_grad() inside it throws away the gradients the training loop is about "
        "to step with. Zero them at the start of the next step, before backward()."),
}
