"""The runtime proper: G, P, M, Sched, timers. Nothing here is public API.

Lock order (a lock may be taken while holding only locks listed before it;
see each module's header for what the lock guards):

1. channel locks, several at once only in ``select``, in ``id()`` order;
   sync primitives' locks (never held together with a channel lock);
2. ``Timers.lock``;
3. ``Sched.lock``.

No lock is held while a G is readied except ``Sched.lock`` itself (and
``ready`` takes none unless it must wake an M), so waking never nests
channel locks.
"""

__all__: list[str] = []
