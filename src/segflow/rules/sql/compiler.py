"""The SQL compiler: a rule -> a query for the profiles that are members at time T.

Built as SQLGlot expressions over the warehouse's ``profile_events`` (and ``profile_scores``,
``profile_clusters``), so it transpiles to other dialects. The meaning is the incremental
evaluator's (docs/segments.md); the differential test holds them to it.

>>> sql = compile_members('did "Order Completed" in last 1 hour', at_ms=3_600_000)
>>> "profile_events" in sql and "3600000" in sql
True
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from sqlglot import exp

from segflow.rules import ast
from segflow.rules.definitions import computed_type_errors, parse_definitions
from segflow.rules.exceptions import RuleSyntaxError
from segflow.rules.parser import parse, parse_trait
from segflow.rules.passes import segment_refs, substitute_computed, topological_order
from segflow.rules.sql.dialects import Engine, engine, json_path

__all__ = [
    "compile_members",
    "compile_members_grid",
    "compile_traits",
    "json_path",
    "members_expression",
    "members_grid_expression",
    "traits_expression",
]


def _lit(v: ast.Scalar) -> exp.Expr:
    if isinstance(v, bool):
        return exp.Boolean(this=v)
    if isinstance(v, str):
        return exp.Literal.string(v)
    return exp.cast(exp.Literal.number(v), "DOUBLE")


def _false_if_null(e: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=exp.paren(e, copy=False), expressions=[exp.false()])


class _JsonValue:
    """A JSON value at ``path`` of ``doc``, typed and read by ``engine``."""

    def __init__(self, engine: Engine, doc: exp.Expr, path: ast.Path) -> None:
        self.engine, self.doc, self.path = engine, doc, path

    def number(self) -> exp.Expr:
        e, d, p = self.engine, self.doc, self.path
        return exp.Case(ifs=[exp.If(this=e.is_number(d, p), true=e.number(d, p))])

    def as_text(self) -> exp.Expr:
        e, d, p = self.engine, self.doc, self.path
        return exp.Case(ifs=[exp.If(this=e.is_text(d, p), true=e.text(d, p))])

    def exists(self) -> exp.Expr:
        return self.engine.exists(self.doc, self.path)

    def time_ms(self) -> exp.Expr:
        e, d, p = self.engine, self.doc, self.path
        return exp.Case(
            ifs=[
                exp.If(this=e.is_number(d, p), true=e.number(d, p)),
                exp.If(this=e.is_string(d, p), true=e.text_epoch_ms(e.text(d, p))),
            ]
        )

    def compare(self, op: str, lit: ast.Scalar | tuple[ast.Scalar, ...]) -> exp.Expr:
        e, d, p = self.engine, self.doc, self.path
        if isinstance(lit, tuple):
            return exp.or_(*(_false_if_null(self.compare("=", i)) for i in lit))
        if isinstance(lit, bool):
            if op not in ("=", "!="):
                return exp.false()
            value = exp.Literal.string("true" if lit else "false")
            return exp.and_(e.is_bool(d, p), _op(op, e.text(d, p), value))
        if isinstance(lit, int | float):
            return exp.and_(e.is_number(d, p), _op(op, e.number(d, p), _lit(lit)))
        return exp.and_(e.is_string(d, p), _text_op(e, op, e.text(d, p), lit))


def _op(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    klass: dict[str, type[exp.Expr]] = {
        "=": exp.EQ,
        "!=": exp.NEQ,
        "<": exp.LT,
        "<=": exp.LTE,
        ">": exp.GT,
        ">=": exp.GTE,
    }
    if op not in klass:
        return exp.false()
    return klass[op](this=left, expression=right)


def _text_op(e: Engine, op: str, left: exp.Expr, lit: str) -> exp.Expr:
    if op in ("contains", "starts with"):
        pos = exp.StrPosition(this=left, substr=exp.Literal.string(lit))
        if op == "contains":
            return exp.GT(this=pos, expression=exp.Literal.number(0))
        return exp.EQ(this=pos, expression=exp.Literal.number(1))
    if op in ("<", "<=", ">", ">="):
        left = e.ordered_text(left)
    return _op(op, left, exp.Literal.string(lit))


def _typed_compare(
    e: Engine, value: exp.Expr, op: str, lit: ast.Scalar | tuple[ast.Scalar, ...]
) -> exp.Expr:
    """Compare an already typed SQL value (a number or text) with a literal of its type."""
    if isinstance(lit, tuple):
        return exp.or_(*(_false_if_null(_typed_compare(e, value.copy(), "=", i)) for i in lit))
    if isinstance(lit, str):
        return _text_op(e, op, value, lit)
    return _op(op, value, _lit(lit))


class Compiler:
    """Compiles conditions for one profile row ``p`` against the CTE ``ev`` (events up to T).

    ``grid``: T is not one instant but the column ``t.at_ms`` of a table of instants joined
    beside ``p``; ``ev`` then holds every event, and each read of it keeps the events up to
    ``t.at_ms`` itself (see :func:`members_grid_expression`).
    """

    def __init__(
        self,
        at: exp.Expr,
        segments: Mapping[str, ast.Condition] | None = None,
        dialect: str = "duckdb",
        *,
        grid: bool = False,
    ) -> None:
        self.at = at
        self.grid = grid
        self.segments = dict(segments or {})
        self.engine = engine(dialect)
        self.names = (f"e{i}" for i in itertools.count())
        self.ctes: list[tuple[str, exp.Select]] = []  # per-profile helper tables (sequences)

    def _json(self, doc: exp.Expr, path: ast.Path) -> _JsonValue:
        return _JsonValue(self.engine, doc, path)

    def _scalar(self, q: exp.Select, empty: exp.Expr | None = None) -> exp.Expr:
        """``(q)`` as a value; ``empty`` is what an aggregate ``q`` gives over no rows, which
        engines that decorrelate into an outer join (ClickHouse) return as NULL instead."""
        sub: exp.Expr = exp.Subquery(this=q)
        if empty is not None and self.engine.empty_subquery_is_null:
            return exp.Coalesce(this=sub, expressions=[empty])
        return sub

    def _latest(self, q: exp.Select, value: exp.Expr, a: str, *, desc: bool = True) -> exp.Select:
        """``q`` reduced to ``value`` of its last (``desc``) or first row by time and message id."""
        keys = [exp.column("timestamp_ms", a), exp.column("message_id", a)]
        if not self.engine.limit_in_correlated:
            func = "argMax" if desc else "argMin"
            key = exp.Anonymous(this="tuple", expressions=keys)
            return q.select(exp.Anonymous(this=func, expressions=[value, key]))
        order = [exp.Ordered(this=k, desc=desc) for k in keys]
        return q.order_by(*order).limit(1).select(value)

    def T(self) -> exp.Expr:
        return self.at.copy()

    def _events(self, alias: str, *where: exp.Expr) -> exp.Select:
        pid = exp.EQ(this=exp.column("profile_id", alias), expression=exp.column("profile_id", "p"))
        table = exp.alias_(exp.to_table("ev"), alias, table=True)
        if self.grid:  # ``ev`` holds every event: keep those up to this row's instant
            where = (*where, self._up_to_t(alias))
        return exp.select().from_(table).where(exp.and_(pid, *where))

    def _up_to_t(self, alias: str, at: exp.Expr | None = None) -> exp.Expr:
        at = self.T() if at is None else at
        return exp.LTE(this=exp.column("timestamp_ms", alias), expression=at)

    def selector(self, sel: ast.Selector, a: str) -> exp.Expr:
        typ = exp.column("type", a)
        parts: list[exp.Expr] = []
        if sel.kind == "track":
            parts += [
                exp.EQ(this=typ, expression=exp.Literal.string("track")),
                exp.EQ(this=exp.column("event", a), expression=exp.Literal.string(sel.name or "")),
            ]
        elif sel.kind in ("page", "screen", "identify"):
            parts.append(exp.EQ(this=typ, expression=exp.Literal.string(sel.kind)))
            if sel.name is not None:
                parts.append(
                    exp.EQ(this=exp.column("name", a), expression=exp.Literal.string(sel.name))
                )
        elif sel.kind == "identified":
            parts.append(exp.Not(this=exp.Is(this=exp.column("user_id", a), expression=exp.null())))
        elif sel.kind == "trait":
            parts.append(exp.EQ(this=typ, expression=exp.Literal.string("identify")))
            parts.append(self.engine.present(exp.column("traits", a), sel.trait or ()))
        if sel.filter is not None:
            parts.append(self.filter(sel.filter, a))
        return exp.and_(*parts) if parts else exp.true()

    def filter(self, f: ast.Filter, a: str) -> exp.Expr:
        if isinstance(f, ast.FAnd):
            return exp.and_(*(self.filter(i, a) for i in f.items))
        if isinstance(f, ast.FOr):
            return exp.or_(*(self.filter(i, a) for i in f.items))
        if isinstance(f, ast.FNot):
            return exp.not_(self.filter(f.item, a))
        jv = self._json(exp.column("properties", a), f.path)
        return _false_if_null(
            jv.exists() if isinstance(f, ast.FExists) else jv.compare(f.op, f.value)
        )

    def window(self, w: ast.Window, a: str) -> list[exp.Expr]:
        ts = exp.column("timestamp_ms", a)
        out: list[exp.Expr] = [
            exp.LTE(
                this=ts, expression=exp.Sub(this=self.T(), expression=exp.Literal.number(w.near_ms))
            )
        ]
        if w.far_ms is not None:
            out.append(
                exp.GT(
                    this=ts.copy(),
                    expression=exp.Sub(this=self.T(), expression=exp.Literal.number(w.far_ms)),
                )
            )
        return out

    # --- values ----------------------------------------------------------------------------
    def aggregate(self, agg: ast.Aggregate) -> exp.Expr:
        a = next(self.names)
        where = [self.selector(agg.selector, a), *self.window(agg.window, a)]
        zero = exp.Literal.number(0)
        if agg.func == "count":
            return self._scalar(self._events(a, *where).select(exp.Count(this=exp.Star())), zero)
        jv = self._json(exp.column("properties", a), agg.path or ())
        num, text = jv.number(), jv.as_text()
        q = self._events(a, *where)
        empty: exp.Expr | None = None
        if agg.func == "sum":
            empty = exp.cast(exp.Literal.number(0), "DOUBLE")
            sel: exp.Expr = exp.Coalesce(this=exp.Sum(this=num), expressions=[empty.copy()])
        elif agg.func == "avg":
            n = exp.Count(this=num.copy())
            sel = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.GT(this=n, expression=exp.Literal.number(0)),
                        true=exp.Div(this=exp.Sum(this=num), expression=n.copy()),
                    )
                ]
            )
        elif agg.func in ("min", "max"):
            sel = exp.Min(this=num) if agg.func == "min" else exp.Max(this=num)
        elif agg.func == "unique_count":
            sel, empty = exp.Count(this=exp.Distinct(expressions=[text])), zero
        elif agg.func == "unique_list":
            q = q.where(exp.Not(this=exp.Is(this=text.copy(), expression=exp.null())))
            empty = self.engine.empty_list()
            sel = exp.Coalesce(this=self.engine.sorted_distinct(text), expressions=[empty.copy()])
        else:
            q = q.where(exp.Not(this=exp.Is(this=text.copy(), expression=exp.null())))
            if agg.func == "most_frequent":
                return self._most_frequent(q, text)
            return exp.Subquery(this=self._latest(q, text, a, desc=agg.func == "last"))
        return self._scalar(q.select(sel), empty)

    def _most_frequent(self, q: exp.Select, text: exp.Expr) -> exp.Expr:
        """The most frequent text, ties to the first in code point order."""
        count = exp.Count(this=exp.Star())
        if self.engine.limit_in_correlated:
            q = q.group_by(text.copy()).order_by(
                exp.Ordered(this=count, desc=True),
                exp.Ordered(this=self.engine.ordered_text(text.copy())),
            )
            return exp.Subquery(this=q.limit(1).select(text))
        counted = q.select(text.as_("t"), count.as_("c")).group_by(text.copy())
        key = exp.Anonymous(
            this="tuple", expressions=[exp.Neg(this=exp.column("c")), exp.column("t")]
        )
        pick = exp.select(exp.Anonymous(this="argMin", expressions=[exp.column("t"), key]))
        return exp.Subquery(this=pick.from_(counted.subquery("f")))

    def trait_json(self, path: ast.Path) -> exp.Expr:
        a = next(self.names)
        sel = ast.Selector("trait", trait=path)
        raw = self.engine.raw(exp.column("traits", a), path)
        return exp.Subquery(this=self._latest(self._events(a, self.selector(sel, a)), raw, a))

    def first_seen(self) -> exp.Expr:
        a = next(self.names)
        return exp.Subquery(
            this=self._events(a).select(
                exp.cast(exp.Min(this=exp.column("timestamp_ms", a)), "DOUBLE")
            )
        )

    def model_value(self, v: ast.ScoreRef | ast.ClusterRef) -> exp.Expr:
        table, col = (
            ("profile_scores", "score")
            if isinstance(v, ast.ScoreRef)
            else ("profile_clusters", "cluster_id" if v.by_id else "cluster")
        )
        s = next(self.names)
        q = (
            exp.select(exp.column(col, s))
            .from_(exp.alias_(exp.to_table(table), s, table=True))
            .where(
                exp.and_(
                    exp.EQ(
                        this=exp.column("profile_id", s), expression=exp.column("profile_id", "p")
                    ),
                    exp.EQ(
                        this=exp.column("model", s),
                        expression=exp.Literal.string(
                            v.key if isinstance(v, ast.ScoreRef) else v.model
                        ),
                    ),
                )
            )
        )
        if self.engine.limit_in_correlated:
            q = q.limit(1)
        else:  # one score per (profile, model): any of them is the one
            q.set("expressions", [exp.AnyValue(this=exp.column(col, s))])
        value: exp.Expr = exp.Subquery(this=q)
        return exp.cast(value, "DOUBLE") if isinstance(v, ast.ScoreRef) else value

    # --- conditions -------------------------------------------------------------------------
    def condition(self, c: ast.Condition) -> exp.Expr:
        if isinstance(c, ast.And):
            return exp.and_(*(self.condition(i) for i in c.items))
        if isinstance(c, ast.Or):
            return exp.or_(*(self.condition(i) for i in c.items))
        if isinstance(c, ast.Not):
            return exp.not_(self.condition(c.item))
        if isinstance(c, ast.Const):
            return exp.true() if c.value else exp.false()
        return _false_if_null(self.atom(c))

    def atom(self, c: ast.Condition) -> exp.Expr:
        if isinstance(c, ast.Compare):
            return self.compare(c)
        if isinstance(c, ast.Exists):
            if isinstance(c.value, ast.TraitRef):
                return self._json(self.trait_json(c.value.path), ()).exists()
            return exp.Not(this=exp.Is(this=self.value(c.value), expression=exp.null()))
        if isinstance(c, ast.TimeIn):
            if isinstance(c.value, ast.TraitRef):
                t = self._json(self.trait_json(c.value.path), ()).time_ms()
            else:
                t = self.first_seen()
            return self.time_in(t, c.window)
        if isinstance(c, ast.InSegment):
            if self.grid:  # the other segment's members at this row's instant
                s = next(self.names)
                same = [
                    exp.EQ(
                        this=exp.column("profile_id", s), expression=exp.column("profile_id", "p")
                    ),
                    exp.EQ(this=exp.column("at_ms", s), expression=self.T()),
                ]
                table = exp.alias_(exp.to_table(_seg_table(c.name), quoted=True), s, table=True)
                found = exp.select(exp.Literal.number(1)).from_(table).where(exp.and_(*same))
                return exp.Exists(this=found)
            seg = exp.select(exp.column("profile_id")).from_(exp.to_table(_seg_table(c.name)))
            return exp.In(this=exp.column("profile_id", "p"), query=exp.Subquery(this=seg))
        if isinstance(c, ast.Anonymous):
            a = next(self.names)
            q = self._events(
                a, exp.Not(this=exp.Is(this=exp.column("user_id", a), expression=exp.null()))
            )
            return exp.not_(exp.Exists(this=q.select(exp.Literal.number(1))))
        if isinstance(c, ast.Periodic):
            return self.periodic(c)
        assert isinstance(c, ast.Sequence)
        return self.sequence(c)

    def value(self, v: ast.Value) -> exp.Expr:
        if isinstance(v, ast.Aggregate):
            return self.aggregate(v)
        if isinstance(v, ast.ScoreRef | ast.ClusterRef):
            return self.model_value(v)
        if isinstance(v, ast.FirstSeen):
            return self.first_seen()
        raise TypeError(f"unresolved value {v!r}")

    def compare(self, c: ast.Compare) -> exp.Expr:
        if isinstance(c.left, ast.TraitRef):
            return self._json(self.trait_json(c.left.path), ()).compare(c.op, c.right)
        if isinstance(c.left, ast.Aggregate) and c.left.func == "unique_list":
            assert isinstance(c.right, str)
            agg = ast.Aggregate(
                "count",
                ast.Selector(
                    c.left.selector.kind,
                    c.left.selector.name,
                    ast.FAnd(
                        tuple(
                            x
                            for x in (
                                c.left.selector.filter,
                                ast.FCompare(c.left.path or (), "=", c.right),
                            )
                            if x is not None
                        )
                    ),
                    c.left.selector.trait,
                ),
                None,
                c.left.window,
            )
            if c.op != "contains":
                return exp.false()
            return exp.GTE(this=self.aggregate(agg), expression=exp.Literal.number(1))
        return _typed_compare(self.engine, self.value(c.left), c.op, c.right)

    def time_in(self, t: exp.Expr, w: ast.Window) -> exp.Expr:
        parts: list[exp.Expr] = [
            exp.LTE(
                this=t, expression=exp.Sub(this=self.T(), expression=exp.Literal.number(w.near_ms))
            )
        ]
        if w.far_ms is not None:
            parts.append(
                exp.GT(
                    this=t.copy(),
                    expression=exp.Sub(this=self.T(), expression=exp.Literal.number(w.far_ms)),
                )
            )
        return exp.and_(*parts)

    def periodic(self, c: ast.Periodic) -> exp.Expr:
        a = next(self.names)
        span = ast.Window(c.buckets * c.period_ms)
        bucket = exp.IntDiv(
            this=exp.paren(exp.Sub(this=self.T(), expression=exp.column("timestamp_ms", a))),
            expression=exp.Literal.number(c.period_ms),
        )
        q = self._events(a, self.selector(c.selector, a), *self.window(span, a)).select(
            exp.Count(this=exp.Distinct(expressions=[bucket]))
        )
        days = self._scalar(q, exp.Literal.number(0))
        return exp.GTE(this=days, expression=exp.Literal.number(c.min_buckets))

    def _completions(self, steps: tuple[ast.Step, ...], a: str) -> list[exp.Expr]:
        """Predicates making row ``a`` a completion of the chain ``steps``."""
        *before, last = steps
        preds = [self.selector(last.selector, a)]
        if before:
            b = next(self.names)
            link = [
                *self._completions(tuple(before), b),
                exp.LT(
                    this=exp.column("timestamp_ms", b), expression=exp.column("timestamp_ms", a)
                ),
            ]
            if last.within_ms is not None:
                gap = exp.Sub(
                    this=exp.column("timestamp_ms", a), expression=exp.column("timestamp_ms", b)
                )
                link.append(exp.LTE(this=gap, expression=exp.Literal.number(last.within_ms)))
            inner = (
                exp.select(exp.Literal.number(1))
                .from_(exp.alias_(exp.to_table("ev"), b, table=True))
                .where(
                    exp.and_(
                        exp.EQ(
                            this=exp.column("profile_id", b), expression=exp.column("profile_id", a)
                        ),
                        *link,
                    )
                )
            )
            preds.append(exp.Exists(this=inner))
        return preds

    def sequence(self, c: ast.Sequence) -> exp.Expr:
        a = next(self.names)
        completions = self._completions(c.steps, a)
        ts = exp.column("timestamp_ms", a)
        if c.absent is None:
            anchor_q = self._events(a, *completions).select(exp.Max(this=ts))
            return exp.Not(this=exp.Is(this=exp.Subquery(this=anchor_q), expression=exp.null()))
        # Each profile's last completion goes into a helper table, so that the absent step
        # refers to it one level out (a reference two levels out is not portable: Spark and
        # ClickHouse refuse it).
        name = f"seq{len(self.ctes)}"
        anchors = (
            exp.select(
                exp.column("profile_id", a).as_("profile_id"), exp.Max(this=ts).as_("anchor")
            )
            .from_(exp.alias_(exp.to_table("ev"), a, table=True))
            .where(exp.and_(*completions))
            .group_by(exp.column("profile_id", a))
        )
        if self.grid:  # on a grid, the last completion up to each instant
            anchors = anchors.join(
                exp.alias_(exp.to_table("t"), "t", table=True),
                on=self._up_to_t(a, exp.column("at_ms", "t")),
            )
            anchors = anchors.select(exp.column("at_ms", "t").as_("at_ms"))
            anchors = anchors.group_by(exp.column("at_ms", "t"))
        self.ctes.append((name, anchors))
        s, x = next(self.names), next(self.names)
        anchor, x_ts = exp.column("anchor", s), exp.column("timestamp_ms", x)
        after: list[exp.Expr] = [exp.GT(this=x_ts, expression=anchor)]
        mine = exp.EQ(this=exp.column("profile_id", s), expression=exp.column("profile_id", "p"))
        parts: list[exp.Expr] = [mine]
        if self.grid:
            parts.append(exp.EQ(this=exp.column("at_ms", s), expression=self.T()))
            after.append(self._up_to_t(x, exp.column("at_ms", s)))
        w = c.absent.within_ms
        if w is not None:
            end = exp.Add(this=anchor.copy(), expression=exp.Literal.number(w))
            after.append(exp.LTE(this=x_ts.copy(), expression=end))
            parts.append(exp.LTE(this=end.copy(), expression=self.T()))
        same = exp.EQ(this=exp.column("profile_id", x), expression=exp.column("profile_id", s))
        hit = (
            exp.select(exp.Literal.number(1))
            .from_(exp.alias_(exp.to_table("ev"), x, table=True))
            .where(exp.and_(same, self.selector(c.absent.selector, x), *after))
        )
        parts.append(exp.not_(exp.Exists(this=hit)))
        found = exp.select(exp.Literal.number(1)).from_(
            exp.alias_(exp.to_table(name), s, table=True)
        )
        return exp.Exists(this=found.where(exp.and_(*parts)))


def _seg_table(name: str) -> str:
    return f"segment__{name}"


def _at(at_ms: int | None, dialect: str = "duckdb") -> exp.Expr:
    if at_ms is not None:
        return exp.Literal.number(at_ms)
    if dialect == "clickhouse":  # ClickHouse's parameters carry their type: {at_ms: Int64}
        return exp.Placeholder(this="at_ms", kind=exp.DataType.build("Int64", dialect=dialect))
    return exp.Placeholder(this="at_ms")


def _with(query: exp.Select, comp: Compiler, at: exp.Expr, seen: bool = False) -> exp.Select:
    """``query`` with the events up to T, the profiles and the compiler's helper tables."""
    for name, cte in [*_base_ctes(at, seen), *comp.ctes]:
        query = query.with_(name, as_=cte)
    return query


