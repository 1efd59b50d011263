"""The command line: help, clear errors for bad input."""

from __future__ import annotations

import pytest

from stgrade.cli import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("grade", "release", "demo", "samples"):
        assert command in out


def test_grade_help_documents_limits_and_layouts(capsys):
    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    out = capsys.readouterr().out
    for option in ("--jobs", "--cell-timeout", "--notebook-timeout", "--memory-mb", "--secret", "--force"):
        assert option in out
    assert "submitted/<student>/<lesson>" in out


def test_missing_submissions_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_uses_short_cell_timeouts_and_reuses_unchanged_results():
    args = build_parser().parse_args(["demo"])
    assert args.cell_timeout == 10.0 and not args.force
