// segflow's compiled rule kernel: the incremental evaluator of segflow.rules.incremental
// (plan, state, executor, program) in C++, over its own binary state format.
//
// The Python evaluator is the reference: every function here mirrors one there (named in its
// comment) operation for operation — the same insertion order, the same fold order, the same
// floating-point additions in the same order — so that results are equal, not just close.
// The state format is described in format.py (the pure-Python codec of the same bytes).
//
// The kernel runs with the GIL held and calls the CPython API directly to read events and
// profiles. A failed CPython call raises PyError (the Python exception stays set; Cython's
// `except +` passes it through); a malformed state raises std::invalid_argument (ValueError).
#pragma once

#include <Python.h>
#include <structmember.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sfk {

using i64 = int64_t;
using u64 = uint64_t;
using u32 = uint32_t;
using u16 = uint16_t;
using u8 = uint8_t;
using sv = std::string_view;

struct PyError {};  // a CPython call failed; its exception is set

[[noreturn]] inline void bad_state(const char* what) { throw std::invalid_argument(what); }

// --- bytes --------------------------------------------------------------------------------

inline i64 ld_i64(const u8* p) { i64 v; std::memcpy(&v, p, 8); return v; }
inline u64 ld_u64(const u8* p) { u64 v; std::memcpy(&v, p, 8); return v; }
inline u32 ld_u32(const u8* p) { u32 v; std::memcpy(&v, p, 4); return v; }
inline u16 ld_u16(const u8* p) { u16 v; std::memcpy(&v, p, 2); return v; }
inline double ld_f64(const u8* p) { double v; std::memcpy(&v, p, 8); return v; }

// A growable byte buffer whose writes inline (std::string::append is a call per write).
struct Bytes {
  u8* p = nullptr;
  size_t len = 0, cap = 0;
  Bytes() = default;
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  ~Bytes() { std::free(p); }
  void clear() { len = 0; }
  size_t size() const { return len; }
  const u8* data() const { return p; }
  void grow(size_t need) {
    size_t c = std::max(need, cap * 2 + 256);
    u8* q = static_cast<u8*>(std::realloc(p, c));
    if (!q) throw std::bad_alloc();
    p = q;
    cap = c;
  }
  u8* extend(size_t n) {
    if (len + n > cap) grow(len + n);
    u8* at = p + len;
    len += n;
    return at;
  }
  void append(const void* s, size_t n) { if (n) std::memcpy(extend(n), s, n); }
};

inline void put_u8(Bytes& s, u8 v) { *s.extend(1) = v; }
inline void put_u16(Bytes& s, u16 v) { std::memcpy(s.extend(2), &v, 2); }
inline void put_u32(Bytes& s, u32 v) { std::memcpy(s.extend(4), &v, 4); }
inline void put_i64(Bytes& s, i64 v) { std::memcpy(s.extend(8), &v, 8); }
inline void put_f64(Bytes& s, double v) { std::memcpy(s.extend(8), &v, 8); }
inline void put_varint(Bytes& s, u64 n) {
  while (n >= 0x80) { put_u8(s, static_cast<u8>((n & 0x7F) | 0x80)); n >>= 7; }
  put_u8(s, static_cast<u8>(n));
}
inline void put_text(Bytes& s, sv t) { put_varint(s, t.size()); s.append(t.data(), t.size()); }
inline size_t varint_size(u64 n) { size_t k = 1; while (n >= 0x80) { n >>= 7; ++k; } return k; }
inline u8* write_varint(u8* p, u64 n) {
  while (n >= 0x80) { *p++ = static_cast<u8>((n & 0x7F) | 0x80); n >>= 7; }
  *p++ = static_cast<u8>(n);
  return p;
}

struct Cursor {
  const u8* p;
  const u8* end;
  void need(size_t n) const { if (static_cast<size_t>(end - p) < n) bad_state("a truncated kernel state"); }
  u8 u8_() { need(1); return *p++; }
  u16 u16_() { need(2); u16 v = ld_u16(p); p += 2; return v; }
  u32 u32_() { need(4); u32 v = ld_u32(p); p += 4; return v; }
  i64 i64_() { need(8); i64 v = ld_i64(p); p += 8; return v; }
  double f64_() { need(8); double v = ld_f64(p); p += 8; return v; }
  u64 varint() {
    u64 n = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      u8 b = u8_();
      n |= static_cast<u64>(b & 0x7F) << shift;
      if (b < 0x80) return n;
    }
    bad_state("a malformed varint in a kernel state");
  }
  sv bytes(size_t n) { need(n); sv out(reinterpret_cast<const char*>(p), n); p += n; return out; }
  sv text() { return bytes(varint()); }
};

// (ts, message id) order, as Python compares (int, str) tuples: UTF-8 bytes order = code points
inline int cmp_key(i64 ta, sv ma, i64 tb, sv mb) {
  if (ta != tb) return ta < tb ? -1 : 1;
  int c = ma.compare(mb);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// float(t) against an int, exactly as Python compares them
inline bool lt_fi(double t, i64 i) { return static_cast<long double>(t) < static_cast<long double>(i); }
inline bool gt_fi(double t, i64 i) { return static_cast<long double>(t) > static_cast<long double>(i); }

// --- literals, values, comparisons (rules/values.py) --------------------------------------------

enum Op : u8 { EQ = 0, NE, LT, LE, GT, GE, IN, CONTAINS, STARTS };

struct Literal {
  enum Kind : u8 { BOOL, NUM, STR, TUPLE } kind = NUM;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Literal> items;
};

struct Value {
  enum Kind : u8 { MISSING, NONE, BOOL, NUM, TEXT, LIST, OTHER } kind = MISSING;
  bool b = false;
  bool is_int = false;
  double num = 0;
  i64 i = 0;
  sv text;
  const std::vector<Value>* items = nullptr;  // a list's, kept by the call's Work
  static Value none() { Value v; v.kind = NONE; return v; }
  static Value of_int(i64 n) { Value v; v.kind = NUM; v.is_int = true; v.i = n; v.num = static_cast<double>(n); return v; }
  static Value of_num(double d) { Value v; v.kind = NUM; v.num = d; return v; }
  static Value of_text(sv t) { Value v; v.kind = TEXT; v.text = t; return v; }
};

template <class T>
inline bool ordered(const T& a, u8 op, const T& b) {  // values._ordered
  switch (op) {
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case GT: return a > b;
    case GE: return a >= b;
    default: return false;
  }
}

inline bool text_compare(sv v, u8 op, const std::string& lit) {
  if (op == CONTAINS) return v.find(lit) != sv::npos;
  if (op == STARTS) return v.substr(0, lit.size()) == lit;
  return ordered(v, op, sv(lit));
}

inline bool compare(const Value& v, u8 op, const Literal& lit) {  // values.compare
  if (lit.kind == Literal::NUM && v.kind == Value::NUM) return ordered(v.num, op, lit.num);  // (counts)
  if (lit.kind == Literal::TUPLE) {
    for (const Literal& item : lit.items)
      if (compare(v, EQ, item)) return true;
    return false;
  }
  if (v.kind == Value::LIST) {
    if (op != CONTAINS) return false;
    for (const Value& item : *v.items)
      if (compare(item, EQ, lit)) return true;
    return false;
  }
  if (lit.kind == Literal::BOOL)
    return v.kind == Value::BOOL && (op == EQ || op == NE) && ordered(v.b, op, lit.b);
  if (lit.kind == Literal::NUM) return v.kind == Value::NUM && ordered(v.num, op, lit.num);
  return v.kind == Value::TEXT && text_compare(v.text, op, lit.str);
}

inline void literal_from_py(Literal& out, PyObject* o) {
  if (PyTuple_Check(o)) {
    out.kind = Literal::TUPLE;
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    out.items.resize(n);
    for (Py_ssize_t i = 0; i < n; ++i) literal_from_py(out.items[i], PyTuple_GET_ITEM(o, i));
  } else if (PyBool_Check(o)) {
    out.kind = Literal::BOOL;
    out.b = o == Py_True;
  } else if (PyLong_Check(o) || PyFloat_Check(o)) {
    out.kind = Literal::NUM;
    out.num = PyFloat_AsDouble(o);
    if (out.num == -1.0 && PyErr_Occurred()) throw PyError();
  } else if (PyUnicode_Check(o)) {
    out.kind = Literal::STR;
    Py_ssize_t n;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) throw PyError();
    out.str.assign(s, n);
  } else {
    PyErr_SetString(PyExc_TypeError, "a rule literal is text, a number, a boolean or a list");
    throw PyError();
  }
}

inline sv utf8_of(PyObject* s) {
  Py_ssize_t n;
  const char* p = PyUnicode_AsUTF8AndSize(s, &n);
  if (!p) throw PyError();
  return sv(p, n);
}

// to_num on a Python object (None when it is not an int or a float, or is a bool)
inline bool py_num(PyObject* v, double& out) {
  if (PyBool_Check(v)) return false;
  if (PyFloat_Check(v)) { out = PyFloat_AS_DOUBLE(v); return true; }
  if (PyLong_Check(v)) {
    out = PyLong_AsDouble(v);
    if (out == -1.0 && PyErr_Occurred()) throw PyError();
    return true;
  }
  return false;
}

inline bool py_compare(PyObject* v, u8 op, const Literal& lit) {  // values.compare, on Python values
  if (lit.kind == Literal::TUPLE) {
    for (const Literal& item : lit.items)
      if (py_compare(v, EQ, item)) return true;
    return false;
  }
  if (PyList_Check(v)) {
    if (op != CONTAINS) return false;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); ++i)
      if (py_compare(PyList_GET_ITEM(v, i), EQ, lit)) return true;
    return false;
  }
  if (lit.kind == Literal::BOOL)
    return PyBool_Check(v) && (op == EQ || op == NE) && ordered(v == Py_True, op, lit.b);
  if (lit.kind == Literal::NUM) {
    double num;
    return py_num(v, num) && ordered(num, op, lit.num);
  }
  if (!PyUnicode_Check(v)) return false;
  return text_compare(utf8_of(v), op, lit.str);
}

// get_path: the value at ``path`` in nested dicts (borrowed), or nullptr for MISSING
inline PyObject* py_get_path(PyObject* data, const std::vector<PyObject*>& path) {
  for (PyObject* key : path) {
    if (!PyDict_Check(data)) return nullptr;
    PyObject* item = PyDict_GetItemWithError(data, key);
    if (!item) {
      if (PyErr_Occurred()) throw PyError();
      return nullptr;
    }
    data = item;
  }
  return data;
}

// --- the program (plan.py, executor.py's compiled closures) ------------------------------------

enum SlotKind : u8 { EVENT_SLOT = 0, TRAIT_SLOT = 1, SEQ_SECTION = 2 };
enum MatcherKind : u8 { M_TRACK, M_PAGE, M_SCREEN, M_IDENTIFY, M_ANY, M_IDENTIFIED, M_TRAIT };
enum FilterKind : u8 { F_CMP = 1, F_EXISTS, F_AND, F_OR, F_NOT };
enum NodeCode : u8 {
  C_AND = 1, C_OR, C_NOT, C_CONST, C_CMP, C_EXISTS, C_TIMEIN, C_INSEG, C_ANON, C_PERIODIC,
  C_SEQ, C_TRAITBIT,
  V_AGG = 20, V_TRAIT, V_FIRSTSEEN, V_SCORE, V_CLUSTER, V_CLUSTERID
};
enum WakeCode : u8 { W_ENTRY = 1, W_SEQENTRY, W_TIMEIN, W_PERIODIC, W_ABSENT };
enum Func : u8 { COUNT, SUM, AVG, MIN, MAX, FIRST, LAST, MOST_FREQUENT, UNIQUE_LIST, UNIQUE_COUNT };
enum EventType : u8 { T_OTHER, T_TRACK, T_PAGE, T_SCREEN, T_IDENTIFY };

struct FilterDef {
  u8 kind = 0;
  std::vector<PyObject*> path;
  u8 op = 0;
  Literal lit;
  std::vector<int> items;
};

struct MatcherDef {
  u8 kind = 0;
  PyObject* name = nullptr;  // page/screen name, or nullptr
  std::vector<PyObject*> trait;
  int filter = -1;
};

struct Pred {
  u8 op = 0;
  Literal lit;
};

struct SlotDef {
  u8 kind = EVENT_SLOT;
  int matcher = 0;
  i64 horizon = 0;
  bool fold = false;
  bool counts = false;
  std::vector<std::vector<PyObject*>> paths;  // kernel order
  std::string prefix;  // the section's kind, index, key id [, path ids]
  std::vector<Pred> preds;
  bool needs_time = false;
  int nbits = 0;  // bytes of predicate bits
};

struct SeqDef {
  std::vector<int> matchers;  // steps, then the absent step
  int k = 0;
  std::vector<u8> has_within;
  std::vector<i64> within;
  bool has_absent = false;
  bool absent_has_within = false;
  i64 absent_within = 0;
  i64 horizon = 0;
  std::string prefix;
};

struct NodeDef {
  u8 code = 0;
  i64 a = 0, b = 0, c = 0, d = 0, e = 0;
  std::vector<int> kids;
};

