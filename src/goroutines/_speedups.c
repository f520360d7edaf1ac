/* goroutines._speedups: the C accelerator of goroutines' hot paths.
 *
 * What is here: the core of a channel (``ChanCore``: its fields, ``send``,
 * ``recv``, ``recv_ok``, ``__anext__`` and ``close``), the awaitable those
 * return (``ChanOp``) and its lock (``Lock``); the M's schedule loop
 * (``schedule``); ``ready``'s hand-off case; ``go``'s and ``sleep``'s
 * common cases; the timer heap's ``arm_sleep`` and ``run_due``. Each
 * mirrors the pure-Python reference line for line and calls it (or the
 * same Python methods) for every rare case. Everything else of ``Chan``
 * (the select support, the binding to a run) is Python code of
 * ``goroutines._chan`` shared by both modes: ``Chan`` subclasses either
 * this ``ChanCore`` or the pure-Python ``_ChanCore``, which is the
 * reference. The two must behave identically; read ``_chan._ChanCore``
 * first: every branch below mirrors a line there.
 *
 * The park protocol (``goroutines._runtime._goroutine``): a waiter takes
 * the channel's lock, enqueues its G, sets its wait reason and yields
 * ``Unlock(lock.release)`` to its M, which calls it once the coroutine is
 * suspended. A ``ChanOp`` does exactly that: its first ``send`` either
 * completes (PYGEN_RETURN) or returns the unlock object (PYGEN_NEXT, the
 * yield); its second reads what the waker left in the G.
 *
 * Locks and threads. The channel's ``lock`` is our ``Lock`` (or, under
 * GOROUTINES_DEBUG=lockrank=1, the checking wrapper ``_lockrank.new_lock``
 * makes, taken through its ``acquire`` and ``release`` methods), the same
 * object the Python code of ``select`` and the timers takes, so
 * that they exclude us and we exclude them.
 * Every field of a ChanCore is read and written only with ``lock`` held
 * (or while the object is being made). A ChanOp belongs to the one
 * goroutine awaiting it, so its fields need no lock.
 *
 * No borrowed reference is held across a call that can run Python code
 * (``acquire`` may, in lockrank mode; ``wake`` does): values taken out of
 * the queues are owned references. On a free-threaded build (3.13t) the
 * GIL no longer makes a C function atomic; what keeps this code correct
 * there is the same ``lock`` (every shared field is under it; the queues
 * are deques touched only under it; a select's claim is ``list.pop``,
 * atomic by the list's own lock), plus one thing it does not cover: the
 * direct slot stores into a G (``g_set``) race with nothing, because a G in
 * a wait queue is touched only by the one waker that dequeued it, under
 * the channel's lock. We do not declare the module free-threading-safe
 * (``Py_mod_gil``) yet: no free-threaded interpreter is available to test
 * it on. (The scheduler's gate handshake, ``M.at_gate``, gets the
 * store-load fence it needs there from the C loop.)
 *
 * Module state: the objects it needs from the Python side are handed over
 * once, at import, by the module that owns them: ``init_schedule`` (M, P,
 * Timers, G, Unlock, the statuses) from ``_runtime._machine``,
 * ``init_ready`` and ``init_go`` (the reference ``ready`` and ``go``) from
 * ``_runtime._scheduler``, ``init`` (the thread-local where an M keeps
 * itself, the wait reasons, ``ChanClosed``, ``new_lock``) from ``_chan``,
 * ``init_sleep`` from ``_time``, ``init_timers`` from ``_runtime._timers``;
 * they are kept in static variables: the
 * module supports one interpreter.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdatomic.h>
#include <errno.h>
#include <semaphore.h>
#include <stddef.h>
#include <time.h>

/* Bumped whenever the Python side's expectations change: ``_accel``
 * refuses (and runs the reference) if a stale build is found. */
#define API_VERSION 15

/* ------------------------------------------------------------------ state */

static PyObject *G_type;            /* _goroutine.G */
static PyObject *tls;               /* _machine._tls: ``m`` is this thread's M */
static PyObject *goready;           /* _scheduler.ready */
static PyObject *reason_send;       /* WaitReason.CHAN_SEND */
static PyObject *reason_recv;       /* WaitReason.CHAN_RECEIVE */
static PyObject *ChanClosed;        /* goroutines.ChanClosed */
static PyObject *not_in_goroutine;  /* () -> the RuntimeError to raise */
static PyObject *new_lock;          /* _lockrank.new_lock */
static PyObject *chan_rank;         /* LockRank.CHAN */
static PyObject *Unlock_type;       /* _goroutine.Unlock */
static PyObject *sched_globals;     /* _scheduler's module dict: ``_shuffle`` */
static PyObject *st_waiting;        /* GStatus.WAITING */
static PyObject *st_runnable;       /* GStatus.RUNNABLE */
static int ready_ok = 0;

/* Offsets of G's slots (read off its member descriptors by ``init``), so
 * that a G's fields are one load or store, as the member descriptor does. */
static Py_ssize_t off_elem = -1, off_success = -1, off_wait_reason = -1, off_status = -1;

static PyObject *s_popleft, *s_append, *s_remove, *s_pop, *s_wake, *s_elem, *s_success,
    *s_wait_reason, *s_sel, *s_m, *s_curg, *s_acquire, *s_release, *s_check_bound, *s_p,
    *s_runnext, *s__shuffle;

/* ------------------------------------------------------------ G's fields */

static inline int
is_g(PyObject *o)
{
    return (PyObject *)Py_TYPE(o) == G_type;
}

static inline PyObject *sget(PyObject *o, PyObject *tp, Py_ssize_t off, PyObject *name);
static inline int sset(PyObject *o, PyObject *tp, Py_ssize_t off, PyObject *name, PyObject *v);

/* Field ``f`` of waiter ``sg``: a G's by slot offset, a Sudog's by name. */
#define W_GET(sg, f) sget((sg), G_type, off_##f, s_##f)
#define W_SET(sg, f, v) sset((sg), G_type, off_##f, s_##f, (v))

/* The M whose ``schedule`` (C) runs on this thread, while it runs
 * (borrowed: the caller's frame holds it); else NULL. The same M as
 * ``_tls.m``, found without the thread-local dict's lookup. */
static _Thread_local PyObject *cur_m __attribute__((tls_model("initial-exec"))) = NULL;

static PyObject *M_type;
static Py_ssize_t off_m_curg = -1, off_m_p = -1, off_m_sched = -1;
static PyObject *s_sched, *s_timers;
static int schedule_ok = 0;
static double monotonic_now(void);

/* This thread's M (new reference), or NULL with no error if none. */
static PyObject *
getm(void)
{
    if (cur_m != NULL) {
        return Py_NewRef(cur_m);
    }
    PyObject *m = PyObject_GetAttr(tls, s_m);
    if (m == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
    }
    return m;
}

/* Slot ``off`` of ``o`` := ``v`` (borrowed), as the member descriptor does. */
static inline void
slot_store(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject **slot = (PyObject **)((char *)o + off);
    PyObject *old = *slot;
    *slot = Py_NewRef(v);
    Py_XDECREF(old);
}

/* Field ``name`` of ``o`` (new reference): by slot offset ``off`` if ``o``
 * is exactly of type ``tp`` (an object of ours), else by name. */
