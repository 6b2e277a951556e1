"""wheeltask: delayed and periodic background tasks on cascading timing wheels.

import wheeltask

h = wheeltask.post_task(refresh, delay=2.5)       # once, in 2.5 s
tick = wheeltask.post_task(poll, interval=1.0)    # every second
h.wait_for_finished(timeout=5)
tick.cancel()
wheeltask.wait_and_exit(timeout=10)               # at shutdown
"""

from ._clock import Clock as Clock
from ._clock import MonotonicClock as MonotonicClock
from ._default import configure as configure
from ._default import get_scheduler as get_scheduler
from ._default import group as group
from ._default import post_task as post_task
from ._default import wait_and_exit as wait_and_exit
from ._errors import DuplicateTask as DuplicateTask
from ._errors import QueueFull as QueueFull
from ._errors import Retry as Retry
from ._errors import SchedulerShutdown as SchedulerShutdown
from ._errors import TaskCancelled as TaskCancelled
from ._errors import TaskTimeout as TaskTimeout
from ._errors import WheeltaskError as WheeltaskError
from ._events import Event as Event
from ._group import TaskGroup as TaskGroup
from ._handle import TaskHandle as TaskHandle
from ._handle import TaskState as TaskState
from ._handle import current_task as current_task
from ._pipeline import Pipeline as Pipeline
from ._pipeline import PipelineStats as PipelineStats
from ._scheduler import Scheduler as Scheduler
from ._scheduler import Stats as Stats

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "DuplicateTask",
    "Event",
    "MonotonicClock",
    "Pipeline",
    "PipelineStats",
    "QueueFull",
    "Retry",
    "Scheduler",
    "SchedulerShutdown",
    "Stats",
    "TaskCancelled",
    "TaskGroup",
    "TaskHandle",
    "TaskState",
    "TaskTimeout",
    "WheeltaskError",
    "configure",
    "current_task",
    "get_scheduler",
    "group",
    "post_task",
    "wait_and_exit",
]
