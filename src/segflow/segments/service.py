"""Segments and computed traits as a service: what the API, the CLI and the demo call.

Every write is validated against the whole catalogue before it is stored (a rule that does not
parse, refers to an unknown segment, or closes a cycle is refused with every diagnostic), then
saved as a new version in the catalog. Serve processes (on any host, with a shared catalog)
pick changes up with a :class:`DefinitionWatcher`, which recompiles the rule set and hands it
to the processor.

Previews run the rule's SQL (``segflow.rules.sql.compiler``) on the warehouse, so a rule can be tried on
the full history before it is saved.

>>> import tempfile, os
>>> svc = SegmentService(DefinitionStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite")))
>>> svc.put_segment("dormant", "not did any event in last 14 days").version
1
>>> [d.message for d in svc.check('did "A" in last 3 parsecs')]
["unknown time unit 'parsecs'; use seconds, minutes, hours, days or weeks"]
>>> sorted(svc.program().plan.order)
['dormant']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from segflow.background import BackgroundLoop
from segflow.catalog.audit import AuditLog
from segflow.clock import Clock, WallClock
from segflow.errors import SegflowError, ValidationError
from segflow.rules import Diagnostic, RuleSyntaxError, SegmentProgram, check, compile_segments
from segflow.rules.parser import parse
from segflow.rules.passes import score_models, score_ranges
from segflow.rules.sql.compiler import (
    compile_members,
    compile_members_grid,
    members_at_instant,
    members_expression,
)
from segflow.segments.store import Definition, DefinitionStore, Kind, check_name
from segflow.warehouse.loader import read_cursors
from segflow.warehouse.postgres import dialect_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preview:
    """What a rule selects in the warehouse at ``at_ms``: the count and a sample of members."""

    count: int
    sample: list[str]
    at_ms: int
    sql: str


Reasons = Callable[[duckdb.DuckDBPyConnection, list[str]], dict[str, Any]]
"""``(warehouse, profile_ids) -> {model: reasons}`` (``segflow.ml.reasons.score_reasons``)."""


class SegmentService:
    """Validated, versioned segment and trait definitions over one :class:`DefinitionStore`."""

    def __init__(
        self,
        store: DefinitionStore,
        *,
        warehouse: Callable[[], duckdb.DuckDBPyConnection] | None = None,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        history_check: Callable[[SegmentProgram], None] | None = None,
        reasons: Reasons | None = None,
    ) -> None:
        self.store = store
        self.warehouse = warehouse
        self.clock = clock or WallClock()
        self.audit = audit
        # refuses a rule set that reads more raw history than is kept (segflow.privacy.retention)
        self.history_check = history_check
        # the reasons behind ML scores (segflow.ml.reasons.score_reasons, given by the composer)
        self.reasons = reasons

    # -- reading -----------------------------------------------------------------------------
    def segments(self) -> dict[str, str]:
        """Current segment rules by name."""
        return {d.name: d.rule for d in self.store.list("segment")}

    def traits(self) -> dict[str, str]:
        """Current computed-trait expressions by name."""
        return {d.name: d.rule for d in self.store.list("trait")}

    def definitions(self, kind: Kind = "segment") -> list[Definition]:
        """Current definitions of ``kind``, by name."""
        return self.store.list(kind)

    def get(self, kind: Kind, name: str) -> Definition:
        return self.store.get(kind, name)

    def program(self) -> SegmentProgram:
        """The compiled rule set of every current segment and trait."""
        return compile_segments(self.segments(), self.traits())

    # -- checking and writing ----------------------------------------------------------------
    def check(self, rule: str, *, trait: bool = False) -> list[Diagnostic]:
        """Every error and warning of ``rule`` (as you type: nothing is stored).

        With a warehouse, a ``score M >= x`` whose threshold lies outside the range of M's
        latest scoring run is a warning (it selects nobody, or every scored profile).
        """
        found = check(rule, trait=trait)
        if trait or any(d.severity == "error" for d in found) or self.warehouse is None:
            return found
        parsed = parse(rule)
        models = score_models(parsed)
        ranges = self._score_ranges(models) if models else None
        if ranges is None:
            return found
        unscored = [
            Diagnostic(line=1, column=1, severity="warning",
                       message=f"no profile has a score {m} yet (no scoring run of {m} stored"
                       f" scores), so score {m} selects no profile for now")
            for m in sorted(models - ranges.keys())
        ]  # fmt: skip
        return found + unscored + score_ranges(parsed, ranges)

    def _score_ranges(self, models: set[str]) -> dict[str, tuple[float, float]] | None:
        """(lowest, highest) score of each model's latest run; None when it cannot be read."""
        try:
            con = self._warehouse()
        except (duckdb.Error, SegflowError):
            return None
        try:
            rows = con.execute(
                "SELECT model, min(score), max(score) FROM profile_scores"
                f" WHERE model IN ({', '.join('?' * len(models))}) GROUP BY model",
                sorted(models),
            ).fetchall()
        except Exception:  # no scores table yet, or another engine's error: no warning then
            log.debug("score ranges unavailable", exc_info=True)
            return None
        finally:
            con.close()
        return {str(m): (float(lo), float(hi)) for m, lo, hi in rows}

    def put_segment(
        self, name: str, rule: str, description: str = "", *, actor: str = "system"
    ) -> Definition:
        """Create or edit segment ``name``; refused with every diagnostic when invalid."""
        return self._put("segment", name, rule, description, actor)

    def put_trait(
        self, name: str, expression: str, description: str = "", *, actor: str = "system"
    ) -> Definition:
        """Create or edit computed trait ``name``."""
        return self._put("trait", name, expression, description, actor)

    def delete(self, kind: Kind, name: str, *, actor: str = "system") -> None:
        """Delete a definition (its history stays); refused when another segment uses it."""
        before = self.store.get(kind, name)
        segments, traits = self.segments(), self.traits()
        (segments if kind == "segment" else traits).pop(name)
        self._compile(segments, traits)
        self.store.delete(kind, name)
        if self.audit is not None:
            self.audit.record(actor, f"{kind}.delete", name, before, None)

    def _put(self, kind: Kind, name: str, rule: str, description: str, actor: str) -> Definition:
        check_name(name)
        if not rule.strip():
            raise ValidationError("rule", "must not be empty")
        errors = [d for d in check(rule, trait=kind == "trait") if d.severity == "error"]
        if errors:
            raise RuleSyntaxError(errors, field="rule")
        segments, traits = self.segments(), self.traits()
        before = (segments if kind == "segment" else traits).get(name)
        (segments if kind == "segment" else traits)[name] = rule
        program = self._compile(segments, traits)
        if self.history_check is not None:
            self.history_check(program)
        saved = self.store.put(kind, name, rule, description)
        if self.audit is not None:
            action = f"{kind}.{'create' if before is None else 'update'}"
            old = None if before is None else {"rule": before}
            self.audit.record(actor, action, name, old, saved)
        return saved

    @staticmethod
    def _compile(segments: dict[str, str], traits: dict[str, str]) -> SegmentProgram:
        # RuleSyntaxError / RuleCycleError are ValidationErrors carrying every diagnostic.
        return compile_segments(segments, traits)

    # -- history -----------------------------------------------------------------------------
    # Two times (docs/segments.md, "Membership history"): valid time, what the rules say over
    # the events known now (the SQL compiler at T, so it equals a preview by construction), and
    # recorded time, when segflow committed each change (the warehouse's ``memberships``).
    def members_at(
        self, segment: str, at_ms: int, limit: int = 100, *, recorded: bool = False
    ) -> list[str]:
        """Who was in ``segment`` at ``at_ms`` by its rule over the events known now (valid
        time), or, ``recorded``, who segflow had recorded as in it then."""
        rule = self.store.get("segment", segment).rule
        con = self._warehouse()
        try:
            if recorded:
                return recorded_members_at(con, segment, at_ms, limit)
            sql = self._members_sql(con, rule, at_ms)
            rows = con.execute(
                f"SELECT profile_id FROM ({sql}) AS members ORDER BY profile_id LIMIT ?", [limit]
            ).fetchall()
            return [r[0] for r in rows]
        finally:
            con.close()

    def sizes(self, segments: list[str], at_ms: list[int]) -> dict[str, list[int]]:
        """How many profiles each of ``segments`` held at each of ``at_ms`` in valid time (its
        rule's SQL at each instant): ``{segment: [size at at_ms[0], ...]}``.

        One query per segment for all the instants (the compiler's time grid,
        ``compile_members_grid``), equal to the rule's SQL at each instant.
        """
        rules = {name: self.store.get("segment", name).rule for name in segments}
        if not at_ms:
            return {name: [] for name in rules}
        con = self._warehouse()
        try:
            dialect, others, traits = dialect_of(con), self.segments(), self.traits()
            out: dict[str, list[int]] = {}
            for name, rule in rules.items():
                sql = compile_members_grid(
                    rule, at_ms, segments=others, traits=traits, dialect=dialect, seen=True
                )
                rows = con.execute(
                    f"SELECT at_ms, count(*) FROM ({sql}) AS m GROUP BY at_ms"
                ).fetchall()
                counts = {int(t): int(n) for t, n in rows}
                out[name] = [counts.get(t, 0) for t in at_ms]
            return out
        finally:
            con.close()

    def sizes_per_instant(self, segments: list[str], at_ms: list[int]) -> dict[str, list[int]]:
        """:meth:`sizes` by one query per instant (the rule compiled once, T written in at
        each): what the grid is held to, and the benchmark's "before"."""
        rules = {name: self.store.get("segment", name).rule for name in segments}
        con = self._warehouse()
        try:
            dialect, others, traits = dialect_of(con), self.segments(), self.traits()
            out: dict[str, list[int]] = {}
            for name, rule in rules.items():
                query = members_expression(
                    rule, segments=others, traits=traits, dialect=dialect, seen=True
                )
                out[name] = [
                    self._count(con, members_at_instant(query, at, dialect)) for at in at_ms
                ]
            return out
        finally:
            con.close()

    def loaded_position(self) -> tuple[tuple[str, int], ...]:
        """How far the warehouse loader has loaded (its cursors: ``log:<partition>`` and
        ``changes``); () when the warehouse or its cursors cannot be read."""
        try:
            con = self._warehouse()
        except (duckdb.Error, SegflowError):
            return ()
        try:
            return tuple(sorted(read_cursors(con).items()))
        except Exception:  # no cursors table (a warehouse segflow does not load), any engine
            log.debug("warehouse cursors unavailable", exc_info=True)
            return ()
        finally:
            con.close()

    @staticmethod
    def _count(con: Any, sql: str) -> int:
        row = con.execute(f"SELECT count(*) FROM ({sql}) AS m").fetchone()
        return int(row[0]) if row else 0

    def _members_sql(self, con: Any, rule: str, at_ms: int) -> str:
        return compile_members(
            rule, segments=self.segments(), traits=self.traits(), at_ms=at_ms,
            dialect=dialect_of(con), seen=True,
        )  # fmt: skip

    def history(self, profile_ids: list[str]) -> list[dict[str, Any]]:
        """Every recorded segment interval of these profile ids (a profile and the ones it
        absorbed): when segflow recorded each entry and exit (processing time)."""
        con = self._warehouse()
        try:
            return profile_history(con, profile_ids)
        finally:
            con.close()

    def score_reasons(self, profile_ids: list[str]) -> dict[str, Any]:
        """``{model: reasons}``: the top contributing features behind each score, computed
        from the inputs the scoring run stored, by the ``reasons`` this service was given
        (``segflow.ml.reasons.score_reasons``); ``{}`` without one.

        >>> import tempfile, os
        >>> store = DefinitionStore(os.path.join(tempfile.mkdtemp(), "catalog.sqlite"))
        >>> SegmentService(store).score_reasons(["p1"])
        {}
        """
        if self.reasons is None:
            return {}
        con = self._warehouse()
        try:
            if not isinstance(con, duckdb.DuckDBPyConnection):
                return {}  # PostgreSQL: no ML jobs there (docs/warehouse.md)
            return self.reasons(con, profile_ids)
        finally:
            con.close()

    def _warehouse(self) -> duckdb.DuckDBPyConnection:
        if self.warehouse is None:
            raise ValidationError("warehouse", "this needs the warehouse, which is not open")
        return self.warehouse()

    # -- previews ----------------------------------------------------------------------------
    def preview(
        self,
        rule: str,
        *,
        at_ms: int | None = None,
        sample: int = 20,
        segments: dict[str, str] | None = None,
        traits: dict[str, str] | None = None,
    ) -> Preview:
        """Run ``rule`` as SQL on the warehouse: how many profiles match at ``at_ms`` (now),
        counting the profiles seen by then (valid time, as ``members_at``).

        ``segments``/``traits`` replace the catalogue's (to preview against a planned one).
        """
        at = self.clock.now_ms() if at_ms is None else at_ms
        segments = self.segments() if segments is None else segments
        traits = self.traits() if traits is None else traits
        # every error of the rule in the context of the others (unknown names, cycles)
        compile_segments({**segments, "_preview_": rule}, traits)
        con = self._warehouse()
        try:
            dialect = dialect_of(con)  # DuckDB, or PostgreSQL (warehouse.engine)
            sql = compile_members(
                rule, segments=segments, traits=traits, at_ms=at, dialect=dialect, seen=True
            )
            rows = con.execute(
                f"SELECT profile_id, count(*) OVER () FROM ({sql}) AS members"
                " ORDER BY profile_id LIMIT ?",
                [max(sample, 1)],
            ).fetchall()
        finally:
            con.close()
        count = int(rows[0][1]) if rows else 0
        return Preview(count=count, sample=[r[0] for r in rows[:sample]], at_ms=at, sql=sql)