static inline PyObject *
sget(PyObject *o, PyObject *tp, Py_ssize_t off, PyObject *name)
{
    if (off >= 0 && (PyObject *)Py_TYPE(o) == tp) {
        PyObject *v = *(PyObject **)((char *)o + off);
        if (v != NULL) {
            return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(o, name);
}

/* Field ``name`` of ``o`` := ``v`` (borrowed), as ``sget`` reads it. */
static inline int
sset(PyObject *o, PyObject *tp, Py_ssize_t off, PyObject *name, PyObject *v)
{
    if (off >= 0 && (PyObject *)Py_TYPE(o) == tp) {
        slot_store(o, off, v);
        return 0;
    }
    return PyObject_SetAttr(o, name, v);
}

/* The G running on this thread (new reference), or NULL with no error set
 * if there is none (``getg_or_none``). NULL with an error on failure. */
static PyObject *
getg_or_none(void)
{
    PyObject *m = getm();
    if (m == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
        }
        return NULL;
    }
    PyObject *g = sget(m, M_type, off_m_curg, s_curg);
    Py_DECREF(m);
    if (g == Py_None) {
        Py_DECREF(g);
        return NULL;
    }
    return g;
}

static inline int q_append(PyObject *q, PyObject *v);
static inline Py_ssize_t q_len(PyObject *q);
static inline PyObject *q_pop(PyObject *q);
static PyObject *P_type;
static Py_ssize_t off_p_runnext = -1, off_p_runq = -1;
static PyObject *s_runq;

/* ``_scheduler.ready``'s common case: readied on an M with a P (by a
 * running G, a timer, the poller), ``gp`` goes to that P's ``runnext`` (it
 * runs next on this M; no other M is worth waking), and the G it displaces
 * to the P's runq (``P.runnext_put``). Returns 1 if done, 0 if not this
 * case (nothing changed: the reference handles it, and makes its checks:
 * off an M, shuffle mode, a G that is not WAITING), -1 on error. */
/* The execution tracer (``_runtime._trace``). ``trace_hook`` is NULL when no
 * trace is being recorded, so that each site below costs one load and a
 * branch. Set by ``set_trace`` (from the thread that starts or stops the
 * trace). The hot events (a G's start, park and end, and every wake-up)
 * are recorded here, into a buffer per thread (``tr_buf``: plain structs,
 * no Python object but a park's wait reason); the rarer ones (a G created,
 * a yield or blocking call) call ``hook(kind, gp, arg)``, whose kinds are
 * ``_trace.TR_*``. ``trace_take`` hands the buffers to Python as tuples.
 *
 * A buffer is written by its own thread only, and taken by ``trace_take``
 * after ``set_trace(None)``. Without the GIL the two could overlap, so a
 * writer marks its buffer ``busy`` (seq_cst), then checks that the trace
 * it belongs to is still on (``tr_gen``); the taker bumps ``tr_gen`` first,
 * then waits for ``busy`` to clear (the store-load order of ``M.at_gate``).
 * ``tr_bufs`` (the buffers of this trace) and each buffer's ``next`` and
 * ``linked`` are guarded by ``tr_lock``.
 *
 * A thread's buffer struct is made at its first event and never freed
 * (``trace_take`` frees its events and unlinks it; the thread links it
 * again in the next trace): a writer late for a stopped trace still
 * touches ``busy`` and ``gen`` after the take, and a freed struct's memory,
 * reused for another thread's buffer of the next trace, would have that
 * thread's events land in it. The cost: a small struct, and its thread's
 * name, per thread that ever recorded. */
static PyObject *trace_hook = NULL;
enum { TR_START = 1, TR_PARK = 2, TR_REQUEST = 3, TR_END = 4, TR_UNPARK = 5, TR_CREATE = 6,
       TR_NAME = 7 };
static PyObject *tr_kind[8];
static PyObject *tr_names = NULL; /* the Tracer's names: gid -> function (a dict) */
static Py_ssize_t off_m_id = -1, off_p_id = -1, off_g_id_early = -1;

typedef struct {
    int64_t ts;
    int kind;
    long long gid, a, b;
    PyObject *o; /* a park's wait reason (strong), or NULL */
} tr_ev;

typedef struct tr_buf {
    struct tr_buf *next;
    unsigned long ident;
    PyObject *tname; /* the thread's name (strong) */
    tr_ev *ev;
    Py_ssize_t n, cap, limit;
    long long dropped;
    long gen; /* the trace it is linked in (written by its thread only) */
    int linked; /* in ``tr_bufs`` (guarded by ``tr_lock``) */
    atomic_int busy;
} tr_buf;

static tr_buf *tr_bufs = NULL;
static PyThread_type_lock tr_lock = NULL;
static atomic_long tr_gen = 0;
static Py_ssize_t tr_limit = 1000000;
static _Thread_local tr_buf *tr_mine = NULL; /* this thread's buffer (never freed) */
static PyObject *tr_current_thread = NULL;   /* threading.current_thread (set_trace) */

static int64_t
tr_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* time.perf_counter_ns's clock on Linux */
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* This thread's buffer for the current trace (``gen``), made at the
 * thread's first event, linked into ``tr_bufs`` at its first event of each
 * trace (NULL with an error set on failure). */
static tr_buf *
tr_buffer(long gen)
{
    tr_buf *b = tr_mine;
    if (b != NULL && b->gen == gen) {
        return b;
    }
    /* threading.current_thread, found by set_trace: no import here (a
     * goroutine's step runs none, see test_net). */
    PyObject *t = PyObject_CallNoArgs(tr_current_thread);
    PyObject *tname = t ? PyObject_GetAttrString(t, "name") : NULL;
    Py_XDECREF(t);
    if (tname == NULL) {
        return NULL;
    }
    if (b == NULL) {
        b = PyMem_RawCalloc(1, sizeof(tr_buf));
        if (b == NULL) {
            Py_DECREF(tname);
            PyErr_NoMemory();
            return NULL;
        }
        b->ident = PyThread_get_thread_ident();
        tr_mine = b;
    }
    /* Not linked (taken, or never linked): nobody else reads these now. */
    PyThread_acquire_lock(tr_lock, WAIT_LOCK);
    int linked = b->linked;
    PyThread_release_lock(tr_lock);
    if (linked) {
        /* Still in the list of a trace never taken (``set_trace`` refuses
         * to start then, so not expected): keep its events where they are. */
        Py_DECREF(tname);
        b->gen = gen;
        return b;
    }
    Py_XSETREF(b->tname, tname);
    b->gen = gen;
    b->limit = tr_limit;
    b->n = 0;
    b->dropped = 0;
    PyThread_acquire_lock(tr_lock, WAIT_LOCK);
    if (atomic_load(&tr_gen) == gen) { /* a trace stopped meanwhile is not linked into */
        b->next = tr_bufs;
        tr_bufs = b;
        b->linked = 1;
    }
    PyThread_release_lock(tr_lock);
    return b;
}

/* Record an event; 0, or -1 with an error set. */
static int
tr_record(int kind, long long gid, long long a, long long b_, PyObject *o)
{
    long gen = atomic_load(&tr_gen);
    tr_buf *b = tr_buffer(gen);
    if (b == NULL) {
        return -1;
    }
    atomic_store(&b->busy, 1); /* seq_cst: before the load of tr_gen below */
    if (atomic_load(&tr_gen) != gen || trace_hook == NULL) {
        atomic_store(&b->busy, 0); /* the trace stopped meanwhile */
        return 0;
    }
    if (b->n >= b->limit) {
        b->dropped++;
    }
    else {
        if (b->n == b->cap) {
            Py_ssize_t cap = b->cap ? b->cap * 2 : 4096;
            if (cap > b->limit) {
                cap = b->limit;
            }
            tr_ev *ev = PyMem_RawRealloc(b->ev, (size_t)cap * sizeof(tr_ev));
            if (ev == NULL) {
                atomic_store(&b->busy, 0);
                PyErr_NoMemory();
                return -1;
            }
            b->ev = ev;
            b->cap = cap;
        }
        tr_ev *e = &b->ev[b->n++];
        e->ts = tr_now();
        e->kind = kind;
        e->gid = gid;
        e->a = a;
        e->b = b_;
        e->o = Py_XNewRef(o);
    }
    atomic_store(&b->busy, 0);
    return 0;
}

static long long
tr_id(PyObject *o, Py_ssize_t off)
{
    PyObject *v = *(PyObject **)((char *)o + off);
    return v == NULL ? -1 : PyLong_AsLongLong(v);
}

static int
trace_call(int kind, PyObject *gp, PyObject *arg)
{
    PyObject *hook = trace_hook;
    if (hook == NULL) {
        return 0;
    }
    long long gid = tr_id(gp, off_g_id_early);
    if (gid == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (kind == TR_START || kind == TR_UNPARK) {
        /* A G the trace has no name for yet (made before it started): ask. */
        PyObject *names = tr_names;
        if (names != NULL) {
            PyObject *key = *(PyObject **)((char *)gp + off_g_id_early);
            int has = PyDict_Contains(names, key);
            if (has < 0) {
                return -1;
            }
            if (!has) {
                PyObject *r = PyObject_CallFunctionObjArgs(hook, tr_kind[TR_NAME], gp, Py_None, NULL);
                if (r == NULL) {
                    return -1;
                }
                Py_DECREF(r);
            }
        }
    }
    if (kind == TR_START) {
        PyObject *m = cur_m;
        long long mid = -1, pid = -1;
        if (m != NULL && off_m_id >= 0) {
            mid = tr_id(m, off_m_id);
            PyObject *p = *(PyObject **)((char *)m + off_m_p);
            if (p != NULL && p != Py_None && off_p_id >= 0) {
                pid = tr_id(p, off_p_id);
            }
            if (PyErr_Occurred()) {
                return -1;
            }
        }
        return tr_record(TR_START, gid, mid, pid, NULL);
    }
    if (kind == TR_PARK) {
        return tr_record(TR_PARK, gid, 0, 0, *(PyObject **)((char *)gp + off_wait_reason));
    }
    if (kind == TR_END) {
        return tr_record(TR_END, gid, 0, 0, NULL);
    }
    if (kind == TR_UNPARK) {
        /* The waker: the G running on this thread's M, if any (not gp itself). */
        PyObject *m = getm();
        long long waker = 0, on_m = 0;
        if (m != NULL) {
            on_m = 1;
            PyObject *cur = *(PyObject **)((char *)m + off_m_curg);
            if (cur != NULL && cur != Py_None && cur != gp) {
                waker = tr_id(cur, off_g_id_early);
            }
            Py_DECREF(m);
        }
        else if (PyErr_Occurred()) {
            return -1;
        }
        if (PyErr_Occurred()) {
            return -1;
        }
        return tr_record(TR_UNPARK, gid, waker, on_m, NULL);
    }
    Py_INCREF(hook);
    PyObject *r = PyObject_CallFunctionObjArgs(hook, tr_kind[kind], gp, arg, NULL);
    Py_DECREF(hook);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
ready_fast(PyObject *gp)
{
    if (off_status < 0) {
        return 0;
    }
    /* Every wake-up passes here first, fast or not (the reference's
     * ``ready`` does not record: in pure mode ``G.wake`` is swapped). */
    if (trace_hook != NULL && trace_call(TR_UNPARK, gp, Py_None) < 0) {
        return -1;
    }
    PyObject **status = (PyObject **)((char *)gp + off_status);
    if (*status != st_waiting) {
        return 0; /* ``ready`` asserts */
    }
    PyObject *shuffle = PyDict_GetItemWithError(sched_globals, s__shuffle); /* borrowed */
    if (shuffle != Py_False) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *m = getm();
    if (m == NULL) {
        return PyErr_Occurred() ? -1 : 0; /* not on an M */
    }
    PyObject *p = sget(m, M_type, off_m_p, s_p);
    Py_DECREF(m);
    if (p == NULL) {
        return -1;
    }
    if (p == Py_None) {
        Py_DECREF(p);
        return 0;
    }
    PyObject *rn = sget(p, P_type, off_p_runnext, s_runnext);
    if (rn == NULL) {
        Py_DECREF(p);
        return -1;
    }
    Py_ssize_t n = q_len(rn);
    if (n < 0) {
        Py_DECREF(rn);
        Py_DECREF(p);
        return -1;
    }
    slot_store(gp, off_status, st_runnable);
    if (n > 0) { /* the G in runnext moves to the runq */
        PyObject *prev = q_pop(rn);
        if (prev == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_IndexError)) { /* else a stealer took it */
                Py_DECREF(rn);
                Py_DECREF(p);
                return -1;
            }
            PyErr_Clear();
        }
        else {
            PyObject *runq = sget(p, P_type, off_p_runq, s_runq);
            int r = runq ? q_append(runq, prev) : -1;
            Py_XDECREF(runq);
            Py_DECREF(prev);
            if (r < 0) {
                Py_DECREF(rn);
                Py_DECREF(p);
                return -1;
            }
        }
    }
    Py_DECREF(p);
    int r = q_append(rn, gp);
    Py_DECREF(rn);
    return r < 0 ? -1 : 1;
}

/* ``G.wake`` (and ``goready``) with the accelerator: a method of G made by
 * ``init_ready`` (a method descriptor, so ``g.wake()`` binds as the
 * reference's Python method does). */
static PyObject *
G_wake(PyObject *gp, PyObject *Py_UNUSED(ignored))
{
    int done = ready_fast(gp);
    if (done < 0) {
        return NULL;
    }
    if (done == 0) {
        return PyObject_CallOneArg(goready, gp);
    }
    Py_RETURN_NONE;
}

static PyMethodDef G_wake_def = {
    "wake", (PyCFunction)G_wake, METH_NOARGS,
    "Waiter protocol: make this parked G runnable (Go's goready)."};

/* Make the dequeued waiter ``sg`` runnable (``sg.wake()``; a G directly
 * through ``goready``). Steals the reference to ``sg``. */
static int
wake(PyObject *sg)
{
    PyObject *r;
    if (is_g(sg)) {
        int done = ready_fast(sg);
        if (done != 0) {
            Py_DECREF(sg);
            return done < 0 ? -1 : 0;
        }
        r = PyObject_CallOneArg(goready, sg);
    }
    else {
        r = PyObject_CallMethodNoArgs(sg, s_wake);
    }
    Py_DECREF(sg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* -------------------------------------------------------------------- Lock */

/* ``Lock``: a channel's lock, when lockrank is off. The same interface as
 * ``threading.Lock`` (``acquire(blocking=True, timeout=-1)``, ``release``,
 * ``locked``, ``with``), so that the Python code that takes a channel's
 * lock (select, the timers) is unchanged, and a C fast path for the
 * channel operations: no method call, no argument parsing (those were ~700
 * CPU instructions of each operation with a ``_thread.lock``).
 *
 * A POSIX semaphore of one unit: uncontended, one compare-and-swap each
 * way (glibc's ``sem_trywait``/``sem_post``); contended, the GIL is
 * released while waiting (a holder may need it to finish). Like
 * ``_thread.lock``, any thread may release it. Not ``PyThread_type_lock``
 * (``_thread.lock``'s on 3.11/3.12: its try-acquire reads the clock, ~450
 * CPU instructions a channel operation) nor ``PyMutex`` (3.13 only, with no
 * public try or timed acquire there, which the Python side needs). Not
 * interruptible by signals: it is held for a few operations at a time, as
 * a Go runtime lock is. ``locked`` is written by whoever holds it or
 * releases it. With the accelerator every ranked lock of the runtime is
 * one (``_lockrank.new_lock``), unless lockrank checking is on. */

typedef struct {
    PyObject_HEAD
    sem_t sem;
    char locked;
} Lock;

static PyTypeObject Lock_Type;

static inline void
fast_acquire(Lock *l)
{
    if (sem_trywait(&l->sem) != 0) {
        Py_BEGIN_ALLOW_THREADS
        while (sem_wait(&l->sem) != 0 && errno == EINTR) {
        }
        Py_END_ALLOW_THREADS
    }
    l->locked = 1;
}

static inline int
fast_release(Lock *l)
{
    if (!l->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    l->locked = 0;
    sem_post(&l->sem);
    return 0;
}

static PyObject *
Lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
        return NULL;
    }
    Lock *l = (Lock *)type->tp_alloc(type, 0);
    if (l == NULL) {
        return NULL;
    }
    if (sem_init(&l->sem, 0, 1) != 0) {
        Py_TYPE(l)->tp_free((PyObject *)l);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    l->locked = 0;
    return (PyObject *)l;
}

static void
Lock_dealloc(Lock *l)
{
    sem_destroy(&l->sem);
    Py_TYPE(l)->tp_free((PyObject *)l);
}

static PyObject *
Lock_acquire(Lock *l, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) {
        fast_acquire(l);
        Py_RETURN_TRUE;
    }
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *blocking = Py_True, *timeout = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (nargs > 0) {
        blocking = args[0];
    }
    if (nargs > 1) {
        timeout = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, names[0]) == 0 && nargs < 1) {
            blocking = args[nargs + i];
        }
        else if (PyUnicode_CompareWithASCIIString(k, names[1]) == 0 && nargs < 2) {
            timeout = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    int block = PyObject_IsTrue(blocking);
    if (block < 0) {
        return NULL;
    }
    double t = -1.0;
    if (timeout != NULL) {
        t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (!block && t != -1.0) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (t < 0 && t != -1.0) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    if (!block) {
        if (sem_trywait(&l->sem) != 0) {
            Py_RETURN_FALSE;
        }
    }
    else if (t == -1.0) {
        fast_acquire(l);
        Py_RETURN_TRUE;
    }
    else if (sem_trywait(&l->sem) != 0) {
        struct timespec until;
        int r;
        clock_gettime(CLOCK_REALTIME, &until); /* sem_timedwait's clock */
        if (t > 1e9) {
            t = 1e9;
        }
        double whole = floor(t);
        until.tv_sec += (time_t)whole;
        until.tv_nsec += (long)((t - whole) * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        Py_BEGIN_ALLOW_THREADS
        while ((r = sem_timedwait(&l->sem, &until)) != 0 && errno == EINTR) {
        }
        Py_END_ALLOW_THREADS
        if (r != 0) {
            Py_RETURN_FALSE;
        }
    }
    l->locked = 1;
    Py_RETURN_TRUE;
}

static PyObject *
Lock_release(Lock *l, PyObject *Py_UNUSED(ignored))
{
    if (fast_release(l) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Lock_exit(Lock *l, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    if (fast_release(l) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Lock_locked(Lock *l, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(l->locked);
}

static PyObject *
Lock_repr(Lock *l)
{
    return PyUnicode_FromFormat("<%s goroutines._speedups.Lock object at %p>",
                                l->locked ? "locked" : "unlocked", l);
}

static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool, as threading.Lock's."},
    {"release", (PyCFunction)Lock_release, METH_NOARGS, "Release the lock."},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS, "Whether the lock is held."},
    {"__enter__", (PyCFunction)(void (*)(void))Lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "Acquire the lock."},
    {"__exit__", (PyCFunction)(void (*)(void))Lock_exit, METH_FASTCALL, "Release the lock."},
    {NULL},
};

static PyTypeObject Lock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goroutines._speedups.Lock",
    .tp_doc = "A channel's lock: threading.Lock's interface, with a C fast path.",
    .tp_basicsize = sizeof(Lock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Lock_new,
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_methods = Lock_methods,
    .tp_repr = (reprfunc)Lock_repr,
};

/* ---------------------------------------------------------------- ChanCore */

typedef struct {
    PyObject_HEAD
    PyObject *lock;
    PyObject *acquire; /* lock.acquire, lock.release: bound once */
    PyObject *release;
    PyObject *unlock;  /* Unlock(lock.release): what a parking G yields */
    PyObject *buf;     /* deque of values */
    PyObject *recvq;   /* deques of waiters (G or Sudog) */
    PyObject *sendq;
    PyObject *bound;   /* (run_id, what) or None: see Chan.bind_to_run */
    PyObject *capobj;  /* the capacity as given (``_cap``, ``cap``) */
    Lock *fl;          /* ``lock`` when it is our Lock (borrowed: ``lock`` holds it) */
    Py_ssize_t cap;
    Py_ssize_t room;   /* cap while open, -1 once closed */
    Py_ssize_t ndead;
    char closed;
} ChanCore;

static PyTypeObject ChanCore_Type;
static PyTypeObject ChanOp_Type;

static int
lock_acquire(ChanCore *ch)
{
    if (ch->fl != NULL) {
        fast_acquire(ch->fl);
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(ch->acquire);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}


static int
lock_release(ChanCore *ch)
{
    if (ch->fl != NULL) {
        return fast_release(ch->fl);
    }
    PyObject *r = PyObject_CallNoArgs(ch->release);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Release the lock on an error path, keeping the error that is set. */
static void
lock_release_on_error(ChanCore *ch)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (lock_release(ch) < 0) {
        PyErr_WriteUnraisable(ch->release);
    }
    PyErr_Restore(t, v, tb);
}

static PyObject *deque_type;
static PyObject *zero;
static PyObject *one;


/* ``collections.deque``'s ``append``, ``popleft`` and ``pop``, called
 * through their C functions for an exact deque (read off the method
 * descriptors at import, with their calling convention checked): a method
 * lookup and a vectorcall less per queue operation. NULL: call methods. */
static PyCFunction deque_append_fn, deque_popleft_fn, deque_pop_fn;

static inline int
is_deque(PyObject *q)
{
    return (PyObject *)Py_TYPE(q) == deque_type;
}

/* ``len(q)`` of a deque (its ``ob_size`` is its length, as the deque's own
 * code has it), or ``PyObject_Size``. */
static inline Py_ssize_t
q_len(PyObject *q)
{
    return is_deque(q) ? Py_SIZE(q) : PyObject_Size(q);
}

static inline PyObject *
q_popleft(PyObject *q)
{
    if (deque_popleft_fn != NULL && is_deque(q)) {
        return deque_popleft_fn(q, NULL);
    }
    return PyObject_CallMethodNoArgs(q, s_popleft);
}

static inline PyObject *
q_pop(PyObject *q)
{
    if (deque_pop_fn != NULL && is_deque(q)) {
        return deque_pop_fn(q, NULL);
    }
    return PyObject_CallMethodNoArgs(q, s_pop);
}

static inline int
q_append(PyObject *q, PyObject *v)
{
    PyObject *r = deque_append_fn != NULL && is_deque(q) ? deque_append_fn(q, v)
                                                         : PyObject_CallMethodOneArg(q, s_append, v);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ``_chan._claim``: 1 if ``sg`` is no select's waiter or its select had
 * not fired yet (claimed now), 0 if it had, -1 on error. Lock held. */
static int
claim(PyObject *sg)
{
    PyObject *sel = PyObject_GetAttr(sg, s_sel);
    if (sel == NULL) {
        return -1;
    }
    if (sel == Py_None) {
        Py_DECREF(sel);
        return 1;
    }
    PyObject *r = PyObject_CallMethodNoArgs(sel, s_pop); /* atomic: one case wins */
    Py_DECREF(sel);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_IndexError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    Py_DECREF(r);
    return 1;
}

/* ``_chan.dequeue``: the first live waiter of ``q`` (new reference), or
 * NULL: with an error set on failure, without one if there is none. */
static PyObject *
dequeue(PyObject *q)
{
    for (;;) {
        Py_ssize_t n = q_len(q);
        if (n <= 0) {
            return NULL;
        }
        PyObject *sg = q_popleft(q);
        if (sg == NULL) {
            return NULL;
        }
        if (is_g(sg)) {
            return sg;
        }
        int c = claim(sg);
        if (c != 0) {
            if (c < 0) {
                Py_DECREF(sg);
                return NULL;
            }
            return sg;
        }
        Py_DECREF(sg); /* that select already fired on another case */
    }
}

static int
ChanCore_init(ChanCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cap", NULL};
    PyObject *capo = NULL;
    if (!ready_ok) {
        PyErr_SetString(PyExc_RuntimeError, "goroutines._speedups.init() was not called");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Chan", kwlist, &capo)) {
        return -1;
    }
    Py_ssize_t cap = 0;
    if (capo == NULL) {
        capo = PyLong_FromLong(0);
        if (capo == NULL) {
            return -1;
        }
    }
    else {
        if (!PyLong_Check(capo) || PyBool_Check(capo)) {
            PyObject *name = PyType_GetName(Py_TYPE(capo));
            if (name != NULL) {
                PyErr_Format(PyExc_TypeError, "Chan capacity must be an int, got %U", name);
                Py_DECREF(name);
            }
            return -1;
        }
        int neg = PyObject_RichCompareBool(capo, zero, Py_LT);
        if (neg < 0) {
            return -1;
        }
        if (neg) {
            PyErr_Format(PyExc_ValueError, "Chan capacity must be >= 0, got %S", capo);
            return -1;
        }
        cap = PyLong_AsSsize_t(capo);
        if (cap == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return -1;
            }
            PyErr_Clear();
            cap = PY_SSIZE_T_MAX; /* no deque gets that long */
        }
        Py_INCREF(capo);
    }
    PyObject *lock = PyObject_CallFunctionObjArgs(new_lock, chan_rank, (PyObject *)self, NULL);
    if (lock == NULL) {
        Py_DECREF(capo);
        return -1;
    }
    PyObject *acquire = PyObject_GetAttr(lock, s_acquire);
    PyObject *release = acquire ? PyObject_GetAttr(lock, s_release) : NULL;
    PyObject *unlock = release ? PyObject_CallOneArg(Unlock_type, release) : NULL;
    PyObject *buf = unlock ? PyObject_CallNoArgs(deque_type) : NULL;
    PyObject *recvq = buf ? PyObject_CallNoArgs(deque_type) : NULL;
    PyObject *sendq = recvq ? PyObject_CallNoArgs(deque_type) : NULL;
    if (sendq == NULL) {
        Py_DECREF(capo);
        Py_DECREF(lock);
        Py_XDECREF(acquire);
        Py_XDECREF(release);
        Py_XDECREF(unlock);
        Py_XDECREF(buf);
        Py_XDECREF(recvq);
        return -1;
    }
    Py_XSETREF(self->lock, lock);
    self->fl = Py_IS_TYPE(lock, &Lock_Type) ? (Lock *)lock : NULL;
    Py_XSETREF(self->acquire, acquire);
    Py_XSETREF(self->release, release);
    Py_XSETREF(self->unlock, unlock);
    Py_XSETREF(self->buf, buf);
    Py_XSETREF(self->recvq, recvq);
    Py_XSETREF(self->sendq, sendq);
    Py_XSETREF(self->bound, Py_NewRef(Py_None));
    Py_XSETREF(self->capobj, capo);
    self->cap = cap;
    self->room = cap;
    self->ndead = 0;
    self->closed = 0;
    return 0;
}

static int
ChanCore_traverse(ChanCore *self, visitproc visit, void *arg)
{
    /* A heap subclass's type is visited, and decref'd at dealloc, by
     * ``subtype_traverse``/``subtype_dealloc``, not here. */
    Py_VISIT(self->lock);
    Py_VISIT(self->acquire);
    Py_VISIT(self->release);
    Py_VISIT(self->unlock);
    Py_VISIT(self->buf);
    Py_VISIT(self->recvq);
    Py_VISIT(self->sendq);
    Py_VISIT(self->bound);
    Py_VISIT(self->capobj);
    return 0;
}

static int
ChanCore_clear(ChanCore *self)
{
    self->fl = NULL;
    Py_CLEAR(self->lock);
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->release);
    Py_CLEAR(self->unlock);
    Py_CLEAR(self->buf);
    Py_CLEAR(self->recvq);
    Py_CLEAR(self->sendq);
    Py_CLEAR(self->bound);
    Py_CLEAR(self->capobj);
    return 0;
}

static void
ChanCore_dealloc(ChanCore *self)
{
    PyObject_GC_UnTrack(self);
    ChanCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
get_queue(ChanCore *self, void *which)
{
    PyObject *q = which ? self->sendq : self->recvq;
    if (q == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(q);
}

/* ``forget_locked`` replaces the queues (compaction): only by deques. */
static int
set_queue(ChanCore *self, PyObject *v, void *which)
{
    if (v == NULL || !PyObject_TypeCheck(v, (PyTypeObject *)deque_type)) {
        PyErr_SetString(PyExc_TypeError, "a Chan's wait queue must be a deque");
        return -1;
    }
    Py_XSETREF(*(which ? &self->sendq : &self->recvq), Py_NewRef(v));
    return 0;
}

static PyMemberDef ChanCore_members[] = {
    {"lock", T_OBJECT, offsetof(ChanCore, lock), READONLY, NULL},
    {"_unlock", T_OBJECT, offsetof(ChanCore, unlock), READONLY, NULL},
    {"_buf", T_OBJECT, offsetof(ChanCore, buf), READONLY, NULL},
    {"_bound", T_OBJECT, offsetof(ChanCore, bound), 0, NULL},
    {"_cap", T_OBJECT, offsetof(ChanCore, capobj), READONLY, NULL},
    {"_room", T_PYSSIZET, offsetof(ChanCore, room), 0, NULL},
    {"_ndead", T_PYSSIZET, offsetof(ChanCore, ndead), 0, NULL},
    {"_closed", T_BOOL, offsetof(ChanCore, closed), 0, NULL},
    {NULL},
};

static PyGetSetDef ChanCore_getset[] = {
    {"_recvq", (getter)get_queue, (setter)set_queue, NULL, NULL},
    {"_sendq", (getter)get_queue, (setter)set_queue, NULL, (void *)1},
    {NULL},
};

/* ------------------------------------------------------------------ ChanOp */

enum { OP_SEND, OP_RECV, OP_NEXT, OP_RECV_OK, OP_SLEEP };
enum { ST_NEW, ST_PARKED, ST_DONE };

static const char *op_qualname[] = {"Chan.send", "Chan.recv", "Chan.__anext__", "Chan.recv_ok",
                                    "sleep"};
static const char *op_name[] = {"send", "recv", "__anext__", "recv_ok", "sleep"};
static PyTypeObject SleepOp_Type;

/* One ``await ch.send(v)`` / ``ch.recv()`` / ``ch.recv_ok()`` / ``async for``
 * step: the C counterpart of the reference's generator for it. */
typedef struct {
    PyObject_HEAD
    ChanCore *ch;
    PyObject *value; /* send: the value, until it is handed over or queued */
    PyObject *g;     /* the parked G (ST_PARKED) */
    int kind;
    int state;
    int given; /* handed to go() (``_given``): no "never awaited" warning */
} ChanOp;

/* Freed ops kept for reuse (as CPython keeps frames and floats): an
 * operation's allocation and GC bookkeeping were ~10 % of a buffered
 * channel operation. Touched with the GIL held; a free-threaded build
 * would need one per thread (it is off there). */
#ifdef Py_GIL_DISABLED
#define OP_MAXFREE 0
#else
#define OP_MAXFREE 256
#endif
static ChanOp *op_freelist[OP_MAXFREE > 0 ? OP_MAXFREE : 1];
static int op_numfree = 0;

static PyObject *
make_op(ChanCore *ch, int kind, PyObject *value)
{
    PyTypeObject *tp = kind == OP_SLEEP ? &SleepOp_Type : &ChanOp_Type;
    if (ch != NULL && ch->lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Chan.__init__ was not called");
        return NULL;
    }
    ChanOp *op;
    if (op_numfree > 0) {
        op = op_freelist[--op_numfree];
        PyObject_Init((PyObject *)op, tp);
    }
    else {
        op = PyObject_GC_New(ChanOp, tp);
        if (op == NULL) {
            return NULL;
        }
    }
    op->ch = (ChanCore *)Py_XNewRef((PyObject *)ch);
    op->value = Py_XNewRef(value);
    op->g = NULL;
    op->kind = kind;
    op->state = ST_NEW;
    op->given = 0;
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

static PyObject *
ChanCore_send(ChanCore *self, PyObject *v)
{
    return make_op(self, OP_SEND, v);
}

static PyObject *
ChanCore_recv(ChanCore *self, PyObject *Py_UNUSED(ignored))
{
    return make_op(self, OP_RECV, NULL);
}

static PyObject *
ChanCore_recv_ok(ChanCore *self, PyObject *Py_UNUSED(ignored))
{
    return make_op(self, OP_RECV_OK, NULL);
}

static PyObject *
ChanCore_anext(ChanCore *self)
{
    return make_op(self, OP_NEXT, NULL);
}

/* The operation is over: ``*pres`` = what the await gives (``v`` stolen;
 * ``v`` NULL means "nothing": a send's None). */
static PySendResult
op_return(ChanOp *op, PyObject *v, PyObject **pres)
{
    op->state = ST_DONE;
    if (v == NULL) {
        v = Py_NewRef(Py_None);
    }
    if (op->kind == OP_RECV_OK) {
        PyObject *t = PyTuple_Pack(2, v, Py_True);
        Py_DECREF(v);
        if (t == NULL) {
            *pres = NULL;
            return PYGEN_ERROR;
        }
        v = t;
    }
    *pres = v;
    return PYGEN_RETURN;
}

/* A receive on a closed and drained channel (``_chan._drained``). */
static PySendResult
op_drained(ChanOp *op, PyObject **pres)
{
    op->state = ST_DONE;
    switch (op->kind) {
    case OP_RECV:
        *pres = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    case OP_NEXT:
        PyErr_SetNone(PyExc_StopAsyncIteration);
        *pres = NULL;
        return PYGEN_ERROR;
    default:
        *pres = PyTuple_Pack(2, Py_None, Py_False);
        return *pres ? PYGEN_RETURN : PYGEN_ERROR;
    }
}

static PySendResult
op_error(ChanOp *op, PyObject **pres)
{
    op->state = ST_DONE;
    Py_CLEAR(op->value);
    *pres = NULL;
    return PYGEN_ERROR;
}

/* Release the lock, then ready the waiter ``sg`` (stolen) and return ``v``. */
static PySendResult
op_handoff(ChanOp *op, PyObject *sg, PyObject *v, PyObject **pres)
{
    ChanCore *ch = op->ch;
    if (lock_release(ch) < 0) {
        Py_DECREF(sg);
        Py_XDECREF(v);
        return op_error(op, pres);
    }
    if (wake(sg) < 0) {
        Py_XDECREF(v);
        return op_error(op, pres);
    }
    return op_return(op, v, pres);
}

/* Park the calling goroutine on queue ``q`` (lock held): its G with
 * ``elem`` = ``elem`` and ``success`` False joins the queue, and the
 * await yields ``Unlock(lock.release)`` (the M releases the lock once the
 * coroutine is suspended). On a channel that a run's object alone sends on
 * (``_bound``) and whose run has ended, or outside a goroutine, raises. */
static PySendResult
op_park(ChanOp *op, PyObject *q, PyObject *elem, PyObject *reason, PyObject **pres)
{
    ChanCore *ch = op->ch;
    if (ch->bound != NULL && ch->bound != Py_None) {
        /* releases the lock when it raises */
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)ch, s_check_bound);
        if (r == NULL) {
            return op_error(op, pres);
        }
        Py_DECREF(r);
    }
    PyObject *g = getg_or_none();
    if (g == NULL) {
        if (PyErr_Occurred()) {
            lock_release_on_error(ch);
            return op_error(op, pres);
        }
        if (lock_release(ch) == 0) {
            PyObject *exc = PyObject_CallNoArgs(not_in_goroutine);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        return op_error(op, pres);
    }
    if (W_SET(g, elem, elem) < 0 || W_SET(g, success, Py_False) < 0 || q_append(q, g) < 0) {
        Py_DECREF(g);
        lock_release_on_error(ch);
        return op_error(op, pres);
    }
    if (W_SET(g, wait_reason, reason) < 0) {
        /* queued already: it must park (a G's slot store cannot fail) */
        PyErr_WriteUnraisable((PyObject *)op);
    }
    op->g = g;
    op->state = ST_PARKED;
    Py_CLEAR(op->value); /* the G's ``elem`` holds it now */
    *pres = Py_NewRef(ch->unlock);
    return PYGEN_NEXT; /* gopark */
}

/* ``_ChanCore._send`` up to its yield. */
static PySendResult
send_start(ChanOp *op, PyObject **pres)
{
    ChanCore *ch = op->ch;
    PyObject *v = op->value;
    if (lock_acquire(ch) < 0) {
        return op_error(op, pres);
    }
    Py_ssize_t n = q_len(ch->recvq);
    if (n < 0) {
        goto error;
    }
    if (n > 0) {
        PyObject *sg = q_popleft(ch->recvq);
        if (sg == NULL) {
            goto error;
        }
        if (!is_g(sg)) {
            int c = claim(sg);
            if (c <= 0) {
                Py_DECREF(sg);
                if (c < 0) {
                    goto error;
                }
                sg = dequeue(ch->recvq);
                if (sg == NULL && PyErr_Occurred()) {
                    goto error;
                }
            }
        }
        if (sg != NULL) { /* a parked receiver: hand it v (it never sees the buffer) */
            if (W_SET(sg, elem, v) < 0 || W_SET(sg, success, Py_True) < 0) {
                Py_DECREF(sg);
                goto error;
            }
            Py_CLEAR(op->value);
            return op_handoff(op, sg, NULL, pres);
        }
    }
    n = q_len(ch->buf);
    if (n < 0) {
        goto error;
    }
    if (n < ch->room) {
        if (q_append(ch->buf, v) < 0) {
            goto error;
        }
        Py_CLEAR(op->value);
        if (lock_release(ch) < 0) {
            return op_error(op, pres);
        }
        return op_return(op, NULL, pres);
    }
    if (ch->closed) {
        if (lock_release(ch) == 0) {
            PyErr_SetString(ChanClosed, "send on closed channel");
        }
        return op_error(op, pres);
    }
    return op_park(op, ch->sendq, v, reason_send, pres);
error:
    lock_release_on_error(ch);
    return op_error(op, pres);
}

/* ``_ChanCore._recv`` up to its yield. */
static PySendResult
recv_start(ChanOp *op, PyObject **pres)
{
    ChanCore *ch = op->ch;
    if (lock_acquire(ch) < 0) {
        return op_error(op, pres);
    }
    for (;;) { /* again after a select's waiter that had fired elsewhere */
        Py_ssize_t n = q_len(ch->buf);
        if (n < 0) {
            goto error;
        }
        if (n > 0) {
            PyObject *v = q_popleft(ch->buf);
            if (v == NULL) {
                goto error;
            }
            n = q_len(ch->sendq);
            if (n < 0) {
                Py_DECREF(v);
                goto error;
            }
            if (n > 0) { /* the buffer was full: a waiting sender's value moves in */
                PyObject *sg = dequeue(ch->sendq);
                if (sg == NULL && PyErr_Occurred()) {
                    Py_DECREF(v);
                    goto error;
                }
                if (sg != NULL) {
                    PyObject *e = W_GET(sg, elem);
                    if (e == NULL || q_append(ch->buf, e) < 0 ||
                        W_SET(sg, success, Py_True) < 0) {
                        Py_XDECREF(e);
                        Py_DECREF(sg);
                        Py_DECREF(v);
                        goto error;
                    }
                    Py_DECREF(e);
                    return op_handoff(op, sg, v, pres);
                }
            }
            if (lock_release(ch) < 0) {
                Py_DECREF(v);
                return op_error(op, pres);
            }
            return op_return(op, v, pres);
        }
        n = q_len(ch->sendq);
        if (n < 0) {
            goto error;
        }
        if (n == 0) {
            break;
        }
        PyObject *sg = q_popleft(ch->sendq);
        if (sg == NULL) {
            goto error;
        }
        int c = is_g(sg) ? 1 : claim(sg);
        if (c < 0) {
            Py_DECREF(sg);
            goto error;
        }
        if (c) { /* a parked sender: take its value, ready it */
            PyObject *v = W_GET(sg, elem);
            if (v == NULL || W_SET(sg, success, Py_True) < 0) {
                Py_XDECREF(v);
                Py_DECREF(sg);
                goto error;
            }
            return op_handoff(op, sg, v, pres);
        }
        Py_DECREF(sg);
    }
    if (ch->closed) { /* and drained */
        if (lock_release(ch) < 0) {
            return op_error(op, pres);
        }
        return op_drained(op, pres);
    }
    return op_park(op, ch->recvq, Py_None, reason_recv, pres);
error:
    lock_release_on_error(ch);
    return op_error(op, pres);
}

/* After the park: what the waker (or ``close``) left in the G. */
static PySendResult
op_resume(ChanOp *op, PyObject **pres)
{
    PyObject *g = op->g;
    op->g = NULL;
    PyObject *v = W_GET(g, elem);
    PyObject *succ = v ? W_GET(g, success) : NULL;
    if (succ == NULL || W_SET(g, elem, Py_None) < 0) {
        Py_XDECREF(v);
        Py_XDECREF(succ);
        Py_DECREF(g);
        return op_error(op, pres);
    }
    Py_DECREF(g);
    int ok = PyObject_IsTrue(succ);
    Py_DECREF(succ);
    if (ok < 0) {
        Py_DECREF(v);
        return op_error(op, pres);
    }
    if (op->kind == OP_SEND) {
        Py_DECREF(v);
        if (!ok) {
            PyErr_SetString(ChanClosed, "send on closed channel");
            return op_error(op, pres);
        }
        return op_return(op, NULL, pres);
    }
    if (ok) {
        return op_return(op, v, pres);
    }
    Py_DECREF(v);
    return op_drained(op, pres); /* woken by close */
}

/* ``_time.sleep`` for a positive finite float, up to its yield: the G is its
 * own timer, pushed on the heap by ``Timers.arm_sleep`` once suspended (the
 * ``Unlock`` it yields), with its wake-up time in ``g.elem``
 * (``_scheduler.sleep_park``). */
static PyObject *reason_sleep, *sleep_py, *s_arm_sleep;

static PySendResult
sleep_start(ChanOp *op, PyObject **pres)
{
    PyObject *m = getm();
    PyObject *g = NULL;
    if (m != NULL) {
        g = sget(m, M_type, off_m_curg, s_curg);
        if (g == Py_None) {
            Py_CLEAR(g);
        }
    }
    if (g == NULL) {
        Py_XDECREF(m);
        if (!PyErr_Occurred()) {
            PyObject *exc = PyObject_CallNoArgs(not_in_goroutine);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
        }
        return op_error(op, pres);
    }
    double when = monotonic_now() + PyFloat_AS_DOUBLE(op->value);
    PyObject *sched = sget(m, M_type, off_m_sched, s_sched);
    Py_DECREF(m);
    PyObject *timers = sched ? PyObject_GetAttr(sched, s_timers) : NULL;
    Py_XDECREF(sched);
    PyObject *arm = timers ? PyObject_GetAttr(timers, s_arm_sleep) : NULL;
    Py_XDECREF(timers);
    PyObject *w = arm ? PyFloat_FromDouble(when) : NULL;
    PyObject *unlock = w ? PyObject_CallFunctionObjArgs(Unlock_type, arm, g, NULL) : NULL;
    Py_XDECREF(arm);
    if (unlock == NULL || W_SET(g, elem, w) < 0 || W_SET(g, wait_reason, reason_sleep) < 0) {
        Py_XDECREF(w);
        Py_XDECREF(unlock);
        Py_DECREF(g);
        return op_error(op, pres);
    }
    Py_DECREF(w);
    Py_DECREF(g);
    Py_CLEAR(op->value);
    op->state = ST_PARKED;
    *pres = unlock;
    return PYGEN_NEXT; /* gopark */
}

static PySendResult
ChanOp_am_send(ChanOp *op, PyObject *arg, PyObject **pres)
{
    switch (op->state) {
    case ST_NEW:
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError, "can't send non-None value to a just-started generator");
            *pres = NULL;
            return PYGEN_ERROR;
        }
        if (op->kind == OP_SLEEP) {
            return sleep_start(op, pres);
        }
        return op->kind == OP_SEND ? send_start(op, pres) : recv_start(op, pres);
    case ST_PARKED:
        if (op->kind == OP_SLEEP) { /* woken by its timer */
            op->state = ST_DONE;
            *pres = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        return op_resume(op, pres);
    default:
        PyErr_Format(PyExc_RuntimeError, "cannot reuse already awaited %s", op_qualname[op->kind]);
        *pres = NULL;
        return PYGEN_ERROR;
    }
}

/* StopIteration carrying ``v`` (stolen), as a generator's return does; for
 * None, no exception at all (an exhausted iterator: ``await`` and ``yield
 * from`` read that as None). From 3.12 on, ``await`` resumes an object that
 * is not a generator through ``tp_iternext`` rather than ``am_send``, so
 * every completed operation would otherwise make a StopIteration. */
static PyObject *
stop_iteration(PyObject *v)
{
    if (v == Py_None) {
        /* nothing to set */
    }
    else {
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, v);
        if (e != NULL) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    }
    Py_DECREF(v);
    return NULL;
}

static PyObject *
ChanOp_iternext(ChanOp *op)
{
    PyObject *res;
    PySendResult r = ChanOp_am_send(op, Py_None, &res);
    if (r == PYGEN_RETURN) {
        return stop_iteration(res);
    }
    return res; /* the yielded value, or NULL with the error */
}

static PyObject *
ChanOp_send(ChanOp *op, PyObject *arg)
{
    PyObject *res;
    PySendResult r = ChanOp_am_send(op, arg, &res);
    if (r == PYGEN_RETURN) {
        if (res == Py_None) { /* a method must raise: StopIteration() */
            Py_DECREF(res);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        return stop_iteration(res);
    }
    return res;
}

/* The operation ends without completing (``close``, ``throw``): the G is
 * no longer parked here as far as this op is concerned (a closing run
 * takes it off the queue: ``Chan``'s unpark hook). */
static void
op_abandon(ChanOp *op)
{
    op->state = ST_DONE;
    Py_CLEAR(op->g);
    Py_CLEAR(op->value);
}

static PyObject *
ChanOp_throw(ChanOp *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    op_abandon(op);
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        exc = Py_NewRef(typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (val != Py_None && PyObject_TypeCheck(val, (PyTypeObject *)typ)) {
            exc = Py_NewRef(val);
        }
        else if (val == Py_None) {
            exc = PyObject_CallNoArgs(typ);
        }
        else {
            exc = PyObject_CallOneArg(typ, val);
        }
        if (exc == NULL) {
            return NULL;
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *
ChanOp_close(ChanOp *op, PyObject *Py_UNUSED(ignored))
{
    op_abandon(op);
    Py_RETURN_NONE;
}

static PyObject *
ChanOp_get_qualname(ChanOp *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(op_qualname[op->kind]);
}

static PyObject *
ChanOp_get_name(ChanOp *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(op_name[op->kind]);
}

static PyObject *
ChanOp_get_chan(ChanOp *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(op->ch != NULL ? (PyObject *)op->ch : Py_None);
}

static PyObject *
ChanOp_get_parked(ChanOp *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(op->state == ST_PARKED);
}

static PyObject *
ChanOp_repr(ChanOp *op)
{
    return PyUnicode_FromFormat("<%s awaitable at %p>", op_qualname[op->kind], op);
}

static int
ChanOp_traverse(ChanOp *op, visitproc visit, void *arg)
{
    Py_VISIT(op->ch);
    Py_VISIT(op->value);
    Py_VISIT(op->g);
    return 0;
}

static int
ChanOp_clear(ChanOp *op)
{
    Py_CLEAR(op->ch);
    Py_CLEAR(op->value);
    Py_CLEAR(op->g);
    return 0;
}

/* ``Chan.send was never awaited``, as Python says of a coroutine. Said in
 * the dealloc, once the op is untracked (no tp_finalize: an op of the
 * freelist would carry its "finalized" mark), without exposing the op. */
static void
warn_never_awaited(ChanOp *op)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "%s was never awaited",
                         op_qualname[op->kind]) < 0) {
        PyErr_WriteUnraisable(NULL);
    }
    PyErr_Restore(t, v, tb);
}

static void
ChanOp_dealloc(ChanOp *op)
{
    PyObject_GC_UnTrack(op);
    if (op->state == ST_NEW && !op->given) {
        warn_never_awaited(op);
    }
    ChanOp_clear(op);
    if (op_numfree < OP_MAXFREE) {
        op_freelist[op_numfree++] = op;
    }
    else {
        PyObject_GC_Del(op);
    }
}

static PyObject *
self_iter(PyObject *self)
{
    return Py_NewRef(self);
}

/* ``gr.go(ch.recv)``: the op is its goroutine's, which may be closed
 * before it ever runs (main returned): that is no forgotten ``await``. */
static PyObject *
ChanOp_given(ChanOp *op, PyObject *Py_UNUSED(ignored))
{
    op->given = 1;
    Py_RETURN_NONE;
}

static PyMethodDef ChanOp_methods[] = {
    {"_given", (PyCFunction)ChanOp_given, METH_NOARGS,
     "Handed to go(): no 'never awaited' warning if its goroutine never runs."},
    {"send", (PyCFunction)ChanOp_send, METH_O, "Resume the operation (as generators do)."},
    {"throw", (PyCFunction)(void (*)(void))ChanOp_throw, METH_FASTCALL,
     "Raise an exception at the wait; the operation is abandoned."},
    {"close", (PyCFunction)ChanOp_close, METH_NOARGS, "Abandon the operation."},
    {NULL},
};

static PyGetSetDef ChanOp_getset[] = {
    {"__qualname__", (getter)ChanOp_get_qualname, NULL, NULL, NULL},
    {"__name__", (getter)ChanOp_get_name, NULL, NULL, NULL},
    {"chan", (getter)ChanOp_get_chan, NULL, "The channel.", NULL},
    {"parked", (getter)ChanOp_get_parked, NULL, "Whether its goroutine waits in it.", NULL},
    {NULL},
};

static PyAsyncMethods ChanOp_as_async = {
    .am_await = self_iter,
    .am_send = (sendfunc)ChanOp_am_send,
};

static PyTypeObject ChanOp_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goroutines._speedups.ChanOp",
    .tp_doc = "The awaitable of one channel operation (send, recv, recv_ok, async for).",
    .tp_basicsize = sizeof(ChanOp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_as_async = &ChanOp_as_async,
    .tp_iter = self_iter,
    .tp_iternext = (iternextfunc)ChanOp_iternext,
    .tp_methods = ChanOp_methods,
    .tp_getset = ChanOp_getset,
    .tp_repr = (reprfunc)ChanOp_repr,
    .tp_traverse = (traverseproc)ChanOp_traverse,
    .tp_clear = (inquiry)ChanOp_clear,
    .tp_dealloc = (destructor)ChanOp_dealloc,
};

/* ``SleepOp``: ``ChanOp``'s type under its own name (the same struct and
 * functions; ``kind`` is OP_SLEEP): dumps and unparking find a sleep by
 * its type. Filled in from ChanOp_Type at import. */
static PyTypeObject SleepOp_Type;

/* ``gr.sleep``: a ``SleepOp`` for a positive finite float; the reference
 * (``_time.sleep``, a generator) for anything else, which makes every
 * check (and raises every error) and handles 0, negative and infinite. */
static PyObject *
speedups_sleep(PyObject *Py_UNUSED(module), PyObject *seconds)
{
    if (sleep_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sleep: init_sleep() was not called");
        return NULL;
    }
    if (PyFloat_CheckExact(seconds)) {
        double d = PyFloat_AS_DOUBLE(seconds);
        if (d > 0.0 && d < INFINITY) {
            return make_op(NULL, OP_SLEEP, seconds);
        }
    }
    return PyObject_CallOneArg(sleep_py, seconds);
}

static PyObject *
speedups_init_sleep(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "reason", NULL};
    PyObject *fb, *reason;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OO:init_sleep", kwlist, &fb, &reason)) {
        return NULL;
    }
    if (!ready_ok || !schedule_ok) {
        PyErr_SetString(PyExc_RuntimeError, "init_sleep: init() and init_schedule() first");
        return NULL;
    }
    Py_XSETREF(sleep_py, Py_NewRef(fb));
    Py_XSETREF(reason_sleep, Py_NewRef(reason));
    Py_RETURN_NONE;
}

/* ``close()``: the reference's ``_ChanCore.close`` (see its docstring). */
static PyObject *
ChanCore_close(ChanCore *ch, PyObject *Py_UNUSED(ignored))
{
    if (lock_acquire(ch) < 0) {
        return NULL;
    }
    if (ch->closed) {
        if (lock_release(ch) < 0) {
            return NULL;
        }
        PyErr_SetString(ChanClosed, "close of closed channel");
        return NULL;
    }
    ch->closed = 1;
    ch->room = -1;
    PyObject *woken = PyList_New(0);
    if (woken == NULL) {
        goto error;
    }
    for (int send = 0; send < 2; send++) {
        PyObject *q = Py_NewRef(send ? ch->sendq : ch->recvq);
        PyObject *sg;
        while ((sg = dequeue(q)) != NULL) {
            int r = (!send && W_SET(sg, elem, Py_None) < 0) || W_SET(sg, success, Py_False) < 0 ||
                    PyList_Append(woken, sg) < 0;
            Py_DECREF(sg);
            if (r) {
                Py_DECREF(q);
                goto error;
            }
        }
        Py_DECREF(q);
        if (PyErr_Occurred()) {
            goto error;
        }
    }
    ch->ndead = 0;
    if (lock_release(ch) < 0) {
        Py_DECREF(woken);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(woken);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (wake(Py_NewRef(PyList_GET_ITEM(woken, i))) < 0) {
            Py_DECREF(woken);
            return NULL;
        }
    }
    Py_DECREF(woken);
    Py_RETURN_NONE;
error:
    Py_XDECREF(woken);
    lock_release_on_error(ch);
    return NULL;
}

static PyMethodDef ChanCore_methods[] = {
    {"send", (PyCFunction)ChanCore_send, METH_O,
     "Send v; wait until a receiver takes it or there is room in the buffer."},
    {"recv", (PyCFunction)ChanCore_recv, METH_NOARGS,
     "Receive a value; None once the channel is closed and drained."},
    {"recv_ok", (PyCFunction)ChanCore_recv_ok, METH_NOARGS,
     "Receive a value: (v, True), or (None, False) once closed and drained."},
    {"close", (PyCFunction)ChanCore_close, METH_NOARGS,
     "Close the channel: every waiting receiver gets (None, False), every\n"
     "waiting sender raises ChanClosed; buffered values are still delivered.\n"
     "Raises ChanClosed if already closed."},
    {NULL},
};

static PyAsyncMethods ChanCore_as_async = {
    .am_anext = (unaryfunc)ChanCore_anext,
};

static PyTypeObject ChanCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "goroutines._speedups.ChanCore",
    .tp_doc = "The C core of goroutines.Chan (see goroutines._chan).",
    .tp_basicsize = sizeof(ChanCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ChanCore_init,
    .tp_traverse = (traverseproc)ChanCore_traverse,
    .tp_clear = (inquiry)ChanCore_clear,
    .tp_dealloc = (destructor)ChanCore_dealloc,
    .tp_members = ChanCore_members,
    .tp_getset = ChanCore_getset,
    .tp_methods = ChanCore_methods,
    .tp_as_async = &ChanCore_as_async,
};

static Py_ssize_t slot_offset(PyObject *cls, const char *name);

/* --------------------------------------------------------------- schedule */

/* ``M.schedule`` (``goroutines._runtime._machine``), the M's loop: pick a G,
 * step its coroutine until it parks, yields or ends, repeat. This is the
 * reference's loop line for line; every rare path (``find_runnable``,
 * spinning, locked Gs, the gate, requests other than a park, the end of a
 * step that lost the P) calls the same Python method the reference calls.
 * What C saves: the interpreter's dispatch of the loop, ``ctx.run``'s call
 * (``PyContext_Enter`` + ``PyIter_Send``), the StopIteration object at a
 * goroutine's end, and attribute lookups (slots by offset).
 *
 * The gate handshake (``M.at_gate``): the store of ``status`` = RUNNING and
 * the load of ``sched.gate`` are separated by a sequentially consistent
 * fence, which a free-threaded build needs (Dekker's store-load order) and
 * pure Python cannot issue. */

static PyObject *st_running, *m_exit;
static Py_ssize_t off_m_spinning = -1, off_m_lockedg = -1;
static Py_ssize_t off_p_schedtick = -1;
static Py_ssize_t off_g_coro = -1, off_g_ctx = -1, off_g_locked_m = -1, off_g_wait_since = -1,
                  off_g_id = -1;
static PyObject *s_allgs, *s_id;
static Py_ssize_t off_t_next_when = -1;
static PyObject *Timers_type;

static PyObject *s_schedtick, *s_next_when, *s_nsched,
    *s_find_runnable, *s_spinning, *s_resetspinning, *s_locked_m, *s_startlockedm, *s_stopm,
    *s_status, *s_gate, *s_at_gate, *s_coro, *s_ctx, *s_goexit, *s_wait_since, *s_now,
    *s_lockedg, *s_execute_request, *s_after_execute, *s_stopping, *s_shuffle;


/* ``getattr(sched, name)`` (new reference) for a plain instance attribute
 * of the Sched: straight from its ``__dict__`` ``sdict`` (no type lookup),
 * falling back to ``getattr``. */
static PyObject *
sched_attr(PyObject *sched, PyObject *sdict, PyObject *name)
{
    if (sdict != NULL) {
        PyObject *v = PyDict_GetItemWithError(sdict, name); /* borrowed */
        if (v != NULL) {
            return Py_NewRef(v);
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    return PyObject_GetAttr(sched, name);
}

/* ``bool(getattr(sched, name))`` through ``sched_attr``: 1, 0, or -1 on error. */
static int
sched_true(PyObject *sched, PyObject *sdict, PyObject *name)
{
    PyObject *v = sched_attr(sched, sdict, name);
    if (v == NULL) {
        return -1;
    }
    int r = v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static PyObject *
call0(PyObject *o, PyObject *name)
{
    return PyObject_CallMethodNoArgs(o, name);
}

static int
call1_void(PyObject *o, PyObject *name, PyObject *arg)
{
    PyObject *r = PyObject_CallMethodOneArg(o, name, arg);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ``m.nsched += n`` */
static int
add_nsched(PyObject *m, long n)
{
    if (n == 0) {
        return 0;
    }
    PyObject *v = PyObject_GetAttr(m, s_nsched);
    if (v == NULL) {
        return -1;
    }
    long cur = PyLong_AsLong(v);
    Py_DECREF(v);
    if (cur == -1 && PyErr_Occurred()) {
        return -1;
    }
    v = PyLong_FromLong(cur + n);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_SetAttr(m, s_nsched, v);
    Py_DECREF(v);
    return r;
}

/* The virtual time of a bubble (``_runtime._clock``), used while
 * ``vclock_on``: written by ``set_virtual_time`` under ``sched.lock`` while
 * every other M is parked, so no reader runs while it changes. */
static double vclock_now = 0.0;
static int vclock_on = 0;

static double
monotonic_now(void)
{
    if (vclock_on) {
        return vclock_now;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic's clock on Linux */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    PyObject *p, *rn, *runq; /* our P and its queues (owned references) */
} local_q;

static void
lq_clear(local_q *q)
{
    Py_CLEAR(q->p);
    Py_CLEAR(q->rn);
    Py_CLEAR(q->runq);
}

/* Reload our P and its queues (after a call that may change our P). */
static int
lq_load(local_q *q, PyObject *m)
{
    lq_clear(q);
    q->p = sget(m, M_type, off_m_p, s_p);
    if (q->p == NULL) {
        return -1;
    }
    if (q->p == Py_None) {
        PyErr_SetString(PyExc_AssertionError, "M.schedule: no P");
        return -1;
    }
    q->rn = sget(q->p, P_type, off_p_runnext, s_runnext);
    q->runq = q->rn ? sget(q->p, P_type, off_p_runq, s_runq) : NULL;
    return q->runq ? 0 : -1;
}

/* The inline pick of the reference: a G of our runnext, else our runq, if
 * no timer is due and this is not a 61st tick. New reference, NULL with no
 * error if the pick goes to ``find_runnable``; -1 in *err on error. */
static PyObject *
pick_inline(local_q *q, PyObject *timers, int *err)
{
    Py_ssize_t nrn = q_len(q->rn);
    Py_ssize_t nrq = nrn == 0 ? q_len(q->runq) : 1;
    if (nrn < 0 || nrq < 0) {
        *err = 1;
        return NULL;
    }
    if (nrn == 0 && nrq == 0) {
        return NULL;
    }
    PyObject *tick = sget(q->p, P_type, off_p_schedtick, s_schedtick);
    if (tick == NULL) {
        *err = 1;
        return NULL;
    }
    long t = PyLong_AsLong(tick);
    Py_DECREF(tick);
    if (t == -1 && PyErr_Occurred()) {
        *err = 1;
        return NULL;
    }
    t += 1;
    if (t % 61 == 0) {
        return NULL;
    }
    PyObject *nw = sget(timers, Timers_type, off_t_next_when, s_next_when);
    if (nw == NULL) {
        *err = 1;
        return NULL;
    }
    double when = PyFloat_AsDouble(nw);
    Py_DECREF(nw);
    if (when == -1.0 && PyErr_Occurred()) {
        *err = 1;
        return NULL;
    }
    if (!(isinf(when) && when > 0) && !(when > monotonic_now())) {
        return NULL; /* a timer is due: find_runnable runs it */
    }
    PyObject *gp = nrn ? q_pop(q->rn) : q_popleft(q->runq);
    if (gp == NULL) {
        if (PyErr_ExceptionMatches(PyExc_IndexError)) { /* a stealer took it */
            PyErr_Clear();
            return NULL;
        }
        *err = 1;
        return NULL;
    }
    PyObject *tv = PyLong_FromLong(t);
    if (tv == NULL || sset(q->p, P_type, off_p_schedtick, s_schedtick, tv) < 0) {
        Py_XDECREF(tv);
        Py_DECREF(gp);
        *err = 1;
        return NULL;
    }
    Py_DECREF(tv);
    return gp;
}

static PyObject *st_dead, *empty_ctx; /* set by init_go */
static PyObject *s_main_g;

/* ``Sched.goexit``'s common case: a goroutine other than main, not locked to
 * its thread, returned: DEAD, out of ``allgs``, its Context dropped. 1 if
 * done, 0 if not this case (the reference does it), -1 on error. */
static PyObject *sched_attr(PyObject *sched, PyObject *sdict, PyObject *name);

static int
goexit_fast(PyObject *sched, PyObject *sdict, PyObject *gp)
{
    if (st_dead == NULL || off_g_id < 0) {
        return 0;
    }
    PyObject *lm = sget(gp, G_type, off_g_locked_m, s_locked_m);
    if (lm == NULL) {
        return -1;
    }
    Py_DECREF(lm);
    if (lm != Py_None) {
        return 0;
    }
    PyObject *main_g = sched_attr(sched, sdict, s_main_g);
    if (main_g == NULL) {
        return -1;
    }
    Py_DECREF(main_g);
    if (main_g == gp) {
        return 0;
    }
    PyObject *allgs = sched_attr(sched, sdict, s_allgs);
    if (allgs == NULL) {
        return -1;
    }
    if (!PyDict_CheckExact(allgs)) {
        Py_DECREF(allgs);
        return 0;
    }
    sset(gp, G_type, off_status, s_status, st_dead);
    PyObject *gid = sget(gp, G_type, off_g_id, s_id);
    if (gid == NULL) {
        Py_DECREF(allgs);
        return -1;
    }
    if (PyDict_DelItem(allgs, gid) < 0) { /* allgs.pop(gp.id, None) */
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            Py_DECREF(gid);
            Py_DECREF(allgs);
            return -1;
        }
        PyErr_Clear();
    }
    Py_DECREF(gid);
    Py_DECREF(allgs);
    sset(gp, G_type, off_g_ctx, s_ctx, empty_ctx);
    return 1;
}

/* One step of ``gp`` (claimed: RUNNING, ``curg``): Go's ``execute``. Returns
 * 1 if it parked (nothing more to do with it), 0 if it ended or made a
 * request that was served, -1 on error (a runtime bug). */
static int
step(PyObject *m, PyObject *sched, PyObject *sdict, PyObject *gp)
{
    PyObject *coro = sget(gp, G_type, off_g_coro, s_coro);
    PyObject *ctx = coro ? sget(gp, G_type, off_g_ctx, s_ctx) : NULL;
    if (ctx == NULL) {
        Py_XDECREF(coro);
        return -1;
    }
    PyObject *res = NULL;
    PySendResult r;
    if (trace_hook != NULL && trace_call(TR_START, gp, Py_None) < 0) {
        Py_DECREF(coro);
        Py_DECREF(ctx);
        return -1;
    }
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(coro);
        Py_DECREF(ctx);
        return -1;
    }
    r = PyIter_Send(coro, Py_None, &res);
    PyObject *t = NULL, *v = NULL, *tb = NULL;
    if (r == PYGEN_ERROR) {
        PyErr_Fetch(&t, &v, &tb);
    }
    if (PyContext_Exit(ctx) < 0) {
        /* cannot happen: we entered it on this thread */
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        Py_XDECREF(res);
        Py_DECREF(coro);
        Py_DECREF(ctx);
        return -1;
    }
    Py_DECREF(coro);
    Py_DECREF(ctx);
    if (r == PYGEN_NEXT) {
        if ((PyObject *)Py_TYPE(res) == Unlock_type) { /* a park */
            if (sset(m, M_type, off_m_curg, s_curg, Py_None) < 0 ||
                sset(gp, G_type, off_status, s_status, st_waiting) < 0) {
                Py_DECREF(res);
                return -1;
            }
            PyObject *now = sched_attr(sched, sdict, s_now);
            if (now == NULL || sset(gp, G_type, off_g_wait_since, s_wait_since, now) < 0) {
                Py_XDECREF(now);
                Py_DECREF(res);
                return -1;
            }
            Py_DECREF(now);
            /* Before the unlock: nobody can ready gp until it has run. */
            if (trace_hook != NULL && trace_call(TR_PARK, gp, Py_None) < 0) {
                Py_DECREF(res);
                return -1;
            }
            /* Once the unlock function has run, another M may run gp. */
            PyObject *u = PyObject_CallNoArgs(res);
            Py_DECREF(res);
            if (u == NULL) {
                return -1;
            }
            Py_DECREF(u);
            return 1;
        }
        /* GOSCHED, SYSCALL, or not ours */
        if (trace_hook != NULL && trace_call(TR_REQUEST, gp, res) < 0) {
            Py_DECREF(res);
            return -1;
        }
        PyObject *x = PyObject_CallMethodObjArgs(m, s_execute_request, gp, res, NULL);
        Py_DECREF(res);
        if (x == NULL) {
            return -1;
        }
        Py_DECREF(x);
        return 0;
    }
    if (sset(m, M_type, off_m_curg, s_curg, Py_None) < 0 ||
        (trace_hook != NULL && trace_call(TR_END, gp, Py_None) < 0)) {
        Py_XDECREF(res);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return -1;
    }
    PyObject *x;
    if (r == PYGEN_RETURN) {
        int done = goexit_fast(sched, sdict, gp);
        if (done != 0) {
            Py_DECREF(res);
            return done < 0 ? -1 : 0;
        }
        x = PyObject_CallMethodObjArgs(sched, s_goexit, gp, res, Py_None, NULL);
        Py_DECREF(res);
    }
    else {
        PyErr_NormalizeException(&t, &v, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(v, tb);
        }
        x = PyObject_CallMethodObjArgs(sched, s_goexit, gp, Py_None, v, NULL);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
    }
    if (x == NULL) {
        return -1;
    }
    Py_DECREF(x);
    return 0;
}

static PyObject *
speedups_schedule(PyObject *Py_UNUSED(module), PyObject *m)
{
    if (!schedule_ok || (PyObject *)Py_TYPE(m) != M_type) {
        PyErr_SetString(PyExc_TypeError, "schedule(m): an M, after init_schedule()");
        return NULL;
    }
    local_q q = {NULL, NULL, NULL};
    PyObject *outer_m = cur_m;
    cur_m = m;
    PyObject *sched = sget(m, M_type, off_m_sched, s_sched);
    PyObject *timers = sched ? PyObject_GetAttr(sched, s_timers) : NULL;
    /* the Sched's instance dict: ``gate``, ``stopping``, ``now`` read at each step */
    PyObject *sdict = timers ? PyObject_GenericGetDict(sched, NULL) : NULL;
    PyObject *gp = NULL;
    long n = 0;
    int inline_pick;
    if (sdict == NULL || lq_load(&q, m) < 0) {
        goto error;
    }
    inline_pick = sched_true(sched, sdict, s_shuffle);
    if (inline_pick < 0) {
        goto error;
    }
    inline_pick = !inline_pick;
    for (;;) {
        if (gp == NULL) {
            if (inline_pick) {
                int err = 0;
                gp = pick_inline(&q, timers, &err);
                if (err) {
                    goto error;
                }
            }
            if (gp == NULL) {
                if (add_nsched(m, n) < 0) {
                    goto error;
                }
                n = 0;
                gp = call0(m, s_find_runnable);
                if (gp == NULL) {
                    goto error;
                }
                if (gp == Py_None) {
                    Py_CLEAR(gp);
                    goto done;
                }
                if (lq_load(&q, m) < 0) {
                    goto error;
                }
            }
            PyObject *sp = sget(m, M_type, off_m_spinning, s_spinning);
            if (sp == NULL) {
                goto error;
            }
            int spinning = PyObject_IsTrue(sp);
            Py_DECREF(sp);
            if (spinning < 0) {
                goto error;
            }
            if (spinning) { /* we found work: stop spinning (both paths) */
                PyObject *x = call0(m, s_resetspinning);
                if (x == NULL) {
                    goto error;
                }
                Py_DECREF(x);
            }
            PyObject *lm = sget(gp, G_type, off_g_locked_m, s_locked_m);
            if (lm == NULL) {
                goto error;
            }
            int foreign = lm != Py_None && lm != m;
            Py_DECREF(lm);
            if (foreign) { /* gp may run only on its own M: give that M our P, and park */
                if (call1_void(m, s_startlockedm, gp) < 0) {
                    goto error;
                }
                Py_CLEAR(gp);
                PyObject *x = call0(m, s_stopm);
                if (x == NULL) {
                    goto error;
                }
                int ok = PyObject_IsTrue(x);
                Py_DECREF(x);
                if (ok <= 0) {
                    if (ok < 0) {
                        goto error;
                    }
                    goto done;
                }
                if (lq_load(&q, m) < 0) {
                    goto error;
                }
                continue;
            }
        }
        /* execute: gp is ours (popped from a run queue, or our locked G) */
        if (sset(gp, G_type, off_status, s_status, st_running) < 0 ||
            sset(m, M_type, off_m_curg, s_curg, gp) < 0) {
            goto error;
        }
        atomic_thread_fence(memory_order_seq_cst); /* see M.at_gate */
        int gate = sched_true(sched, sdict, s_gate);
        if (gate < 0) {
            goto error;
        }
        if (gate) {
            PyObject *x = PyObject_CallMethodOneArg(m, s_at_gate, gp);
            if (x == NULL) {
                goto error;
            }
            int ok = PyObject_IsTrue(x);
            Py_DECREF(x);
            if (ok <= 0) {
                if (ok < 0) {
                    goto error;
                }
                Py_CLEAR(gp);
                goto done;
            }
        }
        n += 1;
        int parked = step(m, sched, sdict, gp);
        if (parked < 0) {
            goto error;
        }
        Py_CLEAR(gp);
        PyObject *lockedg = sget(m, M_type, off_m_lockedg, s_lockedg);
        if (lockedg == NULL) {
            goto error;
        }
        int locked = lockedg != Py_None;
        Py_DECREF(lockedg);
        /* A park changes nothing else about this M (no syscall: our P
         * stays); ``stopping`` is seen once the next G is claimed. */
        if (parked && !locked) {
            continue;
        }
        PyObject *mp = sget(m, M_type, off_m_p, s_p);
        if (mp == NULL) {
            goto error;
        }
        int nop = mp == Py_None;
        Py_DECREF(mp);
        int stopping = 0;
        if (!locked && !nop) {
            stopping = sched_true(sched, sdict, s_stopping);
            if (stopping < 0) {
                goto error;
            }
        }
        if (locked || nop || stopping) {
            PyObject *nxt = call0(m, s_after_execute);
            if (nxt == NULL) {
                goto error;
            }
            if (nxt == m_exit) {
                Py_DECREF(nxt);
                goto done;
            }
            if (nxt == Py_None) {
                Py_DECREF(nxt);
            }
            else {
                gp = nxt;
            }
        }
        if (lq_load(&q, m) < 0) {
            goto error;
        }
    }
done:
    cur_m = outer_m;
    lq_clear(&q);
    Py_XDECREF(sdict);
    Py_XDECREF(timers);
    Py_XDECREF(sched);
    if (add_nsched(m, n) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
error:
    cur_m = outer_m;
    lq_clear(&q);
    Py_XDECREF(gp);
    Py_XDECREF(sdict);
    Py_XDECREF(timers);
    Py_XDECREF(sched);
    {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        if (add_nsched(m, n) < 0) {
            PyErr_Clear();
        }
        PyErr_Restore(t, v, tb);
    }
    return NULL;
}

/* --------------------------------------------------------------------- go */

/* ``gr.go`` (``_scheduler.go``, Go's ``newproc``) for its common case: a
 * plain async function started by a goroutine on an M running the C loop
 * (with a P). The same steps as the reference: call the function, find the
 * creation site (interned in ``sched.sites``, through a one-entry cache),
 * take an id from the P's batch, make the G (``new_g``'s fields), register
 * it in ``allgs`` and put it in our ``runnext`` (the G there moves to our
 * runq). Every other case (a coroutine object, a generator, a callable
 * object, no P, outside a goroutine) calls the reference, which also makes
 * every check and raises every error. */

static PyObject *go_py;           /* _scheduler.go: the reference */
static PyObject *reason_none;     /* WaitReason.NONE */
static PyObject *float_zero;
static PyObject *last_code;       /* the one-entry site cache: code, lasti -> site */
static int last_lasti = -1;
static PyObject *last_site;
static Py_ssize_t off_g_site = -1, off_g_locked_m2 = -1;
static Py_ssize_t off_p_goidcache = -1, off_p_goidcacheend = -1;
static PyObject *s_sites, *s_intern, *s_goidcache, *s_goidcacheend, *s_goidbatch, *s_site;

static PyObject *
site_of_caller(PyObject *sched)
{
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed: the caller of go() */
    if (f == NULL) {
        Py_RETURN_NONE; /* called from C with no Python frame above */
    }
    PyCodeObject *code = PyFrame_GetCode(f);
    int lasti = PyFrame_GetLasti(f);
    if ((PyObject *)code == last_code && lasti == last_lasti) {
        Py_DECREF(code);
        return Py_NewRef(last_site);
    }
    PyObject *sites = PyObject_GetAttr(sched, s_sites);
    PyObject *site = NULL;
    if (sites != NULL) {
        PyObject *li = PyLong_FromLong(lasti);
        if (li != NULL) {
            site = PyObject_CallMethodObjArgs(sites, s_intern, (PyObject *)code, li, NULL);
            Py_DECREF(li);
        }
        Py_DECREF(sites);
    }
    if (site != NULL) {
        Py_XSETREF(last_code, Py_NewRef((PyObject *)code));
        last_lasti = lasti;
        Py_XSETREF(last_site, Py_NewRef(site));
    }
    Py_DECREF(code);
    return site;
}

static PyObject *
speedups_go(PyObject *Py_UNUSED(module), PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *m = cur_m;
    if (nargs < 1 || m == NULL || go_py == NULL || !PyFunction_Check(args[0]) ||
        !(((PyCodeObject *)PyFunction_GET_CODE(args[0]))->co_flags & CO_COROUTINE) ||
        off_g_id < 0 || off_p_goidcache < 0) {
        return PyObject_Vectorcall(go_py, args, nargsf, kwnames);
    }
    PyObject *p = sget(m, M_type, off_m_p, s_p);
    if (p == NULL) {
        return NULL;
    }
    if (p == Py_None || (PyObject *)Py_TYPE(p) != P_type) {
        Py_DECREF(p);
        return PyObject_Vectorcall(go_py, args, nargsf, kwnames);
    }
    PyObject *sched = sget(m, M_type, off_m_sched, s_sched);
    PyObject *coro = NULL, *site = NULL, *ctx = NULL, *gp = NULL, *gid = NULL;
    PyObject *allgs = NULL, *rn = NULL;
    if (sched == NULL) {
        goto error;
    }
    coro = PyObject_Vectorcall(args[0], args + 1, nargs - 1, kwnames);
    if (coro == NULL) {
        goto error;
    }
    site = site_of_caller(sched);
    if (site == NULL) {
        goto error;
    }
    /* an id from our P's batch */
    gid = sget(p, P_type, off_p_goidcache, s_goidcache);
    PyObject *end = gid ? sget(p, P_type, off_p_goidcacheend, s_goidcacheend) : NULL;
    if (end == NULL) {
        goto error;
    }
    int eq = PyObject_RichCompareBool(gid, end, Py_EQ);
    Py_DECREF(end);
    if (eq < 0) {
        goto error;
    }
    if (eq) {
        Py_SETREF(gid, PyObject_CallMethodOneArg(sched, s_goidbatch, p));
        if (gid == NULL) {
            goto error;
        }
    }
    PyObject *next = PyNumber_Add(gid, one);
    if (next == NULL) {
        goto error;
    }
    slot_store(p, off_p_goidcache, next);
    Py_DECREF(next);
    /* new_g */
    ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        goto error;
    }
    gp = PyObject_CallNoArgs(G_type);
    if (gp == NULL) {
        goto error;
    }
    slot_store(gp, off_g_id, gid);
    slot_store(gp, off_g_coro, coro);
    slot_store(gp, off_g_ctx, ctx);
    slot_store(gp, off_g_site, site);
    slot_store(gp, off_status, st_runnable);
    slot_store(gp, off_wait_reason, reason_none);
    slot_store(gp, off_g_wait_since, float_zero);
    slot_store(gp, off_g_locked_m2, Py_None);
    slot_store(gp, off_elem, Py_None);
    slot_store(gp, off_success, Py_False);
    allgs = PyObject_GetAttr(sched, s_allgs);
    if (allgs == NULL || PyObject_SetItem(allgs, gid, gp) < 0) {
        goto error;
    }
    /* P.runnext_put: our runnext; the G there moves to our runq */
    rn = sget(p, P_type, off_p_runnext, s_runnext);
    if (rn == NULL) {
        goto error;
    }
    Py_ssize_t n = q_len(rn);
    if (n < 0) {
        goto error;
    }
    if (n > 0) {
        PyObject *old = q_pop(rn);
        if (old == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_IndexError)) { /* else a stealer took it */
                goto error;
            }
            PyErr_Clear();
        }
        else {
            PyObject *runq = sget(p, P_type, off_p_runq, s_runq);
            int r = runq ? q_append(runq, old) : -1;
            Py_XDECREF(runq);
            Py_DECREF(old);
            if (r < 0) {
                goto error;
            }
        }
    }
    if (q_append(rn, gp) < 0) {
        goto error;
    }
    /* After the G is queued: an error here is the tracer's, not go's. */
    int terr = trace_hook != NULL && trace_call(TR_CREATE, gp, Py_None) < 0;
    Py_DECREF(rn);
    Py_DECREF(allgs);
    Py_DECREF(gp);
    Py_DECREF(ctx);
    Py_DECREF(gid);
    Py_DECREF(site);
    Py_DECREF(coro);
    Py_DECREF(sched);
    Py_DECREF(p);
    if (terr) {
        return NULL;
    }
    Py_RETURN_NONE;
error:
    Py_XDECREF(rn);
    Py_XDECREF(allgs);
    Py_XDECREF(gp);
    Py_XDECREF(ctx);
    Py_XDECREF(gid);
    Py_XDECREF(site);
    if (coro != NULL) {
        /* it will never run: no "never awaited" warning (the reference's
         * errors come before the call) */
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyObject *r = PyObject_CallMethod(coro, "close", NULL);
        Py_XDECREF(r);
        PyErr_Clear();
        PyErr_Restore(t, v, tb);
        Py_DECREF(coro);
    }
    Py_XDECREF(sched);
    Py_DECREF(p);
    return NULL;
}

static PyObject *
speedups_init_ready(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "sched_globals", "runnable", NULL};
    PyObject *fb, *sg, *rb;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OO!O:init_ready", kwlist, &fb, &PyDict_Type,
                                     &sg, &rb)) {
        return NULL;
    }
    if (!schedule_ok || G_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init_ready: init_schedule() first");
        return NULL;
    }
    Py_XSETREF(goready, Py_NewRef(fb));
    Py_XSETREF(sched_globals, Py_NewRef(sg));
    Py_XSETREF(st_runnable, Py_NewRef(rb));
    /* the method G.wake, to be set on G by the caller */
    return PyDescr_NewMethod((PyTypeObject *)G_type, &G_wake_def);
}

static PyObject *
speedups_init_go(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "reason_none", "dead", "empty_ctx", NULL};
    PyObject *fb, *rn, *dead, *ectx;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOO:init_go", kwlist, &fb, &rn, &dead,
                                     &ectx)) {
        return NULL;
    }
    if (!schedule_ok || G_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "init_go: init_schedule() first");
        return NULL;
    }
    Py_XSETREF(go_py, Py_NewRef(fb));
    Py_XSETREF(reason_none, Py_NewRef(rn));
    Py_XSETREF(st_dead, Py_NewRef(dead));
    Py_XSETREF(empty_ctx, Py_NewRef(ectx));
    off_g_id = slot_offset(G_type, "id");
    off_g_site = slot_offset(G_type, "site");
    off_g_locked_m2 = slot_offset(G_type, "locked_m");
    off_p_goidcache = slot_offset(P_type, "goidcache");
    off_p_goidcacheend = slot_offset(P_type, "goidcacheend");
    off_elem = slot_offset(G_type, "elem");
    off_success = slot_offset(G_type, "success");
    off_wait_reason = slot_offset(G_type, "wait_reason");
    if (off_g_id < 0 || off_g_site < 0 || off_g_locked_m2 < 0 || off_g_coro < 0 ||
        off_g_ctx < 0 || off_g_wait_since < 0 || off_status < 0 || off_elem < 0 ||
        off_success < 0 || off_wait_reason < 0 || off_p_runnext < 0 || off_p_runq < 0 ||
        off_p_goidcache < 0 || off_p_goidcacheend < 0) {
        PyErr_SetString(PyExc_RuntimeError, "init_go: G or P has changed its slots");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
speedups_init_schedule(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"M",       "P",       "Timers", "G",    "Unlock",
                             "running", "waiting", "exit",   NULL};
    PyObject *a[8];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOOO:init_schedule", kwlist, &a[0],
                                     &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], &a[7])) {
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        if (!PyType_Check(a[i])) {
            PyErr_SetString(PyExc_TypeError, "init_schedule: M, P, Timers, G, Unlock are classes");
            return NULL;
        }
    }
    Py_XSETREF(G_type, Py_NewRef(a[3]));
    Py_XSETREF(Unlock_type, Py_NewRef(a[4]));
    Py_XSETREF(st_waiting, Py_NewRef(a[6]));
    off_status = slot_offset(G_type, "status");
    Py_XSETREF(M_type, Py_NewRef(a[0]));
    Py_XSETREF(P_type, Py_NewRef(a[1]));
    Py_XSETREF(Timers_type, Py_NewRef(a[2]));
    Py_XSETREF(st_running, Py_NewRef(a[5]));
    Py_XSETREF(m_exit, Py_NewRef(a[7]));
    off_m_curg = slot_offset(M_type, "curg");
    off_m_p = slot_offset(M_type, "p");
    off_m_spinning = slot_offset(M_type, "spinning");
    off_m_lockedg = slot_offset(M_type, "lockedg");
    off_m_sched = slot_offset(M_type, "sched");
    off_p_runnext = slot_offset(P_type, "runnext");
    off_p_runq = slot_offset(P_type, "runq");
    off_p_schedtick = slot_offset(P_type, "schedtick");
    off_g_coro = slot_offset(G_type, "coro");
    off_g_ctx = slot_offset(G_type, "ctx");
    off_g_locked_m = slot_offset(G_type, "locked_m");
    off_g_wait_since = slot_offset(G_type, "wait_since");
    off_t_next_when = slot_offset(Timers_type, "next_when");
    schedule_ok = 1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ timers */

