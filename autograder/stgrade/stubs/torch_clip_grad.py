"""Bound by the grading sandbox over ``torch/nn/utils/clip_grad.py``: torch's gradient clipping is
the answer key of lesson 04, so inside a grading kernel its code does not exist. ``torch.nn.utils``
still imports, and every function raises."""

import functools

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_"]


class AnswerKeyUnavailable(RuntimeError):
    """Raised by torch's clipping functions inside a grading kernel."""


def _removed(name):
    def removed(*args, **kwargs):
        raise AnswerKeyUnavailable(
            f"torch.nn.utils.{name} is an answer key and is switched off while grading: "
            "implement the exercise with basic tensor operations instead of calling it."
        )

    removed.__name__ = removed.__qualname__ = name
    return removed


def _no_grad(func):
    import torch

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with torch.no_grad():
            return func(*args, **kwargs)

    return wrapper


_get_total_norm = _removed("get_total_norm")
_clip_grads_with_norm_ = _removed("clip_grads_with_norm_")
clip_grad_norm_ = _removed("clip_grad_norm_")
clip_grad_norm = _removed("clip_grad_norm")
clip_grad_value_ = _removed("clip_grad_value_")
