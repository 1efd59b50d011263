"""Static look at solution cells for ways around implementing the exercise.

The guard in the grading kernel already switches the answer keys off and catches, at run time,
answer-key code that runs while an exercise is checked; this scan names what deserves a look —
answer-key names, the routes around the guard (re-importing a module, reaching into the garbage
collector or code objects, running strings as code). A finding never costs points by itself:
honest code names these things too (the README's ``check(fn, "clip_grad_value_",
level="hidden")`` in an added cell, ``import gc; gc.collect()``, ``isinstance(m, nn.LayerNorm)``).
It warns in ``stgrade validate`` and flags the submission in the instructor's overview; only
run-time evidence voids an exercise. Ordinary helpers are not even flagged:
``torch.nn.utils.parameters_to_vector`` or ``torch.nn.init.uniform_`` are building blocks.
"""

from __future__ import annotations

import ast
import functools

from stabletrain.exercises.guard import reference_modules, torch_answer_keys

FORBIDDEN_MODULES = ("stabletrain", "importlib", "gc", "ctypes", "inspect", "torch.nn.utils.clip_grad", "runpy",
                     "subprocess", "multiprocessing", "threading", "_thread", "signal", "pty", "socket")
FORBIDDEN_CALLS = ("exec", "eval", "compile", "__import__", "reload", "globals", "vars", "breakpoint")
#: also the ways to switch the in-kernel tracer off or reach another frame's variables
FORBIDDEN_ATTRIBUTES = ("__code__", "__wrapped__", "__globals__", "__builtins__", "__closure__",
                        "settrace", "setprofile", "addaudithook", "_getframe", "f_globals", "f_locals", "f_back",
                        "cell_contents", "__subclasses__", "system", "fork", "execv", "execve", "kill", "killpg")
#: attributes forbidden only on a given object: ``sys.modules`` (but ``model.modules()`` is ordinary code)
FORBIDDEN_QUALIFIED = ("sys.modules",)


@functools.cache
def answer_key_names() -> frozenset[str]:
    """Every function name that is an answer key in some lesson."""
    import stabletrain

    names = {name for group in torch_answer_keys().values() for name in group}
    names |= {name for name, module in stabletrain._EXPORTS.items() if module in reference_modules()}
    return frozenset(names)


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _module_forbidden(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES)


def problems(source: str) -> list[str]:
    """Readable reasons why ``source`` may not be graded as the student's own work (empty: fine)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # a syntax error shows up, with its message, when the cell runs
    keys = answer_key_names()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if _module_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if _module_forbidden(node.module):
                found.append(f"imports from {node.module}")
            found += [f"imports {a.name} from {node.module}" for a in node.names
                      if a.name in keys or a.name == "*" or _module_forbidden(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"calls {node.func.id}()")
        elif isinstance(node, ast.Attribute) and (node.attr in keys or node.attr in FORBIDDEN_ATTRIBUTES
                                                  or _dotted(node) in FORBIDDEN_QUALIFIED):
            found.append(f"uses {_dotted(node) or node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in keys:
            found.append(f"names {node.value!r} in a string")
    return sorted(set(found))
