"""The runtime proper: G, P, M, Sched, timers. Nothing here is public API.

The doors (Go's runtime entry points for its own packages): the modules
above the runtime (``_chan``, ``_select``, ``_sync``, ``_time``,
``_context``, ``net``, ``_signal``) park and wake goroutines only through
these, and never touch a P, its ``runnext`` or ``runq``, or the timer
heap's internals:

- ``getg()`` / ``getg_or_none()``: the running G;
- ``gopark(unlockf, reason, g)``: park (a generator); the protocol it
  follows, for a parking site whose frame must stay small (a channel's
  receive): set ``g.wait_reason`` and yield an ``Unlock``;
- ``goready(gp)``: make a parked G runnable (``G.wake``);
- ``newproc`` (``gr.go``); ``sleep_park(when)``: what ``sleep`` yields;
  ``_clock.now()``: the runtime's clock (virtual in a bubble), which every
  time the modules above keep is read from;
  ``shuffle``: the run's seeded random order (select); ``poll_open``: a
  socket on the poller; ``register_unpark``: how a closing run takes a G
  off the queue it parked in. Timers are armed through ``Timers``' own
  methods (``add``, ``stop``, ``reset``: Go's addtimer/deltimer/modtimer).

Lock order: every lock of ``goroutines`` in one ranked table (Go's
``lockrank.go``). A lock may be taken only while every lock the thread
holds has a lower rank; the two same-rank exceptions are marked. Each
lock is made by ``_lockrank.new_lock(LockRank.X, owner)``, and
``GOROUTINES_DEBUG=lockrank=1`` checks this order on every acquire
(``_lockrank``). Each module's header says what its locks guard in detail
and points here for the order; "takes" lists the locks (and unranked
waits) that code holding the lock goes on to take, and where.

==== ========================= ============================ =================================
rank lock                      guards                       takes while held
==== ========================= ============================ =================================
1    ``_scheduler._run_lock``  ``current``,                 12 (``start``: ``make_coroutine``)
                               ``_last_run_id``
2    ``_signal._lock``         ``_reg``, the signal         7 (``_dispatch``: non-blocking
                               registry                     send), 10 (``_set_count_locked``,
                                                            ``reset``)
3    ``_CancelCtx._mu``        ``err``, ``done``,           3, parent before child (the
     (``_context``)            ``children``, ``_timer``     cancel walk, ``_propagate_cancel``);
                                                            7 (closing ``done``); 9
                                                            (``timers.stop/add``); 10, 11
                                                            (``on_earlier``, readying the Gs
                                                            parked on ``done`` off an M)
4    ``Cond._lock``            its wait queue               5 (``L.unlock()`` in ``wait``);
     (``_sync``)                                            10 (readying a G off an M); and
                                                            whatever a user Locker's unlock
                                                            takes (7 for one made of channels)
5    ``_lock`` of Mutex,       its state, wait queues       nothing (Gs are woken after it
     RWMutex, WaitGroup, Once,                              is released)
     Semaphore (``_sync``)
6    ``_FD.lock`` (``net``)    ``refs``, ``closing``, the   nothing
                               direction flags and queues
7    ``Chan.lock``             every field of the channel;  7, several only in ``select``, in
     (``_chan``)               a Timer/Ticker's ``_armed``, increasing ``id()`` of their
                               ``_gen`` (``_time``)         channels; 9 (``Timer.stop/reset``:
                                                            ``timers.stop/reset``); 10, 11
                                                            (``on_earlier``)
8    ``PollDesc.lock``         the PollDesc's fields        9 (``set_deadline``, ``evict``);
     (``_netpoll``)                                         11 (``wait``: ``nwaiters``); 10
                                                            (``on_earlier``)
9    ``Timers.lock``           the heap, ``nactive``,       nothing (``on_earlier``, callbacks
     (``_timers``)             ``nstale``, ``seq``, every   and ``G.wake`` run after it is
                               ``Timer``'s fields           released)
10   ``Sched.lock``            see ``_scheduler``; M's      11 (``wake_m_locked``:
     (``_scheduler``)          ``parked``, ``nextp``,       ``netpoll.wakeup``); unranked: an
                               ``polling``; P's idle state  M's note (``acquire(False)``),
                                                            sysmon's note (``wake``),
                                                            ``mainq.put``, ``done``/``world``
11   ``Netpoll.lock``          ``pds``, ``nwaiters``,       nothing
     (``_netpoll``)            ``wakesig``, making ``ep``
12   ``_given_lock``           ``_given``                   nothing
     (``_goroutine``)
13   ``_switch_lock``          ``active``, starting and     14 (a GC callback's first event
     (``_trace``)              stopping the sites           on this thread); unranked: the
                                                            C tracer's ``tr_lock`` (a leaf)
14   ``Tracer.lock``           ``Tracer.bufs``              nothing (a leaf: a GC callback
     (``_trace``)                                           may record, so take it under any
                                                            lock)
==== ========================= ============================ =================================

Unranked, not made by ``new_lock``: an M's ``note`` and sysmon's ``note``
are binary semaphores, held by their owner while it is awake and released
by whoever wakes it (another thread), so they are not locks in the
lock-order sense: nobody waits for them while holding a ranked lock except
with ``acquire(False)`` (``stopm``), and their owner waits for its own note
holding nothing. ``Sched.world``, ``Sched.done`` and ``call_on_main``'s
``threading.Event``, and ``Sched.mainq`` (``queue.SimpleQueue``), lock only
inside their own methods (leaves); ``sched.world.wait`` and the event of
``call_on_main`` are waited on holding no lock. Five plain locks of the
modules above are leaves taken holding no other lock: ``_bridge``'s
``_FutureWait.lock`` and ``_loops_lock``, and ``_group``'s
``_unretrieved_lock``, for a field swap (``sched.lock`` is taken only after
each is released); ``exec.Pipe._lock``, for its reference count (the fd is
closed and the poller told after it is released); and ``net.tls.Conn._lock``,
around calls on its ``ssl.SSLObject`` and memory buffers (never across a
park). ``Group._lock`` is a ranked SYNC lock (rank 5).

Readying a G takes no lock unless it must wake an M (``wakep``: rank 10),
and channel, sync and poll-descriptor code readies Gs only after releasing
its own lock; the holders that do ready Gs or arm timers (a context's
``_mu``, ``Cond._lock``, a Timer's ``c.lock``, ``pd.lock``) are ranked
below ``Sched.lock`` and ``Netpoll.lock`` for that reason.
"""

from ._goroutine import Unlock, gopark, noop, register_unpark
from ._scheduler import current_g as getg
from ._scheduler import getg_or_none, not_in_goroutine, poll_open, shuffle, sleep_park
from ._scheduler import go as newproc
from ._scheduler import ready as goready

__all__ = [
    "Unlock",
    "getg",
    "getg_or_none",
    "gopark",
    "goready",
    "newproc",
    "noop",
    "not_in_goroutine",
    "poll_open",
    "register_unpark",
    "shuffle",
    "sleep_park",
]
