"""The examples and the command line run as a new user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("test_"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_script_runs(script: Path) -> None:
    proc = run(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout and not proc.stderr


def test_examples_exist() -> None:
    assert SCRIPTS, "examples/ has no runnable script"


def test_demo_shows_the_tour_and_exits_cleanly() -> None:
    proc = run("-m", "wheeltask", "demo", "--speed", "4")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "coffee is ready",
        "heartbeat #1",
        "cancel() -> True",
        "wait_for_finished(report, timeout=3) -> True",
        "ValueError: disk full",
        "status: pending=",
        "wait_and_exit -> True",
        "upload uploaded after 3 attempts",
        "returned the same handle: True",
        "export failed at its deadline: 'export' exceeded its timeout of",
        "slow export: noticed its deadline, stops",
        "group of 3 thumbnails done: [64, 128, 256]; export timed out: True",
        "retried 2   deduplicated 1   timed out 1",
        "reminder: moved from 3.0 s to 1.3 s by reschedule()",
        "async def task ran on the ",
        "reminder.reschedule(1.3 s) returned True; pause the heartbeat: True",
        "heartbeat resumed on its grid; beats due while paused were skipped: missed=",
        "summary",
    ):
        assert expected in out, (expected, out)


def test_help_lists_subcommands() -> None:
    proc = run("-m", "wheeltask", "--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "version" in proc.stdout
    assert run("-m", "wheeltask").returncode == 2
    assert run("-m", "wheeltask", "demo", "--speed", "0").returncode == 2
