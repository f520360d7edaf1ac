"""G: the goroutine, its statuses and wait reasons, and how it parks.

A G wraps a coroutine (an ``async def`` coroutine; a generator marked with
``types.coroutine`` is wrapped in one) plus the bookkeeping Go keeps in
``runtime.g``. Python coroutines, unlike greenlets, can be resumed from any
OS thread, so a G really migrates between Ms.

Parking (Go's ``gopark``) is a ``yield`` to the M that is running the G. The
parking code takes the lock of whatever it waits on, enqueues itself there,
and yields an *unlock function*. The M calls that function only after
``coro.send`` has returned, that is once the coroutine is suspended. Until the
lock is released nobody can find the G to ready it, so no thread can resume a
G that is still running: "a G is owned by at most one M at a time" is kept by
construction, not checked. (Free-threaded CPython 3.13/3.14 crashes rather
than raising when a coroutine is resumed from two threads at once.)

The yield protocol (what a G may yield to its M) uses private types only, so
that nothing a foreign awaitable yields (an asyncio future, a trio trap, a
callable, the string "syscall") is mistaken for a request of ours:

- an ``Unlock`` (a ``functools.partial`` subclass, called at C speed): park;
- ``GOSCHED`` or ``SYSCALL`` (``Request`` instances): yield the P, or make
  the blocking call in ``g.elem`` on this thread;
- anything else: the M throws a TypeError into the goroutine that says it
  awaited something that works only inside its own event loop.

Where a parked G waits is found from its innermost frame (the parking
generator, as dumps find its stack): ``register_unpark`` maps that code object
to a function that takes the G off that wait queue. ``run()`` uses it when it
closes goroutines left behind (``M.close_g``), so that no queue keeps a closed
G that a later operation (in this run's ``finally`` blocks, or in a later
run) would hand a value to. Rejected: an ``except`` at each parking yield.
For a channel receive that adds a stack slot to the generator a parked
receiver keeps (16 bytes per parked G with pymalloc's rounding, measured by
W5), on every receive, to serve the end of a run.

Ownership of a G's fields:

- ``status``: written by the M that owns the G (RUNNING -> WAITING/RUNNABLE/
  DEAD), and by ``ready`` (WAITING -> RUNNABLE), which only happens after the
  unlock function has run. A G is owned by exactly one of: the M running it, a
  run queue, or the wait queue it parked on.
- ``elem``/``success``/``param``: the G serves as its own sudog for
  single-channel waits (``param``, the Sudog that woke a select, is kept in
  ``elem``). Written by the G before it parks (under the lock of
  what it waits on) and by the one waker that dequeued it (under the same
  lock); read by the G after it is resumed. ``sleep`` also passes its wake-up
  time to its unlock function in ``elem`` (written before the park, cleared
  by the unlock function, while nobody else can find the G).
- ``locked_m``: the G itself (``gr.lock_os_thread``), read by the M that
  picks the G up. The nesting count lives on that M (``lockedcount``, Go's
  ``m.lockedExt``): only a locked G has one.
- ``site``: written once, at creation.

Memory: with 100 000 parked goroutines every byte of a G counts, so a G
keeps only what cannot be derived: ``entry`` is read off the coroutine, and
where it was created is a ``Site`` (code object, bytecode offset) shared by
every G created by the same ``go`` call (``Sites``); the line number is
worked out only when a dump or a panic note asks (``created_by``). A G is
not weak-referenceable (nothing needs it), ``sel`` is a class constant and
``param`` shares ``elem``'s slot: 10 slots, 112 bytes with the GC header
(pymalloc rounds to 16 bytes, so each pair of slots counts).
"""

from __future__ import annotations

import enum
import functools
import gc
import inspect
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from types import CodeType, FrameType
from typing import Any, TypeAlias, TypeVar, final

from ._lockrank import LockRank, new_lock

