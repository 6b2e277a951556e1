"""Interpreter exit, SIGINT and fork, each in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.slow


def run_child(code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_exit_with_pending_work_warns_and_does_not_hang() -> None:
    t0 = time.monotonic()
    proc = run_child(
        """
        import time, wheeltask
        h = wheeltask.post_task(print, "never", delay=3600)
        wheeltask.post_task(time.sleep, 3600)  # running at exit
        time.sleep(0.1)
        print("main done")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 10
    assert proc.stdout.strip() == "main done"
    assert "1 task(s) did not run and 1 were still running when the interpreter exited" in (
        proc.stderr
    )
    assert "wait_and_exit()" in proc.stderr


def test_clean_exit_after_wait_and_exit_is_silent() -> None:
    proc = run_child(
        """
        import wheeltask
        h = wheeltask.post_task(print, "ran", delay=0.05)
        assert wheeltask.wait_and_exit(timeout=5)
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ran"
    assert proc.stderr == ""


def test_sigint_while_blocked_in_wait_for_finished() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time, wheeltask
                h = wheeltask.post_task(time.sleep, 60)
                print("waiting", flush=True)
                try:
                    h.wait_for_finished()
                except KeyboardInterrupt:
                    print("interrupted", h.running(), flush=True)
                    sys.exit(3)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        child.kill()
    assert time.monotonic() - t0 < 5
    assert child.returncode == 3, err
    assert out.strip() == "interrupted True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_neither_hangs_nor_inherits_the_timer_thread() -> None:
    proc = run_child(
        """
        import os, threading, time, warnings, wheeltask
        from wheeltask._pool import WheeltaskThread
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
        pending = wheeltask.post_task(lambda: "parent", delay=0.3)
        wheeltask.post_task(print, interval=0.05)
        gate = threading.Event()
        timed = wheeltask.post_task(gate.wait, 5, timeout=10)  # running at the fork
        time.sleep(0.02)
        pid = os.fork()
        if pid == 0:
            ours = [t for t in threading.enumerate() if isinstance(t, WheeltaskThread)]
            assert ours == [], ours
            assert pending.cancelled(), pending
            assert timed._sched.stats().pending == 0, timed._sched.stats()
            h = wheeltask.post_task(lambda: "child", delay=0.05)
            assert h.result(timeout=5) == "child"
            assert wheeltask.wait_and_exit(timeout=5)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        gate.set()
        assert timed.result(timeout=5) is True
        assert pending.result(timeout=5) == "parent"
        assert wheeltask.wait_and_exit(timeout=5)
        print("ok")
        """,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_exit_with_a_timed_out_run_still_running_warns() -> None:
    proc = run_child(
        """
        import time, wheeltask
        wheeltask.configure(max_workers=1)
        h = wheeltask.post_task(time.sleep, 3600, timeout=0.05)
        h.wait_for_finished(5)  # timed out; its hooks wait for a worker that never frees
        print("state", h.state.name)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "state FAILED" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "0 task(s) did not run and 1 were still running" in proc.stderr