/* ``Timers.arm_sleep`` and ``Timers.run_due`` (``_runtime._timers``): the
 * reference's code line for line, on the same heap (a list of ``(when,
 * seq, x)`` tuples), so the Python methods that stay (``add``, ``stop``,
 * ``reset``, the rebuild) keep using ``heapq`` on it. The sift loops are
 * ``heapq``'s (the heap's shape is the same in both modes); what C saves
 * is the tuples' rich comparison (``when``, then ``seq``, compared here as
 * C numbers: the same order, as ``seq`` is unique), the calls into
 * ``heapq`` and the loops' bytecode. ``init_timers`` returns ``bind``:
 * ``bind(timers)`` gives the pair of builtins bound to one ``Timers``. */

static PyObject *Timer_type;
static PyObject *s_heap, *s_lock, *s_seq, *s_nactive, *s_nstale, *s_on_earlier, *s_active,
    *s_when, *s_period, *s_f, *s_arg;
static Py_ssize_t off_t_heap = -1, off_t_lock = -1, off_t_seq = -1, off_t_nactive = -1,
                  off_t_nstale = -1, off_t_on_earlier = -1;
static Py_ssize_t off_tm_active = -1, off_tm_seq = -1, off_tm_when = -1, off_tm_period = -1,
                  off_tm_f = -1, off_tm_arg = -1;