__all__ = [
    "EMPTY_CTX",
    "GOSCHED",
    "SYSCALL",
    "WRAPPER_CODE",
    "G",
    "GStatus",
    "Request",
    "Site",
    "Sites",
    "Sudog",
    "Unlock",
    "WaitReason",
    "add_note",
    "await_chain",
    "awaited",
    "frame_of",
    "gopark",
    "is_async_callable",
    "make_coroutine",
    "new_g",
    "noop",
    "park_site",
    "register_park_site",
    "register_unpark",
    "returns_awaitable",
    "unpark",
]


class GStatus(enum.IntEnum):
    """Where a G is, and therefore who owns it (Go's ``_Grunnable`` ...)."""

    #: On a run queue (a P's ``runnext``/``runq`` or the global queue); owned
    #: by that queue. Whoever takes it off the queue owns it.
    RUNNABLE = 1
    #: Being stepped by an M; owned by that M, which alone may change this.
    RUNNING = 2
    #: Inside ``gr.syscall``: owned by its M, whose P may be taken meanwhile.
    SYSCALL = 3
    #: Parked; owned by the wait queue it parked on (a channel, a timer, a
    #: sync primitive). The one waker that dequeues it readies it.
    WAITING = 4
    #: Finished; owned by nobody.
    DEAD = 5


class WaitReason(enum.Enum):
    """Why a G is WAITING, as shown in goroutine dumps.

    As in Go's ``runtime2.go``: do not re-use a reason for a different wait;
    add a new one.
    """

    NONE = ""
    CHAN_RECEIVE = "chan receive"
    CHAN_SEND = "chan send"
    SELECT = "select"
    SELECT_NO_CASES = "select (no cases)"
    SLEEP = "sleep"
    SYNC_MUTEX_LOCK = "sync.Mutex.Lock"
    SYNC_RWMUTEX_LOCK = "sync.RWMutex.Lock"
    SYNC_RWMUTEX_RLOCK = "sync.RWMutex.RLock"
    SYNC_WAITGROUP_WAIT = "sync.WaitGroup.Wait"
    SYNC_COND_WAIT = "sync.Cond.Wait"
    SYNC_ONCE = "sync.Once.Do"
    SEMACQUIRE = "semacquire"
    IO_WAIT = "IO wait"
    TESTING_WAIT = "testing.wait"
    FUTURE = "future"