struct WakeDef {
  u8 code = 0;
  i64 a = 0, b = 0;
};

struct Bucket {
  std::vector<int> matchers, never, slots, seqs;  // never: track matchers of another name
};

// The fields of an event the kernel reads (Event::attr), and where they lie in one type of event
enum EventField : int { F_TYPE, F_EVENT, F_NAME, F_USER_ID, F_PROPERTIES, F_TRAITS, F_TIMESTAMP_MS,
                        F_MESSAGE_ID, N_EVENT_FIELDS };
constexpr int MAX_EVENT_TYPES = 8;  // more types than that are read through getattr
struct EventLayout {
  PyTypeObject* type = nullptr;  // (a reference)
  Py_ssize_t off[N_EVENT_FIELDS];  // a member's offset in an instance, or -1: getattr
  // a type naming ``__segflow_picked__ = (field, struct type)`` (segflow.stream.decode) holds
  // only the property keys the rule set reads, in a struct: properties() makes the dict of the
  // keys it holds (its fields not UNSET) in place of reading the type's ``properties``
  Py_ssize_t picked = -1;  // the struct's offset in the event
  PyTypeObject* picked_type = nullptr;  // (a reference)
  std::vector<std::pair<PyObject*, Py_ssize_t>> picked_fields;  // (key (a reference), offset)
};

struct Program {
  std::string header;  // magic, version, rule set id (12 bytes)
  std::vector<MatcherDef> matchers;
  std::vector<FilterDef> filters;
  std::vector<Literal> literals;
  std::vector<PyObject*> literal_objs;
  std::vector<SlotDef> slots;
  std::vector<SeqDef> seqs;
  std::vector<NodeDef> nodes;
  std::vector<int> rule_root;
  std::vector<std::vector<WakeDef>> rule_wakes;
  std::vector<std::vector<int>> dependents;
  std::vector<u8> profile_rule;
  std::vector<std::vector<int>> slot_rules, seq_rules;
  std::vector<int> trait_root;
  std::vector<std::vector<WakeDef>> trait_wakes;
  std::vector<PyObject*> trait_names;
  std::vector<PyObject*> rule_names;
  std::unordered_map<std::string, PyObject*> members_cache;  // member bits -> frozenset
  std::vector<Bucket> buckets;
  PyObject* bucket_of = nullptr;  // {track name: bucket}
  PyObject* to_time_ms = nullptr;  // segflow.rules.values.to_time_ms
  PyObject* encode_raw = nullptr;  // msgpack encoder of raw trait values
  PyObject* a_type = nullptr; PyObject* a_event = nullptr; PyObject* a_name = nullptr;
  PyObject* a_user_id = nullptr; PyObject* a_properties = nullptr; PyObject* a_traits = nullptr;
  PyObject* a_timestamp_ms = nullptr; PyObject* a_message_id = nullptr;
  PyObject* a_scores = nullptr; PyObject* a_clusters = nullptr; PyObject* a_cluster_ids = nullptr;
  PyObject* a_get = nullptr;
  PyObject* unset = nullptr;  // msgspec.UNSET: a picked property the event does not have
  // where the fields an event is read for lie in each type of event seen (event_layout): an
  // exact Event, the processor's narrow StreamEvent / PropertylessEvent, any slotted class
  mutable EventLayout layouts[MAX_EVENT_TYPES];
  mutable int nlayouts = 0;

  size_t nrules() const { return rule_root.size(); }

  ~Program() {
    auto drop = [](PyObject*& o) { Py_XDECREF(o); o = nullptr; };
    for (auto& m : matchers) { drop(m.name); for (auto& k : m.trait) drop(k); }
    for (auto& f : filters) for (auto& k : f.path) drop(k);
    for (auto& o : literal_objs) drop(o);
    for (auto& s : slots) for (auto& p : s.paths) for (auto& k : p) drop(k);
    for (auto& o : trait_names) drop(o);
    for (auto& o : rule_names) drop(o);
    for (auto& kv : members_cache) drop(kv.second);
    for (PyObject** o : {&bucket_of, &to_time_ms, &encode_raw, &a_type, &a_event, &a_name, &a_user_id,
                         &a_properties, &a_traits, &a_timestamp_ms, &a_message_id, &a_scores,
                         &a_clusters, &a_cluster_ids, &a_get, &unset})
      drop(*o);
    for (int i = 0; i < nlayouts; ++i) {
      Py_XDECREF(reinterpret_cast<PyObject*>(layouts[i].type));
      Py_XDECREF(reinterpret_cast<PyObject*>(layouts[i].picked_type));
      for (auto& kv : layouts[i].picked_fields) Py_XDECREF(kv.first);
    }
  }
};

inline PyObject* own(PyObject* o) { Py_XINCREF(o); return o; }

// --- sections of a state -------------------------------------------------------------------------

struct View {  // one section's body: entries sorted by (ts, message id), and a fold
  u32 n = 0;
  bool ts32 = false;  // times as u32 offsets from ``base`` (else i64)
  bool off16 = false;  // row offsets as u16 (else u32)
  i64 base = 0;
  const u8* ts = nullptr;
  const u8* off = nullptr;
  const u8* rows = nullptr;
  u32 rows_len = 0;
  bool has_fold = false;
  const u8* fold = nullptr;
  u32 fold_len = 0;

  i64 t(u32 i) const {
    return ts32 ? base + static_cast<i64>(ld_u32(ts + 4 * static_cast<size_t>(i))) : ld_i64(ts + 8 * static_cast<size_t>(i));
  }
  u32 offset(u32 i) const {
    return off16 ? ld_u16(off + 2 * static_cast<size_t>(i)) : ld_u32(off + 4 * static_cast<size_t>(i));
  }
  // rows are bounds-checked when read (a malformed state raises, never reads out of bounds)
  const u8* row(u32 i) const {
    u32 o = offset(i);
    if (o > rows_len) bad_state("a row offset beyond the rows of a kernel state");
    return rows + o;
  }
  const u8* row_end(u32 i) const { return i + 1 < n ? row(i + 1) : rows + rows_len; }
  Cursor cursor(u32 i) const {
    const u8* a = row(i);
    const u8* b = row_end(i);
    if (b < a) bad_state("row offsets out of order in a kernel state");
    return Cursor{a, b};
  }
  sv mid(u32 i) const { Cursor c = cursor(i); return c.text(); }
  // index of the first entry with ts > t, in [lo, n)  (state.after, bisect_right)
  u32 after(i64 t, u32 lo = 0) const {
    u32 hi = n;
    while (lo < hi) {
      u32 m = lo + (hi - lo) / 2;
      if (this->t(m) > t) hi = m; else lo = m + 1;
    }
    return lo;
  }
  // the first entry after ``from`` with ts > t, by galloping (cheap when near ``from``)
  u32 after_from(i64 t, u32 from) const {
    if (from >= n || this->t(from) > t) return from;
    u32 lo = from, step = 1;  // t(lo) <= t
    while (lo + step < n && this->t(lo + step) <= t) { lo += step; step <<= 1; }
    u32 hi = std::min(n, lo + step);
    ++lo;
    while (lo < hi) {
      u32 m = lo + (hi - lo) / 2;
      if (this->t(m) > t) hi = m; else lo = m + 1;
    }
    return lo;
  }
  u32 first_at(i64 t, u32 lo = 0) const {  // first entry with ts >= t
    u32 hi = n;
    while (lo < hi) {
      u32 m = lo + (hi - lo) / 2;
      if (this->t(m) >= t) hi = m; else lo = m + 1;
    }
    return lo;
  }
};

inline View parse_body(const u8* p, u32 len) {
  Cursor c{p, p + len};
  View v;
  v.n = c.u32_();
  u8 flags = c.u8_();
  v.ts32 = flags & 1;
  v.off16 = flags & 2;
  if (v.ts32) v.base = c.i64_();
  size_t tw = v.ts32 ? 4 : 8, ow = v.off16 ? 2 : 4;
  c.need((tw + ow) * static_cast<size_t>(v.n));
  v.ts = c.p;
  c.p += tw * static_cast<size_t>(v.n);
  v.off = c.p;
  c.p += ow * static_cast<size_t>(v.n);
  v.rows_len = c.u32_();
  c.need(v.rows_len);
  v.rows = c.p;
  c.p += v.rows_len;
  v.has_fold = c.u8_() != 0;
  if (v.has_fold) {
    v.fold_len = c.u32_();
    c.need(v.fold_len);
    v.fold = c.p;
  }
  return v;
}

// The column widths of a body: u32 times when they span less than 2^32 ms, u16 offsets when
// the rows take less than 64 KiB (format.py chooses the same)
inline u8 body_flags(u32 n, i64 first, i64 last, size_t rows_len) {
  u8 flags = 0;
  if (n && static_cast<u64>(last) - static_cast<u64>(first) <= 0xFFFFFFFFull) flags |= 1;
  if (rows_len < 0x10000) flags |= 2;
  return flags;
}

struct Section {
  bool present = false;
  bool parsed = true;  // ``view`` is read from the body on first use
  const u8* start = nullptr;  // the whole section (prefix, length, body)
  u32 len = 0;
  const u8* body = nullptr;
  u32 body_len = 0;
  u8 kind = 0;
  View view_;
  const View& view() {
    if (!parsed) {
      view_ = parse_body(body, body_len);
      if (view_.has_fold && view_.fold_len < (kind == SEQ_SECTION ? 1u : 17u)) bad_state("a short fold in a kernel state");
      parsed = true;
    }
    return view_;
  }
};

// --- folds (state.Fold, PathFold, SeqFold) -------------------------------------------------------

struct TextAt {
  bool has = false;
  i64 ts = 0;
  std::string mid, text;
};

struct PathFold {
  double sum = 0.0;
  i64 n = 0;
  bool has_min = false, has_max = false;
  double min = 0, max = 0;
  TextAt first, last;
  bool has_counts = false;
  std::vector<std::pair<std::string, i64>> counts;  // sorted by text
};

struct TraitRec {  // a trait's value as the rules read it
  bool has = false;
  u8 flags = 0;  // 1 not null, 2 has time
  double time = 0;
  const u8* bits = nullptr;
  bool bit(int i) const { return (bits[i / 8] >> (i % 8)) & 1; }
};

struct Fold {  // the fold of one slot or sequence, decoded
  bool loaded = false;
  bool has = false;
  bool changed = false;
  i64 count = 0;
  bool has_first = false;
  i64 first_ts = 0;
  std::vector<PathFold> paths;  // event slots
  bool has_raw = false;          // trait slots: raw_last
  i64 raw_ts = 0;
  std::string raw_mid, raw_val;  // the trait value's bytes
  std::vector<u8> has_last;      // sequences
  std::vector<i64> last;
  bool hit = false, has_upto = false;
  i64 upto = 0;
};

inline void read_text_at(Cursor& c, TextAt& t) {
  t.has = true;
  t.ts = c.i64_();
  t.mid = std::string(c.text());
  t.text = std::string(c.text());
}

inline size_t trait_value_size(const u8* p, const u8* end, int nbits) {
  Cursor c{p, end};
  u8 flags = c.u8_();
  if (flags & 2) c.f64_();
  c.bytes(nbits);
  c.bytes(c.varint());
  return c.p - p;
}

inline TraitRec trait_rec(const u8* p, const u8* end, int nbits) {
  Cursor c{p, end};
  TraitRec r;
  r.has = true;
  r.flags = c.u8_();
  if (r.flags & 2) r.time = c.f64_();
  r.bits = c.p;
  c.bytes(nbits);
  return r;
}

inline void decode_fold(const View& v, u8 kind, const SlotDef* slot, Fold& f, int steps = 0) {
  f = Fold();
  f.loaded = true;
  f.has = v.has_fold;
  if (!v.has_fold) return;
  Cursor c{v.fold, v.fold + v.fold_len};
  if (kind == SEQ_SECTION) {
    int k = c.u8_();
    if (k != steps) bad_state("a sequence fold of another length in a kernel state");
    f.has_last.resize(k);
    f.last.resize(k);
    for (int i = 0; i < k; ++i) { f.has_last[i] = c.u8_(); f.last[i] = c.i64_(); }
    f.hit = c.u8_();
    f.has_upto = c.u8_();
    f.upto = c.i64_();
    return;
  }
  f.count = c.i64_();
  f.has_first = c.u8_();
  f.first_ts = c.i64_();
  if (kind == TRAIT_SLOT) {
    f.has_raw = c.u8_();
    if (f.has_raw) {
      f.raw_ts = c.i64_();
      f.raw_mid = std::string(c.text());
      size_t n = trait_value_size(c.p, c.end, slot->nbits);
      f.raw_val = std::string(reinterpret_cast<const char*>(c.p), n);
    }
    return;
  }
  int np = c.u8_();
  f.paths.resize(np);
  for (PathFold& pf : f.paths) {
    pf.sum = c.f64_();
    pf.n = c.i64_();
    u8 flags = c.u8_();
    if (flags & 1) { pf.has_min = true; pf.min = c.f64_(); }
    if (flags & 2) { pf.has_max = true; pf.max = c.f64_(); }
    if (flags & 4) read_text_at(c, pf.first);
    if (flags & 8) read_text_at(c, pf.last);
    if (flags & 16) {
      pf.has_counts = true;
      u64 m = c.varint();
      for (u64 j = 0; j < m; ++j) {
        std::string text(c.text());
        pf.counts.emplace_back(std::move(text), c.i64_());
      }
    }
  }
}