static PyObject *float_inf;

#define T_GET(o, f) sget((o), Timers_type, off_t_##f, s_##f)
#define T_SET(o, f, v) sset((o), Timers_type, off_t_##f, s_##f, (v))
#define TM_GET(o, f) sget((o), Timer_type, off_tm_##f, s_##f)
#define TM_SET(o, f, v) sset((o), Timer_type, off_tm_##f, s_##f, (v))

/* Heap order of two entries: ``a < b`` as tuples compare them. */
static int
entry_lt(PyObject *a, PyObject *b)
{
    if (PyTuple_CheckExact(a) && PyTuple_CheckExact(b) && PyTuple_GET_SIZE(a) == 3 &&
        PyTuple_GET_SIZE(b) == 3) {
        PyObject *wa = PyTuple_GET_ITEM(a, 0), *wb = PyTuple_GET_ITEM(b, 0);
        if (PyFloat_CheckExact(wa) && PyFloat_CheckExact(wb)) {
            double x = PyFloat_AS_DOUBLE(wa), y = PyFloat_AS_DOUBLE(wb);
            if (x < y) {
                return 1;
            }
            if (x > y) {
                return 0;
            }
            PyObject *sa = PyTuple_GET_ITEM(a, 1), *sb = PyTuple_GET_ITEM(b, 1);
            if (x == y && PyLong_CheckExact(sa) && PyLong_CheckExact(sb)) {
                int oa, ob;
                long long la = PyLong_AsLongLongAndOverflow(sa, &oa);
                long long lb = PyLong_AsLongLongAndOverflow(sb, &ob);
                if (!oa && !ob) {
                    return la < lb;
                }
            }
        }
    }
    return PyObject_RichCompareBool(a, b, Py_LT); /* whatever else: as heapq would */
}

