"""goroutines: Go's concurrency model, for real, in Python.

Goroutines (``async def`` coroutines) are scheduled M:N by a G-P-M scheduler
over OS threads; they talk through channels and ``select``. The public API is
re-exported here, one name at a time; the implementation lives in private
modules named after the parts of Go's model (see ``_runtime``).
"""

from . import _accel
from . import bufio as bufio
from . import exec as exec
from . import net as net
from . import testing as testing
from . import trace as trace
from ._bridge import asyncio_loop as asyncio_loop
from ._bridge import from_asyncio as from_asyncio
from ._bridge import from_thread as from_thread
from ._bridge import wait_future as wait_future
from ._chan import Chan as Chan
from ._context import CancelFunc as CancelFunc
from ._context import Context as Context
from ._context import background as background
from ._context import todo as todo
from ._context import with_cancel as with_cancel
from ._context import with_deadline as with_deadline
from ._context import with_timeout as with_timeout
from ._context import with_value as with_value
from ._context import without_cancel as without_cancel
from ._errors import Canceled as Canceled
from ._errors import ChanClosed as ChanClosed
from ._errors import DeadlineExceeded as DeadlineExceeded
from ._errors import Deadlock as Deadlock
from ._group import Group as Group
from ._run import go as go
from ._run import gomaxprocs as gomaxprocs
from ._run import goroutine_id as goroutine_id
from ._run import gosched as gosched
from ._run import lock_os_thread as lock_os_thread
from ._run import num_goroutine as num_goroutine
from ._run import run as run
from ._run import stack_dump as stack_dump
from ._run import unlock_os_thread as unlock_os_thread
from ._select import default as default
from ._select import select as select
from ._signal import signal_notify as signal_notify
from ._signal import signal_stop as signal_stop
from ._sync import Cond as Cond
from ._sync import Locker as Locker
from ._sync import Mutex as Mutex
from ._sync import Once as Once
from ._sync import RWMutex as RWMutex
from ._sync import Semaphore as Semaphore
from ._sync import WaitGroup as WaitGroup
from ._syscall import blocking as blocking
from ._syscall import syscall as syscall
from ._time import Ticker as Ticker
from ._time import Timer as Timer
from ._time import after as after
from ._time import after_func as after_func
from ._time import monotonic as monotonic
from ._time import sleep as sleep
from ._time import tick as tick

__all__ = [
    "CancelFunc",
    "Canceled",
    "Chan",
    "ChanClosed",
    "Cond",
    "Context",
    "DeadlineExceeded",
    "Deadlock",
    "Group",
    "Locker",
    "Mutex",
    "Once",
    "RWMutex",
    "Semaphore",
    "Ticker",
    "Timer",
    "WaitGroup",
    "after",
    "after_func",
    "asyncio_loop",
    "background",
    "blocking",
    "bufio",
    "default",
    "exec",
    "from_asyncio",
    "from_thread",
    "go",
    "gomaxprocs",
    "goroutine_id",
    "gosched",
    "lock_os_thread",
    "monotonic",
    "net",
    "num_goroutine",
    "run",
    "select",
    "signal_notify",
    "signal_stop",
    "sleep",
    "stack_dump",
    "syscall",
    "testing",
    "tick",
    "todo",
    "trace",
    "unlock_os_thread",
    "wait_future",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
    "without_cancel",
]

__version__ = "0.1.0"

#: Which implementation of the hot paths runs: "c" (the accelerator,
#: ``goroutines._speedups``) or "pure" (the Python reference; forced by
#: ``GOROUTINES_PURE=1``). See ``goroutines._accel``.
__speedups__ = _accel.MODE
