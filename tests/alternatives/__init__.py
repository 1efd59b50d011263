"""Alternative correct implementations of the graded exercises (they must get full marks)."""
