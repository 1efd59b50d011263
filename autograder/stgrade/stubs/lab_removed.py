"""Bound by the grading sandbox over every lesson's lab module (``stabletrain/lessons/*_lab.py``).

The labs run the lessons' experiments, written with the same formulas as the answers (a batched
clip, say), so inside a grading kernel nothing of them exists: the setup cell's
``from stabletrain.lessons import <topic>_lab as lab`` still works, and every name in it is
missing, with why. The cells that use the lab are experiments, which the grader skips."""


def __getattr__(name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"{__name__}.{name} is not available while grading: the lesson's lab module holds the lesson's "
        "own formulas. Write your answer with basic tensor operations (the lab's experiments still run "
        "in your own session)."
    )
