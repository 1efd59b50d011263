"""stgrade — the Stable Training grading pipeline around nbgrader.

One command grades a folder of submissions in parallel, each in its own limited kernel, and writes
autograded notebooks, per-student feedback, ``grades.csv`` and ``summary.json``. Scores come from a
trusted comparison: student code runs on inputs the grader chose, only plain data comes back, and
the grader compares it with the reference in its own process.
"""

__version__ = "0.1.0"