inline void encode_fold(Bytes& s, const Fold& f, u8 kind) {
  if (kind == SEQ_SECTION) {
    put_u8(s, static_cast<u8>(f.last.size()));
    for (size_t i = 0; i < f.last.size(); ++i) { put_u8(s, f.has_last[i]); put_i64(s, f.has_last[i] ? f.last[i] : 0); }
    put_u8(s, f.hit);
    put_u8(s, f.has_upto);
    put_i64(s, f.has_upto ? f.upto : 0);
    return;
  }
  put_i64(s, f.count);
  put_u8(s, f.has_first);
  put_i64(s, f.has_first ? f.first_ts : 0);
  if (kind == TRAIT_SLOT) {
    put_u8(s, f.has_raw);
    if (f.has_raw) {
      put_i64(s, f.raw_ts);
      put_text(s, f.raw_mid);
      s.append(f.raw_val.data(), f.raw_val.size());
    }
    return;
  }
  put_u8(s, static_cast<u8>(f.paths.size()));
  for (const PathFold& pf : f.paths) {
    put_f64(s, pf.sum);
    put_i64(s, pf.n);
    put_u8(s, (pf.has_min ? 1 : 0) | (pf.has_max ? 2 : 0) | (pf.first.has ? 4 : 0) |
                  (pf.last.has ? 8 : 0) | (pf.has_counts ? 16 : 0));
    if (pf.has_min) put_f64(s, pf.min);
    if (pf.has_max) put_f64(s, pf.max);
    for (const TextAt* t : {&pf.first, &pf.last}) {
      if (!t->has) continue;
      put_i64(s, t->ts);
      put_text(s, t->mid);
      put_text(s, t->text);
    }
    if (pf.has_counts) {
      put_varint(s, pf.counts.size());
      for (const auto& kv : pf.counts) { put_text(s, kv.first); put_i64(s, kv.second); }
    }
  }
}

// --- one property value as kept in an entry (state._values; to_num, to_text) ----------------------

enum Tag : u8 { TAG_NONE = 0, TAG_FALSE, TAG_TRUE, TAG_INT, TAG_FLOAT, TAG_TEXT, TAG_BIG };

struct Cell {  // a decoded value: what to_num and to_text give
  u8 tag = TAG_NONE;
  i64 i = 0;
  double num = 0;
  sv text;
  bool has_num() const { return tag == TAG_INT || tag == TAG_FLOAT || tag == TAG_BIG; }
  bool has_text() const { return tag == TAG_FALSE || tag == TAG_TRUE || tag == TAG_INT || tag == TAG_TEXT || tag == TAG_BIG; }
  double as_num() const { return tag == TAG_INT ? static_cast<double>(i) : num; }
};

inline Cell read_cell(Cursor& c) {
  Cell v;
  v.tag = c.u8_();
  switch (v.tag) {
    case TAG_NONE: case TAG_FALSE: case TAG_TRUE: break;
    case TAG_INT: v.i = c.i64_(); break;
    case TAG_FLOAT: v.num = c.f64_(); break;
    case TAG_TEXT: v.text = c.text(); break;
    case TAG_BIG: v.num = c.f64_(); v.text = c.text(); break;
    default: bad_state("an unknown value tag in a kernel state");
  }
  return v;
}

inline Cell cell_at(const View& v, u32 i, int path) {
  Cursor c = v.cursor(i);
  c.text();
  for (int p = 0; p < path; ++p) read_cell(c);
  return read_cell(c);
}

// to_text of a cell, with the decimal form of an int kept in ``store``
inline sv cell_text(const Cell& v, std::deque<std::string>& store) {
  switch (v.tag) {
    case TAG_FALSE: return "false";
    case TAG_TRUE: return "true";
    case TAG_INT: store.emplace_back(std::to_string(v.i)); return store.back();
    default: return v.text;
  }
}

// --- edits: the entries a call inserts into one section (state.insert, fold, prune) -------------

struct NewRow {
  i64 ts;
  u32 mid_off, mid_len, pay_off, pay_len;  // in the call's arena
};

struct Edit {
  bool active = false;
  View old;
  u32 lo = 0;  // old entries [0, lo) have been folded or dropped
  std::vector<NewRow> added;  // sorted by (ts, mid); none equal to a remaining old entry
};

struct Counts {  // the value counts of one window of one slot's path (and its fold), this call
  i64 slot = 0;
  int path = 0;
  u32 lo = 0, hi = 0;
  bool folds = false;
  std::vector<std::pair<sv, i64>> counts;  // sorted by text
};

struct Work {
  std::vector<signed char> res;  // -1: no result yet
  std::vector<i64> wake;
  std::vector<u8> has_wake;
  std::vector<Section> slot_sec, seq_sec;
  std::vector<Edit> slot_edit, seq_edit;
  std::vector<Fold> slot_fold, seq_fold;
  std::vector<int> touched_slots, touched_seqs;
  std::vector<u8> slot_touched, seq_touched;
  std::vector<u8> matched;
  Bytes arena, scratch, foldb, header;
  std::vector<std::pair<size_t, size_t>> spans;
  std::deque<std::string> texts;
  std::vector<PyObject*> keep;
  std::vector<u8> seq_done;
  std::vector<Fold> seq_now;  // a sequence's machine at now (executor._seq_fold)
  std::vector<u8> moved, dirty;
  std::vector<Counts> counts;  // counts[0, counts_used) are this call's
  size_t counts_used = 0;
  std::vector<sv> texts_of;
  std::deque<std::vector<Value>> lists;  // the lists of this call's values
  std::vector<i64> slot_now, seq_now_at;  // after(now) of a slot's / sequence's entries, or -1
  const u8* input = nullptr;
  size_t header_len = 0;  // of the input's results and timers (0: not a kernel state of ours)
  PyObject* scores = nullptr;
  PyObject* clusters = nullptr;
  PyObject* cluster_ids = nullptr;

  ~Work() { release(); }
  void release() {
    for (PyObject* o : keep) Py_DECREF(o);
    keep.clear();
    Py_CLEAR(scores);
    Py_CLEAR(clusters);
    Py_CLEAR(cluster_ids);
  }
  void reset(const Program& P) {
    release();
    size_t nr = P.nrules(), ns = P.slots.size(), nq = P.seqs.size();
    res.assign(nr, -1);
    wake.assign(nr, 0);
    has_wake.assign(nr, 0);
    if (slot_sec.size() != ns) slot_sec.resize(ns);
    if (seq_sec.size() != nq) seq_sec.resize(nq);
    for (Section& sec : slot_sec) { sec.present = false; sec.parsed = true; sec.view_.n = 0; sec.view_.has_fold = false; }
    for (Section& sec : seq_sec) { sec.present = false; sec.parsed = true; sec.view_.n = 0; sec.view_.has_fold = false; }
    if (slot_edit.size() != ns) slot_edit.resize(ns);
    if (seq_edit.size() != nq) seq_edit.resize(nq);
    for (auto& e : slot_edit) { e.active = false; e.added.clear(); }
    for (auto& e : seq_edit) { e.active = false; e.added.clear(); }
    slot_fold.resize(ns);
    seq_fold.resize(nq);
    for (auto& f : slot_fold) f.loaded = false;
    for (auto& f : seq_fold) f.loaded = false;
    touched_slots.clear();
    touched_seqs.clear();
    slot_touched.assign(ns, 0);
    seq_touched.assign(nq, 0);
    matched.assign(P.matchers.size(), 0);
    arena.clear();
    scratch.clear();
    if (texts.size() > 4096) texts.clear();  // (views into it live for one call)
    seq_done.assign(nq, 0);
    slot_now.assign(ns, -1);
    seq_now_at.assign(nq, -1);
    counts_used = 0;
    lists.clear();
    seq_now.resize(nq);
    input = nullptr;
    header_len = 0;
  }
};

// Loads a state of this program's rule set; false when it is of another format or rule set
// (the caller converts it, as SegmentProgram._load does, and loads the result).
inline bool load(const Program& P, Work& W, const u8* data, size_t len) {
  if (len < P.header.size() + 3 || std::memcmp(data, P.header.data(), P.header.size()) != 0) return false;
  Cursor c{data + P.header.size(), data + len};
  c.u8_();  // flags
  size_t nr = c.u16_();
  if (nr != P.nrules()) return false;
  size_t nb = (nr + 7) / 8;
  sv have = c.bytes(nb), value = c.bytes(nb);
  for (size_t j = 0; j < nb; ++j) {
    u8 h = static_cast<u8>(have[j]), v = static_cast<u8>(value[j]);
    if (!h) continue;
    for (size_t i = j * 8; i < std::min(nr, j * 8 + 8); ++i)
      if ((h >> (i % 8)) & 1) W.res[i] = (v >> (i % 8)) & 1;
  }
  size_t nw = c.u16_();
  c.need(10 * nw);
  for (size_t j = 0; j < nw; ++j, c.p += 10) {
    u16 i = ld_u16(c.p);
    if (i >= nr) bad_state("a timer of an unknown rule in a kernel state");
    W.wake[i] = ld_i64(c.p + 2);
    W.has_wake[i] = 1;
  }
  size_t ns = c.u16_();
  W.header_len = c.p - data;
  for (size_t j = 0; j < ns; ++j) {
    const u8* start = c.p;
    u8 kind = c.u8_();
    u16 index = c.u16_();
    const std::string* prefix;
    Section* sec;
    if (kind == SEQ_SECTION) {
      if (index >= P.seqs.size()) return false;
      prefix = &P.seqs[index].prefix;
      sec = &W.seq_sec[index];
    } else {
      if (index >= P.slots.size() || P.slots[index].kind != kind) return false;
      prefix = &P.slots[index].prefix;
      sec = &W.slot_sec[index];
    }
    c.p = start;
    c.need(prefix->size() + 4);
    // the rule set's fingerprint fixes the layout: the kind, index and key id are checked
    if (ld_u64(c.p + 3) != ld_u64(reinterpret_cast<const u8*>(prefix->data()) + 3)) return false;
    c.p += prefix->size();
    u32 body = c.u32_();
    c.need(body);
    sec->present = true;
    sec->parsed = false;
    sec->kind = kind;
    sec->start = start;
    sec->len = static_cast<u32>(c.p + body - start);
    sec->body = c.p;
    sec->body_len = body;
    c.p += body;
  }
  if (c.p != c.end) bad_state("trailing bytes after a kernel state");
  W.input = data;
  return true;
}

// --- recording an event (program._record) --------------------------------------------------------

// The offset of a member (slot) field of ``type`` named ``name``, or -1 (a property, a plain
// attribute, a class whose attribute lookup is not the generic one: read through getattr)
inline Py_ssize_t member_offset(PyTypeObject* type, PyObject* name) {
  if (type->tp_getattro != PyObject_GenericGetAttr) return -1;
  PyObject* d = PyObject_GetAttr(reinterpret_cast<PyObject*>(type), name);
  if (!d) { PyErr_Clear(); return -1; }
  Py_ssize_t off = -1;
  if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {  // a data descriptor: an instance dict cannot shadow it
    PyMemberDescrObject* md = reinterpret_cast<PyMemberDescrObject*>(d);
    PyMemberDef* m = md->d_member;
    bool own = PyType_IsSubtype(type, md->d_common.d_type);  // (the descriptor's check)
    if (own && (m->type == T_OBJECT_EX || m->type == T_OBJECT) && !(m->flags & READ_RESTRICTED))
      off = m->offset;
  }
  Py_DECREF(d);
  return off;
}

// found.picked*: where ``t``'s struct of picked properties lies, its keys and their offsets,
// when ``t`` names one (``__segflow_picked__``) and all of it is slots; otherwise left unset
inline void picked_layout(const Program& P, PyTypeObject* t, EventLayout& found) {
  PyObject* spec = PyObject_GetAttrString(reinterpret_cast<PyObject*>(t), "__segflow_picked__");
  if (!spec) { PyErr_Clear(); return; }
  PyObject* keys = nullptr;
  PyObject* fields = nullptr;
  std::vector<std::pair<PyObject*, Py_ssize_t>> out;
  Py_ssize_t at = -1;
  PyTypeObject* st = nullptr;
  bool ok = P.unset && PyTuple_Check(spec) && PyTuple_GET_SIZE(spec) == 2 &&
            PyUnicode_Check(PyTuple_GET_ITEM(spec, 0)) && PyType_Check(PyTuple_GET_ITEM(spec, 1));
  if (ok) {
    at = member_offset(t, PyTuple_GET_ITEM(spec, 0));
    st = reinterpret_cast<PyTypeObject*>(PyTuple_GET_ITEM(spec, 1));
    keys = PyObject_GetAttrString(reinterpret_cast<PyObject*>(st), "__struct_encode_fields__");
    fields = PyObject_GetAttrString(reinterpret_cast<PyObject*>(st), "__struct_fields__");
    ok = at >= 0 && keys && fields && PyTuple_Check(keys) && PyTuple_Check(fields) &&
         PyTuple_GET_SIZE(keys) == PyTuple_GET_SIZE(fields);
  }
  for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(keys); ++i) {
    PyObject* key = PyTuple_GET_ITEM(keys, i);
    Py_ssize_t o = member_offset(st, PyTuple_GET_ITEM(fields, i));
    ok = o >= 0 && PyUnicode_Check(key);
    if (ok) out.emplace_back(own(key), o);
  }
  PyErr_Clear();
  if (ok) {
    found.picked = at;
    found.picked_type = reinterpret_cast<PyTypeObject*>(own(reinterpret_cast<PyObject*>(st)));
    found.picked_fields = std::move(out);
  } else {
    for (auto& kv : out) Py_DECREF(kv.first);
  }
  Py_XDECREF(keys);
  Py_XDECREF(fields);
  Py_DECREF(spec);
}

