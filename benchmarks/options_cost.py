"""Do the task options cost anything when unused? post_task before and after, one run.

    python benchmarks/options_cost.py                 # against 2038464 (before issue 3)
    python benchmarks/options_cost.py --before REV    # against another git revision
    python benchmarks/options_cost.py --smoke         # tiny sizes: checks the paths only

The ``--before`` revision's ``wheeltask/`` is extracted with ``git archive`` into a
temporary directory. Each measurement runs in a fresh child process, alternating
before and after, so both see the same machine state; the table shows medians and the
after/before ratio. The goal (the issue's): plain ``post_task`` within 10% of before.
Never fails on speed: the exit code is 0 unless something raised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "2038464"  # the last commit before retries, hooks, dedup, priorities ...

# What a child process measures; argv: wheeltask's parent directory, measurement, N.
CHILD = r"""
import gc, json, sys, threading, time
sys.path.insert(0, sys.argv[1])
import wheeltask
from wheeltask import MonotonicClock, Scheduler
from wheeltask.testing import manual_scheduler

what, n = sys.argv[2], int(sys.argv[3])

def noop():
    pass

gc.collect()
if what == "immediate post":  # the poster's cost only: the one worker is held
    gate = threading.Event()
    s = Scheduler(max_workers=1, queue_size=n + 10)
    blocker = s.post_task(gate.wait)
    while not blocker.running():
        time.sleep(0.001)
    post = s.post_task
    t0 = time.perf_counter()
    for _ in range(n):
        post(noop)
    t1 = time.perf_counter()
    gate.set()
    s.shutdown()
elif what == "delayed post":  # onto the wheel; nothing fires while timed
    s = manual_scheduler(clock=MonotonicClock())
    post = s.post_task
    keep = []
    t0 = time.perf_counter()
    for i in range(n):
        keep.append(post(noop, delay=1.0 + i * 1e-6))
    t1 = time.perf_counter()
    s.shutdown(wait=False, cancel_pending=True)
elif what == "post and run (4 workers)":  # the whole round trip through the pool
    s = Scheduler(max_workers=4, queue_size=n + 10)
    post = s.post_task
    t0 = time.perf_counter()
    for _ in range(n):
        post(noop)
    s.shutdown()
    t1 = time.perf_counter()
else:
    raise SystemExit(f"unknown measurement {what!r}")
print(json.dumps((t1 - t0) / n * 1e9))
"""

MEASUREMENTS = ("immediate post", "delayed post", "post and run (4 workers)")


def _extract(rev: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "wheeltask"],
        capture_output=True,
        check=True,
    ).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(into, filter="data")
            else:  # pragma: no cover - our own git archive, trusted
                tar.extractall(into)


def _measure(path: Path, what: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), what, str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BASELINE, help="git revision to compare with")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition")
    args = parser.parse_args()
    n, reps = (2_000, 1) if args.smoke else (200_000, 7)
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp)
        _extract(args.before, before)
        sides = {"before": before, "after": ROOT}
        rows = []
        for what in MEASUREMENTS:
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(reps):
                for side, path in sides.items():  # alternate: same machine state
                    times[side].append(_measure(path, what, n))
                print(f"  {what}: {len(times['after'])}/{reps}", file=sys.stderr)
            rows.append((what, statistics.median(times["before"]), times))
    print(f"## Options unused: post_task before ({args.before}) and after (this tree)")
    print()
    print(f"N = {n:,} per child process; median of {reps} (min-max), ns per task.")
    print()
    print("| measurement | before | after | after / before | within 10% |")
    print("|---|---:|---:|---:|:---:|")
    for what, b, times in rows:
        a = statistics.median(times["after"])
        spread = f"{min(times['after']):,.0f}-{max(times['after']):,.0f}"
        bspread = f"{min(times['before']):,.0f}-{max(times['before']):,.0f}"
        print(
            f"| {what} | {b:,.0f} ({bspread}) | {a:,.0f} ({spread}) | {a / b:.3f} | "
            f"{'yes' if a <= b * 1.10 else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
