"""Shared by the reliability tests: run `dsd` in-process and check the one-line-error contract."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dsd_tui.cli import app

runner = CliRunner()


def dsd(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str, code: int = 2) -> str:
    """Exit code `code`, exactly one non-empty stderr line, starting `error:`, naming every needle; no traceback."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def listing(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes, to prove a failed command changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
