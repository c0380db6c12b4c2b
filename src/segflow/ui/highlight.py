"""Syntax highlighting of the segment language, from the real tokenizer (``segflow.rules``).

The server colours rules it shows (``rule_html``); the editor's script colours as you type
with the same token classes, using :data:`KEYWORDS` (sent to it in the page).

>>> str(rule_html('did "Signed Up" in last 7 days'))
'<span class="k">did</span> <span class="s">&#34;Signed Up&#34;</span> <span class="k">in</span> <span class="k">last</span> <span class="n">7</span> <span class="k">days</span>'
"""

from __future__ import annotations

from markupsafe import Markup, escape

from segflow.rules.tokens import Kind, tokenize

_WORDS = (
    "and or not did does has done never ever is anonymous identified in segment first seen "
    "true false at least most times time exactly of the last then within before between ago "
    "track any event page screen identify where with exists exist properties trait computed "
    "score cluster model count sum avg min max first last distinct unique frequent list on "
    "contains starts ends millisecond milliseconds second seconds minute minutes hour hours "
    "day days week weeks"
)  # the parser's words (segflow.rules.parser); anything else is a name
KEYWORDS = frozenset(_WORDS.split())
_CLASS = {Kind.STRING: "s", Kind.NUMBER: "n", Kind.OP: "o", Kind.PUNCT: "p"}


def _offsets(text: str) -> list[int]:
    starts, total = [0], 0
    for line in text.split("\n"):
        total += len(line) + 1
        starts.append(total)
    return starts


def rule_html(text: str) -> Markup:
    """``text`` as escaped HTML with one ``<span class=...>`` per token (comments kept)."""
    tokens, _ = tokenize(text)
    starts, out, pos = _offsets(text), [], 0
    for token in tokens:
        if token.kind is Kind.END:
            break
        begin = starts[token.line - 1] + token.column - 1
        end = _token_end(text, begin, token.kind, token.text)
        out.append(_gap(text[pos:begin]))
        cls = _CLASS.get(token.kind) or ("k" if token.text.lower() in KEYWORDS else "w")
        out.append(f'<span class="{cls}">{escape(text[begin:end])}</span>')
        pos = end
    out.append(_gap(text[pos:]))
    return Markup("".join(out))


def _token_end(text: str, begin: int, kind: Kind, raw: str) -> int:
    if kind is not Kind.STRING:
        return begin + len(raw)  # words, numbers, operators and punctuation keep their text
    quote, end = text[begin], begin + 1
    while end < len(text) and text[end] != quote:
        end += 2 if text[end] == "\\" else 1
    return min(end + 1, len(text))


def _gap(text: str) -> str:
    """Whitespace and comments between tokens."""
    out, i = [], 0
    while i < len(text):
        j = text.find("#", i)
        if j < 0:
            out.append(str(escape(text[i:])))
            break
        k = text.find("\n", j)
        k = len(text) if k < 0 else k
        out.append(f'{escape(text[i:j])}<span class="c">{escape(text[j:k])}</span>')
        i = k
    return "".join(out)
