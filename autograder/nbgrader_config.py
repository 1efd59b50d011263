"""nbgrader configuration of the Stable Training course.

The course root is the repository: instructor notebooks in solutions/ (nbgrader "source"), student
notebooks in course/ (nbgrader "release"). Use nbgrader from this folder, e.g.

    cd autograder && ../.venv/bin/nbgrader generate_assignment 04_gradient_clipping --force

`make release` does exactly that for every lesson (after syncing the jupytext pairs), and
`make grade` runs the course's own grading pipeline (stgrade), which builds on these conventions.
"""

from pathlib import Path

c = get_config()  # noqa: F821 — provided by nbgrader when it loads this file

ROOT = Path(__file__).resolve().parent.parent

c.CourseDirectory.course_id = "stabletrain"
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.submitted_directory = "autograder/samples/submitted"
c.CourseDirectory.autograded_directory = "grading-out/nbgrader/autograded"
c.CourseDirectory.feedback_directory = "grading-out/nbgrader/feedback"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'autograder' / 'gradebook.db'}"
# The .py half of each jupytext pair stays with the instructors.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py"]
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.Execute.timeout = 30