def recorded_members_at(
    con: duckdb.DuckDBPyConnection, segment: str, at_ms: int, limit: int
) -> list[str]:
    """Who segflow had recorded in ``segment`` at ``at_ms`` (the warehouse's membership
    intervals, in processing time)."""
    rows = con.execute(
        "SELECT DISTINCT profile_id FROM memberships WHERE segment = ? AND entered_at_ms <= ?"
        " AND (exited_at_ms IS NULL OR exited_at_ms > ?) ORDER BY profile_id LIMIT ?",
        [segment, at_ms, at_ms, limit],
    ).fetchall()
    return [r[0] for r in rows]


def profile_history(con: duckdb.DuckDBPyConnection, profile_ids: list[str]) -> list[dict[str, Any]]:
    """When segflow recorded each of the profile's ids entering and leaving each segment (the
    warehouse's intervals, in processing time)."""
    rows = con.execute(
        "SELECT segment, entered_at_ms, exited_at_ms FROM memberships WHERE profile_id IN"
        " (SELECT unnest(CAST(? AS VARCHAR[]))) ORDER BY entered_at_ms, segment",
        [profile_ids],
    ).fetchall()
    return [{"segment": r[0], "entered_at_ms": r[1], "exited_at_ms": r[2]} for r in rows]


class DefinitionWatcher(BackgroundLoop):
    """Recompiles the rule set when the catalog's definitions change and hands it to ``apply``.

    A service of ``segflow serve``: it polls the definitions' fingerprint every
    ``interval_s`` (edits may come from other processes or hosts: the CLI, ML jobs, the API).
    A rule set that no longer compiles (edited around the service) is logged and the running
    one is kept.
    """

    name = "segment-definitions"

    def __init__(
        self,
        service: SegmentService,
        apply: Callable[[SegmentProgram], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.service = service
        self.apply = apply
        self.interval_s = interval_s
        self.fingerprint: tuple[Any, ...] | None = None

    def refresh(self) -> bool:
        """Recompile and apply when the definitions changed; True when applied."""
        current = _fingerprint(
            [*self.service.definitions("segment"), *self.service.definitions("trait")]
        )
        if current == self.fingerprint:
            return False
        try:
            program = self.service.program()
        except ValidationError:
            log.exception("segment definitions do not compile; keeping the running rule set")
            self.fingerprint = current
            return False
        self.apply(program)
        self.fingerprint = current
        return True

    wait_first = True  # start() refreshed
    join_s = 5.0

    def start(self) -> None:
        self.refresh()
        super().start()

    def tick(self) -> None:
        self.refresh()


def _fingerprint(definitions: Iterable[Definition]) -> tuple[Any, ...]:
    return tuple(sorted((d.kind, d.name, d.version) for d in definitions))
