"""Bound by the grading sandbox over every answer-key module (reference implementations, mutant
catalogues): inside a grading kernel this file is all there is of them. Importing it works (so a
lesson module that imports one at the top still loads); every name in it is missing, with why."""


def __getattr__(name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    raise AttributeError(
        f"{__name__}.{name} is an answer key and is not available while grading: "
        "implement the exercise with basic tensor operations instead."
    )
