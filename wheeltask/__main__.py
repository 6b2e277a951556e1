"""Command line: ``python -m wheeltask demo`` (and ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import wheeltask


class _OneLine(logging.Formatter):
    """The demo's log lines: the message and the exception, without a traceback."""

    def __init__(self, clear: str) -> None:
        super().__init__()
        self._clear = clear  # erases the live status line first, on a terminal

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        suffix = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        return f"{self._clear}  ! {record.getMessage()}{suffix}"


def _demo(speed: float) -> int:
    """Delayed tasks, an interval, a cancel, a wait, a failure, and wait_and_exit."""

    def t(seconds: float) -> float:
        return seconds / speed

    start = time.monotonic()
    lock = threading.Lock()
    tty = sys.stdout.isatty()

    clear = "\r\033[K" if tty else ""

    def say(text: str) -> None:
        with lock:
            print(f"{clear}[{time.monotonic() - start:5.2f}s] {text}", flush=True)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLine(clear))
    log = logging.getLogger("wheeltask")
    log.addHandler(handler)
    log.propagate = False

    wheeltask.configure(max_workers=4, name="demo")
    post = wheeltask.post_task

    say(
        "posting: four delayed tasks, a heartbeat every 0.4 s, one to cancel, one that "
        "fails, one that retries, one that overruns its timeout"
    )
    coffee = post(say, "delayed 0.5 s: coffee is ready", delay=t(0.5), name="coffee")
    post(say, "delayed 1.0 s: mail checked", delay=t(1.0), name="mail")

    def build_report() -> int:
        say("delayed 2.0 s: report built")
        return 42

    report = post(build_report, delay=t(2.0), name="report")
    post(say, "delayed 4.0 s: nightly cleanup (wait_and_exit waited for it)", delay=t(4.0))
    beats: list[int] = []

    def heartbeat() -> None:
        beats.append(len(beats) + 1)
        say(f"interval: heartbeat #{len(beats)}")

    hb = post(heartbeat, interval=t(0.4), name="heartbeat")
    doomed = post(say, "this never prints", delay=t(2.5), name="doomed")

    def failing() -> None:
        raise ValueError("disk full (on purpose)")

    broken = post(failing, delay=t(1.5), name="broken")

    tries: list[int] = []

    def flaky_upload() -> str:
        tries.append(1)
        if len(tries) < 3:
            say(f"flaky upload: attempt {len(tries)} asks for a retry")
            raise wheeltask.Retry(delay=t(0.3))
        return "uploaded"

    upload = post(
        flaky_upload,
        delay=t(0.6),
        retries=3,
        name="upload",
        on_success=lambda h, r: say(f"upload {r} after {h.attempts} attempts"),
    )

    def slow_export() -> str:
        me = wheeltask.current_task()
        assert me is not None
        while not me.timed_out():  # a thread cannot be killed: the callback looks
            time.sleep(t(0.05))
        say("slow export: noticed its deadline, stops")
        me.check()  # raises TaskTimeout (the handle has failed with it already)
        return "never"

    export = post(
        slow_export,
        delay=t(1.0),
        timeout=t(0.5),
        name="export",
        on_failure=lambda h, exc: say(f"export failed at its deadline: {exc}"),
    )

    async def fetch_quote() -> str:  # a coroutine task: it runs on the scheduler's loop
        await asyncio.sleep(t(0.2))  # (an async HTTP client would await here)
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    post(
        fetch_quote,
        delay=t(0.5),
        on_success=lambda h, loop: say(f"async def task ran on the {loop} event loop"),
    )
    reminder = post(say, "reminder: moved from 3.0 s to 1.3 s by reschedule()", delay=t(3.0))
    moved = reminder.reschedule(t(1.3))
    again = post(say, "keyed task 'report:7' ran (once)", delay=t(2.2), key="report:7")
    same = post(say, "never printed", key="report:7")  # that key is live: no second task

    def status() -> str:
        s = wheeltask.get_scheduler().stats()
        done = s.succeeded + s.failed + s.cancelled
        return (
            f"pending={s.pending} queued={s.queued} running={s.running} done={done} "
            f"workers={s.workers}"
        )

    stop_status = threading.Event()

    def status_line() -> None:
        while not stop_status.wait(0.1 / max(speed, 1)):
            if tty:
                with lock:
                    print(f"\r\033[K  {status()}", end="", flush=True)

    painter = threading.Thread(target=status_line, daemon=True)
    painter.start()

    coffee.wait_for_finished(timeout=t(5))
    time.sleep(t(0.7))
    say(f"cancel 'doomed' before it runs: cancel() -> {doomed.cancel()}; state {doomed.state.name}")
    say("burst: 2,000 immediate tasks through the pool")
    burst = [post(sum, range(1000)) for _ in range(2000)]
    say(f"  right after posting: {status()}")
    say(f"wait_for_finished(report, timeout=3) -> {report.wait_for_finished(timeout=t(3))}")
    say(f"report.result() -> {report.result()}; burst done: {all(h.done() for h in burst)}")
    say(f"broken failed with {broken.exception()!r}; state {broken.state.name}")
    say(f"a second post with key 'report:7' returned the same handle: {same is again}")
    sizes: list[int] = []
    with wheeltask.group() as g:  # leaving the block waits for all three
        for n in (64, 128, 256):
            g.post_task(sizes.append, n, priority=n)
    say(f"group of 3 thumbnails done: {sorted(sizes)}; export timed out: {export.timed_out()}")
    say(f"reminder.reschedule(1.3 s) returned {moved}; pause the heartbeat: {hb.pause()}")
    time.sleep(t(0.9))
    hb.resume()
    say(f"heartbeat resumed on its grid; beats due while paused were skipped: missed={hb.missed}")
    upload.wait_for_finished(timeout=t(3))
    time.sleep(max(0.0, t(3.2) - (time.monotonic() - start)))
    say(f"status: {status()}")
    say("wait_and_exit(timeout=5): the heartbeat stops, pending one-shots finish")
    ok = wheeltask.wait_and_exit(timeout=t(5))
    stop_status.set()
    painter.join()
    s = wheeltask.get_scheduler().stats()
    say(f"wait_and_exit -> {ok}; heartbeat ran {hb.runs} times and is {hb.state.name}")
    print()
    print("summary")
    print(f"  tasks submitted {s.submitted:>5}   cancelled {s.cancelled}   pending {s.pending}")
    print(f"  runs succeeded  {s.succeeded:>5}   failed    {s.failed}   missed  {s.missed}")
    print(f"  retried {s.retried}   deduplicated {s.deduplicated}   timed out {s.timed_out}")
    print(
        f"  timer lateness p50 {s.lateness_p50 * 1000:.2f} ms, p99 {s.lateness_p99 * 1000:.2f} ms,"
        f" max {s.lateness_max * 1000:.2f} ms"
    )
    log.removeHandler(handler)
    return 0 if ok else 1


