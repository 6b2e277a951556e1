"""Row 8: from the shutdown call to a clean process exit, with N tasks pending."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from common import Config, Samples, Section, cell, interleaved, log, median, num, ratio, table
from timer_peers import _apscheduler_3

PROBE = Path(__file__).with_name("exit_probe.py")
REF = "wheeltask"
LABELS = {
    "wheeltask": "wheeltask wait_and_exit(timeout=0) (cancels, joins its threads)",
    "asyncio": "asyncio: cancel every TimerHandle, loop.close()",
    "heapq-condition": "heapq + threading.Condition scheduler: clear, join its thread",
    "apscheduler": "APScheduler 3 BackgroundScheduler.shutdown(wait=True)",
    "tpe": "ThreadPoolExecutor.shutdown(wait=True, cancel_futures=True), N queued",
}


def _once(key: str, n: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, str(PROBE), key, str(n)], capture_output=True, text=True, check=True
    )
    ended = time.monotonic()
    got = json.loads(out.stdout)
    return float(got["call"]), ended - float(got["start"])


def exit_time(cfg: Config) -> Section:
    keys = [REF, "asyncio", "heapq-condition", "tpe"]
    if _apscheduler_3():
        keys.append("apscheduler")
    sizes = {k: cfg.apscheduler_n if k == "apscheduler" else cfg.exit_n for k in keys}
    reps = cfg.heavy_reps
    samples = Samples()
    for rep, key in interleaved(keys, reps):
        log(f"exit: rep {rep + 1}/{reps}: {key}, {sizes[key]:,} pending, a process each")
        call, total = _once(key, sizes[key])
        samples.add(key, "call", call * 1e3)
        samples.add(key, "total", total * 1e3)
    ref = samples.get(REF, "total")
    rows = [
        [
            LABELS[k],
            f"{sizes[k]:,}",
            cell(samples.get(k, "call")),
            cell(samples.get(k, "total")),
            num(ratio(samples.get(k, "total"), ref)),
        ]
        for k in keys
    ]
    md = [
        f"## 8. Shutting down with tasks pending (ms, median of {reps} reps (min-max), "
        "a fresh process each)",
        "",
        "N tasks an hour away are pending (N queued for the executor, behind 4 busy "
        "workers released at the call); then the shutdown call. *call*: the call itself; "
        "*to exit*: from the call to the end of the process, interpreter teardown "
        "included.",
        "",
        table(["peer", "N", "call", "to exit", "x wheeltask (to exit)"], rows),
        "",
        f"- wheeltask: {num(median(samples.get(REF, 'call')))} ms in `wait_and_exit()`, "
        f"{num(median(samples.get(REF, 'total')))} ms to the end of the process; every "
        "pending handle ends CANCELLED with the reason, its waiters woken.",
    ]
    data = {
        "call_ms": {k: median(samples.get(k, "call")) for k in keys},
        "to_exit_ms": {k: median(samples.get(k, "total")) for k in keys},
    }
    return Section("\n".join(md), [], data)