// The offsets of the fields the kernel reads in ``obj``'s exact type, found once a type and kept
// (the program holds the type); nullptr past MAX_EVENT_TYPES types: every field through getattr
inline const EventLayout* event_layout(const Program& P, PyObject* obj) {
  PyTypeObject* t = Py_TYPE(obj);
  for (int i = 0; i < P.nlayouts; ++i)
    if (P.layouts[i].type == t) return &P.layouts[i];
  if (P.nlayouts == MAX_EVENT_TYPES) return nullptr;
  EventLayout found;
  PyObject* names[N_EVENT_FIELDS] = {P.a_type, P.a_event, P.a_name, P.a_user_id, P.a_properties,
                                     P.a_traits, P.a_timestamp_ms, P.a_message_id};
  for (int f = 0; f < N_EVENT_FIELDS; ++f) found.off[f] = member_offset(t, names[f]);
  picked_layout(P, t, found);
  // (a lookup may run Python code, e.g. a metaclass's, which may call the program again)
  for (int i = 0; i < P.nlayouts; ++i) {
    if (P.layouts[i].type == t) {
      Py_XDECREF(reinterpret_cast<PyObject*>(found.picked_type));
      for (auto& kv : found.picked_fields) Py_DECREF(kv.first);
      return &P.layouts[i];
    }
  }
  if (P.nlayouts == MAX_EVENT_TYPES) {
    Py_XDECREF(reinterpret_cast<PyObject*>(found.picked_type));
    for (auto& kv : found.picked_fields) Py_DECREF(kv.first);
    return nullptr;
  }
  Py_INCREF(reinterpret_cast<PyObject*>(t));
  found.type = t;
  P.layouts[P.nlayouts] = std::move(found);
  return &P.layouts[P.nlayouts++];
}

struct Event {
  PyObject* obj;
  u8 type = T_OTHER;
  i64 ts = 0;
  sv mid;
  PyObject* type_obj = nullptr;
  PyObject* mid_obj = nullptr;
  PyObject* name = nullptr;  // track name (event.event)
  PyObject* page_name = nullptr;
  PyObject* user_id = nullptr;
  PyObject* props = nullptr;
  PyObject* traits = nullptr;
  const Program* P;
  const EventLayout* lay;  // event_layout(obj)

  Event(const Program* prog, PyObject* o) : obj(o), P(prog), lay(event_layout(*prog, o)) {}
  ~Event() {
    Py_XDECREF(type_obj); Py_XDECREF(mid_obj); Py_XDECREF(name); Py_XDECREF(page_name);
    Py_XDECREF(user_id); Py_XDECREF(props); Py_XDECREF(traits);
  }
  PyObject* attr(PyObject*& slot, PyObject* name_, EventField field) {
    if (!slot) {
      if (lay && lay->off[field] >= 0) {
        slot = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + lay->off[field]);
        Py_XINCREF(slot);  // (NULL, an unset slot: getattr raises its AttributeError)
      }
      if (!slot) slot = PyObject_GetAttr(obj, name_);
      if (!slot) throw PyError();
    }
    return slot;
  }
  PyObject* properties() {
    if (!props && lay && lay->picked >= 0) {
      PyObject* st = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(obj) + lay->picked);
      if (st && Py_TYPE(st) == lay->picked_type) {
        PyObject* d = PyDict_New();
        if (!d) throw PyError();
        for (const auto& kv : lay->picked_fields) {
          PyObject* v = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(st) + kv.second);
          if (v && v != P->unset && PyDict_SetItem(d, kv.first, v) < 0) { Py_DECREF(d); throw PyError(); }
        }
        props = d;
      }
    }
    return attr(props, P->a_properties, F_PROPERTIES);
  }
  PyObject* trait_values() { return attr(traits, P->a_traits, F_TRAITS); }
};

inline u8 event_type(PyObject* t) {
  if (!PyUnicode_Check(t)) return T_OTHER;
  sv s = utf8_of(t);
  if (s == "track") return T_TRACK;
  if (s == "page") return T_PAGE;
  if (s == "screen") return T_SCREEN;
  if (s == "identify") return T_IDENTIFY;
  return T_OTHER;
}

inline bool filter_matches(const Program& P, int f, PyObject* props) {  // values.filter_matches
  const FilterDef& d = P.filters[f];
  switch (d.kind) {
    case F_CMP: {
      PyObject* v = py_get_path(props, d.path);
      return v && py_compare(v, d.op, d.lit);
    }
    case F_EXISTS: {
      PyObject* v = py_get_path(props, d.path);
      return v && v != Py_None;
    }
    case F_AND:
      for (int i : d.items) if (!filter_matches(P, i, props)) return false;
      return true;
    case F_OR:
      for (int i : d.items) if (filter_matches(P, i, props)) return true;
      return false;
    default:
      return !filter_matches(P, d.items[0], props);
  }
}

inline bool selector_matches(const Program& P, const MatcherDef& m, Event& ev) {  // values.selector_matches
  bool ok;
  switch (m.kind) {
    case M_TRACK: ok = ev.type == T_TRACK; break;  // the name is the bucket's
    case M_PAGE: case M_SCREEN: {
      ok = ev.type == (m.kind == M_PAGE ? T_PAGE : T_SCREEN);
      if (ok && m.name) {
        int eq = PyObject_RichCompareBool(ev.attr(ev.page_name, P.a_name, F_NAME), m.name, Py_EQ);
        if (eq < 0) throw PyError();
        ok = eq == 1;
      }
      break;
    }
    case M_IDENTIFY: ok = ev.type == T_IDENTIFY; break;
    case M_IDENTIFIED: ok = ev.attr(ev.user_id, P.a_user_id, F_USER_ID) != Py_None; break;
    case M_TRAIT: ok = ev.type == T_IDENTIFY && py_get_path(ev.trait_values(), m.trait) != nullptr; break;
    default: ok = true;
  }
  return ok && (m.filter < 0 || filter_matches(P, m.filter, ev.properties()));
}

// a raw JSON value as state._values keeps it (None for anything else)
inline PyObject* kept(PyObject* v) {
  if (!v) return Py_None;
  if (PyUnicode_Check(v) || PyLong_Check(v) || PyFloat_Check(v) || PyDict_Check(v) || PyList_Check(v)) return v;
  return Py_None;  // (bool is an int)
}

inline void encode_cell(Bytes& s, PyObject* v) {
  if (PyBool_Check(v)) { put_u8(s, v == Py_True ? TAG_TRUE : TAG_FALSE); return; }
  if (PyLong_Check(v)) {
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred()) throw PyError();
    if (!overflow) { put_u8(s, TAG_INT); put_i64(s, n); return; }
    double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) throw PyError();
    PyObject* text = PyObject_Str(v);
    if (!text) throw PyError();
    put_u8(s, TAG_BIG);
    put_f64(s, d);
    try { put_text(s, utf8_of(text)); } catch (...) { Py_DECREF(text); throw; }
    Py_DECREF(text);
    return;
  }
  if (PyFloat_Check(v)) { put_u8(s, TAG_FLOAT); put_f64(s, PyFloat_AS_DOUBLE(v)); return; }
  if (PyUnicode_Check(v)) { put_u8(s, TAG_TEXT); put_text(s, utf8_of(v)); return; }
  put_u8(s, TAG_NONE);
}

inline void encode_trait(const Program& P, const SlotDef& slot, Bytes& s, PyObject* raw) {  // format.encode_trait
  u8 flags = raw != Py_None ? 1 : 0;
  double time = 0;
  if (slot.needs_time) {
    double num;
    if (py_num(raw, num)) { time = num; flags |= 2; }
    else if (PyUnicode_Check(raw)) {
      PyObject* t = PyObject_CallOneArg(P.to_time_ms, raw);
      if (!t) throw PyError();
      if (t != Py_None) { time = PyFloat_AsDouble(t); flags |= 2; }
      Py_DECREF(t);
      if (PyErr_Occurred()) throw PyError();
    }
  }
  put_u8(s, flags);
  if (flags & 2) put_f64(s, time);
  size_t at = s.size();
  std::memset(s.extend(slot.nbits), 0, slot.nbits);
  for (size_t i = 0; i < slot.preds.size(); ++i)
    if (raw != Py_None && py_compare(raw, slot.preds[i].op, slot.preds[i].lit)) s.p[at + i / 8] |= static_cast<u8>(1 << (i % 8));
  PyObject* blob = PyObject_CallOneArg(P.encode_raw, raw);
  if (!blob) throw PyError();
  char* p;
  Py_ssize_t n;
  if (PyBytes_AsStringAndSize(blob, &p, &n) < 0) { Py_DECREF(blob); throw PyError(); }
  put_varint(s, n);
  s.append(p, n);
  Py_DECREF(blob);
}

inline sv arena_sv(const Work& W, u32 off, u32 len) { return sv(reinterpret_cast<const char*>(W.arena.data()) + off, len); }

inline sv row_mid(const Work& W, const NewRow& r) { return arena_sv(W, r.mid_off, r.mid_len); }

// state.insert: keep (ts, message id) order, ignore a repeated (ts, message id)
inline void insert(Work& W, Edit& e, const NewRow& r) {
  sv mid = row_mid(W, r);
  const View& v = e.old;
  bool after_old = e.lo >= v.n || cmp_key(r.ts, mid, v.t(v.n - 1), v.mid(v.n - 1)) > 0;
  if (after_old && (e.added.empty() || cmp_key(r.ts, mid, e.added.back().ts, row_mid(W, e.added.back())) > 0)) {
    e.added.push_back(r);  // the usual case: the newest event
    return;
  }
  if (!after_old) {
    for (u32 i = v.first_at(r.ts, e.lo); i < v.n && v.t(i) == r.ts; ++i) {
      int c = v.mid(i).compare(mid);
      if (c == 0) return;
      if (c > 0) break;
    }
  }
  auto pos = std::lower_bound(e.added.begin(), e.added.end(), r, [&](const NewRow& a, const NewRow& b) {
    return cmp_key(a.ts, row_mid(W, a), b.ts, row_mid(W, b)) < 0;
  });
  if (pos != e.added.end() && pos->ts == r.ts && row_mid(W, *pos) == mid) return;
  e.added.insert(pos, r);
}

// The entries with ts <= cut, in (ts, mid) order: old [lo, k) merged with added [0, j).
template <class F>
inline void take_upto(Work& W, Edit& e, i64 cut, F&& each) {
  const View& v = e.old;
  u32 k = e.lo < v.n ? v.after(cut, e.lo) : e.lo;
  size_t j = 0;
  while (j < e.added.size() && e.added[j].ts <= cut) ++j;
  u32 a = e.lo;
  size_t b = 0;
  while (a < k || b < j) {
    bool old_first;
    if (a == k) old_first = false;
    else if (b == j) old_first = true;
    else old_first = cmp_key(v.t(a), v.mid(a), e.added[b].ts, row_mid(W, e.added[b])) < 0;
    if (old_first) {
      Cursor c = v.cursor(a);
      sv mid = c.text();
      each(v.t(a), mid, c);
      ++a;
    } else {
      const NewRow& r = e.added[b];
      const u8* p = W.arena.data() + r.pay_off;
      Cursor c{p, p + r.pay_len};
      each(r.ts, row_mid(W, r), c);
      ++b;
    }
  }
  e.lo = k;
  e.added.erase(e.added.begin(), e.added.begin() + j);
}

inline bool has_upto(const Work& W, const Edit& e, i64 cut) {
  return (e.lo < e.old.n && e.old.t(e.lo) <= cut) || (!e.added.empty() && e.added[0].ts <= cut);
}

inline void text_at(TextAt& t, i64 ts, sv mid, sv text) {
  t.has = true;
  t.ts = ts;
  t.mid.assign(mid.data(), mid.size());
  t.text.assign(text.data(), text.size());
}

inline void count_text(PathFold& pf, sv text) {
  pf.has_counts = true;
  auto it = std::lower_bound(pf.counts.begin(), pf.counts.end(), text,
                             [](const std::pair<std::string, i64>& a, sv b) { return sv(a.first) < b; });
  if (it != pf.counts.end() && sv(it->first) == text) ++it->second;
  else pf.counts.emplace(it, std::string(text), 1);
}

