"""wheeltask benchmark suite: wheeltask side by side with what a user would pick instead.

    python -m wheeltask bench                # full run, under 10 minutes
    python -m wheeltask bench --quick        # smaller sizes, under 30 s
    python -m wheeltask bench --smoke        # tiny sizes, one rep: checks every path
    python -m wheeltask bench --only pool idle --json out.json --plot charts/

(``python benchmarks/run.py ...`` is the same.) Prints a markdown report on stdout
(one status line on stderr while it runs). Goals are reported, never asserted: the exit
code is 0 unless something raised, 2 for bad arguments (before anything runs).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aio_timers
import bus_records
import exiting
import firing
import throughput
import timers
from common import (
    FULL,
    QUICK,
    SMOKE,
    STATUS,
    Config,
    Goal,
    Section,
    end_status,
    log,
    table,
    yes_no,
)
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
    "exit": exiting.exit_time,
    "pipeline": throughput.pipeline,
    "bus": bus_records.bus,
    "async": aio_timers.post_cost,
    "async-lateness": aio_timers.lateness,
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
    command = shlex.join(["python", "-m", "wheeltask", "bench", *argv])
    if cfg.smoke:
        mode = "smoke (tiny sizes: the figures mean nothing)"
    else:
        mode = "quick (smaller sizes)" if cfg is QUICK else "full"
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


def _writable_file(path: str) -> str | None:
    """Why ``path`` cannot be written as a file, or None (tried: a probe file is
    created next to it and removed)."""
    p = Path(path)
    if p.is_dir():
        return "it is a directory"
    parent = p.parent
    if not parent.is_dir():
        return f"its directory {str(parent)!r} does not exist"
    if p.exists() and not os.access(p, os.W_OK):
        return "it is not writable"
    return _probe_dir(parent)


def _writable_dir(path: str) -> str | None:
    """Why ``path`` cannot be used as an output directory, or None (it is made now, if
    missing, and a probe file is created in it and removed)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        return "it is not a directory"
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"it cannot be made ({exc.strerror or exc})"
    return _probe_dir(p)


def _probe_dir(folder: Path) -> str | None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wheeltask-bench-"):
            pass
    except OSError as exc:
        return f"a file cannot be created in {str(folder)!r} ({exc.strerror or exc})"
    return None


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse and check every argument; bad ones exit with code 2 before anything runs."""
    parser = argparse.ArgumentParser(
        prog="python -m wheeltask bench", description=__doc__.split("\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes: under 30 s")
    size.add_argument(
        "--smoke", action="store_true", help="tiny sizes and one repetition (a few seconds)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help=f"run only these sections: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write PNG charts there (matplotlib)")
    args = parser.parse_args(argv)
    if args.only:
        unknown = [name for name in args.only if name not in SECTIONS]
        if unknown:
            parser.error(
                f"--only: unknown section(s) {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(SECTIONS)}"
            )
    if (
        args.json is not None
        and args.plot is not None
        and Path(args.json).resolve() == Path(args.plot).resolve()
    ):
        parser.error("--json and --plot must not be the same path")
    if args.json is not None and (why := _writable_file(args.json)):
        parser.error(f"--json {args.json!r}: cannot write there: {why}")
    if args.plot is not None:
        if why := _writable_dir(args.plot):
            parser.error(f"--plot {args.plot!r}: cannot write there: {why}")
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: pip install -e '.[bench]'")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    cfg = SMOKE if args.smoke else QUICK if args.quick else FULL
    names = [name for name in SECTIONS if args.only is None or name in args.only]
    started = time.perf_counter()
    STATUS.started = started
    print(header(argv, cfg), flush=True)
    goals: list[Goal] = []
    results: dict[str, object] = {
        "command": ["python", "-m", "wheeltask", "bench", *argv],
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "system": f"{platform.system()} {platform.release()}",
            "cpus": os.cpu_count(),
        },
        "wheeltask": wheeltask.__version__,
        "git": _git_revision(),
        "sections": {},
    }
    sections: dict[str, object] = {}
    for i, name in enumerate(names):
        STATUS.prefix = f"{i + 1}/{len(names)} {name}, "
        log("starting")
        section = SECTIONS[name](cfg)
        print("\n" + section.markdown, flush=True)
        goals += section.goals
        sections[name] = {
            "goals": [
                {"goal": g.text, "measured": g.measured, "met": g.met} for g in section.goals
            ],
            "data": section.data,
        }
    results["sections"] = sections
    print("\n" + goals_table(goals), flush=True)
    elapsed = time.perf_counter() - started
    results["seconds"] = elapsed
    print(f"\nTotal run time: {elapsed:.0f} s.", flush=True)
    STATUS.prefix = ""
    if args.json is not None:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
        log(f"wrote {args.json}")
    if args.plot is not None:
        import plots  # noqa: PLC0415 - needs matplotlib, only for --plot

        for path in plots.draw(results, Path(args.plot)):
            log(f"wrote {path}")
    log(f"done in {elapsed:.1f} s")
    end_status()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