def _bench(argv: list[str]) -> int:
    """``python -m wheeltask bench ...``: the suite in ``benchmarks/`` of a checkout."""
    candidates = [
        Path(__file__).resolve().parent.parent / "benchmarks",  # editable install, checkout
        Path.cwd() / "benchmarks",
    ]
    for folder in candidates:
        run_py = folder / "run.py"
        if run_py.is_file() and "wheeltask benchmark suite" in run_py.read_text()[:200]:
            break  # (not another project's benchmarks/ in the current directory)
    else:
        print(
            "python -m wheeltask bench: the benchmark suite is in the source checkout, not "
            "in the installed package: git clone the project, then from its folder run "
            "pip install -e '.[bench]' && python -m wheeltask bench",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(folder))
    suite = runpy.run_path(str(folder / "run.py"), run_name="wheeltask_bench")
    result: int = suite["main"](argv)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["bench"]:  # its own parser: --help, and exit code 2 on bad input
        return _bench(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="python -m wheeltask",
        description="wheeltask: delayed and periodic background tasks on timing wheels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="command")
    demo = sub.add_parser("demo", help="a five-second tour with a live status line")
    demo.add_argument(
        "--speed", type=float, default=1.0, help="run the tour this many times faster"
    )
    sub.add_parser("version", help="print the installed version")
    worker = sub.add_parser(
        "worker", help="run task records from a bus (a Launcher) until stopped or done"
    )
    worker.add_argument(
        "--bus",
        default=os.environ.get("WHEELTASK_BUS", "memory://"),
        help="bus URL (default: $WHEELTASK_BUS, else memory://; put a URL with a password "
        "there rather than on the command line, which other users can see): file:///dir, "
        "stdio://, "
        "redis://user:password@host:port/db?claim_idle=30 or rediss:// (TLS)",
    )
    worker.add_argument("--topic", required=True, help="topic to consume")
    worker.add_argument("--done-topic", required=True, help="topic for finished records")
    worker.add_argument("--module", required=True, help="module with the workers (pkg.mod)")
    worker.add_argument("--slots", type=int, default=4, help="records run at once (4)")
    worker.add_argument("--grace", type=float, default=30.0, help="seconds to finish on stop")
    worker.add_argument("--lifetime", type=float, default=None, help="stop after this long")
    sub.add_parser(
        "bench",
        help="the benchmark suite against asyncio, sched, ThreadPoolExecutor ... "
        "(from a checkout; bench --help for its options)",
    )
    args = parser.parse_args(args_in)
    if args.command == "demo":
        if not args.speed > 0:
            parser.error("--speed must be > 0")
        return _demo(args.speed)
    if args.command == "version":
        print(wheeltask.__version__)
        return 0
    if args.command == "worker":
        return _worker(parser, args)
    parser.print_help()
    return 2


def _load_workers(module_name: str) -> dict[str, Callable[..., object]]:
    """A module's ``WORKERS`` dict, else its public top-level functions by name."""
    module = importlib.import_module(module_name)
    table = getattr(module, "WORKERS", None)
    if table is not None:
        if not isinstance(table, dict):
            raise TypeError(f"{module_name}.WORKERS must be a dict of type -> worker")
        return dict(table)
    return {
        name: fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")
    }


def _worker(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``python -m wheeltask worker``: a Launcher as a process, stopped cleanly by
    SIGTERM or SIGINT, or when a finite topic is done. Exit 0 when every record was
    published with its outcome, 1 when some work was abandoned or the bus cannot be
    reached, 2 for bad arguments (a missing extra too)."""
    from wheeltask import bus  # noqa: PLC0415 - only this command needs it

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the module may sit in the current directory
    try:
        workers = _load_workers(args.module)
    except Exception as exc:  # noqa: BLE001 - any import failure is a bad --module
        parser.error(f"--module {args.module!r}: {type(exc).__name__}: {exc}")
    if not workers:
        parser.error(f"--module {args.module!r} defines no worker (WORKERS or functions)")
    if args.slots < 1:
        parser.error(f"--slots must be >= 1, got {args.slots}")
    scheduler = wheeltask.Scheduler(max_workers=args.slots, name="worker")
    try:
        launcher = bus.Launcher(
            bus.connect(args.bus),
            args.topic,
            args.done_topic,
            workers,
            max_in_progress=args.slots,
            scheduler=scheduler,
            lifetime=args.lifetime,
            grace=args.grace,
        )
    except (TypeError, ValueError, ImportError) as exc:
        scheduler.shutdown(wait=False)
        parser.error(str(exc))
    except ConnectionError as exc:  # an unreachable bus: not a usage error, no traceback
        scheduler.shutdown(wait=False)
        print(f"worker: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    launcher.start()
    while not stop.is_set() and not launcher.wait(timeout=0.2):
        pass
    clean = launcher.stop() and launcher.abandoned == 0
    # Work abandoned after the grace period is not waited for any longer.
    scheduler.shutdown(wait=True, timeout=None if clean else 0)
    print(
        f"worker: {launcher.received} record(s) received, {launcher.published} published"
        + ("" if clean else f"; {launcher.abandoned} abandoned"),
        file=sys.stderr,
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