// state.add_to_fold / _add_value, for an event slot's entry
inline void add_to_fold(Work& W, Fold& f, const SlotDef& slot, i64 ts, sv mid, Cursor& c) {
  f.count += 1;
  if (!f.has_first || ts < f.first_ts) f.first_ts = ts;
  f.has_first = true;
  if (slot.kind == TRAIT_SLOT) {
    if (!f.has_raw || cmp_key(ts, mid, f.raw_ts, f.raw_mid) > 0) {
      f.has_raw = true;
      f.raw_ts = ts;
      f.raw_mid.assign(mid.data(), mid.size());
      size_t n = trait_value_size(c.p, c.end, slot.nbits);
      f.raw_val.assign(reinterpret_cast<const char*>(c.p), n);
    }
    return;
  }
  size_t np = slot.paths.size();
  if (f.paths.size() < np) f.paths.resize(np);
  for (size_t p = 0; p < np; ++p) {
    Cell v = read_cell(c);
    PathFold& pf = f.paths[p];
    if (v.has_num()) {
      double num = v.as_num();
      pf.sum += num;
      pf.n += 1;
      pf.min = !pf.has_min ? num : (num < pf.min ? num : pf.min);
      pf.max = !pf.has_max ? num : (num > pf.max ? num : pf.max);
      pf.has_min = pf.has_max = true;
    }
    if (v.has_text()) {
      sv text = cell_text(v, W.texts);
      if (!pf.first.has || cmp_key(ts, mid, pf.first.ts, pf.first.mid) < 0) text_at(pf.first, ts, mid, text);
      if (!pf.last.has || cmp_key(ts, mid, pf.last.ts, pf.last.mid) > 0) text_at(pf.last, ts, mid, text);
      if (slot.counts) count_text(pf, text);
    }
  }
}

inline Fold& slot_fold(Work& W, const Program& P, int s) {
  Fold& f = W.slot_fold[s];
  if (!f.loaded) decode_fold(W.slot_sec[s].view(), P.slots[s].kind, &P.slots[s], f);
  return f;
}

inline Fold& seq_fold(Work& W, const Program& P, int q) {
  Fold& f = W.seq_fold[q];
  if (!f.loaded) decode_fold(W.seq_sec[q].view(), SEQ_SECTION, nullptr, f, P.seqs[q].k);
  return f;
}

// program._compact: fold (or drop) the entries no window can see again
inline void compact_slot(Work& W, const Program& P, int s, i64 now) {
  const SlotDef& slot = P.slots[s];
  Edit& e = W.slot_edit[s];
  i64 cut = now - slot.horizon;
  if (!has_upto(W, e, cut)) return;
  if (!slot.fold) {
    take_upto(W, e, cut, [](i64, sv, Cursor&) {});
    return;
  }
  Fold& f = slot_fold(W, P, s);
  if (!f.has) {
    f.has = true;
    f.paths.assign(slot.kind == TRAIT_SLOT ? 0 : slot.paths.size(), PathFold());
  }
  f.changed = true;
  take_upto(W, e, cut, [&](i64 ts, sv mid, Cursor& c) { add_to_fold(W, f, slot, ts, mid, c); });
}

// executor.step: the sequence machine over one timestamp's events
inline void seq_step(const SeqDef& q, Fold& m, i64 ts, u64 mask) {
  int k = q.k;
  bool anchor_has = m.has_last[k - 1];
  i64 anchor = m.last[k - 1];
  if (q.has_absent && ((mask >> k) & 1) && anchor_has) {
    if (ts > anchor && (!q.absent_has_within || ts <= anchor + q.absent_within)) m.hit = true;
  }
  bool new_has_last = anchor_has;
  i64 new_last = anchor;
  // new = list(fold.last); steps read the old values, so update from the last step back
  for (int idx = k - 1; idx >= 0; --idx) {
    if (!((mask >> idx) & 1)) continue;
    bool set = idx == 0 || (m.has_last[idx - 1] && (!q.has_within[idx] || ts - m.last[idx - 1] <= q.within[idx]));
    if (set) {
      m.has_last[idx] = 1;
      m.last[idx] = ts;
      if (idx == k - 1) { new_has_last = true; new_last = ts; }
    }
  }
  if (new_has_last != anchor_has || (anchor_has && new_last != anchor)) m.hit = false;
}

inline void new_machine(const SeqDef& q, Fold& m) {
  m.has_last.assign(q.k, 0);
  m.last.assign(q.k, 0);
  m.hit = false;
}

// program._compact_seq
inline void compact_seq(Work& W, const Program& P, int qi, i64 now) {
  const SeqDef& q = P.seqs[qi];
  Edit& e = W.seq_edit[qi];
  i64 cut = now - q.horizon;
  if (!has_upto(W, e, cut)) return;
  Fold& f = seq_fold(W, P, qi);
  if (!f.has) { new_machine(q, f); f.has_upto = false; }
  bool group = false;
  i64 group_ts = 0;
  u64 mask = 0;
  take_upto(W, e, cut, [&](i64 ts, sv, Cursor& c) {
    if (group && ts != group_ts) seq_step(q, f, group_ts, mask), mask = 0;
    group = true;
    group_ts = ts;
    mask |= c.varint();
  });
  seq_step(q, f, group_ts, mask);
  i64 last = group_ts;
  f.upto = std::max(last, f.has_upto ? f.upto : last);
  f.has_upto = true;
  f.has = true;
  f.changed = true;
}

inline NewRow new_row(Work& W, i64 ts, sv mid) {
  NewRow r;
  r.ts = ts;
  r.mid_off = static_cast<u32>(W.arena.size());
  r.mid_len = static_cast<u32>(mid.size());
  W.arena.append(mid.data(), mid.size());
  r.pay_off = static_cast<u32>(W.arena.size());
  return r;
}

inline Edit& begin_edit(Work& W, std::vector<Edit>& edits, std::vector<Section>& secs, int i) {
  Edit& e = edits[i];
  if (!e.active) {
    e.active = true;
    e.old = secs[i].present ? secs[i].view() : View();
    e.lo = 0;
    e.added.clear();
  }
  return e;
}

inline void touch(std::vector<u8>& flags, std::vector<int>& list, int i) {
  if (!flags[i]) { flags[i] = 1; list.push_back(i); }
}

inline void record(const Program& P, Work& W, PyObject* obj, i64 now) {
  Event ev(&P, obj);
  ev.type = event_type(ev.attr(ev.type_obj, P.a_type, F_TYPE));
  PyObject* tso = nullptr;
  ev.ts = PyLong_AsLong(ev.attr(tso, P.a_timestamp_ms, F_TIMESTAMP_MS));  // (long is 64-bit)
  Py_DECREF(tso);
  if (ev.ts == -1 && PyErr_Occurred()) throw PyError();
  ev.mid = utf8_of(ev.attr(ev.mid_obj, P.a_message_id, F_MESSAGE_ID));
  const Bucket* bucket = &P.buckets[0];
  if (ev.type == T_TRACK) {
    PyObject* name = ev.attr(ev.name, P.a_event, F_EVENT);
    PyObject* found = PyDict_GetItemWithError(P.bucket_of, name);
    if (!found && PyErr_Occurred()) {
      if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw PyError();
      PyErr_Clear();  // an unhashable name is read by no rule
    }
    if (found) bucket = &P.buckets[PyLong_AsLong(found)];
  }
  for (int m : bucket->matchers) W.matched[m] = selector_matches(P, P.matchers[m], ev);
  for (int m : bucket->never) W.matched[m] = 0;
  for (int s : bucket->slots) {
    const SlotDef& slot = P.slots[s];
    if (!W.matched[slot.matcher]) continue;
    NewRow r = new_row(W, ev.ts, ev.mid);
    PyObject* source = slot.kind == TRAIT_SLOT ? ev.trait_values() : ev.properties();
    if (slot.kind == TRAIT_SLOT) {
      encode_trait(P, slot, W.arena, kept(py_get_path(source, slot.paths[0])));
    } else {
      for (const auto& path : slot.paths) encode_cell(W.arena, kept(py_get_path(source, path)));
    }
    r.pay_len = static_cast<u32>(W.arena.size() - r.pay_off);
    Edit& e = begin_edit(W, W.slot_edit, W.slot_sec, s);
    insert(W, e, r);
    compact_slot(W, P, s, now);
    touch(W.slot_touched, W.touched_slots, s);
  }
  for (int qi : bucket->seqs) {
    const SeqDef& q = P.seqs[qi];
    u64 mask = 0;
    for (size_t i = 0; i < q.matchers.size(); ++i)
      if (W.matched[q.matchers[i]]) mask |= u64(1) << i;
    if (!mask) continue;
    NewRow r = new_row(W, ev.ts, ev.mid);
    put_varint(W.arena, mask);
    r.pay_len = static_cast<u32>(W.arena.size() - r.pay_off);
    Edit& e = begin_edit(W, W.seq_edit, W.seq_sec, qi);
    insert(W, e, r);
    compact_seq(W, P, qi, now);
    touch(W.seq_touched, W.touched_seqs, qi);
  }
}

// --- writing edited sections ---------------------------------------------------------------------

// Copies the times and row offsets of old entries [a, end) to a new section's columns (times
// rebased on ``first`` when 32-bit, offsets moved by ``shift``), advancing the column pointers.
inline void copy_run(const View& v, u32 a, u32 end, u8 flags, i64 first, u32 shift, u8*& ts_p, u8*& off_p) {
  size_t k = end - a;
  if ((flags & 1) && v.ts32) {
    u32 delta = static_cast<u32>(static_cast<u64>(v.base) - static_cast<u64>(first));
    const u8* in = v.ts + 4 * static_cast<size_t>(a);
    if (delta == 0) std::memcpy(ts_p, in, 4 * k);
    else
      for (size_t i = 0; i < k; ++i) { u32 d = ld_u32(in + 4 * i) + delta; std::memcpy(ts_p + 4 * i, &d, 4); }
    ts_p += 4 * k;
  } else if (!(flags & 1) && !v.ts32) {
    std::memcpy(ts_p, v.ts + 8 * static_cast<size_t>(a), 8 * k);
    ts_p += 8 * k;
  } else {
    for (u32 i = a; i < end; ++i) {
      i64 t = v.t(i);
      if (flags & 1) { u32 d = static_cast<u32>(static_cast<u64>(t) - static_cast<u64>(first)); std::memcpy(ts_p, &d, 4); ts_p += 4; }
      else { std::memcpy(ts_p, &t, 8); ts_p += 8; }
    }
  }
  if ((flags & 2) && v.off16) {
    const u8* in = v.off + 2 * static_cast<size_t>(a);
    if (shift == 0) std::memcpy(off_p, in, 2 * k);
    else
      for (size_t i = 0; i < k; ++i) { u16 o = static_cast<u16>(ld_u16(in + 2 * i) + shift); std::memcpy(off_p + 2 * i, &o, 2); }
    off_p += 2 * k;
  } else {
    for (u32 i = a; i < end; ++i) {
      u32 o = v.offset(i) + shift;
      if (flags & 2) { u16 o16 = static_cast<u16>(o); std::memcpy(off_p, &o16, 2); off_p += 2; }
      else { std::memcpy(off_p, &o, 4); off_p += 4; }
    }
  }
}

