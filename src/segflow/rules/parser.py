"""Parser: tokens -> rule tree. Reports every error at once (see docs/segments.md for the EBNF).

>>> rule = parse('did "Product Viewed" at least 3 times in last 1 hour')
>>> rule.condition.op, rule.condition.right
('>=', 3)
"""

from __future__ import annotations

from typing import get_args

from segflow.rules import ast
from segflow.rules.exceptions import Diagnostic, RuleSyntaxError
from segflow.rules.tokens import Kind, Token, tokenize

UNITS_MS = {
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
}
AGG_FUNCS: tuple[str, ...] = get_args(ast.AggFunc)
_COUNT_WORDS = {"least": ">=", "most": "<="}
MAX_WINDOW_DAYS = 36_525
MAX_WINDOW_MS = MAX_WINDOW_DAYS * UNITS_MS["day"]
"""The longest duration a rule may name (100 years): windows, ``within``, periods.

No store holds events older than this (event times are epoch milliseconds, and the
retention settings, when set, keep far less: ``segflow.privacy.retention`` refuses a rule
that reads more than they keep). A longer window reads the same events as ``ever`` but would
overflow the 64-bit times of the SQL and kernel back ends, so it is refused with the limit.
"""
MAX_DEPTH = 50
FILTER_HINT = (
    "; an event's 'where' takes one comparison: to join several, put them in parentheses,"
    ' e.g. where (plan = "pro" {op} plan = "team")'
)
"""How deep parentheses and ``not`` may nest (conditions and event filters together).

Every later stage (passes, the incremental plan, the SQL compiler, the kernel layout) walks
the tree recursively; the bound keeps them far from Python's recursion limit, and no real
rule comes near it.
"""


