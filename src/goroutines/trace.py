"""Execution traces: what the scheduler did, for ``ui.perfetto.dev`` (Go's ``runtime/trace``).

::

    GOROUTINES_TRACE=out.json python prog.py       # a whole gr.run()
    python -m goroutines run --trace out.json prog.py

    gr.trace.start("out.json")                     # inside a running program
    ...
    gr.trace.stop()                                # writes out.json

    python -m goroutines trace summary out.json    # per goroutine: running, runnable, blocked
    python -m goroutines trace plot out.json -o timeline.png

The file is Chrome's trace-event JSON, which ``ui.perfetto.dev`` and
``chrome://tracing`` open: a track per M (OS thread) showing which
goroutine ran when, with its blocking calls; a track per P; an arrow from
the goroutine (or the poller, a timer, sysmon) that readied a goroutine to
where it ran next; instants for goroutine creation, steals, the poller's
wake-ups, timers, sysmon's retakes; garbage collections as slices; and
counters of goroutines and run-queue lengths (sampled by sysmon).

A goroutine's slice says how it ended (``args.until``: its wait reason,
or sched, syscall, end) and, for a park, the kind of object it waited on
(``args.parked_on``: chan, select, mutex, timer, netpoll...).

A trace not stopped is written when its run ends (on every way out).
Each thread records at most ``limit`` events (``GOROUTINES_TRACE_LIMIT``,
default 1 000 000, about 200 MB of JSON); its newer events are dropped
and counted in the file's ``otherData.dropped``. Timestamps are real time
(``time.perf_counter_ns``), in a ``gr.testing`` bubble too. Off, tracing
costs nothing measurable (``make bench``'s W12, callgrind: +0.3 % of a W1
round trip's instructions with the accelerator, none without, against
the runtime built without the tracer's sites); on, W1's round trip takes
1.8x as long with the accelerator (its hot events are recorded in C;
W11), and 1.8x the instructions without (W12). Writing takes about 9 µs
an event.
"""

from __future__ import annotations

import os
from typing import Any

from ._runtime import _scheduler, _trace

__all__ = ["start", "stop", "to_chrome"]

#: The two processes of the file: OS threads (Ms and others), and Ps.
PID_M = 1
PID_P = 2
#: Threads that are not Ms (sysmon, the main thread, a user's thread) get
#: tracks from here up.
OTHER_TID = 10_000


#: What a goroutine parked on, by its wait reason's prefix (a slice's
#: ``args.parked_on``; Go's trace has the reason only).
_PARK_KINDS = (
    ("chan ", "chan"),
    ("select", "select"),
    ("sleep", "timer"),
    ("sync.Mutex", "mutex"),
    ("sync.RWMutex", "rwmutex"),
    ("sync.WaitGroup", "waitgroup"),
    ("sync.Cond", "cond"),
    ("sync.Once", "once"),
    ("semacquire", "semaphore"),
    ("IO wait", "netpoll"),
    ("future", "future"),
)


def _park_kind(reason: str) -> str:
    """The kind of object a goroutine parked with ``reason`` waits on
    ("chan", "mutex", "timer", "netpoll"...); "" if ``reason`` is not a
    park's (a yield, a blocking call, the end)."""
    for prefix, kind in _PARK_KINDS:
        if reason.startswith(prefix):
            return kind
    return "other" if reason not in _NOT_PARKS else ""


_NOT_PARKS = frozenset(
    (_trace.EV_SCHED, _trace.EV_SYSCALL, _trace.EV_END, "trace stopped", "unknown")
)


def _limit_from_env() -> int:
    raw = os.environ.get("GOROUTINES_TRACE_LIMIT", "").strip()
    if not raw:
        return _trace.DEFAULT_LIMIT
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"GOROUTINES_TRACE_LIMIT must be an int, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"GOROUTINES_TRACE_LIMIT must be >= 1, got {n}")
    return n


def start(path: str | os.PathLike[str], *, limit: int | None = None) -> None:
    """Record an execution trace of the running ``gr.run()`` into ``path``,
    written by ``stop()``, or when the run ends. ``limit``: events per
    thread (default ``GOROUTINES_TRACE_LIMIT``, or 1 000 000).

    RuntimeError outside a run or while a trace is being recorded.
    """
    p = os.fspath(path)
    if not isinstance(p, str) or not p:
        raise ValueError(f"trace.start: path must be a non-empty path, got {path!r}")
    if limit is None:
        limit = _limit_from_env()
    elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"trace.start: limit must be a positive int, got {limit!r}")
    sched = _scheduler.current
    if sched is None:
        raise RuntimeError("trace.start: no goroutines runtime is running (call it inside gr.run)")
    _start(sched, p, limit)


def _start(sched: Any, path: str, limit: int) -> None:
    tracer = _trace.start(path, limit)
    sched.at_exit.append(lambda: _stop_and_write(tracer))