// Writes a touched section: the old entries [lo, n) merged with the added rows (runs of old
// rows copied as blocks), the columns in their narrowest widths, then the fold.
inline void encode_edit(Work& W, const Edit& e, const std::string& prefix, const Fold* fold, u8 kind, Bytes& out) {
  const View& v = e.old;
  u32 lo = std::min(e.lo, v.n);
  size_t n_old = v.n - lo, n = n_old + e.added.size();
  i64 first = 0, last = 0;
  if (n_old && !e.added.empty()) {
    first = std::min(v.t(lo), e.added.front().ts);
    last = std::max(v.t(v.n - 1), e.added.back().ts);
  } else if (n_old) {
    first = v.t(lo);
    last = v.t(v.n - 1);
  } else if (n) {
    first = e.added.front().ts;
    last = e.added.back().ts;
  }
  size_t rows_len = n_old ? v.rows_len - v.offset(lo) : 0;
  if (n_old && v.offset(lo) > v.rows_len) bad_state("a row offset beyond the rows of a kernel state");
  for (const NewRow& r : e.added) rows_len += varint_size(r.mid_len) + r.mid_len + r.pay_len;
  u8 flags = body_flags(static_cast<u32>(n), first, last, rows_len);
  size_t tw = (flags & 1) ? 4 : 8, ow = (flags & 2) ? 2 : 4;
  const u8* fold_bytes = nullptr;
  size_t fold_len = 0;
  bool has_fold;
  if (fold && fold->changed) {
    has_fold = fold->has;
    if (has_fold) {
      W.foldb.clear();
      encode_fold(W.foldb, *fold, kind);
      fold_bytes = W.foldb.data();
      fold_len = W.foldb.size();
    }
  } else {
    has_fold = v.has_fold;
    fold_bytes = v.fold;
    fold_len = v.fold_len;
  }
  size_t body = 4 + 1 + ((flags & 1) ? 8 : 0) + n * (tw + ow) + 4 + rows_len + 1 + (has_fold ? 4 + fold_len : 0);
  if (body > 0xFFFFFFFFull) bad_state("a section of a kernel state beyond 4 GiB");
  out.append(prefix.data(), prefix.size());
  put_u32(out, static_cast<u32>(body));
  u8* b = out.extend(body);
  u32 n32 = static_cast<u32>(n);
  std::memcpy(b, &n32, 4);
  b[4] = flags;
  u8* ts_p = b + 5;
  if (flags & 1) { std::memcpy(ts_p, &first, 8); ts_p += 8; }
  u8* off_p = ts_p + n * tw;
  u8* rows_len_p = off_p + n * ow;
  u32 rl = static_cast<u32>(rows_len);
  std::memcpy(rows_len_p, &rl, 4);
  u8* rows = rows_len_p + 4;
  size_t cur = 0;  // the next row's offset
  auto put_entry = [&](i64 t, size_t off) {
    if (flags & 1) {
      u32 d = static_cast<u32>(static_cast<u64>(t) - static_cast<u64>(first));
      std::memcpy(ts_p, &d, 4);
      ts_p += 4;
    } else {
      std::memcpy(ts_p, &t, 8);
      ts_p += 8;
    }
    if (flags & 2) {
      u16 o = static_cast<u16>(off);
      std::memcpy(off_p, &o, 2);
      off_p += 2;
    } else {
      u32 o = static_cast<u32>(off);
      std::memcpy(off_p, &o, 4);
      off_p += 4;
    }
  };
  u32 a = lo;
  size_t bi = 0;
  while (a < v.n || bi < e.added.size()) {
    bool old_first;
    if (a == v.n) old_first = false;
    else if (bi == e.added.size()) old_first = true;
    else old_first = cmp_key(v.t(a), v.mid(a), e.added[bi].ts, row_mid(W, e.added[bi])) < 0;
    if (old_first) {
      u32 end = v.n;  // a run of old entries (those before the next added row), one block
      if (bi < e.added.size()) {
        const NewRow& r = e.added[bi];
        sv mid = row_mid(W, r);
        end = v.first_at(r.ts, a + 1);
        while (end < v.n && v.t(end) == r.ts && v.mid(end).compare(mid) < 0) ++end;
      }
      const u8* from = v.row(a);
      const u8* to = v.row_end(end - 1);
      if (to < from || cur + static_cast<size_t>(to - from) > rows_len) bad_state("row offsets out of order in a kernel state");
      u32 base = v.offset(a);
      copy_run(v, a, end, flags, first, static_cast<u32>(cur) - base, ts_p, off_p);
      std::memcpy(rows + cur, from, to - from);
      cur += to - from;
      a = end;
    } else {
      const NewRow& r = e.added[bi++];
      put_entry(r.ts, cur);
      u8* q = write_varint(rows + cur, r.mid_len);
      std::memcpy(q, W.arena.data() + r.mid_off, r.mid_len);
      q += r.mid_len;
      std::memcpy(q, W.arena.data() + r.pay_off, r.pay_len);
      cur = (q + r.pay_len) - rows;
    }
  }
  u8* f = rows + rows_len;
  *f++ = has_fold ? 1 : 0;
  if (has_fold) {
    u32 fl = static_cast<u32>(fold_len);
    std::memcpy(f, &fl, 4);
    std::memcpy(f + 4, fold_bytes, fold_len);
  }
}

// Writes every touched section to the scratch buffer and points the sections at it.
inline void flush_edits(const Program& P, Work& W) {
  W.spans.clear();
  for (int s : W.touched_slots) {
    size_t at = W.scratch.size();
    const Fold* f = W.slot_fold[s].loaded ? &W.slot_fold[s] : nullptr;
    encode_edit(W, W.slot_edit[s], P.slots[s].prefix, f, P.slots[s].kind, W.scratch);
    W.spans.emplace_back(at, W.scratch.size() - at);
  }
  for (int q : W.touched_seqs) {
    size_t at = W.scratch.size();
    const Fold* f = W.seq_fold[q].loaded ? &W.seq_fold[q] : nullptr;
    encode_edit(W, W.seq_edit[q], P.seqs[q].prefix, f, SEQ_SECTION, W.scratch);
    W.spans.emplace_back(at, W.scratch.size() - at);
  }
  size_t j = 0;
  auto repoint = [&](Section& sec, size_t prefix_len) {
    const u8* start = W.scratch.data() + W.spans[j].first;
    sec.present = true;
    sec.start = start;
    sec.len = static_cast<u32>(W.spans[j].second);
    sec.view_ = parse_body(start + prefix_len + 4, sec.len - static_cast<u32>(prefix_len) - 4);
    sec.parsed = true;
    ++j;
  };
  for (int s : W.touched_slots) {
    repoint(W.slot_sec[s], P.slots[s].prefix.size());
    W.slot_fold[s].changed = false;  // (a loaded fold is the one just written)
  }
  for (int q : W.touched_seqs) {
    repoint(W.seq_sec[q], P.seqs[q].prefix.size());
    W.seq_fold[q].changed = false;
  }
}

// --- evaluation (executor.py) --------------------------------------------------------------------

struct Eval {
  const Program& P;
  Work& W;
  PyObject* profile;
  i64 now;

  const View& slot(i64 s) const { return W.slot_sec[s].view(); }  // empty when absent
  const View& seq_view(i64 q) const { return W.seq_sec[q].view(); }
  // the first entry after ``t`` (the position of now is read by many rules: once per call)
  u32 after(const View& v, i64 s, i64 t, bool seq = false) {
    if (t != now) return v.after(t);
    i64& memo = (seq ? W.seq_now_at : W.slot_now)[s];
    if (memo < 0) memo = v.after(now);
    return static_cast<u32>(memo);
  }

  // executor._seq_fold: the machine at now (its fold, then the entries up to now)
  const Fold& machine(i64 qi) {
    Fold& m = W.seq_now[qi];
    if (W.seq_done[qi]) return m;
    const SeqDef& q = P.seqs[qi];
    const Fold& f = seq_fold(W, P, static_cast<int>(qi));
    if (f.has) { m.has_last = f.has_last; m.last = f.last; m.hit = f.hit; }
    else new_machine(q, m);
    const View& v = seq_view(qi);
    u32 hi = v.after(now);
    u32 i = 0;
    while (i < hi) {
      i64 ts = v.t(i);
      u64 mask = 0;
      while (i < hi && v.t(i) == ts) {
        Cursor c = v.cursor(i);
        c.text();
        mask |= c.varint();
        ++i;
      }
      seq_step(q, m, ts, mask);
    }
    W.seq_done[qi] = 1;
    return m;
  }

  TraitRec trait(i64 s) {  // executor._trait
    const View& v = slot(s);
    u32 upto = after(v, s, now);
    const SlotDef& slot = P.slots[s];
    if (upto) {
      Cursor c = v.cursor(upto - 1);
      c.text();
      return trait_rec(c.p, c.end, slot.nbits);
    }
    Fold& f = slot_fold(W, P, static_cast<int>(s));
    if (f.has && f.has_raw) {
      const u8* p = reinterpret_cast<const u8*>(f.raw_val.data());
      return trait_rec(p, p + f.raw_val.size(), slot.nbits);
    }
    return TraitRec();
  }

  bool first_seen(i64 s, i64& out) {  // executor._first_seen
    const View& v = slot(s);
    bool has = false;
    if (v.n && v.t(0) <= now) { out = v.t(0); has = true; }
    if (v.has_fold && v.fold[8]) {  // the fold's first_ts (at a fixed place)
      i64 folded = ld_i64(v.fold + 9);
      if (!has || folded < out) out = folded;
      has = true;
    }
    return has;
  }

  bool time_of(const NodeDef& value, double& t) {  // executor._time_value
    if (value.code == V_FIRSTSEEN) {
      i64 first;
      if (!first_seen(value.a, first)) return false;
      t = static_cast<double>(first);
      return true;
    }
    TraitRec r = trait(value.a);
    if (!r.has || !(r.flags & 2)) return false;
    t = r.time;
    return true;
  }

  PyObject* mapping(PyObject*& cache, PyObject* name) {
    if (!cache) {
      cache = PyObject_GetAttr(profile, name);
      if (!cache) throw PyError();
    }
    return cache;
  }

