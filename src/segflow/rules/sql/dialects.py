"""Engine-specific SQL for the compiler: JSON typing and extraction, text order, time parsing.

The segment SQL (``segflow.rules.sql.compiler``) is one SQLGlot tree for every engine except for the
pieces here, which no transpiler can translate because each engine types JSON its own way:
DuckDB's ``JSON_TYPE``, PostgreSQL's ``json_typeof``, ClickHouse's ``JSONType`` and Spark's
``schema_of_variant``. Each :class:`Engine` builds the same predicates (is this value a number?
a text?) and the same values (its text, its number) for its engine, so the rule means what the
incremental evaluator says it means on all of them (``segflow.rules.values``):

* a number is a JSON integer or float (never a boolean, never numeric text);
* the *text* of a value is a string's content, an integer's digits or ``true``/``false``;
* text compares by code point (PostgreSQL gets ``COLLATE "C"``);
* a time is epoch milliseconds or ISO 8601 text (UTC unless it says).

>>> from sqlglot import exp
>>> doc = exp.column("properties")
>>> engine("duckdb").text(doc, ("category",)).sql("duckdb")
"properties ->> '$.category'"
>>> engine("postgres").text(doc, ("category",)).sql("postgres")
"JSON_EXTRACT_PATH_TEXT(CAST(properties AS JSON), 'category')"
>>> sorted(ENGINES)
['clickhouse', 'duckdb', 'postgres', 'spark']
"""

from __future__ import annotations

from sqlglot import exp

from segflow.rules.ast import Path

PG_EPOCH_MS = "segflow_epoch_ms"
"""PostgreSQL has no TRY_CAST: the warehouse schema defines this function (text -> epoch ms or
NULL); see :data:`PG_EPOCH_MS_DDL`."""

PG_EPOCH_MS_DDL = f"""CREATE OR REPLACE FUNCTION {PG_EPOCH_MS}(t text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE SET TimeZone = 'UTC' AS $fn$
BEGIN
    IF t !~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' THEN RETURN NULL; END IF;
    RETURN floor(extract(epoch FROM t::timestamptz) * 1000);
EXCEPTION WHEN others THEN RETURN NULL;
END $fn$"""
"""The helper the PostgreSQL segment SQL calls for times held as text (ISO 8601, naive = UTC)."""

_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_NUMBER = "^ *[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)? *$"  # no backslashes: portable


def json_path(path: Path) -> str:
    """DuckDB/JSONPath text for a property path (``$.a.b``; odd keys quoted).

    >>> json_path(("a", "b c"))
    '$.a."b c"'
    """
    return "$" + "".join(
        f".{k}" if k.replace("_", "a").isalnum() and not k[0].isdigit() else f'."{k}"' for k in path
    )


def _s(text: str) -> exp.Expr:
    return exp.Literal.string(text)


def _in(this: exp.Expr, items: tuple[str, ...]) -> exp.Expr:
    return exp.In(this=this, expressions=[_s(i) for i in items])


def _f(name: str, *args: exp.Expr) -> exp.Expr:
    return exp.Anonymous(this=name, expressions=list(args))


def _when(cond: exp.Expr, value: exp.Expr) -> exp.Expr:
    return exp.Case(ifs=[exp.If(this=cond, true=value)])