def stop() -> str | None:
    """Stop the trace and write it; its path, or None if none was recording."""
    t = _trace.stop()
    if t is None:
        return None
    _write(t)
    return t.path


def _stop_and_write(tracer: _trace.Tracer) -> None:
    """At the end of a run: the trace it started, if still recording."""
    if _trace.active is tracer:
        stop()


def start_for_run(sched: Any, path: str) -> None:
    """``GOROUTINES_TRACE=path``: trace the run about to start (``gr.run``),
    unless a trace is already being recorded."""
    if _trace.active is None:
        _start(sched, path, _limit_from_env())


def _write(t: _trace.Tracer) -> None:
    import json  # here: ``import goroutines`` does not pay for it

    assert t.path is not None
    data = to_chrome(t)
    # ``encode`` is the C encoder's one shot (``json.dump`` streams through
    # the pure-Python one: 7x slower); a chunk of events at a time, so
    # that the text of a large trace is never all in memory.
    enc = json.JSONEncoder(separators=(",", ":"))
    evs = data.pop("traceEvents")
    tmp = t.path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"traceEvents":[')
        for i in range(0, len(evs), _CHUNK):
            if i:
                f.write(",")
            f.write(enc.encode(evs[i : i + _CHUNK])[1:-1])
        f.write("],")
        f.write(enc.encode(data)[1:])
    os.replace(tmp, t.path)


_CHUNK = 10_000


def to_chrome(t: _trace.Tracer) -> dict[str, Any]:
    """The Chrome trace-event JSON object of a stopped trace."""
    evs, dropped = t.events()
    t0 = t.t0
    end_ts = t.stopped_at or (evs[-1][2][0] if evs else t0)
    names = t.names
    out: list[dict[str, Any]] = []
    tids: dict[int, int] = {}
    thread_names: dict[int, str] = {}
    nother = 0

    def us(ts: int) -> float:
        return round((ts - t0) / 1000.0, 3)

    def tid_of(ident: int, tname: str) -> int:
        nonlocal nother
        tid = tids.get(ident)
        if tid is None:
            if tname.startswith("goroutines-M") and tname[12:].isdigit():
                tid = int(tname[12:])
            else:
                tid = OTHER_TID + nother
                nother += 1
            tids[ident] = tid
            thread_names[tid] = tname
        return tid

    def label(gid: int) -> str:
        return f"G{gid} {names.get(gid, '?')}"

    # Per thread: the slice open on it (gid, start ts, pid); per G: where
    # its pending wake-up's flow starts (tid, ts) and the id of the flow.
    open_g: dict[int, tuple[int, int, int]] = {}
    open_sys: dict[int, tuple[int, int]] = {}
    open_gc: dict[int, list[int]] = {}
    pending: dict[int, tuple[int, int]] = {}
    ps: set[int] = set()
    flow = 0

    def close_g(tid: int, ts: int, until: str) -> None:
        gid, t_start, pid = open_g.pop(tid)
        args = {"goroutine": gid, "function": names.get(gid, "?"), "until": until}
        kind = _park_kind(until)
        if kind:
            args["parked_on"] = kind
        slice_ = {"name": label(gid), "cat": "goroutine", "ph": "X", "ts": us(t_start),
                  "dur": round((ts - t_start) / 1000.0, 3), "args": args}  # fmt: skip
        out.append({**slice_, "pid": PID_M, "tid": tid})
        if pid >= 0:
            out.append({**slice_, "pid": PID_P, "tid": pid})

    for ident, tname, ev in evs:
        tid = tid_of(ident, tname)
        ts, kind = ev[0], ev[1]
        if kind == _trace.EV_START:
            gid, _mid, pid = ev[2], ev[3], ev[4]
            if tid in open_g:  # the previous step's end was not recorded
                close_g(tid, ts, "unknown")
            open_g[tid] = (gid, ts, pid)
            if pid >= 0:
                ps.add(pid)
            src = pending.pop(gid, None)
            if src is not None:
                flow += 1
                out.append({"name": "wake", "cat": "unpark", "ph": "s", "id": flow,
                            "pid": PID_M, "tid": src[0], "ts": us(src[1])})  # fmt: skip
                out.append({"name": "wake", "cat": "unpark", "ph": "f", "bp": "e", "id": flow,
                            "pid": PID_M, "tid": tid, "ts": us(ts)})  # fmt: skip
        elif kind in (_trace.EV_PARK, _trace.EV_SCHED, _trace.EV_SYSCALL, _trace.EV_END):
            if tid in open_g and open_g[tid][0] == ev[2]:
                until = ev[3] if kind == _trace.EV_PARK else kind
                close_g(tid, ts, until)
        elif kind == _trace.EV_UNPARK:
            gid, waker_gid, waker = ev[2], ev[3], ev[4]
            if tid not in open_g:
                # Not from a goroutine: a mark on the waker's track for the
                # arrow to start from.
                out.append({"name": f"wake ({waker})", "cat": "unpark", "ph": "X",
                            "ts": us(ts), "dur": 0, "pid": PID_M, "tid": tid})  # fmt: skip
            pending[gid] = (tid, ts)
            out.append({"name": f"unpark {label(gid)}", "cat": "unpark", "ph": "i", "s": "t",
                        "ts": us(ts), "pid": PID_M, "tid": tid,
                        "args": {"goroutine": gid, "waker": waker_gid or waker}})  # fmt: skip
        elif kind == _trace.EV_CREATE:
            gid, parent, site = ev[2], ev[3], ev[4]
            out.append({"name": f"create {label(gid)}", "cat": "goroutine", "ph": "i", "s": "t",
                        "ts": us(ts), "pid": PID_M, "tid": tid,
                        "args": {"goroutine": gid, "function": names.get(gid, "?"),
                                 "parent": parent, "site": site}})  # fmt: skip
        elif kind == _trace.EV_SYSCALL_BEGIN:
            open_sys[tid] = (ev[2], ts)
        elif kind == _trace.EV_SYSCALL_END:
            if tid in open_sys:
                gid, t_start = open_sys.pop(tid)
                out.append({"name": f"syscall {label(gid)}", "cat": "syscall", "ph": "X",
                            "ts": us(t_start), "dur": round((ts - t_start) / 1000.0, 3),
                            "pid": PID_M, "tid": tid,
                            "args": {"goroutine": gid, "handoff": bool(ev[3])}})  # fmt: skip
        elif kind == _trace.EV_GC_START:
            open_gc.setdefault(tid, []).append(ts)
        elif kind == _trace.EV_GC_END:
            starts = open_gc.get(tid)
            if starts:
                t_start = starts.pop()
                out.append({"name": "GC", "cat": "gc", "ph": "X", "ts": us(t_start),
                            "dur": round((ts - t_start) / 1000.0, 3), "pid": PID_M,
                            "tid": tid, "args": {"collected": ev[2]}})  # fmt: skip
        elif kind == _trace.EV_COUNTERS:
            ngs, glob, runqs = ev[2], ev[3], ev[4]
            out.append({"name": "goroutines", "ph": "C", "ts": us(ts), "pid": PID_M,
                        "args": {"goroutines": ngs}})  # fmt: skip
            rq = {"global": glob, **{f"P{k}": v for k, v in sorted(runqs.items())}}
            out.append({"name": "run queues", "ph": "C", "ts": us(ts), "pid": PID_M, "args": rq})
        elif kind == _trace.EV_HANDOFF:  # on the P's track, and on the M doing it
            pid, to = ev[2], ev[3]
            ps.add(pid)
            for track in ((PID_P, pid), (PID_M, tid)):
                out.append({"name": f"handoff P{pid} to {to}", "cat": "runtime", "ph": "i",
                            "s": "t", "ts": us(ts), "pid": track[0], "tid": track[1],
                            "args": {"p": pid, "to": to}})  # fmt: skip
        else:  # steal, netpoll, timers, retake: instants
            args = {"args": list(ev[2:])} if len(ev) > 2 else {}
            out.append({"name": kind, "cat": "runtime", "ph": "i", "s": "t", "ts": us(ts),
                        "pid": PID_M, "tid": tid, **({"args": args} if args else {})})  # fmt: skip

    for tid in list(open_g):  # still running when the trace stopped
        close_g(tid, end_ts, "trace stopped")
    for tid, (gid, t_start) in open_sys.items():
        out.append({"name": f"syscall {label(gid)}", "cat": "syscall", "ph": "X",
                    "ts": us(t_start), "dur": round((end_ts - t_start) / 1000.0, 3),
                    "pid": PID_M, "tid": tid, "args": {"goroutine": gid}})  # fmt: skip

    meta: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID_M, "args": {"name": "Ms (OS threads)"}},
        {"name": "process_sort_index", "ph": "M", "pid": PID_M, "args": {"sort_index": 0}},
        {"name": "process_name", "ph": "M", "pid": PID_P, "args": {"name": "Ps"}},
        {"name": "process_sort_index", "ph": "M", "pid": PID_P, "args": {"sort_index": 1}},
    ]
    for tid, tname in sorted(thread_names.items()):
        shown = f"M{tid}" if tid < OTHER_TID else tname
        meta.append({"name": "thread_name", "ph": "M", "pid": PID_M, "tid": tid,
                     "args": {"name": shown}})  # fmt: skip
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": PID_M, "tid": tid,
                     "args": {"sort_index": tid}})  # fmt: skip
    for pid in sorted(ps):
        meta.append({"name": "thread_name", "ph": "M", "pid": PID_P, "tid": pid,
                     "args": {"name": f"P{pid}"}})  # fmt: skip
    return {
        "traceEvents": meta + out,
        "displayTimeUnit": "ns",
        "otherData": {
            "producer": "goroutines",
            "events": len(evs),
            "dropped": dropped,
            "limit_per_thread": t.limit,
            "duration_us": us(end_ts),
        },
    }