def _base_ctes(at: exp.Expr, seen: bool = False) -> list[tuple[str, exp.Expr]]:
    ev = (
        exp.select(exp.Star())
        .from_("profile_events")
        .where(exp.LTE(this=exp.column("timestamp_ms"), expression=at.copy()))
    )
    # ``seen``: a profile counts from its first event at or before T (valid time: before it,
    # it is in no segment, not even "not did ..."); else every profile with an event at all
    profiles = (
        exp.select(exp.column("profile_id")).distinct().from_("ev" if seen else "profile_events")
    )
    return [("ev", ev), ("profiles", profiles)]


def _members_query(comp: Compiler, cond: ast.Condition) -> exp.Select:
    return (
        exp.select(exp.column("profile_id", "p"))
        .from_(exp.alias_(exp.to_table("profiles"), "p", table=True))
        .where(comp.condition(cond))
    )


def members_expression(
    rule: str | ast.Rule,
    *,
    segments: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
    at_ms: int | None = None,
    dialect: str = "duckdb",
    seen: bool = False,
) -> exp.Select:
    """The members query as a SQLGlot expression (``$at_ms`` placeholder when ``at_ms`` is None)
    for ``dialect`` (its JSON functions; see ``segflow.rules.sql.dialects``). ``seen``: only
    profiles with an event at or before T (what valid-time history and previews ask)."""
    cond, conds, needed = _resolved(rule, segments, traits)
    at = _at(at_ms, dialect)
    comp = Compiler(at, conds, dialect)
    query = _members_query(comp, cond).order_by(exp.column("profile_id", "p"))
    members = [(name, _members_query(comp, conds[name])) for name in needed]
    query = _with(query, comp, at, seen)
    for name, cte in members:
        query = query.with_(exp.to_identifier(_seg_table(name), quoted=True), as_=cte)
    return query