/* ``heap[i] < heap[j]`` for a heap of ``size`` entries; an error if the
 * comparison (Python code, for entries that are not ours) resized it. */
static int
heap_lt(PyObject *heap, Py_ssize_t size, Py_ssize_t i, Py_ssize_t j)
{
    PyObject *a = Py_NewRef(PyList_GET_ITEM(heap, i));
    PyObject *b = Py_NewRef(PyList_GET_ITEM(heap, j));
    int lt = entry_lt(a, b);
    Py_DECREF(a);
    Py_DECREF(b);
    if (lt >= 0 && size != PyList_GET_SIZE(heap)) {
        PyErr_SetString(PyExc_RuntimeError, "timer heap changed size during a sift");
        return -1;
    }
    return lt;
}

/* heapq's ``_siftdown``: the item at ``pos`` moves up towards ``start``. */
static int
sift_down(PyObject *heap, Py_ssize_t start, Py_ssize_t pos)
{
    Py_ssize_t size = PyList_GET_SIZE(heap);
    while (pos > start) {
        Py_ssize_t parentpos = (pos - 1) >> 1;
        int lt = heap_lt(heap, size, pos, parentpos);
        if (lt < 0) {
            return -1;
        }
        if (!lt) {
            break;
        }
        PyObject **arr = ((PyListObject *)heap)->ob_item;
        PyObject *tmp = arr[parentpos];
        arr[parentpos] = arr[pos];
        arr[pos] = tmp;
        pos = parentpos;
    }
    return 0;
}

/* heapq's ``_siftup``: the smaller child moves up to a leaf, then down. */
static int
sift_up(PyObject *heap, Py_ssize_t pos)
{
    Py_ssize_t end = PyList_GET_SIZE(heap), start = pos, limit = end >> 1;
    while (pos < limit) {
        Py_ssize_t child = 2 * pos + 1;
        if (child + 1 < end) {
            int lt = heap_lt(heap, end, child, child + 1);
            if (lt < 0) {
                return -1;
            }
            child += lt ^ 1;
        }
        PyObject **arr = ((PyListObject *)heap)->ob_item;
        PyObject *tmp = arr[child];
        arr[child] = arr[pos];
        arr[pos] = tmp;
        pos = child;
    }
    return sift_down(heap, start, pos);
}

static int
heap_push(PyObject *heap, PyObject *item)
{
    if (!PyList_CheckExact(heap)) {
        PyErr_SetString(PyExc_TypeError, "Timers.heap must be a list");
        return -1;
    }
    if (PyList_Append(heap, item) < 0) {
        return -1;
    }
    return sift_down(heap, 0, PyList_GET_SIZE(heap) - 1);
}

/* Remove the top entry of a non-empty heap (the caller holds it). */
static int
heap_drop_top(PyObject *heap)
{
    Py_ssize_t n = PyList_GET_SIZE(heap) - 1;
    PyObject **arr = ((PyListObject *)heap)->ob_item;
    PyObject *last = arr[n];
    if (n == 0) {
        return PyList_SetSlice(heap, 0, 1, NULL);
    }
    arr[n] = arr[0]; /* the old top, dropped by the slice deletion below */
    arr[0] = last;
    if (PyList_SetSlice(heap, n, n + 1, NULL) < 0) {
        return -1;
    }
    return sift_up(heap, 0);
}

/* ``heapreplace``: the top entry := ``item``, then sift. */
static int
heap_replace_top(PyObject *heap, PyObject *item)
{
    if (PyList_SetItem(heap, 0, Py_NewRef(item)) < 0) {
        return -1;
    }
    return sift_up(heap, 0);
}

static int
t_lock(PyObject *lock)
{
    if (Py_IS_TYPE(lock, &Lock_Type)) {
        fast_acquire((Lock *)lock);
        return 0;
    }
    PyObject *r = PyObject_CallMethodNoArgs(lock, s_acquire);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Release ``lock``; on an error path (``failing``), keep the error set. */
static int
t_unlock(PyObject *lock, int failing)
{
    PyObject *t = NULL, *v = NULL, *tb = NULL;
    if (failing) {
        PyErr_Fetch(&t, &v, &tb);
    }
    int r;
    if (Py_IS_TYPE(lock, &Lock_Type)) {
        r = fast_release((Lock *)lock);
    }
    else {
        PyObject *x = PyObject_CallMethodNoArgs(lock, s_release);
        Py_XDECREF(x);
        r = x ? 0 : -1;
    }
    if (failing) {
        if (r < 0) {
            PyErr_WriteUnraisable(lock);
        }
        PyErr_Restore(t, v, tb);
        return -1;
    }
    return r;
}

/* Take ``t.lock``, then read ``t.heap`` (a list) under it: ``_unarm``'s
 * rebuild replaces the list under that lock, so a heap read before waiting
 * for it may be one that was dropped. 0 with both (new references, the
 * lock held), or -1 with neither. */
static int
t_lock_heap(PyObject *t, PyObject **plock, PyObject **pheap)
{
    PyObject *lock = T_GET(t, lock);
    if (lock == NULL || t_lock(lock) < 0) {
        Py_XDECREF(lock);
        return -1;
    }
    PyObject *heap = T_GET(t, heap);
    if (heap == NULL || !PyList_CheckExact(heap)) {
        if (heap != NULL) {
            PyErr_SetString(PyExc_TypeError, "Timers.heap must be a list");
        }
        Py_XDECREF(heap);
        t_unlock(lock, 1);
        Py_DECREF(lock);
        return -1;
    }
    *plock = lock;
    *pheap = heap;
    return 0;
}

/* Integer field ``*f`` of the Timers ``t`` += ``d``. */
static int
t_add(PyObject *t, Py_ssize_t off, PyObject *name, long long d, long long *out)
{
    PyObject *v = sget(t, Timers_type, off, name);
    if (v == NULL) {
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    x += d;
    if (out) {
        *out = x;
    }
    PyObject *nv = PyLong_FromLongLong(x);
    if (nv == NULL) {
        return -1;
    }
    int r = sset(t, Timers_type, off, name, nv);
    Py_DECREF(nv);
    return r;
}

static double
as_double(PyObject *o)
{
    return PyFloat_CheckExact(o) ? PyFloat_AS_DOUBLE(o) : PyFloat_AsDouble(o);
}

/* ``Timers.arm_sleep(g)``: push ``(g.elem, seq, g)``; see the reference. */
static PyObject *
timers_arm_sleep(PyObject *t, PyObject *g)
{
    PyObject *w = W_GET(g, elem);
    if (w == NULL) {
        return NULL;
    }
    double when = as_double(w);
    if ((when == -1.0 && PyErr_Occurred()) || W_SET(g, elem, Py_None) < 0) {
        Py_DECREF(w);
        return NULL;
    }
    PyObject *lock, *heap;
    if (t_lock_heap(t, &lock, &heap) < 0) {
        Py_DECREF(w);
        return NULL;
    }
    int earliest = 0;
    long long seq;
    PyObject *seqo = NULL, *e = NULL, *nw = NULL;
    if (t_add(t, off_t_seq, s_seq, 1, &seq) < 0 || t_add(t, off_t_nactive, s_nactive, 1, NULL) < 0 ||
        (seqo = PyLong_FromLongLong(seq)) == NULL || (e = PyTuple_Pack(3, w, seqo, g)) == NULL ||
        heap_push(heap, e) < 0 || (nw = T_GET(t, next_when)) == NULL) {
        goto error;
    }
    double next = as_double(nw);
    if (next == -1.0 && PyErr_Occurred()) {
        goto error;
    }
    earliest = when < next;
    if (earliest && T_SET(t, next_when, w) < 0) {
        goto error;
    }
    Py_DECREF(seqo);
    Py_DECREF(e);
    Py_DECREF(nw);
    Py_DECREF(w);
    Py_DECREF(heap);
    if (t_unlock(lock, 0) < 0) {
        Py_DECREF(lock);
        return NULL;
    }
    Py_DECREF(lock);
    if (earliest) {
        PyObject *cb = T_GET(t, on_earlier);
        PyObject *r = cb ? PyObject_CallNoArgs(cb) : NULL;
        Py_XDECREF(cb);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
error:
    Py_XDECREF(seqo);
    Py_XDECREF(e);
    Py_XDECREF(nw);
    Py_DECREF(w);
    Py_DECREF(heap);
    t_unlock(lock, 1);
    Py_DECREF(lock);
    return NULL;
}

/* One Timer entry ``e`` = (when, seq, tm) at the top of the heap, under the
 * lock: 0 to stop (not due; ``next_when`` set), 1 to go on. */
static int
run_timer(PyObject *t, PyObject *heap, PyObject *e, double now, PyObject *fired,
          long long *nactive, long long *nstale, long long *seq)
{
    PyObject *tm = PyTuple_GET_ITEM(e, 2);
    PyObject *active = TM_GET(tm, active);
    if (active == NULL) {
        return -1;
    }
    int on = PyObject_IsTrue(active);
    Py_DECREF(active);
    if (on < 0) {
        return -1;
    }
    if (on) {
        PyObject *tseq = TM_GET(tm, seq);
        if (tseq == NULL) {
            return -1;
        }
        on = PyObject_RichCompareBool(PyTuple_GET_ITEM(e, 1), tseq, Py_EQ);
        Py_DECREF(tseq);
        if (on < 0) {
            return -1;
        }
    }
    if (!on) { /* stale */
        if (heap_drop_top(heap) < 0) {
            return -1;
        }
        if (*nstale) {
            *nstale -= 1;
        }
        return 1;
    }
    PyObject *wo = PyTuple_GET_ITEM(e, 0);
    double when = as_double(wo);
    if (when == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (when > now) {
        return T_SET(t, next_when, wo) < 0 ? -1 : 0;
    }
    PyObject *f = TM_GET(tm, f);
    PyObject *arg = f ? TM_GET(tm, arg) : NULL;
    PyObject *pair = arg ? PyTuple_Pack(2, f, arg) : NULL;
    Py_XDECREF(f);
    Py_XDECREF(arg);
    if (pair == NULL || PyList_Append(fired, pair) < 0) {
        Py_XDECREF(pair);
        return -1;
    }
    Py_DECREF(pair);
    PyObject *po = TM_GET(tm, period);
    if (po == NULL) {
        return -1;
    }
    double p = as_double(po);
    Py_DECREF(po);
    if (p == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (p > 0) {
        /* Skip the ticks we are late for, as Go does (see the reference). */
        double nxt = when + p * (1.0 + floor((now - when) / p));
        if (!(now < nxt && nxt < INFINITY)) {
            nxt = nextafter(now, INFINITY);
        }
        *seq += 1;
        PyObject *so = PyLong_FromLongLong(*seq);
        PyObject *no = so ? PyFloat_FromDouble(nxt) : NULL;
        PyObject *ne = no ? PyTuple_Pack(3, no, so, tm) : NULL;
        int r = (ne == NULL || TM_SET(tm, seq, so) < 0 || TM_SET(tm, when, no) < 0 ||
                 heap_replace_top(heap, ne) < 0)
                    ? -1
                    : 1;
        Py_XDECREF(so);
        Py_XDECREF(no);
        Py_XDECREF(ne);
        return r;
    }
    Py_INCREF(tm); /* the entry goes with the top */
    int r = heap_drop_top(heap) < 0 || TM_SET(tm, active, Py_False) < 0 ? -1 : 1;
    Py_DECREF(tm);
    *nactive -= 1;
    return r;
}

/* ``Timers.run_due()``: fire every timer that is due; see the reference. */
static PyObject *
timers_run_due(PyObject *t, PyObject *Py_UNUSED(ignored))
{
    double now = monotonic_now();
    PyObject *fired = PyList_New(0);
    if (fired == NULL) {
        return NULL;
    }
    PyObject *lock, *heap;
    if (t_lock_heap(t, &lock, &heap) < 0) {
        Py_DECREF(fired);
        return NULL;
    }
    long long nactive = 0, nstale = 0, seq = 0;
    PyObject *v[3] = {T_GET(t, nactive), T_GET(t, nstale), T_GET(t, seq)};
    int bad = v[0] == NULL || v[1] == NULL || v[2] == NULL;
    if (!bad) {
        nactive = PyLong_AsLongLong(v[0]);
        nstale = PyLong_AsLongLong(v[1]);
        seq = PyLong_AsLongLong(v[2]);
        bad = PyErr_Occurred() != NULL;
    }
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(v[i]);
    }
    long long seq0 = seq, nactive0 = nactive, nstale0 = nstale;
    int stopped = 0;
    while (!bad && PyList_GET_SIZE(heap)) {
        PyObject *e = Py_NewRef(PyList_GET_ITEM(heap, 0));
        if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) != 3) {
            PyErr_SetString(PyExc_TypeError, "a timer heap entry is not (when, seq, x)");
            Py_DECREF(e);
            bad = 1;
            break;
        }
        PyObject *x = PyTuple_GET_ITEM(e, 2);
        if ((PyObject *)Py_TYPE(x) != Timer_type) { /* a sleeping G (``_live``'s test) */
            PyObject *wo = PyTuple_GET_ITEM(e, 0);
            double when = as_double(wo);
            if (when == -1.0 && PyErr_Occurred()) {
                bad = 1;
            }
            else if (when > now) {
                bad = T_SET(t, next_when, wo) < 0;
                stopped = 1;
            }
            else if (PyList_Append(fired, x) < 0 || heap_drop_top(heap) < 0) {
                bad = 1;
            }
            else {
                nactive -= 1;
            }
            Py_DECREF(e);
            if (stopped) {
                break;
            }
            continue;
        }
        int r = run_timer(t, heap, e, now, fired, &nactive, &nstale, &seq);
        Py_DECREF(e);
        if (r < 0) {
            bad = 1;
        }
        else if (r == 0) {
            stopped = 1;
            break;
        }
    }
    if (!bad && !stopped) {
        bad = T_SET(t, next_when, float_inf) < 0;
    }
    /* the counters, as far as the loop went (an error leaves the heap and
     * counters consistent up to the entry that failed) */
    PyObject *o;
    if (nactive != nactive0) {
        if ((o = PyLong_FromLongLong(nactive)) == NULL || T_SET(t, nactive, o) < 0) {
            bad = 1;
        }
        Py_XDECREF(o);
    }
    if (nstale != nstale0) {
        if ((o = PyLong_FromLongLong(nstale)) == NULL || T_SET(t, nstale, o) < 0) {
            bad = 1;
        }
        Py_XDECREF(o);
    }
    if (seq != seq0) {
        if ((o = PyLong_FromLongLong(seq)) == NULL || T_SET(t, seq, o) < 0) {
            bad = 1;
        }
        Py_XDECREF(o);
    }
    Py_DECREF(heap);
    int ur = t_unlock(lock, bad);
    Py_DECREF(lock);
    if (bad || ur < 0) { /* as the reference: the exception propagates */
        Py_DECREF(fired);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(fired);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(fired, i);
        if (PyTuple_CheckExact(x)) { /* (f, arg) of a Timer */
            PyObject *r = PyObject_CallOneArg(PyTuple_GET_ITEM(x, 0), PyTuple_GET_ITEM(x, 1));
            if (r == NULL) {
                Py_DECREF(fired);
                return NULL;
            }
            Py_DECREF(r);
        }
        else if (wake(Py_NewRef(x)) < 0) {
            Py_DECREF(fired);
            return NULL;
        }
    }
    Py_DECREF(fired);
    return PyLong_FromSsize_t(n);
}

static PyMethodDef timers_arm_sleep_def = {
    "arm_sleep", (PyCFunction)timers_arm_sleep, METH_O,
    "sleep's unlock function: ready g at the monotonic time in g.elem (Timers.arm_sleep in C)."};
static PyMethodDef timers_run_due_def = {
    "run_due", (PyCFunction)timers_run_due, METH_NOARGS,
    "Fire every timer that is due; return how many fired (Timers.run_due in C)."};

/* ``bind(timers)`` -> ``(arm_sleep, run_due)`` bound to ``timers``. */
static PyObject *
timers_bind(PyObject *Py_UNUSED(self), PyObject *t)
{
    if (!PyObject_TypeCheck(t, (PyTypeObject *)Timers_type)) {
        PyErr_Format(PyExc_TypeError, "bind: a Timers, not %.100s", Py_TYPE(t)->tp_name);
        return NULL;
    }
    PyObject *a = PyCFunction_New(&timers_arm_sleep_def, t);
    PyObject *b = a ? PyCFunction_New(&timers_run_due_def, t) : NULL;
    PyObject *r = b ? PyTuple_Pack(2, a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return r;
}

static PyMethodDef timers_bind_def = {
    "bind", (PyCFunction)timers_bind, METH_O,
    "bind(timers) -> (arm_sleep, run_due): Timers' hot methods in C, bound to timers."};

static PyObject *
speedups_init_timers(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"Timers", "Timer", NULL};
    PyObject *a[2];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OO:init_timers", kwlist, &a[0], &a[1])) {
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (!PyType_Check(a[i])) {
            PyErr_SetString(PyExc_TypeError, "init_timers: Timers and Timer are classes");
            return NULL;
        }
    }
    if (Timers_type != NULL && Timers_type != a[0]) {
        PyErr_SetString(PyExc_RuntimeError, "init_timers: another Timers class is in use");
        return NULL;
    }
    Py_XSETREF(Timers_type, Py_NewRef(a[0]));
    Py_XSETREF(Timer_type, Py_NewRef(a[1]));
    off_t_next_when = slot_offset(Timers_type, "next_when");
    off_t_heap = slot_offset(Timers_type, "heap");
    off_t_lock = slot_offset(Timers_type, "lock");
    off_t_seq = slot_offset(Timers_type, "seq");
    off_t_nactive = slot_offset(Timers_type, "nactive");
    off_t_nstale = slot_offset(Timers_type, "nstale");
    off_t_on_earlier = slot_offset(Timers_type, "on_earlier");
    off_tm_active = slot_offset(Timer_type, "active");
    off_tm_seq = slot_offset(Timer_type, "seq");
    off_tm_when = slot_offset(Timer_type, "when");
    off_tm_period = slot_offset(Timer_type, "period");
    off_tm_f = slot_offset(Timer_type, "f");
    off_tm_arg = slot_offset(Timer_type, "arg");
    return PyCFunction_New(&timers_bind_def, NULL);
}

/* ------------------------------------------------------------------ module */

static Py_ssize_t
slot_offset(PyObject *cls, const char *name)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    if (d == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *md = ((PyMemberDescrObject *)d)->d_member;
        if (md->type == T_OBJECT_EX && !(md->flags & READONLY)) {
            off = md->offset;
        }
    }
    Py_DECREF(d);
    return off;
}

