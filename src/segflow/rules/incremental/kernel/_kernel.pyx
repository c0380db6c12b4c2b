# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""The compiled rule kernel: :class:`KernelProgram`, the C++ evaluator of ``kernel.hpp``.

Built from a :class:`~segflow.rules.incremental.program.SegmentProgram`, it answers exactly as
that program does over its own binary state (``format.py``); see ``kernel/__init__.py``.
"""

from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from libcpp cimport bool as cbool
from libcpp.string cimport string
from libcpp.vector cimport vector

import msgspec

from segflow.rules.incremental import state as _state
from segflow.rules.incremental.kernel import format as _format
from segflow.rules.incremental.kernel.layout import build_layout
from segflow.rules.values import to_time_ms as _to_time_ms


cdef extern from "kernel.hpp" namespace "sfk":
    cdef cppclass Literal:
        Literal() except +

    cdef cppclass FilterDef:
        FilterDef() except +
        uint8_t kind
        vector[PyObject*] path
        uint8_t op
        Literal lit
        vector[int] items

    cdef cppclass MatcherDef:
        MatcherDef() except +
        uint8_t kind
        PyObject* name
        vector[PyObject*] trait
        int filter

    cdef cppclass Pred:
        Pred() except +
        uint8_t op
        Literal lit

    cdef cppclass SlotDef:
        SlotDef() except +
        uint8_t kind
        int matcher
        int64_t horizon
        cbool fold
        cbool counts
        vector[vector[PyObject*]] paths
        string prefix
        vector[Pred] preds
        cbool needs_time
        int nbits

    cdef cppclass SeqDef:
        SeqDef() except +
        vector[int] matchers
        int k
        vector[uint8_t] has_within
        vector[int64_t] within
        cbool has_absent
        cbool absent_has_within
        int64_t absent_within
        int64_t horizon
        string prefix

    cdef cppclass NodeDef:
        NodeDef() except +
        uint8_t code
        int64_t a, b, c, d, e
        vector[int] kids

    cdef cppclass WakeDef:
        WakeDef() except +
        uint8_t code
        int64_t a, b

    cdef cppclass Bucket:
        Bucket() except +
        vector[int] matchers, never, slots, seqs

    cdef cppclass Program:
        string header
        vector[MatcherDef] matchers
        vector[FilterDef] filters
        vector[Literal] literals
        vector[PyObject*] literal_objs
        vector[SlotDef] slots
        vector[SeqDef] seqs
        vector[NodeDef] nodes
        vector[int] rule_root
        vector[vector[WakeDef]] rule_wakes
        vector[vector[int]] dependents
        vector[uint8_t] profile_rule
        vector[vector[int]] slot_rules, seq_rules
        vector[int] trait_root
        vector[vector[WakeDef]] trait_wakes
        vector[PyObject*] trait_names
        vector[PyObject*] rule_names
        vector[Bucket] buckets
        PyObject* bucket_of
        PyObject* to_time_ms
        PyObject* encode_raw
        PyObject* a_type
        PyObject* a_event
        PyObject* a_name
        PyObject* a_user_id
        PyObject* a_properties
        PyObject* a_traits
        PyObject* a_timestamp_ms
        PyObject* a_message_id
        PyObject* a_scores
        PyObject* a_clusters
        PyObject* a_cluster_ids
        PyObject* a_get
        PyObject* unset

    cdef cppclass Work:
        void reset(const Program&)

    PyObject* own(PyObject*)
    void literal_from_py(Literal&, PyObject*) except +
    cbool load(const Program&, Work&, const uint8_t*, size_t) except +
    void record(const Program&, Work&, PyObject*, int64_t) except +
    void flush_edits(const Program&, Work&) except +
    void run_evaluation(const Program&, Work&, PyObject*, int64_t, PyObject*, cbool&, int64_t&) except +
    object write_state(const Program&, Work&, PyObject*) except +
    object members(Program&, const Work&) except +
    object merge_states_of "sfk::merge_states"(const Program&, Work&, Work&, const uint8_t*, size_t, const uint8_t*, size_t, cbool&) except +


cdef extern from "Python.h":
    char* PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    object PyUnicode_InternFromString(const char*)


cdef PyObject* _keep(object o):
    """A new reference to ``o`` for the C++ program (released by its destructor)."""
    return own(<PyObject*>o)


cdef vector[PyObject*] _keys(object path):
    cdef vector[PyObject*] out
    for key in path:
        out.push_back(_keep(key))
    return out


cdef class KernelResult:
    """One evaluation: the fields of :class:`segflow.stream.evaluator.EvalResult`."""

    cdef readonly object state
    cdef readonly frozenset members
    cdef readonly dict computed_traits
    cdef readonly object next_wakeup_ms

    def __repr__(self):
        return (
            f"KernelResult(members={sorted(self.members)!r}, "
            f"computed_traits={self.computed_traits!r}, next_wakeup_ms={self.next_wakeup_ms!r})"
        )


cdef class KernelProgram:
    """All segments and computed traits of a :class:`SegmentProgram`, run by the C++ kernel.

    Implements the processor's ``SegmentEvaluator`` protocol with the program's answers:
    the same members, computed traits and timers for every call, over a compact binary state
    (``kernel/format.py``). ``plan``, ``definitions`` and ``traits`` are the program's.

    >>> from segflow.rules import StaticProfile, compile_segments
    >>> from segflow.spec.events import Event
    >>> k = KernelProgram(compile_segments({"buyers": 'did "Order Completed" in last 1 hour'}))
    >>> ev = Event(type="track", message_id="m1", source_id="s", timestamp_ms=1_000,
    ...            received_at_ms=1_000, event="Order Completed")
    >>> res = k.on_event(StaticProfile("p1"), None, ev, now_ms=1_000)
    >>> sorted(res.members), res.next_wakeup_ms, res.state[:4]
    (['buyers'], 3601000, b'\\xffSK\\x01')
    >>> sorted(k.on_time(StaticProfile("p1"), res.state, now_ms=3_601_000).members)
    []
    """

    cdef Program* P
    cdef Work* W
    cdef Work* MA  # a merge's two states (no Python runs during one: never re-entered)
    cdef Work* MB
    cdef bint busy
    cdef readonly object python
    cdef readonly object plan
    cdef readonly object layout
    cdef readonly dict definitions
    cdef readonly dict traits

    def __cinit__(self):
        self.P = new Program()
        self.W = new Work()
        self.MA = new Work()
        self.MB = new Work()

    def __dealloc__(self):
        del self.MB
        del self.MA
        del self.W
        del self.P

    def __init__(self, program):
        self.python = program
        self.plan = program.plan
        self.definitions = dict(program.definitions)
        self.traits = dict(program.traits)
        self.layout = build_layout(program.plan)
        self._build(self.layout)

    cdef _build(self, lay):
        cdef Program* P = self.P
        cdef FilterDef fd
        cdef MatcherDef md
        cdef SlotDef sd
        cdef SeqDef qd
        cdef NodeDef nd
        cdef WakeDef wd
        cdef Bucket bk
        cdef Pred pr
        cdef vector[WakeDef] wakes
        cdef vector[int] ints
        cdef int64_t within
        P.header = <bytes>lay.header
        for value in lay.literals:
            P.literals.push_back(Literal())
            P.literal_objs.push_back(_keep(value))
        for i, value in enumerate(lay.literals):
            literal_from_py(P.literals[i], <PyObject*>value)
        for kind, path, op, lit, items in lay.filters:
            fd = FilterDef()
            fd.kind = kind
            fd.path = _keys(path)
            fd.op = op
            if lit >= 0:
                literal_from_py(fd.lit, <PyObject*>lay.literals[lit])
            fd.items = items
            P.filters.push_back(fd)
        for kind, name, trait, flt in lay.matchers:
            md = MatcherDef()
            md.kind = kind
            md.name = _keep(name) if name is not None and kind != 0 else NULL
            md.trait = _keys(trait or ())
            md.filter = flt
            P.matchers.push_back(md)
        for i, slot in enumerate(lay.slots):
            sd = SlotDef()
            sd.kind = 1 if slot.kind == "trait" else 0
            sd.matcher = slot.matcher
            sd.horizon = slot.horizon_ms
            sd.fold = slot.fold
            sd.counts = slot.counts
            for path in slot.paths:
                sd.paths.push_back(_keys(path))
            sd.prefix = _format.section_prefix(i, slot)
            for op, literal in slot.predicates:
                pr = Pred()
                pr.op = _OPS[op]
                literal_from_py(pr.lit, <PyObject*>literal)
                sd.preds.push_back(pr)
            sd.needs_time = slot.needs_time
            sd.nbits = (len(slot.predicates) + 7) // 8
            P.slots.push_back(sd)
        for i, seq in enumerate(lay.seqs):
            qd = SeqDef()
            qd.matchers = seq.matchers
            qd.k = len(seq.seq.steps)
            for step in seq.seq.steps:
                qd.has_within.push_back(step.within_ms is not None)
                within = step.within_ms or 0
                qd.within.push_back(within)
            qd.has_absent = seq.seq.absent is not None
            qd.absent_has_within = qd.has_absent and seq.seq.absent.within_ms is not None
            qd.absent_within = (seq.seq.absent.within_ms or 0) if qd.has_absent else 0
            qd.horizon = seq.horizon_ms
            qd.prefix = _format.section_prefix(i, seq)
            P.seqs.push_back(qd)
        for code, a, b, c, d, e, kids in lay.nodes:
            nd = NodeDef()
            nd.code = code
            nd.a = a
            nd.b = b
            nd.c = c
            nd.d = d
            nd.e = e
            nd.kids = kids
            P.nodes.push_back(nd)
        for roots, all_wakes, out_root, out_wakes in (
            (lay.rule_roots, lay.rule_wakes, 0, 0),
            (lay.trait_roots, lay.trait_wakes, 1, 1),
        ):
            for root, found in zip(roots, all_wakes):
                wakes.clear()
                for code, a, b in found:
                    wd = WakeDef()
                    wd.code = code
                    wd.a = a
                    wd.b = b
                    wakes.push_back(wd)
                if out_root == 0:
                    P.rule_root.push_back(root)
                    P.rule_wakes.push_back(wakes)
                else:
                    P.trait_root.push_back(root)
                    P.trait_wakes.push_back(wakes)
        for deps in lay.dependents:
            ints = deps
            P.dependents.push_back(ints)
        for flag in lay.profile_rules:
            P.profile_rule.push_back(flag)
        for rules in lay.slot_rules:
            ints = rules
            P.slot_rules.push_back(ints)
        for rules in lay.seq_rules:
            ints = rules
            P.seq_rules.push_back(ints)
        for name in lay.traits:
            P.trait_names.push_back(_keep(name))
        for name in lay.rules:
            P.rule_names.push_back(_keep(name))
        for matchers, never, slots, seqs in lay.buckets:
            bk = Bucket()
            bk.matchers = matchers
            bk.never = never
            bk.slots = slots
            bk.seqs = seqs
            P.buckets.push_back(bk)
        P.bucket_of = _keep(dict(lay.bucket_of))
        P.to_time_ms = _keep(_to_time_ms)
        P.encode_raw = _keep(msgspec.msgpack.Encoder().encode)
        P.a_type = _keep(PyUnicode_InternFromString(b"type"))
        P.a_event = _keep(PyUnicode_InternFromString(b"event"))
        P.a_name = _keep(PyUnicode_InternFromString(b"name"))
        P.a_user_id = _keep(PyUnicode_InternFromString(b"user_id"))
        P.a_properties = _keep(PyUnicode_InternFromString(b"properties"))
        P.a_traits = _keep(PyUnicode_InternFromString(b"traits"))
        P.a_timestamp_ms = _keep(PyUnicode_InternFromString(b"timestamp_ms"))
        P.a_message_id = _keep(PyUnicode_InternFromString(b"message_id"))
        P.a_scores = _keep(PyUnicode_InternFromString(b"scores"))
        P.a_clusters = _keep(PyUnicode_InternFromString(b"clusters"))
        P.a_cluster_ids = _keep(PyUnicode_InternFromString(b"cluster_ids"))
        P.a_get = _keep(PyUnicode_InternFromString(b"get"))
        P.unset = _keep(msgspec.UNSET)

    # --- the SegmentEvaluator protocol --------------------------------------------------------
    def on_event(self, profile, state, event, int64_t now_ms):
        """Record ``event`` and evaluate at ``now_ms`` (as ``SegmentProgram.on_event``)."""
        return self._run(profile, state, (event,), now_ms)

    def on_events(self, profile, state, events, int64_t now_ms):
        """Record ``events`` (one profile's, in order), then evaluate once at ``now_ms``: the
        same as ``on_event`` for each in turn, keeping the last result."""
        return self._run(profile, state, events, now_ms)

    def on_time(self, profile, state, int64_t now_ms):
        """Evaluate at ``now_ms`` without an event (a timer)."""
        return self._run(profile, state, (), now_ms)

    def can_merge(self, survivor, absorbed):
        """Whether :meth:`merge_states` is exact for these states (``SegmentProgram.can_merge``)."""
        return self.merge_checked(survivor, absorbed)[1]

    def merge_states(self, survivor, absorbed):
        """Two profiles' states merged (``SegmentProgram.merge_states``), as a kernel state."""
        return self.merge_checked(survivor, absorbed)[0]

    def merge_checked(self, survivor, absorbed):
        """``(merge_states(survivor, absorbed), can_merge(survivor, absorbed))`` in one pass over
        the bytes, in C++ when both states are of this rule set; otherwise (or without them) by
        the reference, ``kernel.merge_checked_python``, which gives the same bytes and answer.

        >>> from segflow.rules import compile_segments
        >>> k = KernelProgram(compile_segments({"s": 'did "A"'}))
        >>> k.merge_checked(None, b"x")
        (b'x', True)
        """
        cdef cbool exact = True
        if not survivor or not absorbed:
            return survivor or absorbed, True
        a = survivor if type(survivor) is bytes else bytes(survivor)
        b = absorbed if type(absorbed) is bytes else bytes(absorbed)
        merged = merge_states_of(
            self.P[0], self.MA[0], self.MB[0],
            <const uint8_t*>PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a),
            <const uint8_t*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), exact,
        )
        if merged is None:
            from segflow.rules.incremental.kernel import merge_checked_python

            return merge_checked_python(self, a, b)
        return merged, exact

    def explain(self, profile, state, segment, now_ms):
        """``SegmentProgram.explain`` of this state."""
        st = self._profile_state(state) if state else _state.ProfileState()
        return self.python.explain(profile, _state.encode(st), segment, now_ms)

    def _timed(self, profile, state, events, int64_t now_ms):
        """:meth:`on_events` with the nanoseconds of each stage (for benchmarks.kernel): load,
        record (matching, extraction, insertion), flush (writing touched sections),
        evaluate (rules and computed traits), write (the state and the result)."""
        cdef int64_t stamps[6]
        self.busy = True
        try:
            res = self._call(self.W, profile, state, events, now_ms, stamps)
        finally:
            self.busy = False
        return res, [stamps[i + 1] - stamps[i] for i in range(5)]

    # --- internals --------------------------------------------------------------------------
    def _profile_state(self, data):
        """A state of any format as a :class:`ProfileState` (without SegmentProgram._load)."""
        if _format.is_kernel_state(data):
            return _format.decode(data, self.layout)
        return _state.decode(data)

    def _convert(self, data):
        """A state of another format or rule set as a kernel state of this one, as
        ``SegmentProgram._load`` reads it (results and timers reset for another rule set)."""
        st = self._profile_state(data)
        if st.fingerprint != self.plan.fingerprint:
            st.fingerprint = self.plan.fingerprint
            st.results, st.wakes = {}, {}
        return _format.encode(st, self.layout)

    cdef object _run(self, profile, state, events, int64_t now_ms):
        cdef Work* W = self.W
        cdef Work* mine = NULL
        if self.busy:  # called again from inside a call (a profile's property): its own work
            mine = new Work()
            W = mine
        self.busy = True
        try:
            return self._call(W, profile, state, events, now_ms, NULL)
        finally:
            self.busy = mine != NULL
            if mine != NULL:
                del mine

    cdef object _call(self, Work* W, profile, state, events, int64_t now_ms, int64_t* stamps):
        cdef Program* P = self.P
        cdef cbool has_next = False
        cdef int64_t nxt = 0
        cdef object loaded = None
        if stamps != NULL:
            stamps[0] = _ns()
        W.reset(P[0])
        if state:
            loaded = state if type(state) is bytes else bytes(state)
            if not load(P[0], W[0], <const uint8_t*>PyBytes_AS_STRING(loaded), PyBytes_GET_SIZE(loaded)):
                loaded = self._convert(loaded)
                W.reset(P[0])
                if not load(P[0], W[0], <const uint8_t*>PyBytes_AS_STRING(loaded), PyBytes_GET_SIZE(loaded)):
                    raise ValueError("a converted state does not load")
        if stamps != NULL:
            stamps[1] = _ns()
        for event in events:
            record(P[0], W[0], <PyObject*>event, now_ms)
        if stamps != NULL:
            stamps[2] = _ns()
        flush_edits(P[0], W[0])
        if stamps != NULL:
            stamps[3] = _ns()
        traits = {}
        run_evaluation(P[0], W[0], <PyObject*>profile, now_ms, <PyObject*>traits, has_next, nxt)
        if stamps != NULL:
            stamps[4] = _ns()
        cdef KernelResult res = KernelResult.__new__(KernelResult)
        res.state = write_state(P[0], W[0], <PyObject*>loaded if loaded is not None else NULL)
        res.members = members(P[0], W[0])
        res.computed_traits = traits
        res.next_wakeup_ms = nxt if has_next else None
        if stamps != NULL:
            stamps[5] = _ns()
        return res


cdef inline int64_t _ns():
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return t.tv_sec * 1_000_000_000 + t.tv_nsec


_OPS = {op: i for i, op in enumerate(("=", "!=", "<", "<=", ">", ">=", "in", "contains", "starts with"))}
