"""Child process of the memory section: bytes per pending timer for one peer.

Usage: ``python benchmarks/memory_probe.py PEER N [tracemalloc|rss]`` prints one
number. A fresh process per measurement, so that no heap left by another peer is reused
or counted. ``tracemalloc`` counts the bytes Python allocated; ``rss`` the growth of the
process's resident memory (what the system sees: allocator slack and pages included,
thread stacks too), measured without tracemalloc running.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import tracemalloc

from common import log_uniform_delays
from timer_peers import PEERS


def _rss_bytes() -> int:
    """Resident memory now (Linux /proc), else the peak so far (getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def bytes_per_timer(key: str, n: int, how: str = "tracemalloc") -> float:
    """Bytes added by posting ``n`` timers, handles list included, divided by n."""
    peer_class = PEERS[key]
    delays = [d + peer_class.memory_delay_offset for d in log_uniform_delays(n)]
    peer = peer_class()
    gc.collect()
    if how == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss_bytes()
    handles = peer.post_all(delays)
    gc.collect()
    if how == "tracemalloc":
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        after = _rss_bytes()
    assert len(handles) == n
    peer.close()
    return (after - before) / n


def main(argv: list[str]) -> None:
    key, n = argv[1], int(argv[2])
    how = argv[3] if len(argv) > 3 else "tracemalloc"
    print(bytes_per_timer(key, n, how))


if __name__ == "__main__":
    main(sys.argv)
