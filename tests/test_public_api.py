"""The public surface: what DESIGN.md names exists, is exported and documented."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import wheeltask
import wheeltask.testing

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_complete() -> None:
    assert wheeltask.__all__ == sorted(wheeltask.__all__)
    for name in wheeltask.__all__:
        assert hasattr(wheeltask, name), name
    public = {n for n in vars(wheeltask) if n.isidentifier() and not n.startswith("_")}
    public -= {"testing", "pytest_plugin", "bus", "aio"}  # public submodules
    assert public <= set(wheeltask.__all__), public - set(wheeltask.__all__)


@pytest.mark.parametrize(
    "name",
    [
        "post_task",
        "wait_and_exit",
        "configure",
        "get_scheduler",
        "Scheduler",
        "TaskHandle",
        "TaskState",
        "Stats",
        "WheeltaskError",
        "TaskCancelled",
        "TaskTimeout",
        "QueueFull",
        "SchedulerShutdown",
        "DuplicateTask",
        "Retry",
    ],
)
def test_design_names_are_exported_documented_and_in_the_readme(name: str) -> None:
    obj = getattr(wheeltask, name)
    assert name in wheeltask.__all__
    assert inspect.getdoc(obj), f"{name} has no docstring"
    assert name in (ROOT / "README.md").read_text(), f"{name} is not in the README"


def test_exception_hierarchy() -> None:
    for exc in (
        "TaskCancelled",
        "TaskTimeout",
        "QueueFull",
        "SchedulerShutdown",
        "DuplicateTask",
        "Retry",
    ):
        assert issubclass(getattr(wheeltask, exc), wheeltask.WheeltaskError)
    assert issubclass(wheeltask.SchedulerShutdown, RuntimeError)
    assert not issubclass(wheeltask.TaskTimeout, TimeoutError)


def test_handle_api() -> None:
    h = wheeltask.TaskHandle
    for attr in ("id", "name", "state", "runs", "missed", "next_run"):
        assert isinstance(inspect.getattr_static(h, attr), property), attr
    for method in (
        "cancel",
        "cancelled",
        "done",
        "running",
        "wait_for_finished",
        "wait_for_runs",
        "result",
        "exception",
        "add_done_callback",
    ):
        assert callable(getattr(h, method)) and inspect.getdoc(getattr(h, method)) is not None
    assert [s.name for s in wheeltask.TaskState] == [
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "PAUSED",
    ]


def test_scheduler_signature_matches_the_design() -> None:
    sig = inspect.signature(wheeltask.Scheduler)
    defaults = {k: p.default for k, p in sig.parameters.items()}
    assert defaults == {
        "max_workers": 10,
        "min_workers": 0,
        "queue_size": 10_000,
        "idle_timeout": 5.0,
        "on_full": "block",
        "max_pending": None,
        "clock": None,
        "name": "wheeltask",
        "task_defaults": None,  # ours, after DESIGN's parameters
        "loop": "auto",  # coroutine tasks (issue 8)
        "max_async": 1000,
    }
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    post = inspect.signature(wheeltask.Scheduler.post_task).parameters
    assert post["cb"].kind is inspect.Parameter.POSITIONAL_ONLY
    assert post["delay"].kind is inspect.Parameter.KEYWORD_ONLY
    shutdown = inspect.signature(wheeltask.Scheduler.shutdown).parameters
    assert shutdown["wait"].default is True and shutdown["cancel_pending"].default is False


def test_stats_fields() -> None:
    names = [f.name for f in dataclasses.fields(wheeltask.Stats)]
    assert names[:12] == [
        "pending",
        "queued",
        "running",
        "workers",
        "idle_workers",
        "submitted",
        "succeeded",
        "failed",
        "retried",
        "cancelled",
        "missed",
        "rejected",
    ]
    assert {"lateness_p50", "lateness_p99", "lateness_max"} <= set(names)


def test_testing_module() -> None:
    for name in wheeltask.testing.__all__:
        assert inspect.getdoc(getattr(wheeltask.testing, name))
    for method in ("now", "advance", "advance_to", "run_until_idle"):
        assert callable(getattr(wheeltask.testing.VirtualClock, method))
    assert callable(wheeltask.Scheduler.run_due)


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "wheeltask" / "py.typed").exists()


def _tool(module: str) -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )


@pytest.mark.skipif(not _tool("mypy"), reason="mypy not installed (pip install -e '.[dev]')")
def test_mypy_strict_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "wheeltask"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not _tool("ruff"), reason="ruff not installed (pip install -e '.[dev]')")
def test_ruff_clean() -> None:
    paths = ["wheeltask", "tests", "examples", "benchmarks"]
    paths = [p for p in paths if (ROOT / p).exists()]
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout
