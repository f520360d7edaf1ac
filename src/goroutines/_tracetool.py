"""``python -m goroutines trace``: read a trace file (``goroutines.trace``).

- ``summary out.json``: per goroutine function, time running, runnable
  (waiting for an M: scheduler latency), blocked by wait reason, and in
  blocking calls (Go's goroutine analysis); then the scheduler-latency
  distribution.
- ``plot out.json -o timeline.png``: a timeline of the Ms (matplotlib,
  the ``bench`` extra), each goroutine's runs colored by its function.
- ``check out.json``: the file's invariants (``validate``).

``validate`` is what the tests check every trace against: the format's
fields, slices that nest on each track, flows whose ends lie in slices,
every park followed by its wake-up (or the trace's end).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any

__all__ = ["load", "main", "summary", "validate"]

#: How a goroutine's run ends when it was not parked.
_NOT_PARKED = ("sched", "syscall", "end", "trace stopped", "unknown")
_EPS = 0.002  # µs: timestamps are rounded to the nanosecond


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError(f"{path}: not a trace-event JSON object (no traceEvents list)")
    return data


def validate(data: dict[str, Any]) -> list[str]:
    """What is wrong with a trace: [] if nothing."""
    problems: list[str] = []
    evs = data["traceEvents"]
    slices: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    flows: dict[int, dict[str, tuple[int, int, float]]] = defaultdict(dict)
    for i, e in enumerate(evs):
        ph = e.get("ph")
        if ph not in ("X", "i", "s", "f", "C", "M"):
            problems.append(f"event {i}: unknown phase {ph!r}")
            continue
        if not isinstance(e.get("name"), str) or not isinstance(e.get("pid"), int):
            problems.append(f"event {i}: no name or pid: {e}")
            continue
        if ph == "M":
            continue
        if not isinstance(e.get("ts"), int | float):
            problems.append(f"event {i}: no ts: {e}")
            continue
        if ph != "C" and not isinstance(e.get("tid"), int):
            problems.append(f"event {i}: no tid: {e}")
            continue
        if ph == "X":
            dur = e.get("dur")
            if not isinstance(dur, int | float) or dur < 0:
                problems.append(f"event {i}: a slice without a duration: {e}")
                continue
            slices[e["pid"], e["tid"]].append((e["ts"], e["ts"] + dur, e["name"]))
        elif ph in ("s", "f"):
            flows[e.get("id", -1)][ph] = (e["pid"], e["tid"], e["ts"])

    for track, ss in slices.items():
        ss.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float, str]] = []
        for s in ss:
            while stack and stack[-1][1] <= s[0] + _EPS:
                stack.pop()
            if stack and s[1] > stack[-1][1] + _EPS:
                problems.append(f"track {track}: {s[2]!r} overlaps {stack[-1][2]!r}, not nested")
            stack.append(s)

    def inside(pid: int, tid: int, ts: float) -> bool:
        return any(a - _EPS <= ts <= b + _EPS for a, b, _ in slices.get((pid, tid), ()))

    for fid, ends in flows.items():
        if set(ends) != {"s", "f"}:
            problems.append(f"flow {fid}: has only {sorted(ends)}")
            continue
        for ph, (pid, tid, ts) in ends.items():
            if not inside(pid, tid, ts):
                problems.append(f"flow {fid}: its {ph!r} end at {ts} is in no slice")
        if ends["f"][2] + _EPS < ends["s"][2]:
            problems.append(f"flow {fid}: ends before it starts")

    # Every park is followed by its wake-up, or by nothing (the trace ended).
    runs: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    wakes: dict[int, list[float]] = defaultdict(list)
    for e in evs:
        args = e.get("args") or {}
        if e.get("ph") == "X" and e.get("cat") == "goroutine" and e.get("pid") == 1:
            runs[args["goroutine"]].append((e["ts"], e["ts"] + e["dur"], args["until"]))
        elif e.get("ph") == "i" and e.get("cat") == "unpark":
            wakes[args["goroutine"]].append(e["ts"])
    for gid, rs in runs.items():
        rs.sort()
        ws = sorted(wakes.get(gid, ()))
        for k, (_a, b, until) in enumerate(rs):
            if until in _NOT_PARKED or k == len(rs) - 1:
                continue
            nxt = rs[k + 1][0]
            if not any(b - _EPS <= w <= nxt + _EPS for w in ws):
                problems.append(f"G{gid}: parked ({until}) at {b} and ran again at {nxt} unwoken")
    return problems


def _fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f}s"
    if us >= 1e3:
        return f"{us / 1e3:.2f}ms"
    return f"{us:.0f}µs"


def summary(data: dict[str, Any]) -> str:
    """Go's goroutine analysis, per function, and the scheduler latency."""
    evs = data["traceEvents"]
    fn: dict[int, str] = {}
    created: dict[int, float] = {}
    runs: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    wakes: dict[int, list[float]] = defaultdict(list)
    syscalls: dict[int, float] = defaultdict(float)
    end = float(data.get("otherData", {}).get("duration_us", 0.0))
    for e in evs:
        args = e.get("args") or {}
        ph, cat = e.get("ph"), e.get("cat")
        if ph == "X" and cat == "goroutine" and e.get("pid") == 1:
            gid = args["goroutine"]
            fn[gid] = args.get("function", "?")
            runs[gid].append((e["ts"], e["ts"] + e["dur"], args["until"]))
        elif ph == "X" and cat == "syscall":
            syscalls[args["goroutine"]] += e["dur"]
        elif ph == "i" and cat == "unpark":
            wakes[args["goroutine"]].append(e["ts"])
        elif ph == "i" and cat == "goroutine" and e["name"].startswith("create"):
            created[args["goroutine"]] = e["ts"]
            fn.setdefault(args["goroutine"], args.get("function", "?"))
    # Per goroutine: running, runnable (from its wake-up or creation to its
    # run), blocked per reason (from a park to its wake-up), syscalls.
    rows: dict[str, dict[str, Any]] = {}
    latencies: list[float] = []
    for gid, rs in runs.items():
        rs.sort()
        ws = sorted(wakes.get(gid, ()))
        blank = {"n": 0, "running": 0.0, "runnable": 0.0, "syscall": 0.0}
        row = rows.setdefault(fn.get(gid, "?"), {**blank, "blocked": defaultdict(float)})
        row["n"] += 1
        row["syscall"] += syscalls.get(gid, 0.0)
        ready_at = created.get(gid)
        wi = 0
        for a, b, until in rs:
            while wi < len(ws) and ws[wi] <= a:
                ready_at = ws[wi]
                wi += 1
            if ready_at is not None and ready_at <= a:
                latencies.append(a - ready_at)
                row["runnable"] += a - ready_at
            row["running"] += b - a
            ready_at = None
            if until == "sched":
                ready_at = b  # yielded: runnable at once
            elif until not in _NOT_PARKED:
                woke = ws[wi] if wi < len(ws) else end
                row["blocked"][until] += max(0.0, woke - b)
    lines = [
        f"{'goroutines':>10}  {'function':<40} {'running':>9} {'runnable':>9} "
        f"{'syscall':>9}  blocked",
    ]
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["running"]):
        blocked = ", ".join(
            f"{r} {_fmt_us(t)}" for r, t in sorted(row["blocked"].items(), key=lambda kv: -kv[1])
        )
        lines.append(
            f"{row['n']:>10}  {name[:40]:<40} {_fmt_us(row['running']):>9} "
            f"{_fmt_us(row['runnable']):>9} {_fmt_us(row['syscall']):>9}  {blocked or '-'}"
        )
    lines.append("")
    if latencies:
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        lines.append(
            f"scheduler latency (runnable -> running), {len(latencies)} runs: "
            f"p50 {_fmt_us(pct(0.5))}, p90 {_fmt_us(pct(0.9))}, p99 {_fmt_us(pct(0.99))}, "
            f"max {_fmt_us(latencies[-1])}"
        )
    other = data.get("otherData", {})
    lines.append(
        f"{other.get('events', '?')} events over {_fmt_us(end)}; "
        f"{other.get('dropped', 0)} dropped (limit {other.get('limit_per_thread', '?')} a thread)"
    )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], out: str, max_goroutines: int = 40) -> None:
    """A PNG timeline: above, a row per M (and other threads), a bar per run
    of a goroutine colored by its function, blocking calls hatched, then a
    row per P (whose goroutine ran when, whichever M held it); below,
    a row per goroutine (the first ``max_goroutines``): running in its
    color, parked in grey, with its wait reasons."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise RuntimeError(
            "trace plot needs matplotlib (pip install matplotlib, or the bench extra)"
        ) from None
    evs = data["traceEvents"]
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in evs
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("pid") in (1, 2)
    }
    # Rows: (pid, tid), Ms (pid 1) above Ps (pid 2).
    bars: dict[tuple[int, int], list[tuple[float, float, str, str]]] = defaultdict(list)
    gruns: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    gfn: dict[int, str] = {}
    for e in evs:
        pid = e.get("pid")
        if e.get("ph") == "X" and pid in (1, 2) and e.get("cat") in ("goroutine", "syscall"):
            args = e.get("args") or {}
            fn_name = args.get("function") or e["name"].split(" ", 1)[-1]
            bars[pid, e["tid"]].append((e["ts"] / 1e3, e["dur"] / 1e3, fn_name, e["cat"]))
            if e["cat"] == "goroutine" and pid == 1:
                gid = args["goroutine"]
                gfn[gid] = fn_name
                gruns[gid].append((e["ts"] / 1e3, (e["ts"] + e["dur"]) / 1e3, args["until"]))
    tids = sorted(bars)
    gids = sorted(gruns)[:max_goroutines]
    fns = sorted({b[2] for bs in bars.values() for b in bs})
    # tab10's hues are all distinct; tab20 pairs each with a lighter one.
    ncolors = 10 if len(fns) <= 10 else 20
    cmap = plt.get_cmap(f"tab{ncolors}")
    color = {f: cmap(i % ncolors) for i, f in enumerate(fns)}
    fig, (ax, axg) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(12, 2 + 0.45 * (len(tids) + len(gids))),
        gridspec_kw={"height_ratios": [max(1, len(tids)), max(1, len(gids))]},
    )
    # One broken_barh per row and color: a call per bar takes seconds for a
    # demo-sized trace.
    for row, tid in enumerate(tids):
        spans: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
        for start, dur, f, cat in bars[tid]:
            spans[f, cat].append((start, max(dur, 0.001)))
        for (f, cat), xs in spans.items():
            ax.broken_barh(
                xs,
                (row - 0.4, 0.8),
                facecolors=color[f] if cat == "goroutine" else "white",
                edgecolors=color[f] if cat == "syscall" else "none",
                hatch="///" if cat == "syscall" else None,
            )
    ax.set_yticks(range(len(tids)))
    ax.set_yticklabels([names.get(t, f"{'MP'[t[0] - 1]}{t[1]}") for t in tids])
    ax.invert_yaxis()
    ax.set_title(
        "goroutines on Ms, then on Ps (hatched: blocking calls); below, each goroutine "
        "(grey: parked)"
    )
    for row, gid in enumerate(gids):
        runs = sorted(gruns[gid])
        parked = [
            (b, runs[k + 1][0] - b)
            for k, (_a, b, until) in enumerate(runs)
            if k + 1 < len(runs) and until not in _NOT_PARKED
        ]
        axg.broken_barh(parked, (row - 0.2, 0.4), facecolors="0.85")
        ran = [(a, max(b - a, 0.001)) for a, b, _ in runs]
        axg.broken_barh(ran, (row - 0.4, 0.8), facecolors=color[gfn[gid]])
    axg.set_yticks(range(len(gids)))
    axg.set_yticklabels([f"G{g} {gfn[g][-24:]}" for g in gids], fontsize="small")
    axg.invert_yaxis()
    axg.set_xlabel("ms")
    handles = [Rectangle((0, 0), 1, 1, color=color[f]) for f in fns[:20]]
    ax.legend(handles, [f[:40] for f in fns[:20]], loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize="small", frameon=False)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


USAGE = """\
usage: python -m goroutines trace summary OUT.json
       python -m goroutines trace plot OUT.json -o TIMELINE.png
       python -m goroutines trace check OUT.json

