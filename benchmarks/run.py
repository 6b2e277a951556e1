"""wheeltask benchmark suite: wheeltask side by side with what a user would pick instead.

    python benchmarks/run.py                 # full run, a few minutes
    python benchmarks/run.py --smoke         # tiny sizes, one rep: checks every path
    python benchmarks/run.py --only pool idle

Prints a markdown report on stdout (progress goes to stderr). Goals are reported, never
asserted: the exit code is 0 unless something raised.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import firing
import throughput
import timers
from common import FULL, SMOKE, Config, Goal, Section, log, table, yes_no
from timer_peers import MISSING_NOTES

import wheeltask

SECTIONS: dict[str, Callable[[Config], Section]] = {
    "post-cancel": timers.post_cancel,
    "memory": timers.memory,
    "reschedule": timers.reschedule,
    "pool": throughput.pool,
    "lateness": firing.lateness,
    "burst": firing.burst,
    "idle": firing.idle,
}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    repo = Path(wheeltask.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def header(argv: list[str], cfg: Config) -> str:
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    mode = "smoke (tiny sizes: the figures mean nothing)" if cfg.smoke else "full"
    lines = [
        "# wheeltask benchmarks",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- command: `{command}` ({mode})",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"switch interval {sys.getswitchinterval() * 1e3:g} ms",
        f"- wheeltask {wheeltask.__version__} (git {_git_revision()}), "
        f"uvloop {_version('uvloop')}, APScheduler {_version('apscheduler')}",
        *(f"- {note}" for note in MISSING_NOTES),
        "",
        "Figures are medians of repetitions with the min-max range in brackets. "
        "Repetitions are interleaved: one of every peer, then the next. "
        "`x wheeltask` is how many times better wheeltask did than that peer in the same "
        "repetition (median of the per-repetition ratios): above 1 wheeltask is cheaper or "
        "faster, below 1 the peer is. The box is noisy; compare ratios, not absolute figures "
        "across runs.",
    ]
    return "\n".join(lines)


def goals_table(goals: list[Goal]) -> str:
    rows = [[g.text, g.measured, yes_no(g.met)] for g in goals]
    met = sum(g.met for g in goals)
    return "\n".join(
        [
            f"## Goals ({met} of {len(goals)} met)",
            "",
            table(["goal", "measured", "met"], rows, left=3),
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes and one repetition (a few seconds)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        metavar="NAME",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    cfg = SMOKE if args.smoke else FULL
    names = [name for name in SECTIONS if args.only is None or name in args.only]
    started = time.perf_counter()
    print(header(argv, cfg), flush=True)
    goals: list[Goal] = []
    for name in names:
        section = SECTIONS[name](cfg)
        print("\n" + section.markdown, flush=True)
        goals += section.goals
    print("\n" + goals_table(goals), flush=True)
    elapsed = time.perf_counter() - started
    print(f"\nTotal run time: {elapsed:.0f} s.", flush=True)
    log(f"done in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