  Value py_value(PyObject* o) {  // a score or cluster, typed as values.compare reads it
    Value v;
    if (!o || o == Py_None) { v.kind = o ? Value::NONE : Value::MISSING; return v; }
    if (PyBool_Check(o)) { v.kind = Value::BOOL; v.b = o == Py_True; return v; }
    double num;
    if (py_num(o, num)) { v.kind = Value::NUM; v.num = num; return v; }
    if (PyUnicode_Check(o)) { v.kind = Value::TEXT; v.text = utf8_of(o); return v; }
    if (PyList_Check(o)) {
      std::vector<Value>& items = W.lists.emplace_back();
      for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); ++i) items.push_back(py_value(PyList_GET_ITEM(o, i)));
      v.kind = Value::LIST;
      v.items = &items;
      return v;
    }
    v.kind = Value::OTHER;
    return v;
  }

  Value model_value(PyObject*& cache, PyObject* attr, PyObject* model) {  // profile.scores.get(model)
    PyObject* m = mapping(cache, attr);
    PyObject* got;
    if (PyDict_CheckExact(m)) {
      got = PyDict_GetItemWithError(m, model);
      if (!got && PyErr_Occurred()) throw PyError();
      Py_XINCREF(got);
    } else {
      got = PyObject_CallMethodOneArg(m, P.a_get, model);
      if (!got) throw PyError();
    }
    if (!got) return Value::none();
    W.keep.push_back(got);
    return py_value(got);
  }

  // The text values of entries [lo, hi) and the fold's counts, counted (once per call)
  const std::vector<std::pair<sv, i64>>& value_counts(i64 s, int path, u32 lo, u32 hi, bool folds,
                                                       const PathFold* pf, const View& v) {
    for (size_t j = 0; j < W.counts_used; ++j) {
      const Counts& c = W.counts[j];
      if (c.slot == s && c.path == path && c.lo == lo && c.hi == hi && c.folds == folds) return c.counts;
    }
    if (W.counts_used == W.counts.size()) W.counts.emplace_back();
    Counts& out = W.counts[W.counts_used++];
    out.slot = s;
    out.path = path;
    out.lo = lo;
    out.hi = hi;
    out.folds = folds;
    out.counts.clear();
    std::vector<sv>& texts = W.texts_of;
    texts.clear();
    for (u32 i = lo; i < hi; ++i) {
      Cell cell = cell_at(v, i, path);
      if (cell.has_text()) texts.push_back(cell_text(cell, W.texts));
    }
    std::sort(texts.begin(), texts.end());
    size_t a = 0, b = 0;
    size_t nf = pf && pf->has_counts ? pf->counts.size() : 0;
    while (a < texts.size() || b < nf) {
      sv t;
      i64 c = 0;
      if (b < nf && (a == texts.size() || sv(pf->counts[b].first) <= texts[a])) {
        t = pf->counts[b].first;
        c = pf->counts[b].second;
        ++b;
      } else {
        t = texts[a];
      }
      while (a < texts.size() && texts[a] == t) { ++c; ++a; }
      out.counts.emplace_back(t, c);
    }
    return out.counts;
  }

  Value aggregate(const NodeDef& n) {  // executor._aggregate, _numeric, _textual
    u8 func = n.a & 0xFF;
    bool has_far = (n.a >> 8) & 1;
    i64 s = n.b;
    int path = static_cast<int>(n.c);
    const View& v = slot(s);
    u32 hi = after(v, s, now - n.d);
    u32 lo = has_far ? v.after(now - n.e) : 0;
    bool folds = !has_far && v.has_fold;
    if (func == COUNT) {
      i64 folded = folds ? ld_i64(v.fold) : 0;
      return Value::of_int(std::max<i64>(0, static_cast<i64>(hi) - static_cast<i64>(lo)) + folded);
    }
    const PathFold* pf = nullptr;
    if (folds) {
      Fold& f = slot_fold(W, P, static_cast<int>(s));
      if (static_cast<size_t>(path) < f.paths.size()) pf = &f.paths[path];
    }
    if (func == SUM || func == AVG || func == MIN || func == MAX) {
      double total = 0.0, best = 0;
      i64 count = 0;
      bool has_best = false;
      for (u32 i = lo; i < hi; ++i) {
        Cell c = cell_at(v, i, path);
        if (!c.has_num()) continue;
        double x = c.as_num();
        total += x;
        ++count;
        if (!has_best || (func == MIN ? x < best : x > best)) { best = x; has_best = true; }
      }
      if (func == SUM) return Value::of_num((pf ? pf->sum : 0.0) + total);
      if (func == AVG) {
        i64 nn = (pf ? pf->n : 0) + count;
        if (!nn) return Value::none();
        return Value::of_num(((pf ? pf->sum : 0.0) + total) / static_cast<double>(nn));
      }
      if (pf) {
        for (int j = 0; j < 2; ++j) {
          bool has = j == 0 ? pf->has_min : pf->has_max;
          double x = j == 0 ? pf->min : pf->max;
          if (has && (!has_best || (func == MIN ? x < best : x > best))) { best = x; has_best = true; }
        }
      }
      return has_best ? Value::of_num(best) : Value::none();
    }
    if (func == FIRST || func == LAST) {
      bool has = false;
      i64 bts = 0;
      sv bmid, btext;
      auto consider = [&](i64 ts, sv mid, sv text) {
        int c = has ? cmp_key(ts, mid, bts, bmid) : 0;
        if (!has || (func == FIRST ? c < 0 : c > 0)) { has = true; bts = ts; bmid = mid; btext = text; }
      };
      if (func == FIRST) {
        for (u32 i = lo; i < hi && !has; ++i) {
          Cursor c = v.cursor(i);
          sv mid = c.text();
          for (int p = 0; p < path; ++p) read_cell(c);
          Cell cell = read_cell(c);
          if (cell.has_text()) consider(v.t(i), mid, cell_text(cell, W.texts));
        }
      } else {
        for (u32 i = hi; i > lo && !has; --i) {
          Cursor c = v.cursor(i - 1);
          sv mid = c.text();
          for (int p = 0; p < path; ++p) read_cell(c);
          Cell cell = read_cell(c);
          if (cell.has_text()) consider(v.t(i - 1), mid, cell_text(cell, W.texts));
        }
      }
      if (pf) {
        if (pf->first.has) consider(pf->first.ts, pf->first.mid, pf->first.text);
        if (pf->last.has) consider(pf->last.ts, pf->last.mid, pf->last.text);
      }
      return has ? Value::of_text(btext) : Value::none();
    }
    // most_frequent, unique_count, unique_list: value counts of the window and the fold
    const std::vector<std::pair<sv, i64>>& counts = value_counts(s, path, lo, hi, folds, pf, v);
    if (func == UNIQUE_COUNT) return Value::of_int(static_cast<i64>(counts.size()));
    if (func == UNIQUE_LIST) {
      Value out;
      out.kind = Value::LIST;
      std::vector<Value>& items = W.lists.emplace_back();
      items.reserve(counts.size());
      for (const auto& kv : counts) items.push_back(Value::of_text(kv.first));
      out.items = &items;
      return out;
    }
    if (counts.empty()) return Value::none();
    size_t best = 0;
    for (size_t i = 1; i < counts.size(); ++i)
      if (counts[i].second > counts[best].second) best = i;
    return Value::of_text(counts[best].first);
  }

  Value value(int idx) {  // executor._value
    const NodeDef& n = P.nodes[idx];
    switch (n.code) {
      case V_AGG: return aggregate(n);
      case V_TRAIT: {
        TraitRec r = trait(n.a);
        if (!r.has) return Value();
        Value v;
        v.kind = (r.flags & 1) ? Value::OTHER : Value::NONE;
        return v;
      }
      case V_FIRSTSEEN: {
        i64 t;
        return first_seen(n.a, t) ? Value::of_int(t) : Value::none();
      }
      case V_SCORE: return model_value(W.scores, P.a_scores, P.literal_objs[n.a]);
      case V_CLUSTER: return model_value(W.clusters, P.a_clusters, P.literal_objs[n.a]);
      case V_CLUSTERID: return model_value(W.cluster_ids, P.a_cluster_ids, P.literal_objs[n.a]);
      default: bad_state("not a value node");
    }
  }

  bool periodic(const NodeDef& n) {  // executor._periodic
    const View& v = slot(n.a);
    i64 buckets = n.b, period = n.c, needed = n.d;
    // the distinct periods (now - t) // period of the events in the window, oldest first: a
    // division for the first event of each period only
    i64 hits = 0, end = 0;  // end: the last time of the current period
    bool in_period = false;
    for (u32 i = v.after(now - buckets * period); i < v.n && hits < needed; ++i) {
      i64 ts = v.t(i);
      if (ts > now) break;
      if (in_period && ts <= end) continue;
      end = now - ((now - ts) / period) * period;
      in_period = true;
      ++hits;
    }
    return hits >= needed;
  }

  bool cond(int idx) {  // executor._cond
    const NodeDef& n = P.nodes[idx];
    switch (n.code) {
      case C_AND:
        for (int k : n.kids) if (!cond(k)) return false;
        return true;
      case C_OR:
        for (int k : n.kids) if (cond(k)) return true;
        return false;
      case C_NOT: return !cond(n.kids[0]);
      case C_CONST: return n.a != 0;
      case C_CMP: {
        Value v = value(static_cast<int>(n.a));
        return v.kind != Value::MISSING && v.kind != Value::NONE && compare(v, static_cast<u8>(n.b), P.literals[n.c]);
      }
      case C_TRAITBIT: {
        TraitRec r = trait(n.a);
        return r.has && r.bit(static_cast<int>(n.b));
      }
      case C_EXISTS: {
        Value v = value(static_cast<int>(n.a));
        return v.kind != Value::MISSING && v.kind != Value::NONE;
      }
      case C_TIMEIN: {
        double t;
        if (!time_of(P.nodes[n.a], t)) return false;
        if (gt_fi(t, now - n.b)) return false;
        return !n.d || gt_fi(t, now - n.c);
      }
      case C_INSEG: return W.res[n.a] == 1;
      case C_ANON: {
        const View& v = slot(n.a);
        if (v.n && v.t(0) <= now) return false;
        return !(v.has_fold && ld_i64(v.fold) != 0);
      }
      case C_PERIODIC: return periodic(n);
      case C_SEQ: {
        const SeqDef& q = P.seqs[n.a];
        const Fold& m = machine(n.a);
        if (!m.has_last[q.k - 1]) return false;
        if (!q.has_absent) return true;
        return !m.hit && (!q.absent_has_within || m.last[q.k - 1] + q.absent_within <= now);
      }
      default: bad_state("not a condition node");
    }
  }

  // --- timers ------------------------------------------------------------------------------
  static void earliest(bool& has, i64& best, i64 t) {
    if (!has || t < best) { best = t; has = true; }
  }

  static i64 ceil_ms(double x) {  // executor._ceil_after's int(t) / int(t) + 1
    if (std::isnan(x)) {
      PyErr_SetString(PyExc_ValueError, "cannot convert float NaN to integer");
      throw PyError();
    }
    if (std::isinf(x) || std::fabs(x) >= 9.2e18) {
      PyErr_SetString(PyExc_OverflowError, "a trait time beyond the kernel's 64-bit range");
      throw PyError();
    }
    double tr = std::trunc(x);
    i64 ms = static_cast<i64>(tr);
    return tr == x ? ms : ms + 1;
  }

  void wake(const WakeDef& w, bool& has, i64& best) {
    switch (w.code) {
      case W_ENTRY: case W_SEQENTRY: {  // executor._entry_wake
        const View& v = w.code == W_ENTRY ? slot(w.a) : seq_view(w.a);
        u32 i = after(v, w.a, now - w.b, w.code == W_SEQENTRY);
        if (i < v.n) earliest(has, best, v.t(i) + w.b);
        return;
      }
      case W_TIMEIN: {  // executor._time_in_wake
        const NodeDef& n = P.nodes[w.a];
        double t;
        if (!time_of(P.nodes[n.a], t)) return;
        for (int j = 0; j < (n.d ? 2 : 1); ++j) {
          i64 ms = ceil_ms(t + static_cast<double>(j == 0 ? n.b : n.c));
          if (ms > now) earliest(has, best, ms);
        }
        return;
      }
      case W_PERIODIC: {  // executor._periodic_wake
        const NodeDef& n = P.nodes[w.a];
        // min over the window's events of their next period edge, t + (d // period + 1) *
        // period for d = now - t >= 0 (the first, oldest, event of a period has the earliest),
        // else t itself (the first event from the future)
        const View& v = slot(n.a);
        i64 period = n.c, end = 0;
        bool in_period = false;
        for (u32 i = v.after(now - n.b * period); i < v.n; ++i) {
          i64 ts = v.t(i);
          if (ts > now) { earliest(has, best, ts); break; }
          if (in_period && ts <= end) {
            if (i + 4 < v.n && v.t(i + 4) <= end) i = v.after_from(end, i + 4) - 1;  // skip the period's rest
            continue;
          }
          i64 k = (now - ts) / period;
          end = now - k * period;
          in_period = true;
          earliest(has, best, ts + (k + 1) * period);
        }
        return;
      }
      case W_ABSENT: {  // executor._absent_wake
        const SeqDef& q = P.seqs[w.a];
        if (!q.has_absent || !q.absent_has_within) return;
        const Fold& m = machine(w.a);
        if (m.has_last[q.k - 1] && !m.hit && m.last[q.k - 1] + q.absent_within > now)
          earliest(has, best, m.last[q.k - 1] + q.absent_within);
        return;
      }
      default: bad_state("not a timer");
    }
  }
};

// program._evaluate: re-evaluates the rules that moved (their slots changed, their timer came
// due, they are new) or may have (scores, the segments they refer to), in dependency order
inline void evaluate(const Program& P, Work& W, Eval& E, bool& has_next, i64& next) {
  size_t nr = P.nrules();
  W.moved.resize(nr);
  W.dirty.resize(nr);
  u8* moved = W.moved.data();
  u8* dirty = W.dirty.data();
  const u8* profile = P.profile_rule.data();
  for (size_t i = 0; i < nr; ++i) {  // due timers, rules without a result yet
    u8 m = (W.has_wake[i] && W.wake[i] <= E.now) || W.res[i] < 0;
    moved[i] = m;
    dirty[i] = m | profile[i];
  }
  for (int s : W.touched_slots) for (int r : P.slot_rules[s]) moved[r] = dirty[r] = 1;
  for (int q : W.touched_seqs) for (int r : P.seq_rules[q]) moved[r] = dirty[r] = 1;
  has_next = false;
  next = 0;
  for (size_t i = 0; i < nr; ++i) {
    if (dirty[i]) {
      signed char r = E.cond(P.rule_root[i]) ? 1 : 0;
      if (W.res[i] != r) for (int d : P.dependents[i]) dirty[d] = 1;
      W.res[i] = r;
      if (moved[i]) {
        bool has = false;
        i64 best = 0;
        for (const WakeDef& w : P.rule_wakes[i]) E.wake(w, has, best);
        W.has_wake[i] = has;
        W.wake[i] = has ? best : 0;
      }
    }
    if (W.has_wake[i]) Eval::earliest(has_next, next, W.wake[i]);
  }
}

// The state's results and timers (everything before the sections)
inline void write_header(const Program& P, const Work& W, Bytes& out, size_t nsections) {
  out.clear();
  out.append(P.header.data(), P.header.size());
  put_u8(out, 0);
  size_t nr = P.nrules(), nb = (nr + 7) / 8;
  put_u16(out, static_cast<u16>(nr));
  u8* bits = out.extend(2 * nb);
  const signed char* res = W.res.data();
  u16 nw = 0;
  for (size_t j = 0; j < nb; ++j) {
    u8 have = 0, value = 0;
    for (size_t i = j * 8, e = std::min(nr, j * 8 + 8); i < e; ++i) {
      have |= static_cast<u8>((res[i] >= 0) << (i % 8));
      value |= static_cast<u8>((res[i] == 1) << (i % 8));
      nw += W.has_wake[i];
    }
    bits[j] = have;
    bits[nb + j] = value;
  }
  put_u16(out, nw);
  u8* q = out.extend(10 * static_cast<size_t>(nw));
  for (size_t i = 0; i < nr; ++i) {
    if (!W.has_wake[i]) continue;
    u16 r = static_cast<u16>(i);
    std::memcpy(q, &r, 2);
    std::memcpy(q + 2, &W.wake[i], 8);
    q += 10;
  }
  put_u16(out, static_cast<u16>(nsections));
}


inline PyObject* to_py(const Value& v) {  // a computed trait's value, typed as the reference's
  switch (v.kind) {
    case Value::NUM: return v.is_int ? PyLong_FromLongLong(v.i) : PyFloat_FromDouble(v.num);
    case Value::TEXT: return PyUnicode_DecodeUTF8(v.text.data(), static_cast<Py_ssize_t>(v.text.size()), nullptr);
    case Value::LIST: {
      PyObject* out = PyList_New(static_cast<Py_ssize_t>(v.items->size()));
      if (!out) return nullptr;
      for (size_t i = 0; i < v.items->size(); ++i) {
        PyObject* item = to_py((*v.items)[i]);
        if (!item) { Py_DECREF(out); return nullptr; }
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), item);
      }
      return out;
    }
    default: Py_RETURN_NONE;
  }
}