class _Stop(Exception):
    """Raised after an error is recorded, to resynchronise at the next and/or/)."""


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens, self.errors = tokenize(text)
        self.i = 0
        self.depth = 0
        self.filtered = False  # an event with a filter was read (filter_hint)
        self.hinted = False

    # --- nesting ---------------------------------------------------------------------------
    def too_deep(self) -> bool:
        """Whether one more level of nesting passes :data:`MAX_DEPTH`; if so, skip it.

        The error is recorded at the token that opens the level, and the rest of the group is
        skipped so that the enclosing levels still close cleanly (one error, not fifty).
        """
        if self.depth < MAX_DEPTH:
            return False
        self.fail(
            f"this rule nests parentheses and 'not' more than {MAX_DEPTH} levels deep; "
            f"simplify it (e.g. split it into segments and use 'in segment ...')"
        )
        if self.at("("):
            self.take()
            self.resync()
            self.accept(")")
        else:
            self.resync()
        return True

    # --- token helpers -----------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def at(self, *words: str) -> bool:
        return self.tok.kind in (Kind.WORD, Kind.PUNCT, Kind.OP) and self.tok.text.lower() in words

    def take(self) -> Token:
        tok = self.tok
        if tok.kind is not Kind.END:
            self.i += 1
        return tok

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.take()
            return True
        return False

    def fail(self, message: str, tok: Token | None = None) -> _Stop:
        tok = tok or self.tok
        self.errors.append(Diagnostic(line=tok.line, column=tok.column, message=message))
        return _Stop()

    def expect(self, word: str, hint: str = "") -> Token:
        if not self.at(word):
            raise self.fail(f"expected '{word}' but found {self.describe()}{hint}")
        return self.take()

    def describe(self) -> str:
        tok = self.tok
        if tok.kind is Kind.END:
            return "the end of the rule"
        if tok.kind is Kind.STRING:
            return f'"{tok.text}"'
        return f"'{tok.text}'"

    def resync(self) -> None:
        depth = 0
        while self.tok.kind is not Kind.END:
            if self.at("(", "["):
                depth += 1
            elif self.at(")", "]"):
                if depth == 0:
                    return
                depth -= 1
            elif depth == 0 and self.at("and", "or"):
                return
            self.take()

    # --- entry points ------------------------------------------------------------------
    def parse_condition(self) -> ast.Condition:
        cond = self.or_expr()
        if self.tok.kind is not Kind.END:
            self.fail(f"unexpected {self.describe()}; join conditions with 'and' or 'or'")
        return cond

    def parse_value(self) -> ast.Value:
        try:
            value = self.value_expr()
        except _Stop:
            return ast.FirstSeen()
        if self.tok.kind is not Kind.END:
            self.fail(f"unexpected {self.describe()} after the computed trait's expression")
        return value

    # --- boolean structure -------------------------------------------------------------
    def or_expr(self) -> ast.Condition:
        items = [self.and_expr()]
        while self.accept("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else ast.Or(tuple(items))

    def and_expr(self) -> ast.Condition:
        items = [self.not_expr()]
        while self.accept("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else ast.And(tuple(items))

    def not_expr(self) -> ast.Condition:
        if self.at("not", "("):
            if self.too_deep():
                return ast.Const(False)
            self.depth += 1
            try:
                return self.nested_expr()
            finally:
                self.depth -= 1
        try:
            return self.atom()
        except _Stop:
            self.resync()
            return ast.Const(False)

    def nested_expr(self) -> ast.Condition:
        if self.accept("not"):
            return ast.Not(self.not_expr())
        open_tok = self.take()
        inner = self.or_expr()
        if not self.accept(")"):
            self.fail("this '(' is never closed; add a ')'", open_tok)
        return inner

    def atom(self) -> ast.Condition:
        tok = self.tok
        if self.accept("did", "has", "have"):
            self.accept("done", "performed")
            negate = self.accept("not")
            cond = self.did_body()
            return ast.Not(cond) if negate else cond
        if self.accept("never"):
            self.accept("did")
            return ast.Not(self.did_body())
        if self.accept("is"):
            if self.accept("anonymous"):
                return ast.Anonymous()
            if self.accept("identified", "known"):
                return ast.Not(ast.Anonymous())
            if self.accept("not") and self.accept("anonymous"):
                return ast.Not(ast.Anonymous())
            raise self.fail("after 'is' write 'anonymous' or 'identified'")
        if self.at("in") and self.peek().text.lower() == "segment":
            self.take()
            self.take()
            return ast.InSegment(self.name("segment name"))
        if self.at("first") and self.peek().text.lower() == "seen":
            self.take()
            self.take()
            return ast.TimeIn(ast.FirstSeen(), self.required_window())
        if self.accept("true"):
            return ast.Const(True)
        if self.accept("false"):
            return ast.Const(False)
        if tok.kind is Kind.STRING:
            raise self.fail(f"start with 'did' to test an event, e.g. did \"{tok.text}\"")
        value = self.value_expr()
        return self.value_test(value)

    # --- values --------------------------------------------------------------------------
    def value_expr(self) -> ast.Value:
        tok = self.tok
        word = tok.text.lower() if tok.kind is Kind.WORD else ""
        if word in ("trait", "traits"):
            self.take()
            self.accept(".")
            return ast.TraitRef(self.path())
        if word == "computed":
            self.take()
            self.accept("trait")
            return ast.ComputedRef(self.name("computed trait name"))
        if word in ("score", "cluster"):
            self.take()
            by_id = word == "cluster" and self.at("id") and self.peek().text.lower() == "of"
            if by_id:
                self.take()
            if self.accept("of"):
                self.expect("model")
            model = self.name("model name")
            return ast.ScoreRef(model) if word == "score" else ast.ClusterRef(model, by_id)
        if word in AGG_FUNCS or word in ("unique", "most", "distinct"):
            return self.aggregate()
        raise self.fail(
            f"expected a condition (did ..., trait ..., score ..., in segment ..., count(...)) "
            f"but found {self.describe()}{self.filter_hint()}"
        )

    def filter_hint(self) -> str:
        """Said when a property comparison stands where a condition should, right after the
        ``and``/``or`` that followed an event's filter: ``where`` takes one comparison, so
        ``did "Viewed" where plan = "pro" or plan = "team"`` read ``plan = "team"`` as a
        second condition."""
        joiner = self.tokens[self.i - 1] if self.i else None
        if not (self.filtered and joiner is not None and joiner.text.lower() in ("and", "or")):
            return ""
        if self.tok.kind is not Kind.WORD:
            return ""
        return self.hint_once(joiner.text)

    def hint_once(self, op: str) -> str:
        """:data:`FILTER_HINT` for ``op``, the first time a rule needs it (its later errors
        are the same mistake's echoes)."""
        if self.hinted:
            return ""
        self.hinted = True
        return FILTER_HINT.format(op=op.lower())

    def aggregate(self) -> ast.Aggregate:
        tok = self.take()
        func = tok.text.lower()
        if func in ("unique", "most", "distinct") and self.tok.kind is Kind.WORD:
            func = {"unique": "unique_", "most": "most_", "distinct": "unique_"}[func]
            func += {"count": "count", "list": "list", "frequent": "frequent"}.get(
                self.take().text.lower(), "?"
            )
        if func not in AGG_FUNCS:
            raise self.fail(f"unknown function '{func}'; use one of {', '.join(AGG_FUNCS)}", tok)
        self.expect("(", f" after {func}")
        path: ast.Path | None = None
        if self.tok.kind is Kind.WORD and not self.at("any", "page", "screen", "identify", "track"):
            path = self.path()
            self.expect("of", ' (write e.g. sum(revenue of "Order Completed"))')
        selector = self.selector()
        window = self.window(required=False) or ast.ALL_TIME
        joined = selector.filter is not None and self.at("and", "or")
        self.expect(")", self.hint_once(self.tok.text) if joined else "")
        if func != "count" and path is None:
            raise self.fail(
                f'{func} needs a property: {func}(price of "{selector.name or "..."}")', tok
            )
        if func == "count" and path is not None:
            raise self.fail("count counts events; drop the property or use unique_count", tok)
        return ast.Aggregate(func, selector, path, window)  # type: ignore[arg-type]

    def value_test(self, value: ast.Value) -> ast.Condition:
        if (
            isinstance(value, ast.ScoreRef)
            and self.at("in")
            and self.peek().text.lower() in ("top", "bottom")
        ):
            return self.rank_test(value)
        if self.accept("exists"):
            return ast.Exists(value)
        if self.at("does") and self.peek().text.lower() == "not":
            self.take()
            self.take()
            self.expect("exist")
            return ast.Not(ast.Exists(value))
        if self.at("before", "between", "within", "ever") or (
            self.at("in") and self.peek().text.lower() in ("last", "the")
        ):
            return ast.TimeIn(value, self.required_window())
        op, operand = self.comparison("the value")
        return ast.Compare(value, op, operand)

    def rank_test(self, score: ast.ScoreRef) -> ast.Condition:
        """``score M in top P%`` / ``in bottom P%``: lowered to a comparison on the share of the
        run's scored profiles scored at least (at most) as high as the profile (docs/segments.md)."""
        self.take()
        top = self.take().text.lower() == "top"
        tok = self.tok
        value = tok.value if tok.kind is Kind.NUMBER else None
        if not isinstance(value, int | float) or not 0 < value <= 100:
            raise self.fail(
                f"expected a percentage above 0 and at most 100 (e.g. top 10%) but found "
                f"{self.describe()}"
            )
        self.take()
        if not self.accept("%", "percent"):
            raise self.fail(f"expected '%' after {tok.text} but found {self.describe()}")
        return ast.Compare(ast.ScoreRef(score.model, "top" if top else "bottom"), "<=", value / 100)

    def comparison(self, what: str) -> tuple[ast.CompareOp, ast.Scalar | tuple[ast.Scalar, ...]]:
        if self.tok.kind is Kind.OP:
            op = self.take().text
            return op, self.literal()  # type: ignore[return-value]
        if self.accept("in"):
            return "in", self.literal_list()
        if self.accept("contains"):
            return "contains", self.string_literal()
        if self.accept("starts"):
            self.expect("with")
            return "starts with", self.string_literal()
        raise self.fail(
            f"expected a comparison for {what} (=, !=, <, <=, >, >=, in, contains, starts with, "
            f"exists) but found {self.describe()}"
        )

    # --- literals and names ------------------------------------------------------------------
    def literal(self) -> ast.Scalar:
        tok = self.tok
        if tok.kind in (Kind.STRING, Kind.NUMBER):
            self.take()
            return tok.value  # type: ignore[return-value]
        if self.accept("true"):
            return True
        if self.accept("false"):
            return False
        raise self.fail(
            f'expected a value ("text", a number, true or false) but found {self.describe()}'
        )

    def string_literal(self) -> str:
        if self.tok.kind is not Kind.STRING:
            raise self.fail(f"expected text in quotes but found {self.describe()}")
        return str(self.take().value)

    def literal_list(self) -> tuple[ast.Scalar, ...]:
        close = {"[": "]", "(": ")"}
        if not self.at("[", "("):
            raise self.fail('expected a list like ["a", "b"] after in')
        end = close[self.take().text]
        items = [self.literal()]
        while self.accept(","):
            items.append(self.literal())
        self.expect(end)
        return tuple(items)

    def name(self, what: str) -> str:
        tok = self.tok
        if tok.kind in (Kind.WORD, Kind.STRING):
            self.take()
            return str(tok.value if tok.kind is Kind.STRING else tok.text)
        raise self.fail(f"expected a {what} but found {self.describe()}")

    def path(self) -> ast.Path:
        parts = [self.name("property name")]
        while self.at(".") and self.peek().kind in (Kind.WORD, Kind.STRING):
            self.take()
            parts.append(self.name("property name"))
        if len(parts) > 1 and parts[0] == "properties":
            parts = parts[1:]
        return tuple(parts)

    def number(self, what: str) -> int:
        tok = self.tok
        if tok.kind is not Kind.NUMBER or not isinstance(tok.value, int) or tok.value < 0:
            raise self.fail(f"expected a whole number for {what} but found {self.describe()}")
        self.take()
        return tok.value

    def duration(self, number: int | None = None, at: Token | None = None) -> int:
        """A number and a unit in ms; ``at`` is the number's token when the caller read it."""
        at = at or self.tok
        n = self.number("the duration") if number is None else number
        tok = self.tok
        unit = tok.text.lower().rstrip("s") if tok.kind is Kind.WORD else ""
        if unit not in UNITS_MS:
            raise self.fail(
                f"unknown time unit {self.describe()}; use seconds, minutes, hours, days or weeks"
            )
        self.take()
        return self.bounded(n * UNITS_MS[unit], f"{n} {tok.text}", at)

    def bounded(self, ms: int, said: str, at: Token) -> int:
        """``ms`` if it is within :data:`MAX_WINDOW_MS`; else an error at ``at`` naming the
        limit, and the limit (parsing goes on, so the rest of the rule is still checked)."""
        if ms > MAX_WINDOW_MS:
            self.fail(
                f"{said} is longer than the longest window, {MAX_WINDOW_DAYS} days (100 years): "
                f"no stored event is older; write 'ever' (or no window) for all history",
                at,
            )
            return MAX_WINDOW_MS
        return ms

    # --- events --------------------------------------------------------------------------
    def selector(self) -> ast.Selector:
        tok = self.tok
        kind: ast.SelectorKind
        name: str | None = None
        if tok.kind is Kind.STRING:
            kind, name = "track", str(self.take().value)
        elif self.accept("track"):
            kind, name = "track", self.string_literal()
        elif self.accept("any"):
            self.accept("event", "events")
            kind = "any"
        elif self.at("page", "screen", "identify", "pages", "screens"):
            kind = self.take().text.lower().rstrip("s")  # type: ignore[assignment]
            if self.tok.kind is Kind.STRING and kind == "identify":
                # identify calls have no name (the grammar has none); accepting one made the
                # SQL compiler match no event while the incremental evaluator matched them all
                raise self.fail(
                    f'identify events have no name; write identify, or page/screen "{self.tok.value}"'
                )
            if self.tok.kind is Kind.STRING:
                name = str(self.take().value)
        else:
            raise self.fail(
                f'expected an event: a name in quotes like "Order Completed", any event, page or '
                f"screen, but found {self.describe()}"
            )
        flt = self.filter_primary() if self.accept("where", "with") else None
        self.filtered = self.filtered or flt is not None
        return ast.Selector(kind, name, flt)

    def filter_or(self) -> ast.Filter:
        items = [self.filter_and()]
        while self.accept("or"):
            items.append(self.filter_and())
        return items[0] if len(items) == 1 else ast.FOr(tuple(items))

    def filter_and(self) -> ast.Filter:
        items = [self.filter_primary()]
        while self.accept("and"):
            items.append(self.filter_primary())
        return items[0] if len(items) == 1 else ast.FAnd(tuple(items))

    def filter_primary(self) -> ast.Filter:
        if self.at("not", "("):
            if self.too_deep():
                return ast.FExists(("?",))
            self.depth += 1
            try:
                return self.nested_filter()
            finally:
                self.depth -= 1
        path = self.path()
        if self.accept("exists"):
            return ast.FExists(path)
        op, value = self.comparison(f"property '{'.'.join(path)}'")
        return ast.FCompare(path, op, value)

    def nested_filter(self) -> ast.Filter:
        if self.accept("not"):
            return ast.FNot(self.filter_primary())
        open_tok = self.take()
        inner = self.filter_or()
        if not self.accept(")"):
            raise self.fail("this '(' is never closed; add a ')'", open_tok)
        return inner

    def did_body(self) -> ast.Condition:
        first = self.selector()
        if self.at("then"):
            return self.sequence(first)
        op: ast.CompareOp = ">="
        count = 1
        window: ast.Window | None = None
        for _ in range(2):
            if self.at("at") and self.peek().text.lower() in _COUNT_WORDS:
                self.take()
                op = _COUNT_WORDS[self.take().text.lower()]  # type: ignore[assignment]
                count = self.number("the number of times")
                self.accept("time", "times")
            elif self.accept("exactly"):
                op, count = "=", self.number("the number of times")
                self.accept("time", "times")
            elif self.at("in", "on") and self.peek().text.lower() == "at":
                return self.periodic(first)
            elif window is None:
                window = self.window(required=False)
        return ast.Compare(ast.Aggregate("count", first, None, window or ast.ALL_TIME), op, count)

    def periodic(self, selector: ast.Selector) -> ast.Periodic:
        self.take()
        self.expect("at")
        self.expect("least")
        need = self.number("the number of periods")
        self.expect("of")
        self.accept("the")
        self.expect("last")
        buckets_tok = self.tok
        buckets = self.number("the number of periods")
        unit_tok = self.tok
        period = self.duration(1)
        if need < 1 or buckets < need:
            raise self.fail(f"'at least {need} of last {buckets}' needs 1 <= {need} <= {buckets}")
        self.bounded(buckets * period, f"last {buckets} {unit_tok.text}", buckets_tok)
        return ast.Periodic(selector, need, buckets, period)

    def sequence(self, first: ast.Selector) -> ast.Sequence:
        steps = [ast.Step(first)]
        absent: ast.Step | None = None
        while self.accept("then"):
            then_tok = self.tok
            negated = self.accept("not")
            sel = self.selector()
            within = self.duration() if self.accept("within") else None
            if absent is not None:
                raise self.fail("'then not ...' must be the last step of a sequence", then_tok)
            if negated:
                absent = ast.Step(sel, within)
            else:
                steps.append(ast.Step(sel, within))
        return ast.Sequence(tuple(steps), absent)

    def required_window(self) -> ast.Window:
        window = self.window(required=True)
        assert window is not None
        return window

    def window(self, *, required: bool) -> ast.Window | None:
        if self.accept("ever"):
            return ast.ALL_TIME
        if self.at("in", "within") and self.peek().text.lower() in ("last", "the"):
            self.take()
            self.accept("the")
            self.expect("last")
            at = self.tok
            n = self.number("the window") if self.tok.kind is Kind.NUMBER else 1
            return ast.Window(self.duration(n, at), 0)
        if self.accept("between"):
            at = self.tok
            a = self.number("the window start")
            self.expect("and")
            b = self.number("the window end")
            unit_tok = self.tok
            unit_ms = self.duration(1)
            self.expect("ago")
            far = self.bounded(max(a, b) * unit_ms, f"{max(a, b)} {unit_tok.text}", at)
            return ast.Window(far, min(a, b) * unit_ms)
        if self.accept("before"):
            near = self.duration()
            self.expect("ago")
            return ast.Window(None, near)
        if required:
            raise self.fail(
                f"expected a time window (in last 7 days, between 90 and 30 days ago, "
                f"before 30 days ago) but found {self.describe()}"
            )
        return None


def parse(text: str) -> ast.Rule:
    """Parse a segment rule; raises :class:`RuleSyntaxError` listing every error.

    >>> parse('trait plan = "pro" and score churn >= 0.7').condition.items[1].left
    ScoreRef(model='churn', rank=None)
    """
    parser = Parser(text)
    condition = parser.parse_condition()
    if parser.errors:
        raise RuleSyntaxError(parser.errors)
    return ast.Rule(text=text, condition=condition)


def parse_trait(text: str) -> ast.Rule:
    """Parse a computed trait's expression, e.g. ``sum(revenue of "Order Completed")``.

    >>> parse_trait('count("Order Completed" in last 30 days)').value.func
    'count'
    """
    parser = Parser(text)
    value = parser.parse_value()
    if parser.errors:
        raise RuleSyntaxError(parser.errors)
    return ast.Rule(text=text, value=value)
