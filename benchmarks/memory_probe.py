"""Child process of the memory section: bytes traced per pending timer for one peer.

Usage: ``python benchmarks/memory_probe.py PEER N`` prints one number. A fresh process
per measurement, so that no heap left by another peer is reused or counted.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

from common import log_uniform_delays
from timer_peers import PEERS


def bytes_per_timer(key: str, n: int) -> float:
    """Traced bytes added by posting ``n`` timers, handles list included, divided by n."""
    peer_class = PEERS[key]
    delays = [d + peer_class.memory_delay_offset for d in log_uniform_delays(n)]
    peer = peer_class()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    handles = peer.post_all(delays)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(handles) == n
    peer.close()
    return (after - before) / n


def main(argv: list[str]) -> None:
    key, n = argv[1], int(argv[2])
    print(bytes_per_timer(key, n))


if __name__ == "__main__":
    main(sys.argv)
