"""select: wait on several channel operations, take exactly one (``runtime/select.go``).

A case is a bound ``ch.recv`` or ``ch.recv_ok``, a pair ``(ch.send, value)``,
``None`` (a disabled case, Go's nil channel) or ``default``.

The three passes of Go's ``selectgo``:

1. Lock every channel involved, once each, in one global order (``id()``),
   so two selects over the same channels cannot deadlock each other (the
   one same-rank nesting of channel locks in the ranked table of
   ``goroutines._runtime``; lockrank checks it). Poll
   the cases in a random order (fairness: ready cases win uniformly at
   random) and take the first that can proceed; else take ``default``.
2. Otherwise enqueue one ``Sudog`` per case, all sharing one claim token,
   and park, releasing every lock once the G is suspended. The first waker
   to ``pop()`` the token wins; every other waker finds it empty and skips
   that sudog, so the G is woken by exactly one case.
3. On wake-up, lock the channels again and tell each one how many of our
   sudogs it still holds dead (they are skipped, and compacted in bulk;
   see ``_chan``).
"""

from __future__ import annotations

import types
from collections.abc import Generator
from types import FrameType
from typing import Any, Final, final

from ._chan import RECV_OK, Chan
from ._errors import ChanClosed
from ._runtime import shuffle
from ._runtime._goroutine import Sudog, WaitReason, gopark, noop, register_unpark
from ._runtime._scheduler import current_g, current_run_id

# Enum members bound once: ``WaitReason.X`` goes through EnumType.__getattr__
# (~70 ns on 3.11) on every park.
_SELECT = WaitReason.SELECT
_SELECT_NO_CASES = WaitReason.SELECT_NO_CASES

__all__ = ["default", "select"]