def _resolved(
    rule: str | ast.Rule,
    segments: Mapping[str, str] | None,
    traits: Mapping[str, str] | None,
) -> tuple[ast.Condition, dict[str, ast.Condition], list[str]]:
    """The rule's condition with its computed traits written in, every segment's condition,
    and the segments it needs, in dependency order (a ``RuleSyntaxError`` when ill-typed)."""
    conds, aggs = parse_definitions(dict(segments or {}), dict(traits or {}))
    original = (parse(rule) if isinstance(rule, str) else rule).condition
    assert original is not None
    cond = substitute_computed(original, aggs)
    if errors := computed_type_errors(original, cond):
        raise RuleSyntaxError(errors)
    return cond, conds, _needed_segments(cond, conds)


def _needed_segments(cond: ast.Condition, conds: Mapping[str, ast.Condition]) -> list[str]:
    seen: dict[str, set[str]] = {}
    todo = list(segment_refs(cond))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = segment_refs(conds[name])
        todo.extend(seen[name])
    return topological_order(seen)


def compile_members(
    rule: str | ast.Rule,
    *,
    segments: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
    at_ms: int | None = None,
    dialect: str = "duckdb",
    pretty: bool = False,
    seen: bool = False,
) -> str:
    """SQL returning the ``profile_id`` of every member at ``at_ms`` (or ``$at_ms``).

    ``segments`` holds the other segments the rule may reference with ``in segment``.
    ``seen``: only profiles with an event at or before T count (valid time: a profile is in no
    segment before its first event; without it, every profile in ``profile_events`` does, as
    the processor counts one whose events are all stamped in the future).

    >>> print(compile_members('score churn >= 0.7', at_ms=0, dialect="postgres").count("profile_scores"))
    1
    """
    query = members_expression(
        rule, segments=segments, traits=traits, at_ms=at_ms, dialect=dialect, seen=seen
    )
    return query.sql(dialect=dialect, pretty=pretty)


