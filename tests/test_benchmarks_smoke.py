"""The benchmark suite runs end to end in its tiny smoke mode (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_benchmarks_smoke_mode_prints_every_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Goals" in out
    assert "wheeltask" in out and "asyncio" in out and "ThreadPoolExecutor" in out


def test_options_cost_smoke_mode_compares_before_and_after() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "options_cost.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0 and "fatal:" in proc.stderr:  # git's own error
        pytest.skip(f"no git revision to compare with: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("immediate post", "delayed post", "post and run (4 workers)"):
        assert f"| {row} |" in proc.stdout