Read a trace written by GOROUTINES_TRACE=OUT.json, `python -m goroutines run
--trace OUT.json` or gr.trace.start/stop: a per-function summary (running,
runnable, blocked by reason, blocking calls; scheduler latency), a PNG
timeline of the Ms (needs matplotlib), or a check of the file's invariants.
"""


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd not in ("summary", "plot", "check"):
        sys.stderr.write(f"trace: unknown command {cmd!r}\n\n{USAGE}")
        return 2
    out = None
    if cmd == "plot":
        if len(rest) == 3 and rest[1] == "-o":
            out = rest[2]
        elif len(rest) == 3 and rest[0] == "-o":
            out, rest = rest[1], [rest[2], "-o", rest[1]]
        else:
            sys.stderr.write(f"trace plot: needs OUT.json -o TIMELINE.png\n\n{USAGE}")
            return 2
    elif len(rest) != 1:
        sys.stderr.write(f"trace {cmd}: needs one trace file\n\n{USAGE}")
        return 2
    try:
        data = load(rest[0])
    except (OSError, ValueError) as e:
        sys.stderr.write(f"trace {cmd}: {e}\n")
        return 1
    if cmd == "summary":
        sys.stdout.write(summary(data))
    elif cmd == "check":
        problems = validate(data)
        for p in problems:
            sys.stdout.write(p + "\n")
        sys.stdout.write(f"{len(problems)} problems in {len(data['traceEvents'])} events\n")
        return 1 if problems else 0
    else:
        assert out is not None
        try:
            plot(data, out)
        except RuntimeError as e:
            sys.stderr.write(f"trace plot: {e}\n")
            return 1
        sys.stdout.write(f"wrote {out}\n")
    return 0