class Engine:
    """DuckDB (the reference): the SQL the compiler has always produced.

    ``doc`` is a JSON document (a column, or a sub-document from :meth:`raw`), ``path`` a
    property path; ``()`` is the document itself.
    """

    name = "duckdb"
    NUM_TYPES: tuple[str, ...] = ("BIGINT", "UBIGINT", "DOUBLE")
    TEXT_TYPES: tuple[str, ...] = ("VARCHAR", "BIGINT", "UBIGINT", "BOOLEAN")
    nested_correlation = True  # a subquery may refer to a query two levels out
    limit_in_correlated = True  # ORDER BY ... LIMIT 1 inside a correlated subquery
    empty_subquery_is_null = False  # an aggregate over no rows inside a correlated subquery

    def type_of(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.Anonymous(this="JSON_TYPE", expressions=[doc.copy(), _s(json_path(path))])

    def is_number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _in(self.type_of(doc, path), self.NUM_TYPES)

    def is_text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """A string, an integer or a boolean (the values that have a text form)."""
        return _in(self.type_of(doc, path), self.TEXT_TYPES)

    def is_string(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("VARCHAR"))

    def is_bool(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("BOOLEAN"))

    def present(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """The key is there (its value may be JSON null)."""
        return exp.Not(this=exp.Is(this=self.type_of(doc, path), expression=exp.null()))

    def exists(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """The key is there and its value is not JSON null."""
        return exp.and_(
            self.present(doc, path),
            exp.NEQ(this=self.type_of(doc, path), expression=_s("NULL")),
        )

    def text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """The value's text (meaningful where :meth:`is_text` holds)."""
        return exp.JSONExtractScalar(this=doc.copy(), expression=_s(json_path(path)))

    def number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """The value as a double (meaningful where :meth:`is_number` holds; never fails)."""
        return exp.TryCast(this=self.text(doc, path), to=exp.DataType.build("DOUBLE"))

    def raw(self, doc: exp.Expr, path: Path) -> exp.Expr:
        """The sub-document at ``path`` (a JSON value the other methods read with ``()``)."""
        return exp.JSONExtract(this=doc.copy(), expression=_s(json_path(path)))

    def text_epoch_ms(self, text: exp.Expr) -> exp.Expr:
        """ISO 8601 text -> epoch ms as a double, NULL when it is not a time."""
        ts = exp.TryCast(this=text, to=exp.DataType.build("TIMESTAMPTZ"))
        return exp.cast(exp.Anonymous(this="EPOCH_MS", expressions=[ts]), "DOUBLE")

    def ordered_text(self, text: exp.Expr) -> exp.Expr:
        """``text`` where it is ordered (``<``, ORDER BY): by code point."""
        return text

    def sorted_distinct(self, text: exp.Expr) -> exp.Expr:
        """The sorted list of distinct non-null values of ``text`` (an aggregate)."""
        return exp.ArraySort(this=exp.ArrayAgg(this=exp.Distinct(expressions=[text])))

    def empty_list(self) -> exp.Expr:
        return exp.Array(expressions=[])

    def numeric_text(self, text: exp.Expr) -> exp.Expr:
        """Text -> double when it reads as a number, else NULL (features' revenue)."""
        return exp.TryCast(this=text, to=exp.DataType.build("DOUBLE"))

    def first_by(self, value: exp.Expr, key: exp.Expr) -> exp.Expr:
        """The aggregate: ``value`` of the row with the smallest ``key``."""
        return exp.ArgMin(this=value, expression=key)


class Postgres(Engine):
    """PostgreSQL: ``json`` (not ``jsonb``, which rewrites numbers) and a C collation."""

    name = "postgres"

    def _path_args(self, doc: exp.Expr, path: Path) -> list[exp.Expr]:
        return [exp.cast(doc.copy(), "JSON"), *(_s(k) for k in path)]

    def type_of(self, doc: exp.Expr, path: Path) -> exp.Expr:
        if not path:
            return _f("JSON_TYPEOF", exp.cast(doc.copy(), "JSON"))
        return _f("JSON_TYPEOF", _f("JSON_EXTRACT_PATH", *self._path_args(doc, path)))

    def _raw_text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.cast(self.raw(doc, path), "TEXT")

    def is_number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("number"))

    def _is_integer(self, doc: exp.Expr, path: Path) -> exp.Expr:
        digits = exp.RegexpLike(this=self._raw_text(doc, path), expression=_s("^-?[0-9]+$"))
        return exp.and_(self.is_number(doc, path), digits)

    def is_text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.or_(
            _in(self.type_of(doc, path), ("string", "boolean")), self._is_integer(doc, path)
        )

    def is_string(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("string"))

    def is_bool(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("boolean"))

    def exists(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.and_(
            self.present(doc, path),
            exp.NEQ(this=self.type_of(doc, path), expression=_s("null")),
        )

    def text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        if not path:  # the document itself: a JSON string's content, else its JSON text
            return _f("JSON_EXTRACT_PATH_TEXT", _f("JSON_BUILD_ARRAY", doc.copy()), _s("0"))
        return _f("JSON_EXTRACT_PATH_TEXT", *self._path_args(doc, path))

    def number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _when(self.is_number(doc, path), exp.cast(self.text(doc, path), "DOUBLE"))

    def raw(self, doc: exp.Expr, path: Path) -> exp.Expr:
        if not path:
            return exp.cast(doc.copy(), "JSON")
        return _f("JSON_EXTRACT_PATH", *self._path_args(doc, path))

    def text_epoch_ms(self, text: exp.Expr) -> exp.Expr:
        return _f(PG_EPOCH_MS, text)

    def ordered_text(self, text: exp.Expr) -> exp.Expr:
        return exp.Collate(this=text, expression=exp.Identifier(this="C", quoted=True))

    def sorted_distinct(self, text: exp.Expr) -> exp.Expr:
        key = self.ordered_text(text)
        return exp.ArrayAgg(
            this=exp.Order(
                this=exp.Distinct(expressions=[key]), expressions=[exp.Ordered(this=key.copy())]
            )
        )

    def empty_list(self) -> exp.Expr:
        return exp.cast(exp.Array(expressions=[]), "TEXT[]")

    def first_by(self, value: exp.Expr, key: exp.Expr) -> exp.Expr:
        ordered = exp.ArrayAgg(this=exp.Order(this=value, expressions=[exp.Ordered(this=key)]))
        return exp.Bracket(this=exp.paren(ordered), expressions=[exp.Literal.number(0)])

    def numeric_text(self, text: exp.Expr) -> exp.Expr:
        return _when(
            exp.RegexpLike(this=text.copy(), expression=_s(_NUMBER)), exp.cast(text, "DOUBLE")
        )


class ClickHouse(Engine):
    """ClickHouse (and chDB): ``JSONType`` / ``JSONExtract*`` over ``String`` documents.

    Its correlated subqueries cannot hold ``LIMIT`` nor refer two levels out, and an aggregate
    subquery over no rows yields NULL (not ``0``): the compiler works around all three.
    """

    name = "clickhouse"
    NUM_TYPES = ("Int64", "UInt64", "Double")
    nested_correlation = False
    limit_in_correlated = False
    empty_subquery_is_null = True

    def _args(self, doc: exp.Expr, path: Path) -> list[exp.Expr]:
        return [doc.copy(), *(_s(k) for k in path)]

    def type_of(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.cast(_f("JSONType", *self._args(doc, path)), "TEXT")

    def is_text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _in(self.type_of(doc, path), ("String", "Int64", "UInt64", "Bool"))

    def is_string(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("String"))

    def is_bool(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("Bool"))

    def present(self, doc: exp.Expr, path: Path) -> exp.Expr:
        if not path:
            return exp.Not(this=exp.Is(this=doc.copy(), expression=exp.null()))
        return _f("JSONHas", *self._args(doc, path))

    def exists(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.and_(
            self.present(doc, path),
            exp.NEQ(this=self.type_of(doc, path), expression=_s("Null")),
        )

    def text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        string = _f("JSONExtractString", *self._args(doc, path))
        return exp.Case(
            ifs=[
                exp.If(this=self.is_string(doc, path), true=string),
                exp.If(this=self.present(doc, path), true=self.raw(doc, path)),
            ]
        )

    def number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("JSONExtract", *self._args(doc, path), _s("Nullable(Float64)"))

    def raw(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("JSONExtractRaw", *self._args(doc, path))

    def text_epoch_ms(self, text: exp.Expr) -> exp.Expr:
        parsed = _f(
            "parseDateTime64BestEffortOrNull", text.copy(), exp.Literal.number(3), _s("UTC")
        )
        epoch = exp.cast(_f("toUnixTimestamp64Milli", parsed), "DOUBLE")
        return _when(_f("match", text, _s(_ISO_DATE)), epoch)

    def sorted_distinct(self, text: exp.Expr) -> exp.Expr:
        return _f("arraySort", _f("groupUniqArray", text))

    def numeric_text(self, text: exp.Expr) -> exp.Expr:
        return _f("toFloat64OrNull", text)


class Spark(Engine):
    """Spark SQL 4 (``VARIANT``): ``schema_of_variant(variant_get(parse_json(doc), path))``."""

    name = "spark"
    NUM_TYPES = ("BIGINT", "DOUBLE")
    nested_correlation = False

    @staticmethod
    def _path(path: Path) -> str:
        return "$" + "".join(f"['{k}']" for k in path)

    def _variant(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("VARIANT_GET", _f("PARSE_JSON", doc.copy()), _s(self._path(path)))

    def type_of(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("SCHEMA_OF_VARIANT", self._variant(doc, path))

    def is_number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        t = self.type_of(doc, path)
        return exp.or_(_in(t, self.NUM_TYPES), exp.Like(this=t.copy(), expression=_s("DECIMAL%")))

    def _is_integer(self, doc: exp.Expr, path: Path) -> exp.Expr:
        t = self.type_of(doc, path)
        return exp.or_(
            exp.EQ(this=t, expression=_s("BIGINT")),
            exp.Like(this=t.copy(), expression=_s("DECIMAL(%,0)")),
        )

    def is_text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.or_(
            _in(self.type_of(doc, path), ("STRING", "BOOLEAN")), self._is_integer(doc, path)
        )

    def is_string(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.EQ(this=self.type_of(doc, path), expression=_s("STRING"))

    def exists(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return exp.and_(
            self.present(doc, path),
            exp.NEQ(this=self.type_of(doc, path), expression=_s("VOID")),
        )

    def text(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("VARIANT_GET", _f("PARSE_JSON", doc.copy()), _s(self._path(path)), _s("STRING"))

    def number(self, doc: exp.Expr, path: Path) -> exp.Expr:
        v = _f("TRY_VARIANT_GET", _f("PARSE_JSON", doc.copy()), _s(self._path(path)), _s("DOUBLE"))
        return _when(self.is_number(doc, path), v)

    def raw(self, doc: exp.Expr, path: Path) -> exp.Expr:
        return _f("TO_JSON", self._variant(doc, path))

    def text_epoch_ms(self, text: exp.Expr) -> exp.Expr:
        ts = _f("TRY_TO_TIMESTAMP", text.copy())
        epoch = exp.cast(_f("UNIX_MILLIS", ts), "DOUBLE")
        return _when(exp.RegexpLike(this=text, expression=_s(_ISO_DATE)), epoch)

    def numeric_text(self, text: exp.Expr) -> exp.Expr:
        return _when(  # Spark's CAST fails on bad input (ANSI mode) and sqlglot drops TRY_
            exp.RegexpLike(this=text.copy(), expression=_s(_NUMBER)), exp.cast(text, "DOUBLE")
        )


ENGINES: dict[str, Engine] = {
    "duckdb": Engine(),
    "postgres": Postgres(),
    "clickhouse": ClickHouse(),
    "spark": Spark(),
}


def engine(dialect: str) -> Engine:
    """The :class:`Engine` of a SQLGlot dialect name; unknown dialects get DuckDB's SQL."""
    return ENGINES.get(dialect, ENGINES["duckdb"])
