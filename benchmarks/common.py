"""What every benchmark section shares: sizes, repetitions, statistics, tables, goals."""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

SEED = 20_240_601
MIN_DELAY = 1e-3  # seconds; delays are log-uniform in [MIN_DELAY, MAX_DELAY]
MAX_DELAY = 3600.0
RANGE_DASH = "\N{EN DASH}"  # between min and max: a hyphen would read as a minus sign


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one run (``FULL`` or ``SMOKE``)."""

    smoke: bool
    micro_reps: int  # repetitions of the cheap rows
    heavy_reps: int  # repetitions of the rows that take seconds each
    timer_sizes: tuple[int, ...]  # N for post/cancel
    slow_peer_n: int  # N for peers that start a thread or a job per timer
    memory_n: int
    pool_n: int  # immediate tasks for the fast peers
    tpe_n: int  # immediate tasks for ThreadPoolExecutor
    lateness_n: int
    lateness_spread: float  # seconds over which the lateness deadlines are spread
    burst_n: int
    margin: float  # seconds between the end of posting and the first deadline
    idle_n: int
    idle_window: float  # seconds of wall time over which idle CPU is measured
    apscheduler_n: int  # jobs for APScheduler (a job store entry each)
    work_n: int  # tasks of 50 us of work through the pools
    exit_n: int  # pending tasks when the shutdown is timed
    bus_n: int  # task records through a Launcher (memory and Redis buses)
    async_batch: int  # timed AsyncScheduler / call_later posts per batch, N pending

    def reps_for_size(self, n: int) -> int:
        return self.heavy_reps if n >= 1_000_000 else self.micro_reps


FULL = Config(
    smoke=False,
    micro_reps=5,
    heavy_reps=3,
    timer_sizes=(10_000, 100_000, 1_000_000),
    slow_peer_n=2_000,
    memory_n=100_000,
    pool_n=200_000,
    tpe_n=50_000,
    lateness_n=100_000,
    lateness_spread=1.0,
    burst_n=1_000_000,
    margin=0.5,
    idle_n=100_000,
    idle_window=5.0,
    apscheduler_n=10_000,
    work_n=20_000,
    exit_n=100_000,
    bus_n=20_000,
    async_batch=10_000,
)

QUICK = Config(
    smoke=False,
    micro_reps=2,
    heavy_reps=1,
    timer_sizes=(10_000, 30_000, 60_000),
    slow_peer_n=500,
    memory_n=5_000,
    pool_n=30_000,
    tpe_n=5_000,
    lateness_n=10_000,
    lateness_spread=0.3,
    burst_n=30_000,
    margin=0.2,
    idle_n=10_000,
    idle_window=0.5,
    apscheduler_n=2_000,
    work_n=2_000,
    exit_n=10_000,
    bus_n=2_000,
    async_batch=5_000,
)

SMOKE = Config(
    smoke=True,
    micro_reps=1,
    heavy_reps=1,
    timer_sizes=(1_000, 3_000, 10_000),
    slow_peer_n=50,
    memory_n=1_000,
    pool_n=1_000,
    tpe_n=1_000,
    lateness_n=1_000,
    lateness_spread=0.2,
    burst_n=10_000,
    margin=0.1,
    idle_n=1_000,
    idle_window=0.3,
    apscheduler_n=50,
    work_n=200,
    exit_n=1_000,
    bus_n=100,
    async_batch=300,
)


@dataclasses.dataclass(frozen=True)
class Goal:
    """One goal of the project issue, with the figure measured for it in this run."""

    text: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"**Goal:** {self.text}: measured {self.measured}: **{yes_no(self.met)}**"


@dataclasses.dataclass(frozen=True)
class Section:
    """A benchmark section's output: markdown to print, the goals it checked, and its
    figures as plain data (for ``--json`` and ``--plot``)."""

    markdown: str
    goals: list[Goal]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


class Samples:
    """Measured values per (peer, key), one value appended per repetition."""

    def __init__(self) -> None:
        self._values: defaultdict[tuple[str, Hashable], list[float]] = defaultdict(list)

    def add(self, peer: str, key: Hashable, value: float) -> None:
        if not STATUS.warming:  # a warm-up round's figures are dropped
            self._values[peer, key].append(value)

    def get(self, peer: str, key: Hashable) -> list[float]:
        return self._values.get((peer, key), [])


class _Status:
    """The one status line on stderr: ``[section i/n, elapsed] message``."""

    prefix = ""
    started = time.perf_counter()
    warming = False


STATUS = _Status()


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout is the markdown report alone: one line
    rewritten in place on a terminal, a line per step otherwise."""
    elapsed = time.perf_counter() - STATUS.started
    line = f"[{STATUS.prefix}{elapsed:5.0f} s] {message}"
    if sys.stderr.isatty():
        print(f"\r\033[K{line[:150]}", end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def end_status() -> None:
    """Finish the status line (a newline on a terminal)."""
    if sys.stderr.isatty():
        print(file=sys.stderr, flush=True)


def series(samples: Samples, peers: Sequence[str], keys: Sequence[Hashable]) -> dict[str, Any]:
    """Medians per peer and key, for --json: ``{peer: {str(key): median}}``."""
    return {
        peer: {str(key): median(samples.get(peer, key)) for key in keys if samples.get(peer, key)}
        for peer in peers
    }


def clean_heap() -> None:
    """Collect garbage left by the previous run, before the next one starts."""
    gc.collect()


def log_uniform_delays(n: int, seed: int = SEED) -> list[float]:
    """``n`` delays in seconds, log-uniform in [1 ms, 1 h], the same for a given seed."""
    rng = random.Random(seed)
    lo, hi = math.log(MIN_DELAY), math.log(MAX_DELAY)
    return [math.exp(rng.uniform(lo, hi)) for _ in range(n)]


def interleaved(peers: Sequence[T], reps: int, warmup: bool = False) -> Iterator[tuple[int, T]]:
    """(rep, peer): one repetition of every peer, then the next.

    The starting peer rotates with each repetition, so that no peer always runs right
    after the same neighbour (a gc of its garbage, a cold cache). With ``warmup``, a
    first round (rep -1) runs every peer once and :class:`Samples` ignores what it adds.
    """
    if warmup:
        STATUS.warming = True
        try:
            for peer in peers:
                yield -1, peer
        finally:
            STATUS.warming = False
    for rep in range(reps):
        k = rep % len(peers)
        for peer in (*peers[k:], *peers[:k]):
            yield rep, peer


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-repetition ratios (repetition i of one peer with i of the other)."""
    if not numerators or not denominators:
        return math.nan
    return median([a / b if b else math.inf for a, b in zip(numerators, denominators, strict=True)])


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100]) of an already sorted sequence."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# ------------------------------------------------------------------- formatting
def num(x: float) -> str:
    """A figure with about three significant digits and thousands separators."""
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def count(x: float) -> str:
    return f"{x:,.0f}"


def cell(values: Sequence[float], fmt: Callable[[float], str] = num) -> str:
    """Median with the min-max range of the repetitions, or "-" when not measured."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(median(values))} ({fmt(min(values))}{RANGE_DASH}{fmt(max(values))})"


def times(x: float) -> str:
    return f"{num(x)}x"


def yes_no(met: bool) -> str:
    return "yes" if met else "NO"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns are left-aligned, the rest right."""
    align = ["---"] * left + ["---:"] * (len(headers) - left)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