def members_at_instant(query: exp.Select, at_ms: int, dialect: str = "duckdb") -> str:
    """SQL of a members query compiled with its ``$at_ms`` placeholder (``at_ms=None``), with
    ``at_ms`` written in: compile once, answer at many instants (a size chart).

    >>> q = members_expression('did "A" in last 1 hour')
    >>> members_at_instant(q, 7_200_000) == compile_members('did "A" in last 1 hour', at_ms=7_200_000)
    True
    """

    def write_in(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.this == "at_ms":
            return exp.Literal.number(at_ms)
        return node

    return query.transform(write_in).sql(dialect=dialect)


def _grid_ctes(at_ms: Sequence[int]) -> list[tuple[str, exp.Expr]]:
    """The instants ``t(at_ms)``, every event up to the last of them, and the profiles with
    the time of their first event (``first_ms``: a profile is seen at T when it is <= T)."""
    rows = [exp.Tuple(expressions=[exp.Literal.number(v)]) for v in sorted(set(at_ms))]
    values = exp.Values(
        expressions=rows,
        alias=exp.TableAlias(this=exp.to_identifier("v"), columns=[exp.to_identifier("at_ms")]),
    )
    t = exp.select(exp.cast(exp.column("at_ms", "v"), "BIGINT").as_("at_ms")).from_(values)
    last = exp.Literal.number(max(at_ms))
    ev = (
        exp.select(exp.Star())
        .from_("profile_events")
        .where(exp.LTE(this=exp.column("timestamp_ms"), expression=last))
    )
    first = exp.Min(this=exp.column("timestamp_ms")).as_("first_ms")
    profiles = (
        exp.select(exp.column("profile_id"), first)
        .from_("profile_events")
        .group_by(exp.column("profile_id"))
    )
    return [("t", t), ("ev", ev), ("profiles", profiles)]


def _grid_members_query(comp: Compiler, cond: ast.Condition, seen: bool) -> exp.Select:
    """``(at_ms, profile_id)`` of every member at every instant of ``t``."""
    on: exp.Expr = exp.true()
    if seen:
        on = exp.LTE(this=exp.column("first_ms", "p"), expression=exp.column("at_ms", "t"))
    return (
        exp.select(exp.column("at_ms", "t"), exp.column("profile_id", "p"))
        .from_(exp.alias_(exp.to_table("t"), "t", table=True))
        .join(exp.alias_(exp.to_table("profiles"), "p", table=True), on=on)
        .where(comp.condition(cond))
    )


def members_grid_expression(
    rule: str | ast.Rule,
    at_ms: Sequence[int],
    *,
    segments: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
    dialect: str = "duckdb",
    seen: bool = False,
) -> exp.Select:
    """The members at each of ``at_ms`` in one query: rows ``(at_ms, profile_id)``.

    The instants are a table ``t(at_ms)`` joined beside the profiles, and the rule's conditions
    read ``t.at_ms`` where the one-instant query reads its literal, so a 30-day size chart is
    one query instead of 31. Every rule kind compiles to it (windows, sequences, ``not did``,
    computed traits, ``in segment``, scores); its rows at T are exactly
    ``members_expression(..., at_ms=T)``'s (tests/integration/rules/test_differential.py
    holds them equal on DuckDB and PostgreSQL; ClickHouse and Spark are not tested on it).

    >>> q = members_grid_expression('did "A" in last 1 hour', [0, 3_600_000])
    >>> [c.alias_or_name for c in q.selects]
    ['at_ms', 'profile_id']
    """
    if not at_ms:
        raise ValueError("at_ms: at least one instant is needed")
    cond, conds, needed = _resolved(rule, segments, traits)
    comp = Compiler(exp.column("at_ms", "t"), conds, dialect, grid=True)
    query = _grid_members_query(comp, cond, seen).order_by(
        exp.column("at_ms", "t"), exp.column("profile_id", "p")
    )
    members = [(name, _grid_members_query(comp, conds[name], seen)) for name in needed]
    for name, cte in [*_grid_ctes(at_ms), *comp.ctes]:
        query = query.with_(name, as_=cte)
    for name, cte in members:
        query = query.with_(exp.to_identifier(_seg_table(name), quoted=True), as_=cte)
    return query


def compile_members_grid(
    rule: str | ast.Rule,
    at_ms: Sequence[int],
    *,
    segments: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
    dialect: str = "duckdb",
    pretty: bool = False,
    seen: bool = False,
) -> str:
    """SQL returning ``(at_ms, profile_id)`` for every member at each of ``at_ms``: what
    :func:`compile_members` gives at each instant, in one query (a size chart).

    >>> sql = compile_members_grid('did "A" in last 1 hour', [0, 3_600_000], seen=True)
    >>> "VALUES" in sql and "3600000" in sql
    True
    """
    query = members_grid_expression(
        rule, at_ms, segments=segments, traits=traits, dialect=dialect, seen=seen
    )
    return query.sql(dialect=dialect, pretty=pretty)


def traits_expression(
    traits: Mapping[str, str], *, at_ms: int | None = None, dialect: str = "duckdb"
) -> exp.Select:
    """``SELECT profile_id, <trait>...`` — every computed trait's value at ``at_ms`` per profile."""
    at = _at(at_ms, dialect)
    comp = Compiler(at, dialect=dialect)
    query = exp.select(exp.column("profile_id", "p")).from_(
        exp.alias_(exp.to_table("profiles"), "p", table=True)
    )
    for name, text in traits.items():
        value = parse_trait(text).value
        assert isinstance(value, ast.Aggregate)
        query = query.select(exp.alias_(comp.aggregate(value), name, quoted=True))
    return _with(query.order_by(exp.column("profile_id", "p")), comp, at)


def compile_traits(
    traits: Mapping[str, str],
    *,
    at_ms: int | None = None,
    dialect: str = "duckdb",
    pretty: bool = False,
) -> str:
    """SQL computing every computed trait (name -> expression) for every profile at ``at_ms``.

    >>> "SUM" in compile_traits({"spent": 'sum(revenue of "Order Completed")'}, at_ms=0)
    True
    """
    query = traits_expression(traits, at_ms=at_ms, dialect=dialect)
    return query.sql(dialect=dialect, pretty=pretty)