// Evaluates the rules and computed traits (into ``traits``); the next timer in has_next/next.
inline void run_evaluation(const Program& P, Work& W, PyObject* profile, i64 now, PyObject* traits,
                           bool& has_next, i64& next) {
  Eval E{P, W, profile, now};
  evaluate(P, W, E, has_next, next);
  for (size_t t = 0; t < P.trait_root.size(); ++t) {
    PyObject* o = to_py(E.value(P.trait_root[t]));
    if (!o) throw PyError();
    int rc = PyDict_SetItem(traits, P.trait_names[t], o);
    Py_DECREF(o);
    if (rc < 0) throw PyError();
    bool has = false;
    i64 best = 0;
    for (const WakeDef& w : P.trait_wakes[t]) E.wake(w, has, best);
    if (has && (!has_next || best < next)) { next = best; has_next = true; }
  }
}

// The state after this call: ``input`` itself when nothing in it changed (an idle timer).
inline PyObject* write_state(const Program& P, Work& W, PyObject* input) {
  size_t nsec = 0, body = 0;
  for (const Section& s : W.slot_sec) if (s.present) { ++nsec; body += s.len; }
  for (const Section& s : W.seq_sec) if (s.present) { ++nsec; body += s.len; }
  Bytes& hdr = W.header;
  write_header(P, W, hdr, nsec);
  if (input && W.input && W.touched_slots.empty() && W.touched_seqs.empty() && W.header_len == hdr.size() &&
      std::memcmp(W.input, hdr.data(), hdr.size()) == 0) {
    Py_INCREF(input);
    return input;
  }
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(hdr.size() + body));
  if (!out) throw PyError();
  char* p = PyBytes_AS_STRING(out);
  std::memcpy(p, hdr.data(), hdr.size());
  p += hdr.size();
  for (const std::vector<Section>* secs : {&W.slot_sec, &W.seq_sec})
    for (const Section& s : *secs) {
      if (!s.present) continue;
      std::memcpy(p, s.start, s.len);
      p += s.len;
    }
  return out;
}

// The members (a frozenset of names), one shared object per set of members.
inline PyObject* members(Program& P, const Work& W) {
  size_t nr = W.res.size();
  std::string key((nr + 7) / 8, '\0');
  for (size_t i = 0; i < nr; ++i) if (W.res[i] == 1) key[i / 8] |= static_cast<char>(1 << (i % 8));
  auto found = P.members_cache.find(key);
  if (found != P.members_cache.end()) { Py_INCREF(found->second); return found->second; }
  PyObject* names = PyList_New(0);
  if (!names) throw PyError();
  for (size_t i = 0; i < nr; ++i)
    if (W.res[i] == 1 && PyList_Append(names, P.rule_names[i]) < 0) { Py_DECREF(names); throw PyError(); }
  PyObject* out = PyFrozenSet_New(names);
  Py_DECREF(names);
  if (!out) throw PyError();
  if (P.members_cache.size() >= 4096) {
    for (auto& kv : P.members_cache) Py_DECREF(kv.second);
    P.members_cache.clear();
  }
  Py_INCREF(out);
  P.members_cache.emplace(std::move(key), out);
  return out;
}

// --- merging two profiles' states (program.merge, program.mergeable, state.merge_fold) ----------
//
// The reference decodes both states, merges them and encodes the result; this does the same on
// the bytes: rows are copied as they are (a row's bytes are what format.encode writes for the
// values it holds), sections of one side are copied whole, and only a fold both sides have is
// decoded. The merged state keeps no results or timers (the evaluator recomputes them).

// min() / max() over (a, b) as Python picks: the first on a tie (and against a NaN)
inline double py_min(double a, double b) { return b < a ? b : a; }
inline double py_max(double a, double b) { return b > a ? b : a; }

// merge_fold of one path: sums, extremes, first and last (a's on a tie), counts
inline void merge_path(PathFold& a, const PathFold& b, bool counts) {
  a.sum = a.sum + b.sum;
  a.n += b.n;
  if (b.has_min) { a.min = a.has_min ? py_min(a.min, b.min) : b.min; a.has_min = true; }
  if (b.has_max) { a.max = a.has_max ? py_max(a.max, b.max) : b.max; a.has_max = true; }
  if (b.first.has && (!a.first.has || cmp_key(b.first.ts, b.first.mid, a.first.ts, a.first.mid) < 0)) a.first = b.first;
  if (b.last.has && (!a.last.has || cmp_key(b.last.ts, b.last.mid, a.last.ts, a.last.mid) > 0)) a.last = b.last;
  if (!counts || (a.counts.empty() && b.counts.empty())) {
    a.has_counts = false;
    a.counts.clear();
    return;
  }
  std::vector<std::pair<std::string, i64>> out;  // both sorted by text: a sorted union
  out.reserve(a.counts.size() + b.counts.size());
  size_t i = 0, j = 0;
  while (i < a.counts.size() || j < b.counts.size()) {
    int c = i == a.counts.size() ? 1 : j == b.counts.size() ? -1 : sv(a.counts[i].first).compare(sv(b.counts[j].first));
    if (c < 0) out.push_back(std::move(a.counts[i++]));
    else if (c > 0) out.push_back(b.counts[j++]);
    else { out.push_back(std::move(a.counts[i++])); out.back().second += b.counts[j++].second; }
  }
  a.counts = std::move(out);
  a.has_counts = true;
}

// merge_fold of two slot folds (both present), into ``a``
inline void merge_folds(Fold& a, const Fold& b, const SlotDef& slot) {
  a.count += b.count;
  if (b.has_first && (!a.has_first || b.first_ts < a.first_ts)) { a.first_ts = b.first_ts; a.has_first = true; }
  if (slot.kind == TRAIT_SLOT) {
    if (b.has_raw && (!a.has_raw || cmp_key(b.raw_ts, b.raw_mid, a.raw_ts, a.raw_mid) > 0)) {
      a.has_raw = true;
      a.raw_ts = b.raw_ts;
      a.raw_mid = b.raw_mid;
      a.raw_val = b.raw_val;
    }
    return;
  }
  for (size_t p = 0; p < a.paths.size(); ++p) merge_path(a.paths[p], b.paths[p], slot.counts);
}

// One section present in both states: entries interleaved in (ts, message id) order with the
// survivor's kept on an equal pair (state.insert), and the fold (merged, or the one there is)
inline void merge_section(const View& a, const View& b, const std::string& prefix, const u8* fold, u32 fold_len,
                          bool has_fold, std::vector<std::pair<const View*, u32>>& order, Bytes& out) {
  order.clear();
  order.reserve(static_cast<size_t>(a.n) + b.n);
  u32 i = 0, j = 0;
  size_t rows_len = 0;
  while (i < a.n || j < b.n) {
    int c = i == a.n ? 1 : j == b.n ? -1 : cmp_key(a.t(i), a.mid(i), b.t(j), b.mid(j));
    const View* v = c <= 0 ? &a : &b;
    u32 k = c <= 0 ? i++ : j++;
    if (c == 0) ++j;
    const u8* from = v->row(k);
    const u8* to = v->row_end(k);
    if (to < from) bad_state("row offsets out of order in a kernel state");
    rows_len += to - from;
    order.emplace_back(v, k);
  }
  size_t n = order.size();
  i64 first = n ? order.front().first->t(order.front().second) : 0;
  i64 last = n ? order.back().first->t(order.back().second) : 0;
  u8 flags = body_flags(static_cast<u32>(n), first, last, rows_len);
  size_t tw = (flags & 1) ? 4 : 8, ow = (flags & 2) ? 2 : 4;
  size_t body = 4 + 1 + ((flags & 1) ? 8 : 0) + n * (tw + ow) + 4 + rows_len + 1 + (has_fold ? 4 + static_cast<size_t>(fold_len) : 0);
  if (body > 0xFFFFFFFFull) bad_state("a section of a kernel state beyond 4 GiB");
  out.append(prefix.data(), prefix.size());
  put_u32(out, static_cast<u32>(body));
  u8* p = out.extend(body);
  u32 n32 = static_cast<u32>(n);
  std::memcpy(p, &n32, 4);
  p[4] = flags;
  u8* ts_p = p + 5;
  if (flags & 1) { std::memcpy(ts_p, &first, 8); ts_p += 8; }
  u8* off_p = ts_p + n * tw;
  u8* rows = off_p + n * ow;
  u32 rl = static_cast<u32>(rows_len);
  std::memcpy(rows, &rl, 4);
  rows += 4;
  size_t cur = 0;
  for (const auto& e : order) {
    i64 t = e.first->t(e.second);
    if (flags & 1) { u32 d = static_cast<u32>(static_cast<u64>(t) - static_cast<u64>(first)); std::memcpy(ts_p, &d, 4); ts_p += 4; }
    else { std::memcpy(ts_p, &t, 8); ts_p += 8; }
    if (flags & 2) { u16 o = static_cast<u16>(cur); std::memcpy(off_p, &o, 2); off_p += 2; }
    else { u32 o = static_cast<u32>(cur); std::memcpy(off_p, &o, 4); off_p += 4; }
    const u8* from = e.first->row(e.second);
    size_t len = e.first->row_end(e.second) - from;
    std::memcpy(rows + cur, from, len);
    cur += len;
  }
  u8* f = rows + rows_len;
  *f++ = has_fold ? 1 : 0;
  if (has_fold) {
    std::memcpy(f, &fold_len, 4);
    std::memcpy(f + 4, fold, fold_len);
  }
}

// A sequence present in both states merges exactly (program._seq_mergeable)?
inline bool seq_mergeable(const Program& P, int q, const View& a, const View& b) {
  if (!a.has_fold && !b.has_fold) return true;
  if (a.has_fold && b.has_fold) return false;
  const View& folded = a.has_fold ? a : b;
  const View& other = a.has_fold ? b : a;
  if (other.n == 0) return true;
  Fold f;
  decode_fold(folded, SEQ_SECTION, nullptr, f, P.seqs[q].k);
  return f.has_upto && other.t(0) > f.upto;
}

// program.merge + program.mergeable of two states of this rule set, as kernel bytes (a new
// reference) with ``exact``; None when either state is not of this rule set (the caller takes
// the reference's way, which converts them).
inline PyObject* merge_states(const Program& P, Work& A, Work& B, const u8* a, size_t alen, const u8* b,
                              size_t blen, bool& exact) {
  A.reset(P);
  B.reset(P);
  if (!load(P, A, a, alen) || !load(P, B, b, blen)) Py_RETURN_NONE;
  Bytes& out = A.scratch;
  out.clear();
  size_t nr = P.nrules(), nb = (nr + 7) / 8;
  out.append(P.header.data(), P.header.size());
  put_u8(out, 0);
  put_u16(out, static_cast<u16>(nr));
  std::memset(out.extend(2 * nb), 0, 2 * nb);
  put_u16(out, 0);
  size_t nsec_at = out.size();
  put_u16(out, 0);
  u16 nsec = 0;
  exact = true;
  std::vector<std::pair<const View*, u32>> order;
  for (size_t s = 0; s < P.slots.size(); ++s) {
    Section& sa = A.slot_sec[s];
    Section& sb = B.slot_sec[s];
    if (!sa.present && !sb.present) continue;
    ++nsec;
    if (!sa.present || !sb.present) {
      const Section& one = sa.present ? sa : sb;
      out.append(one.start, one.len);
      continue;
    }
    const SlotDef& slot = P.slots[s];
    const View& va = sa.view();
    const View& vb = sb.view();
    if (va.has_fold && vb.has_fold) {
      Fold& fa = A.slot_fold[s];
      Fold& fb = B.slot_fold[s];
      decode_fold(va, slot.kind, &slot, fa);
      decode_fold(vb, slot.kind, &slot, fb);
      if (slot.kind == EVENT_SLOT) {
        fa.paths.resize(slot.paths.size());
        fb.paths.resize(slot.paths.size());
      }
      merge_folds(fa, fb, slot);
      A.foldb.clear();
      encode_fold(A.foldb, fa, slot.kind);
      merge_section(va, vb, slot.prefix, A.foldb.data(), static_cast<u32>(A.foldb.size()), true, order, out);
    } else {
      const View& fv = va.has_fold ? va : vb;
      merge_section(va, vb, slot.prefix, fv.fold, fv.fold_len, fv.has_fold, order, out);
    }
  }
  for (size_t q = 0; q < P.seqs.size(); ++q) {
    Section& sa = A.seq_sec[q];
    Section& sb = B.seq_sec[q];
    if (!sa.present && !sb.present) continue;
    ++nsec;
    if (!sa.present || !sb.present) {
      const Section& one = sa.present ? sa : sb;
      out.append(one.start, one.len);
      continue;
    }
    const View& va = sa.view();
    const View& vb = sb.view();
    if (exact && !seq_mergeable(P, static_cast<int>(q), va, vb)) exact = false;
    const View& fv = va.has_fold ? va : vb;  // the survivor's machine, else the absorbed one's
    merge_section(va, vb, P.seqs[q].prefix, fv.fold, fv.fold_len, fv.has_fold, order, out);
  }
  std::memcpy(out.p + nsec_at, &nsec, 2);
  PyObject* merged = PyBytes_FromStringAndSize(reinterpret_cast<const char*>(out.data()), static_cast<Py_ssize_t>(out.size()));
  if (!merged) throw PyError();
  return merged;
}

}  // namespace sfk