@final
class _Default:
    """The ``default`` case of ``gr.select``: taken at once when no other
    case is ready, so the select never blocks (Go's ``default:``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "goroutines.default"


#: The ``default`` case of a select: taken when no other case is ready.
default: Final = _Default()

_SEND, _RECV, _RECV_OK = 0, 1, 2
_SEND_FN = Chan.send
_RECV_FN = Chan.recv
_RECV_OK_FN = Chan.recv_ok


def _c_func(m: Any) -> Any:
    """The function of ``m`` when it has no ``__func__``: for a bound method
    of the accelerator's C ``Chan`` core, its descriptor on the class (what
    ``Chan.recv`` is then); None for anything else."""
    if type(m) is types.BuiltinMethodType:
        return getattr(type(m.__self__), m.__name__, None)
    return None


def _parse(i: int, case: Any) -> tuple[int, Chan[Any], Any]:
    if type(case) is tuple:
        if len(case) != 2:
            raise TypeError(
                f"select case {i}: a send case is a pair (ch.send, value), got a {len(case)}-tuple"
            )
        fn, v = case
        if (getattr(fn, "__func__", None) or _c_func(fn)) is _SEND_FN and isinstance(
            fn.__self__, Chan
        ):
            return _SEND, fn.__self__, v
        raise TypeError(
            f"select case {i}: the first item of a send pair must be ch.send, got {fn!r}"
        )
    ch = getattr(case, "__self__", None)
    if isinstance(ch, Chan):
        func = getattr(case, "__func__", None) or _c_func(case)
        if func is _RECV_FN:
            return _RECV, ch, None
        if func is _RECV_OK_FN:
            return _RECV_OK, ch, None
        if func is _SEND_FN:
            raise TypeError(f"select case {i}: a send case needs its value: (ch.send, value)")
    raise TypeError(
        f"select case {i}: expected ch.recv, ch.recv_ok, (ch.send, value), None or "
        f"gr.default, got {case!r}"
    )


@types.coroutine
def select(*cases: Any) -> Generator[Any, None, tuple[int, Any]]:
    """Wait until one of ``cases`` can proceed, do it, and return ``(index, value)``.

    ``value`` is the received value for ``recv``, ``(value, ok)`` for
    ``recv_ok`` and None for a send or ``default``. With no ready case and no
    default it blocks; ``select()`` with no cases blocks forever.
    """
    ops: list[tuple[int, int, Chan[Any], Any]] = []
    dflt = -1
    for i, case in enumerate(cases):
        if case is None:
            continue
        if case is default:
            if dflt >= 0:
                raise TypeError(f"select: more than one default case ({dflt} and {i})")
            dflt = i
            continue
        kind, ch, v = _parse(i, case)
        ops.append((i, kind, ch, v))

    if not ops:
        if dflt >= 0:
            return dflt, None
        g = current_g()
        yield from gopark(noop, _SELECT_NO_CASES, g)
        raise AssertionError("a select with no cases was woken")  # pragma: no cover

    if len(ops) > 1:
        shuffle(ops)  # the poll order, from the run's seeded generator
    chans = {id(ch): ch for _, _, ch, _ in ops}
    lockorder = [chans[k] for k in sorted(chans)]
    for ch in lockorder:
        ch.lock.acquire()

    def unlock() -> None:
        for ch in lockorder:
            ch.lock.release()

    # pass 1: look for a case that can proceed now
    for i, kind, ch, v in ops:
        if kind == _SEND:
            if ch._closed:
                unlock()
                raise ChanClosed("send on closed channel")
            res = ch.try_send_locked(v)
            if res is False:
                continue
            unlock()
            if res is not True:
                res.wake()
            return i, None
        state, rv, sg = ch.try_recv_locked()
        if state:
            unlock()
            if sg is not None:
                sg.wake()
            return i, ((rv, state == RECV_OK) if kind == _RECV_OK else rv)

    if dflt >= 0:
        unlock()
        return dflt, None

    # pass 2: enqueue on every channel and park
    for ch in lockorder:
        bound = ch._bound
        if bound is not None and bound[0] != current_run_id():
            unlock()
            raise RuntimeError(
                f"select: {bound[1]} belongs to goroutines run #{bound[0]}, which has "
                "ended: no value will ever come on it; make a new one in this run"
            )
    g = current_g()
    token = [True]
    sudogs = [Sudog(g, i, ch, token, v if kind == _SEND else None) for i, kind, ch, v in ops]
    for sg, (_, kind, ch, _) in zip(sudogs, ops, strict=True):
        ch.enqueue_locked(sg, kind == _SEND)
    g.param = None
    yield from gopark(unlock, _SELECT, g)

    # pass 3: the winner is in g.param; the other sudogs are dead
    won = g.param
    g.param = None
    assert won is not None and won.sel == [], "woken by a case that did not claim the select"
    dead: dict[int, int] = {}
    for sg in sudogs:
        if sg is not won:
            dead[id(sg.c)] = dead.get(id(sg.c), 0) + 1
            # A dead sudog stays in its queue until compaction (see _chan):
            # let it keep nothing alive, neither this G nor a losing send's
            # value. No waker reads them: the claim fails first.
            sg.g = None
            sg.elem = None
    if dead:
        for ch in lockorder:
            n = dead.get(id(ch))
            if n:
                with ch.lock:
                    ch.forget_locked(n)
    kind = next(k for i, k, _, _ in ops if i == won.case)
    if kind == _SEND:
        if not won.success:
            raise ChanClosed("send on closed channel")
        return won.case, None
    if kind == _RECV_OK:
        return won.case, (won.elem, won.success)
    return won.case, won.elem


def _unpark(g: Any, frame: FrameType) -> None:
    """``register_unpark``'s hook for a G parked in a ``select``: claim the
    select (no case can fire for it now) and let its sudogs keep nothing
    alive; they are skipped where they wait, and compacted away."""
    f_locals = frame.f_locals
    token: list[bool] | None = f_locals.get("token")
    sudogs: list[Sudog] | None = f_locals.get("sudogs")
    if token is None or sudogs is None:
        return  # parked with no cases: in no queue
    try:
        token.pop()
    except IndexError:
        return  # a case fired: the waker dequeued its sudog and readied g
    for sg in sudogs:
        with sg.c.lock:
            sg.c.forget_locked(1)
            sg.g = None
            sg.elem = None


register_unpark(select.__code__, _unpark)