@final
class Request:
    """A request a G yields to its M that is not a park (see the module docstring)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<goroutines {self.name} request>"


#: Yielded by ``gosched``: "put me back on the global queue".
GOSCHED: Any = Request("gosched")
#: Yielded by ``syscall``: "call ``g.elem = (fn, args, kwargs)`` on your thread".
SYSCALL: Any = Request("syscall")


@final
class Unlock(functools.partial):  # type: ignore[type-arg]
    """What a parking G yields: the function that releases what it waits on.

    A ``partial`` so that the M's call runs at C speed (``Unlock(lock.release)``
    is made once per channel; ``Unlock(arm_sleep, g)`` once per sleep).
    """

    __slots__ = ()


def _goready_unset(g: G) -> None:
    raise AssertionError("goready is installed by _scheduler")


#: Go's ``goready``; installed by ``_scheduler`` (which imports this module).
goready: Callable[[G], None] = _goready_unset


def _nothing() -> None:
    pass


#: The unlock function of a park that holds no lock.
noop = Unlock(_nothing)


#: What a finished G's ``ctx`` is set to (``goexit``): its own Context and the
#: values in it can go.
EMPTY_CTX: Context = Context()


#: Where a G was created: the code object and bytecode offset (``f_lasti``)
#: of the ``go`` call. The line is computed from them only when needed.
Site: TypeAlias = tuple[CodeType, int]


class G:
    """A goroutine. See the module docstring for who owns which field."""

    __slots__ = (
        "coro",
        "ctx",
        "elem",
        "id",
        "locked_m",
        "site",
        "status",
        "success",
        "wait_reason",
        "wait_since",
    )

    # No ``__init__``: ``G()`` is then a bare allocation, ~300 CPU
    # instructions cheaper than ``object.__new__(G)`` (W2 spawns 100 000).
    # ``new_g`` sets every field.
    id: int
    coro: Coroutine[Any, Any, Any]  # a generator's is wrapped: see make_coroutine
    ctx: Context
    site: Site | None
    status: GStatus
    wait_reason: WaitReason
    wait_since: float
    #: gr.lock_os_thread: the only M that may run this G.
    locked_m: Any
    # Sudog fields: the G is its own sudog for single-channel waits.
    elem: Any
    success: bool

    #: A G is never a select's waiter (its Sudogs are): a class constant,
    #: not a slot (wakers read it on every waiter; see Sudog).
    sel: None = None

    @property
    def param(self) -> Sudog | None:
        """The Sudog that woke a select (Go's ``g.param``). It lives in
        ``elem``: while a G waits in a select it is not itself in any wait
        queue (its Sudogs are), so nobody else uses its ``elem`` then."""
        return self.elem  # type: ignore[no-any-return]

    @param.setter
    def param(self, sg: Sudog | None) -> None:
        self.elem = sg

    @property
    def entry(self) -> str:
        """The goroutine's function, as shown in dumps and notes."""
        coro = self.coro
        return getattr(coro, "__qualname__", None) or type(coro).__name__

    @property
    def created_by(self) -> tuple[str, int, str] | None:
        """(file, line, function) of the ``go`` call that created this G."""
        site = self.site
        if site is None:
            return None
        code, lasti = site
        return (code.co_filename, site_line(code, lasti), code.co_name)

    def wake(self) -> None:
        """Waiter protocol: make this parked G runnable (Go's ``goready``)."""
        goready(self)

    def __repr__(self) -> str:
        return f"<G {self.id} {self.entry} {self.status.name.lower()}>"


# Enum members bound once: ``GStatus.X`` goes through EnumType.__getattr__
# (~70 ns on 3.11), a module global is a dict hit.
_RUNNABLE = GStatus.RUNNABLE
_NO_REASON = WaitReason.NONE


def new_g(
    gid: int,
    coro: Coroutine[Any, Any, Any],
    ctx: Context,
    site: Site | None,
) -> G:
    """A new RUNNABLE G: the one constructor (``go``, ``run``'s main G)."""
    g = G()
    g.id = gid
    g.coro = coro
    g.ctx = ctx
    g.site = site
    g.status = _RUNNABLE
    g.wait_reason = _NO_REASON
    g.wait_since = 0.0
    g.locked_m = None
    g.elem = None
    g.success = False
    return g


def site_line(code: CodeType, lasti: int) -> int:
    """The source line of bytecode offset ``lasti`` in ``code`` (what ``f_lineno`` says)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return code.co_firstlineno


class Sites:
    """Interned creation sites: one ``Site`` tuple per (code, offset).

    ``go`` in a loop creates many Gs at one site; sharing the tuple saves a
    tuple per G. Keyed by ``id(code)`` (hashing a code object hashes its
    constants and names): an interned Site holds its code object, so the id
    cannot be reused while it is in the table. Any thread: ``dict.get`` and
    ``dict.setdefault`` are atomic, and a lost race only makes two equal
    tuples. Bounded: cleared when it holds ``MAX`` code objects (code made
    on the fly, e.g. by ``exec``, would otherwise pile up).
    """

    __slots__ = ("codes",)

    MAX = 4096

    def __init__(self) -> None:
        self.codes: dict[int, dict[int, Site]] = {}

    def intern(self, code: CodeType, lasti: int) -> Site:
        """The shared Site for ``(code, lasti)``; the miss path of ``go``'s lookup."""
        codes = self.codes
        at = codes.get(id(code))
        if at is None:
            if len(codes) >= self.MAX:
                codes.clear()
            # The site goes in before the table is published: a table in
            # ``codes`` always holds a Site that keeps its code (and id) alive.
            at = codes.setdefault(id(code), {lasti: (code, lasti)})
        return at.setdefault(lasti, (code, lasti))


class Sudog:
    """A G waiting in a wait queue for one case of a ``select``.

    A single-channel wait enqueues the G itself (it has the same fields); a
    select enqueues one Sudog per case, all sharing one ``sel`` token: a
    one-element list that the waker claims with ``sel.pop()`` (atomic on
    builtin lists) so that exactly one case wins. A waiter is anything with
    ``elem``, ``success``, ``sel`` and ``wake()``: a later bridge can queue a
    plain thread or an asyncio future the same way.
    """

    __slots__ = ("c", "case", "elem", "g", "sel", "success")

    def __init__(self, g: G, case: int, c: Any, sel: list[bool], elem: Any) -> None:
        #: None once the select has fired (it keeps nothing alive then).
        self.g: G | None = g
        self.case = case
        self.c = c
        self.sel: list[bool] | None = sel
        self.elem = elem
        self.success = False

    def wake(self) -> None:
        g = self.g
        assert g is not None, "a dead sudog was woken"
        g.param = self
        g.wake()


@types.coroutine
def gopark(unlockf: Callable[[], None], reason: WaitReason, g: G) -> Generator[Any, None, None]:
    """Park the calling G (which must be ``g``) and release what it waits on.

    The caller holds the lock that makes the G findable and has enqueued it;
    ``unlockf`` releases that lock and is run by the M once the coroutine is
    suspended.
    """
    g.wait_reason = reason
    yield unlockf if unlockf.__class__ is Unlock else Unlock(unlockf)


#: Where a G can park -> how to take a G parked there off its wait queue
#: (see the module docstring): the code object of a parking generator (the
#: hook gets its frame), or the type of a C awaitable a G can wait in (the
#: hook gets the awaitable: the accelerator's ``ChanOp``). Written at import
#: time only.
_unparkers: dict[CodeType | type, Callable[[G, Any], None]] = {}

#: Type of a C awaitable a G can park in -> ``(qualname, filename, line)``
#: of the reference's code it stands for, which dumps show in its place (a
#: C object has no frame; a dump is the same in both modes). Import time only.
_park_sites: dict[type, Callable[[Any], tuple[str, str, int]]] = {}


def register_unpark(where: CodeType | type, unparkf: Callable[[G, Any], None]) -> None:
    """A G whose innermost frame runs code object ``where`` (or that waits
    in an awaitable of type ``where``) is parked in a wait queue that
    ``unparkf(g, frame_or_awaitable)`` takes it off (if it is still there:
    a waker may have dequeued it already). Called at import by the modules
    that park."""
    _unparkers[where] = unparkf


def register_park_site(tp: type, sitef: Callable[[Any], tuple[str, str, int]]) -> None:
    """Dumps show a G waiting in an awaitable of C type ``tp`` as the frame
    ``sitef(awaitable)`` gives: ``(qualname, filename, line)``."""
    _park_sites[tp] = sitef


def _async_gen_step_types() -> tuple[type, ...]:
    async def agen() -> Any:
        yield None

    ag = agen()
    asend, athrow = ag.asend(None), ag.athrow(GeneratorExit)
    kinds = (type(asend), type(athrow))
    asend.close()
    athrow.close()
    return kinds


#: ``async for`` over an async generator awaits its ``asend`` object (and
#: ``aclose`` its ``athrow``), which has no public link to the generator.
_AG_STEPS = _async_gen_step_types()
_AsyncGen = types.AsyncGeneratorType


def awaited(obj: Any) -> Any:
    """What ``obj``, a link of an await chain, awaits: a coroutine's
    ``cr_await``, a generator's ``gi_yieldfrom``, an async generator's
    ``ag_await``, or the async generator an ``asend``/``athrow`` steps."""
    nxt = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    if nxt is None:
        if obj.__class__ is _AsyncGen:
            return obj.ag_await
        if obj.__class__ in _AG_STEPS:
            # The only way from the step to its generator: the step's
            # tp_traverse visits it (CPython 3.11-3.13). Without this a G
            # parked inside an async generator would show no stack below
            # the ``async for`` and could not be taken off its wait queue
            # when its run closes it.
            for ref in gc.get_referents(obj):
                if ref.__class__ is _AsyncGen:
                    return ref
    return nxt


def await_chain(coro: Any) -> list[Any]:
    """The objects of a coroutine's await chain, outermost first: each
    coroutine, generator or async generator, then what it awaits, down to
    the innermost awaitable (a suspended generator, or a C awaitable). Only
    for a G that no M is running."""
    chain = []
    while coro is not None:
        chain.append(coro)
        coro = awaited(coro)
    return chain


def frame_of(obj: Any) -> FrameType | None:
    """The frame of a coroutine, generator or async generator of an await
    chain (None for a C awaitable, or once finished)."""
    return (
        getattr(obj, "cr_frame", None)
        or getattr(obj, "gi_frame", None)
        or getattr(obj, "ag_frame", None)
    )


def park_site(obj: Any) -> tuple[str, str, int] | None:
    """What dumps show for ``obj``, an await chain's C awaitable, if registered."""
    f = _park_sites.get(type(obj))
    return None if f is None else f(obj)


def unpark(g: G) -> None:
    """Take a parked ``g`` off the wait queue it parked in, if it is still
    there and the parking site registered how (``register_unpark``: the
    innermost registered frame, since a site may park through ``gopark``,
    or the C awaitable it waits in). For a G that no M is running (``run()``
    closing the goroutines left)."""
    for obj in reversed(await_chain(g.coro)):
        frame = frame_of(obj)
        f = _unparkers.get(type(obj) if frame is None else frame.f_code)
        if f is not None:
            f(g, obj if frame is None else frame)
            return


_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100


async def _generator_goroutine(gen: Any) -> Any:
    """The coroutine of a G whose code is a ``types.coroutine`` generator."""
    return await gen


#: Dumps show the wrapped generator's frames, not the wrapper's (``_traceback``).
WRAPPER_CODE = _generator_goroutine.__code__


def _as_coroutine(gen: Any) -> Coroutine[Any, Any, Any]:
    coro = _generator_goroutine(gen)
    # What dumps call the goroutine (``G.entry``): the generator's name.
    coro.__qualname__ = gen.__qualname__  # type: ignore[attr-defined]
    return coro


def make_coroutine(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> Coroutine[Any, Any, Any]:
    """Turn ``fn(*args, **kwargs)`` or a coroutine object into the coroutine a G runs.

    Raises TypeError, without calling ``fn``, unless ``fn`` is an async
    function (or a ``types.coroutine`` generator function, or a callable whose
    ``__call__`` is async) or ``fn`` is already a coroutine object. A
    ``types.coroutine`` generator is wrapped in a coroutine: the M steps
    only coroutines (one unbound ``send``, no type test, at every step).
    """
    if isinstance(fn, types.CoroutineType):
        if args or kwargs:
            raise TypeError(f"{what}: arguments given with a coroutine object {fn!r}")
        _claim_fresh(fn, what)
        return fn
    if isinstance(fn, types.GeneratorType) and fn.gi_code.co_flags & _CO_ITERABLE_COROUTINE:
        if args or kwargs:
            raise TypeError(f"{what}: arguments given with a coroutine object {fn!r}")
        _claim_fresh(fn, what)
        return _as_coroutine(fn)
    if not is_async_callable(fn):
        raise TypeError(
            f"{what} needs an async function or a coroutine object, got {fn!r}"
            + (" (a plain function: declare it 'async def')" if callable(fn) else "")
        )
    coro = fn(*args, **kwargs)
    if isinstance(coro, types.CoroutineType):
        return coro
    if isinstance(coro, types.GeneratorType) and coro.gi_code.co_flags & _CO_ITERABLE_COROUTINE:
        return _as_coroutine(coro)
    if type(coro) in _park_sites:  # a C awaitable of ours (``gr.go(ch.recv)``)
        coro._given()  # its goroutine may be closed before it runs: no warning then
        return _as_coroutine(coro)
    raise TypeError(f"{what}: {fn!r} returned {type(coro).__name__}, not a coroutine")


#: Coroutine objects (and generators) given to ``go``/``run`` that have not
#: started yet; guarded by ``_given_lock`` (a leaf: rank 12 in the table in
#: ``goroutines._runtime``). Once started a coroutine says so
#: itself (``inspect.getcoroutinestate``), so only the not-yet-started ones
#: need remembering, and weakly: the set holds nothing alive.
_given: weakref.WeakSet[Any] = weakref.WeakSet()
_given_lock = new_lock(LockRank.GIVEN)


def _claim_fresh(coro: Any, what: str) -> None:
    """Accept ``coro`` for one goroutine only: RuntimeError if it was given to
    ``go``/``run`` before, is running or suspended inside another coroutine,
    or has finished. Two Gs sharing one coroutine would each take the other's
    wake-ups (and, on a free-threaded build, two threads would resume it)."""
    state: str
    if isinstance(coro, types.CoroutineType):
        state = inspect.getcoroutinestate(coro)
        created, closed = inspect.CORO_CREATED, inspect.CORO_CLOSED
    else:
        state = inspect.getgeneratorstate(coro)
        created, closed = inspect.GEN_CREATED, inspect.GEN_CLOSED
    if state == closed:
        problem = "has already finished (or was closed)"
    elif state != created:
        problem = "has already started: it is running, or awaited by another coroutine"
    else:
        with _given_lock:
            if coro not in _given:
                _given.add(coro)
                return
        problem = "was already given to go() or run()"
    raise RuntimeError(
        f"{what}: the coroutine object {coro!r} {problem}; a coroutine object runs as one "
        "goroutine only: pass the async function (and its arguments) to start another"
    )


F = TypeVar("F", bound=Callable[..., Any])


#: Methods of C types that return one of our awaitables (``returns_awaitable``
#: cannot mark them with an attribute). Import time only.
_awaitable_methods: set[Any] = set()


def returns_awaitable(fn: F) -> F:
    """Mark a plain function that returns one of our awaitables (a
    ``types.coroutine`` generator, or a C awaitable of the accelerator), so
    that ``go(fn)`` accepts it like an async function (``gr.go(ch.recv)``)."""
    try:
        fn.__goroutines_awaitable__ = True  # type: ignore[attr-defined]
    except AttributeError:  # a C type's method descriptor
        _awaitable_methods.add(fn)
    return fn


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine, judged without calling it."""
    if getattr(getattr(fn, "__func__", fn), "__goroutines_awaitable__", False):
        return True
    if _awaitable_methods and isinstance(fn, types.BuiltinMethodType):
        # a C function (``gr.sleep``), or a bound method of a C type (``ch.recv``
        # of the accelerator's Chan)
        if fn in _awaitable_methods:
            return True
        owner = getattr(fn, "__self__", None)
        if getattr(type(owner), fn.__name__, None) in _awaitable_methods:
            return True
    code = getattr(fn, "__code__", None)
    if code is not None:  # functions and bound methods
        return bool(code.co_flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE))
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we want the class attribute
    code = getattr(call, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also when the exception's ``__notes__`` is not
    a list (``add_note`` raises TypeError then, and the exception a user
    raised would be replaced by ours): a sequence is copied into a list."""
    notes = getattr(exc, "__notes__", None)
    if notes is not None and not isinstance(notes, list):
        try:
            exc.__notes__ = [*notes] if not isinstance(notes, str) else [notes]
        except Exception:  # not iterable, or a read-only attribute: start afresh
            try:
                exc.__notes__ = []
            except Exception:
                return  # an exception that refuses notes gets none
    exc.add_note(note)


def now() -> float:
    return time.monotonic()