static PyObject *
speedups_init(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tls",      "reason_send", "reason_recv", "ChanClosed",
                             "not_in_goroutine", "new_lock", "chan_rank", NULL};
    PyObject *a[7];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOOO:init", kwlist, &a[0], &a[1], &a[2],
                                     &a[3], &a[4], &a[5], &a[6])) {
        return NULL;
    }
    if (!schedule_ok || goready == NULL) {
        /* G, Unlock, the statuses and ready come from the runtime's own inits */
        PyErr_SetString(PyExc_RuntimeError, "init: init_schedule() and init_ready() first");
        return NULL;
    }
    PyObject **dst[7] = {&tls,       &reason_send, &reason_recv, &ChanClosed,
                         &not_in_goroutine, &new_lock, &chan_rank};
    for (int i = 0; i < 7; i++) {
        Py_XSETREF(*dst[i], Py_NewRef(a[i]));
    }
    off_elem = slot_offset(G_type, "elem");
    off_success = slot_offset(G_type, "success");
    off_wait_reason = slot_offset(G_type, "wait_reason");
    ready_ok = 1;
    Py_RETURN_NONE;
}

static PyObject *
speedups_set_virtual_time(PyObject *Py_UNUSED(mod), PyObject *t)
{
    if (t == Py_None) {
        vclock_on = 0;
        Py_RETURN_NONE;
    }
    double v = PyFloat_AsDouble(t);
    if (v == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    vclock_now = v;
    vclock_on = 1;
    Py_RETURN_NONE;
}

/* ``set_trace(hook, names, limit)``: record (see ``trace_call``);
 * ``set_trace(None)``: stop (the buffers stay for ``trace_take``). */
static PyObject *
speedups_set_trace(PyObject *Py_UNUSED(mod), PyObject *args)
{
    PyObject *hook, *names = Py_None;
    Py_ssize_t limit = 1000000;
    if (!PyArg_ParseTuple(args, "O|On:set_trace", &hook, &names, &limit)) {
        return NULL;
    }
    if (hook == Py_None) {
        trace_hook = NULL;
        atomic_fetch_add(&tr_gen, 1); /* writers still in tr_record drop their event */
        Py_RETURN_NONE;
    }
    if (!PyCallable_Check(hook) || !PyDict_Check(names) || limit < 1) {
        PyErr_SetString(PyExc_TypeError, "set_trace(hook, names: dict, limit >= 1) or set_trace(None)");
        return NULL;
    }
    if (tr_lock == NULL && (tr_lock = PyThread_allocate_lock()) == NULL) {
        return PyErr_NoMemory();
    }
    for (int k = 1; k <= TR_NAME; k++) {
        if (tr_kind[k] == NULL && (tr_kind[k] = PyLong_FromLong(k)) == NULL) {
            return NULL;
        }
    }
    if (tr_current_thread == NULL) {
        PyObject *threading = PyImport_ImportModule("threading");
        tr_current_thread = threading ? PyObject_GetAttrString(threading, "current_thread") : NULL;
        Py_XDECREF(threading);
        if (tr_current_thread == NULL) {
            return NULL;
        }
    }
    if (off_m_id < 0 && M_type != NULL) {
        off_m_id = slot_offset(M_type, "id");
    }
    if (off_p_id < 0 && P_type != NULL) {
        off_p_id = slot_offset(P_type, "id");
    }
    if (off_g_id_early < 0 && (G_type == NULL || off_wait_reason < 0 ||
                               (off_g_id_early = slot_offset(G_type, "id")) < 0)) {
        PyErr_SetString(PyExc_RuntimeError, "set_trace before init_ready");
        return NULL;
    }
    PyThread_acquire_lock(tr_lock, WAIT_LOCK);
    int untaken = tr_bufs != NULL;
    PyThread_release_lock(tr_lock);
    if (untaken) {
        PyErr_SetString(PyExc_RuntimeError, "set_trace: the previous trace was not taken (trace_take)");
        return NULL;
    }
    Py_XSETREF(tr_names, Py_NewRef(names));
    tr_limit = limit;
    atomic_fetch_add(&tr_gen, 1);
    /* Not released when cleared: a site may be calling it on another M.
     * (``_trace`` passes a module function, not a bound method of its
     * Tracer: this reference keeps no trace alive.) */
    trace_hook = Py_NewRef(hook);
    Py_RETURN_NONE;
}

static PyObject *tr_names_of[8];

/* ``trace_take()``: every buffer's events, as ``[(ident, thread name,
 * [(ts, kind, gid, ...), ...], dropped), ...]``, and free them. After
 * ``set_trace(None)``. */
static PyObject *
speedups_trace_take(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
    static const char *kinds[] = {NULL, "start", "park", NULL, "end", "unpark"};
    for (int k = 1; k <= TR_UNPARK; k++) {
        if (kinds[k] != NULL && tr_names_of[k] == NULL &&
            (tr_names_of[k] = PyUnicode_InternFromString(kinds[k])) == NULL) {
            return NULL;
        }
    }
    if (tr_lock == NULL) {
        return PyList_New(0);
    }
    PyThread_acquire_lock(tr_lock, WAIT_LOCK);
    tr_buf *b = tr_bufs;
    tr_bufs = NULL;
    PyThread_release_lock(tr_lock);
    /* A million new tuples would run a young collection every 700 and
     * older ones over the lists built so far; they hold ints and strings
     * only, no cycle to find (600 000 events: 0.25 s -> 0.11 s). */
    int gc_was = PyGC_Disable();
    PyObject *out = PyList_New(0);
    while (b != NULL) {
        while (atomic_load(&b->busy)) {
            /* a writer that saw the trace on: its event is nearly written */
        }
        PyObject *evs = out ? PyList_New(b->n) : NULL;
        for (Py_ssize_t i = 0; evs != NULL && i < b->n; i++) {
            tr_ev *e = &b->ev[i];
            PyObject *t;
            if (e->kind == TR_START || e->kind == TR_UNPARK) {
                t = Py_BuildValue("(LOLLL)", (long long)e->ts, tr_names_of[e->kind], e->gid, e->a,
                                  e->b);
            }
            else if (e->kind == TR_PARK) {
                t = Py_BuildValue("(LOLO)", (long long)e->ts, tr_names_of[e->kind], e->gid,
                                  e->o ? e->o : Py_None);
            }
            else {
                t = Py_BuildValue("(LOL)", (long long)e->ts, tr_names_of[e->kind], e->gid);
            }
            if (t == NULL) {
                Py_CLEAR(evs);
                break;
            }
            PyList_SET_ITEM(evs, i, t);
        }
        PyObject *item = evs ? Py_BuildValue("(kONL)", b->ident, b->tname, evs, b->dropped) : NULL;
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(item);
        for (Py_ssize_t i = 0; i < b->n; i++) {
            Py_XDECREF(b->ev[i].o);
        }
        /* Unlinked, emptied, kept: its thread links it again (see ``tr_buf``). */
        PyThread_acquire_lock(tr_lock, WAIT_LOCK);
        tr_buf *next = b->next;
        b->next = NULL;
        b->linked = 0;
        PyThread_release_lock(tr_lock);
        PyMem_RawFree(b->ev);
        b->ev = NULL;
        b->n = b->cap = 0;
        b->dropped = 0;
        b = next;
    }
    if (gc_was) {
        PyGC_Enable();
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"set_trace", (PyCFunction)speedups_set_trace, METH_VARARGS,
     "set_trace(hook, names, limit): record scheduling events; set_trace(None): stop."},
    {"trace_take", (PyCFunction)speedups_trace_take, METH_NOARGS,
     "trace_take(): the recorded events of every thread, and free them."},
    {"set_virtual_time", (PyCFunction)speedups_set_virtual_time, METH_O,
     "set_virtual_time(t): the clock reads t from now on (a bubble's virtual clock); None: real time."},
    {"init", (PyCFunction)(void (*)(void))speedups_init, METH_VARARGS | METH_KEYWORDS,
     "Hand over what the channel operations need (goroutines._chan, after the runtime's inits)."},
    {"init_schedule", (PyCFunction)(void (*)(void))speedups_init_schedule,
     METH_VARARGS | METH_KEYWORDS, "Hand over M, P, Timers, G, Unlock and the statuses (goroutines._runtime._machine)."},
    {"schedule", (PyCFunction)speedups_schedule, METH_O, "M.schedule(m) in C."},
    {"init_sleep", (PyCFunction)(void (*)(void))speedups_init_sleep,
     METH_VARARGS | METH_KEYWORDS, "Hand over the reference sleep() and WaitReason.SLEEP."},
    {"sleep", (PyCFunction)speedups_sleep, METH_O,
     "sleep($module, seconds, /)\n--\n\n"
     "Pause the calling goroutine for ``seconds`` (an int or float); other\n"
     "goroutines run meanwhile. ``seconds <= 0`` returns at once. In a test\n"
     "bubble (gr.testing) the seconds are virtual.\n\n"
     "    await gr.sleep(0.5)\n\n"
     "TypeError for a non-number, ValueError for NaN; RuntimeError outside a\n"
     "goroutine."},
    {"init_ready", (PyCFunction)(void (*)(void))speedups_init_ready,
     METH_VARARGS | METH_KEYWORDS,
     "Hand over the reference ready(); returns G.wake in C (after init_schedule)."},
    {"init_go", (PyCFunction)(void (*)(void))speedups_init_go, METH_VARARGS | METH_KEYWORDS,
     "Hand over the reference go() and WaitReason.NONE (after init_schedule)."},
    {"init_timers", (PyCFunction)(void (*)(void))speedups_init_timers,
     METH_VARARGS | METH_KEYWORDS,
     "Hand over Timers and Timer (goroutines._runtime._timers); returns bind."},
    {"go", (PyCFunction)(void (*)(void))speedups_go, METH_FASTCALL | METH_KEYWORDS,
     "go($module, fn, /, *args, **kwargs)\n--\n\n"
     "Start ``fn(*args, **kwargs)`` as a new goroutine and return at once\n"
     "(Go's ``go`` statement). ``fn`` is an async function, or pass a\n"
     "coroutine object alone.\n\n"
     "    gr.go(worker, jobs, results)\n"
     "    gr.go(ch.send, 42)\n\n"
     "An exception that escapes the goroutine stops the program: gr.run()\n"
     "raises it, noted with the goroutine and where it was started (use\n"
     "gr.Group to collect errors instead). TypeError if fn is not async;\n"
     "RuntimeError with no runtime running. Safe to call from any thread."},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "goroutines._speedups",
    .m_doc = "The C accelerator of goroutines' hot paths (see goroutines._accel).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* The C function of method ``name`` of type ``tp`` if it is a plain C
 * method with calling convention ``flags``; else NULL. */
static PyCFunction
method_fn(PyObject *tp, const char *name, int flags)
{
    PyObject *d = PyObject_GetAttrString(tp, name);
    PyCFunction fn = NULL;
    if (d == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (Py_IS_TYPE(d, &PyMethodDescr_Type)) {
        PyMethodDef *ml = ((PyMethodDescrObject *)d)->d_method;
        if ((ml->ml_flags & ~METH_COEXIST) == flags) {
            fn = ml->ml_meth;
        }
    }
    Py_DECREF(d);
    return fn;
}

#define INTERN(var, s)                                  \
    do {                                                \
        if ((var = PyUnicode_InternFromString(s)) == NULL) \
            return NULL;                                \
    } while (0)

static int
add_all(PyObject *m)
{
    PyObject *all = Py_BuildValue("[sssssssssssssssss]", "API_VERSION", "ChanCore", "ChanOp", "Lock", "SleepOp", "go", "init", "init_go", "init_ready", "init_schedule", "init_sleep", "init_timers", "schedule", "set_trace", "set_virtual_time", "sleep", "trace_take");
    if (all == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(m, "__all__", all);
    Py_DECREF(all);
    return r;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_popleft, "popleft");
    INTERN(s_append, "append");
    INTERN(s_remove, "remove");
    INTERN(s_pop, "pop");
    INTERN(s_wake, "wake");
    INTERN(s_elem, "elem");
    INTERN(s_success, "success");
    INTERN(s_wait_reason, "wait_reason");
    INTERN(s_sel, "sel");
    INTERN(s_m, "m");
    INTERN(s_curg, "curg");
    INTERN(s_acquire, "acquire");
    INTERN(s_release, "release");
    INTERN(s_check_bound, "check_bound_locked");
    INTERN(s_p, "p");
    INTERN(s_runnext, "runnext");
    INTERN(s__shuffle, "_shuffle");
    INTERN(s_sched, "sched");
    INTERN(s_timers, "timers");
    INTERN(s_runq, "runq");
    INTERN(s_schedtick, "schedtick");
    INTERN(s_next_when, "next_when");
    INTERN(s_nsched, "nsched");
    INTERN(s_find_runnable, "find_runnable");
    INTERN(s_spinning, "spinning");
    INTERN(s_resetspinning, "resetspinning");
    INTERN(s_locked_m, "locked_m");
    INTERN(s_startlockedm, "startlockedm");
    INTERN(s_stopm, "stopm");
    INTERN(s_status, "status");
    INTERN(s_gate, "gate");
    INTERN(s_at_gate, "at_gate");
    INTERN(s_coro, "coro");
    INTERN(s_ctx, "ctx");
    INTERN(s_goexit, "goexit");
    INTERN(s_wait_since, "wait_since");
    INTERN(s_now, "now");
    INTERN(s_lockedg, "lockedg");
    INTERN(s_execute_request, "execute_request");
    INTERN(s_after_execute, "after_execute");
    INTERN(s_stopping, "stopping");
    INTERN(s_shuffle, "shuffle");
    INTERN(s_sites, "sites");
    INTERN(s_main_g, "main_g");
    INTERN(s_arm_sleep, "arm_sleep");
    INTERN(s_intern, "intern");
    INTERN(s_goidcache, "goidcache");
    INTERN(s_goidcacheend, "goidcacheend");
    INTERN(s_goidbatch, "goidbatch");
    INTERN(s_allgs, "allgs");
    INTERN(s_id, "id");
    INTERN(s_site, "site");
    INTERN(s_heap, "heap");
    INTERN(s_lock, "lock");
    INTERN(s_seq, "seq");
    INTERN(s_nactive, "nactive");
    INTERN(s_nstale, "nstale");
    INTERN(s_on_earlier, "on_earlier");
    INTERN(s_active, "active");
    INTERN(s_when, "when");
    INTERN(s_period, "period");
    INTERN(s_f, "f");
    INTERN(s_arg, "arg");
    if ((float_inf = PyFloat_FromDouble(INFINITY)) == NULL) {
        return NULL;
    }
    if ((float_zero = PyFloat_FromDouble(0.0)) == NULL || (one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }

    if ((zero = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return NULL;
    }
    deque_type = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque_type == NULL) {
        return NULL;
    }
    deque_append_fn = method_fn(deque_type, "append", METH_O);
    deque_popleft_fn = method_fn(deque_type, "popleft", METH_NOARGS);
    deque_pop_fn = method_fn(deque_type, "pop", METH_NOARGS);
    SleepOp_Type = ChanOp_Type;
    SleepOp_Type.tp_name = "goroutines._speedups.SleepOp";
    SleepOp_Type.tp_doc = "The awaitable of gr.sleep(seconds) for a positive finite float.";
    if (PyType_Ready(&ChanCore_Type) < 0 || PyType_Ready(&ChanOp_Type) < 0 ||
        PyType_Ready(&SleepOp_Type) < 0 ||
        PyType_Ready(&Lock_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "API_VERSION", API_VERSION) < 0 ||
        PyModule_AddObjectRef(m, "ChanCore", (PyObject *)&ChanCore_Type) < 0 ||
        PyModule_AddObjectRef(m, "ChanOp", (PyObject *)&ChanOp_Type) < 0 ||
        PyModule_AddObjectRef(m, "SleepOp", (PyObject *)&SleepOp_Type) < 0 ||
        PyModule_AddObjectRef(m, "Lock", (PyObject *)&Lock_Type) < 0 ||
        add_all(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
