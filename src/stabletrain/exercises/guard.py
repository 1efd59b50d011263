"""Make the answer keys unusable inside a grading kernel.

The grader calls :func:`install` in a student's kernel before any student code runs. Every
function that would let an exercise pass without being implemented — stabletrain's reference
functions and their PyTorch twins (``torch.nn.utils.clip_grad_norm_``, ``torch.nn.init.*``, …) —
is replaced by one that raises :class:`AnswerKeyUnavailable` with a readable reason. Since the
replacement happens before student code can take a reference to the originals, a solution that
calls them gets an error instead of a right answer.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

#: (module, attribute names) that are answer keys while grading
TORCH_ANSWER_KEYS: dict[str, tuple[str, ...]] = {
    "torch.nn.utils": ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm",
                       "clip_grads_with_norm_"),
    "torch.nn.utils.clip_grad": ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm",
                                 "clip_grads_with_norm_"),
    "torch.nn.init": ("calculate_gain", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                      "kaiming_normal_", "orthogonal_", "_calculate_fan_in_and_fan_out",
                      "_calculate_correct_fan", "trunc_normal_"),
}

#: callers (module-name prefixes) still allowed to use an answer key: torch's own layers initialise
#: their weights with torch.nn.init, so nn.Linear keeps working while a student's code cannot call it.
ALLOWED_CALLERS: dict[str, tuple[str, ...]] = {"torch.nn.init": ("torch.nn.modules.", "torch.nn.init")}

#: stabletrain submodules whose public functions are answer keys
STABLETRAIN_ANSWER_KEY_MODULES = ("clipping", "init", "normalization", "norm_modules", "gradcheck")


def torch_answer_keys() -> dict[str, tuple[str, ...]]:
    """TORCH_ANSWER_KEYS plus what each lesson's exercise module declares in its own
    ``TORCH_ANSWER_KEYS`` (module -> names), e.g. ``{"torch.nn.functional": ("batch_norm",)}``."""
    from .registry import exercise_modules

    merged = {module: tuple(names) for module, names in TORCH_ANSWER_KEYS.items()}
    for module in exercise_modules():
        for name, extra in getattr(module, "TORCH_ANSWER_KEYS", {}).items():
            merged[name] = tuple(dict.fromkeys(merged.get(name, ()) + tuple(extra)))
    return merged


def reference_modules() -> tuple[str, ...]:
    """STABLETRAIN_ANSWER_KEY_MODULES plus each exercise module's ``REFERENCE_MODULES``."""
    from .registry import exercise_modules

    names = list(STABLETRAIN_ANSWER_KEY_MODULES)
    for module in exercise_modules():
        names += [m for m in getattr(module, "REFERENCE_MODULES", ()) if m not in names]
    return tuple(names)


class AnswerKeyUnavailable(RuntimeError):
    """Raised by any answer-key function while grading."""


def _blocked(qualname: str, original: Callable[..., Any] | None = None,
             allowed_callers: tuple[str, ...] = ()) -> Callable[..., Any]:
    def blocked(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if original is not None and allowed_callers and caller.startswith(allowed_callers):
            return original(*args, **kwargs)
        raise AnswerKeyUnavailable(
            f"{qualname} is an answer key and is switched off while grading: "
            "implement the exercise with basic tensor operations instead of calling it."
        )

    blocked.__name__ = qualname.rsplit(".", 1)[-1]
    return blocked


def install() -> list[str]:
    """Replace every answer key in this process; return the names replaced."""
    import stabletrain

    replaced: list[str] = []
    for module_name, names in torch_answer_keys().items():
        module = importlib.import_module(module_name)
        for name in names:
            if hasattr(module, name):
                original = getattr(module, name)
                allowed = ALLOWED_CALLERS.get(module_name, ())
                setattr(module, name, _blocked(f"{module_name}.{name}", original, allowed))
                replaced.append(f"{module_name}.{name}")
    for name, module_name in stabletrain._EXPORTS.items():
        if module_name not in reference_modules():
            continue
        try:
            module = importlib.import_module(f"stabletrain.{module_name}")
        except ImportError:  # a lesson's answer key not written yet
            continue
        blocked = _blocked(f"stabletrain.{name}")
        setattr(module, name, blocked)
        setattr(stabletrain, name, blocked)
        replaced.append(f"stabletrain.{name}")
    return replaced
