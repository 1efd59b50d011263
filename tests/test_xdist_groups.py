"""`make test` runs the suite with ``-n 2 --dist loadgroup``: tests marked ``xdist_group`` must share a worker.

The groups matter: a claims module's experiments are computed once, by the worker that runs the module
(otherwise the other worker waits on the cache's lock for the same result), and the grading and release
tests share their cohort and their course folder. pytest 9.2 silently broke the grouping of
pytest-xdist 3.8 (the group rides on the test's node id, which pytest 9.2 no longer lets a plugin
rewrite: pytest-dev/pytest-xdist#1386), so every test was scheduled alone and nothing failed; pytest is
pinned to 9.1.1 until a release of pytest-xdist fixes it. This test fails if the grouping stops again.
"""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("xdist-group-probe")
def test_a_grouped_test_carries_its_group_to_the_scheduler(request):
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only under pytest-xdist with --dist loadgroup (as `make test` runs the suite)")
    assert request.node.nodeid.endswith("@xdist-group-probe"), (
        f"pytest-xdist did not attach the group to {request.node.nodeid!r}: --dist loadgroup schedules "
        "every test alone (pytest-dev/pytest-xdist#1386); check the pins of pytest and pytest-xdist")
