"""Stable Training — the reference package.

The answer key of the course (functions with PyTorch's names and semantics) plus the
diagnostics, models, plots and widgets the lessons import.

Names are imported lazily: ``import stabletrain`` is cheap, and ``stabletrain.clip_grad_norm_``
loads only the module that defines it. Submodules for experiments are imported explicitly:
``from stabletrain import plots, widgets, models, data, diagnostics``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {}


def _export(module: str, *names: str) -> None:
    for name in names:
        _EXPORTS[name] = module


_export(
    "clipping",
    "clip_grad_value_",
    "clip_grad_norm_",
    "get_total_norm",
    "clip_grads_with_norm_",
    "adaptive_clip_grad_",
)
_export(
    "init",
    "calculate_gain",
    "fan_in_and_fan_out",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "lecun_normal_",
    "orthogonal_",
    "variance_scaling_",
    "as_variance_scaling",
    "init_model_",
    "find_init_bug",
    "init_output_layer_",
)
_export(
    "normalization",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "standardize_fit",
    "standardize_apply",
)
_export("norm_modules", "BatchNorm1d", "LayerNorm", "fold_batchnorm", "train_bn_classifier")
_export("residual", "residual_block", "residual_stream_variance", "branch_scale_for", "capstone_config")
# Lesson 02's answer key. Only these names are exported at top level: the grader's scan treats every
# exported name of an answer-key module as an answer key, so generic names (tanh, relu, ...) would
# void any answer that mentions them. The activations themselves stay in stabletrain.activations.
_export(
    "activations",
    "second_moment",
    "first_moment",
    "derivative_second_moment",
    "activation_and_grad",
    "saturation_fraction",
    "count_dead_neurons",
    "recycle_dead_units_",
    "variance_preserving_gain",
)
_export(
    "variance",
    "predicted_activation_variance",
    "predicted_gradient_variance",
    "measure_activation_variance",
    "measure_gradient_variance",
    "predict_layer_stds",
)
_export("gradcheck", "rel_error", "numerical_gradient")
_export("vanishing", "backprop_grad_norms", "log_grad_slope", "jacobian_singular_values", "grad_norm_monitor")
_export(
    "diagnostics",
    "ActivationStats",
    "grad_norms_per_layer",
    "update_to_data_ratio",
    "TrainingRecorder",
    "train_and_log",
)

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stabletrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
