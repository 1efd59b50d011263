"""Static look at solution cells for ways around implementing the exercise.

The guard in the grading kernel already switches the answer keys off; this scan catches the routes
around it (re-importing a module, reaching into the garbage collector or code objects, running
strings as code) and names them in the feedback. A flagged solution earns nothing for the tests
that check the functions it defines.
"""

from __future__ import annotations

import ast

FORBIDDEN_MODULES = ("torch.nn.utils", "torch.nn.init", "stabletrain", "importlib", "gc", "ctypes", "inspect")
FORBIDDEN_CALLS = ("exec", "eval", "compile", "__import__", "reload", "globals", "vars")
FORBIDDEN_ATTRIBUTES = ("__code__", "__wrapped__", "__globals__", "__builtins__", "__closure__", "modules")
FORBIDDEN_CHAINS = ("nn.utils", "nn.init")


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
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if _module_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and (
            _module_forbidden(node.module)
            or any(_module_forbidden(f"{node.module}.{a.name}") for a in node.names)
        ):
            found.append(f"imports from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"calls {node.func.id}()")
        elif isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if node.attr in FORBIDDEN_ATTRIBUTES or any(f".{c}." in f".{chain}." for c in FORBIDDEN_CHAINS):
                found.append(f"uses {chain or node.attr}")
    return sorted(set(found))
