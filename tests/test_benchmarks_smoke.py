"""The benchmark suite runs end to end in its tiny smoke mode (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheeltask", "bench", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )


def test_bench_smoke_mode_prints_every_table_and_writes_json_and_charts(
    tmp_path: Path,
) -> None:
    plot = importlib.util.find_spec("matplotlib") is not None
    args = ["--smoke", "--json", str(tmp_path / "out.json")]
    if plot:
        args += ["--plot", str(tmp_path / "charts")]
    proc = bench(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## Goals" in out and "Total run time" in out
    for peer in ("asyncio", "ThreadPoolExecutor", "sched.enter", "threading.Timer"):
        assert peer in out
    assert "heapq + threading.Condition scheduler" in out
    for title in (
        "## 1.",
        "## 3.",
        "## 4.",
        "### 4b.",
        "## 5.",
        "## 6.",
        "## 7.",
        "## 8.",
        "## 9.",
        "## 10.",
        "## 11.",
        "## 12.",
    ):
        assert title in out, title
    results = json.loads((tmp_path / "out.json").read_text())
    assert set(results["sections"]) == {
        "post-cancel",
        "memory",
        "reschedule",
        "pool",
        "lateness",
        "burst",
        "idle",
        "exit",
        "pipeline",
        "bus",
        "async",
        "async-lateness",
    }
    bus = results["sections"]["bus"]["data"]
    assert bus["rate"]["memory"] > 0
    if bus["redis_skipped"] is None:  # redis-server and redis-py are here
        assert bus["rate"]["redis-1"] > 0 and bus["rate"]["redis-3"] > 0
    else:
        assert f"Redis rows skipped: {bus['redis_skipped']}." in out
    goals = [g for s in results["sections"].values() for g in s["goals"]]
    assert len(goals) == 18 and all(isinstance(g["met"], bool) for g in goals)
    assert results["sections"]["lateness"]["data"]["early"]["wheeltask"] == 0
    aio_early = results["sections"]["async-lateness"]["data"]["early"]
    assert [v for k, v in aio_early.items() if k.startswith("AsyncScheduler@")] in ([0], [0, 0])
    if plot:
        for chart in ("cost_per_timer.png", "lateness.png"):
            assert (tmp_path / "charts" / chart).stat().st_size > 1000


def test_bench_bus_section_without_redis_server_notes_it_and_runs_the_memory_row() -> None:
    path = str(Path(sys.executable).parent)  # python, but no redis-server
    proc = subprocess.run(
        [sys.executable, "-m", "wheeltask", "bench", "--smoke", "--only", "bus"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PATH": path},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| memory://, a Launcher in this process (4 slots) | 100 |" in proc.stdout
    assert "redis://, 1 worker process" not in proc.stdout
    assert "Redis rows skipped: redis-server is not on PATH" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope"], "--only: unknown section(s) 'nope'"),
        (["--json", "/nonexistent-dir/out.json"], "--json '/nonexistent-dir/out.json'"),
        (["--json", "."], "cannot write there: it is a directory"),
        (["--plot", "/proc/charts"], "--plot '/proc/charts': cannot write there"),
        (["--quick", "--smoke"], "not allowed with argument"),
        (["--json", "same", "--plot", "same"], "--json and --plot must not be the same path"),
    ],
)
def test_bench_bad_arguments_exit_2_before_anything_runs(args: list[str], message: str) -> None:
    proc = bench(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""  # nothing ran


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
