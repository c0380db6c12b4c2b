"""Tokenizer: rule text -> tokens with line and column.

>>> [t.text for t in tokenize('did "Order Completed" at least 2 times')[0]][:3]
['did', 'Order Completed', 'at']
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from enum import Enum

from segflow.rules.exceptions import Diagnostic


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    OP = "op"
    PUNCT = "punct"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    line: int
    column: int
    value: object = None


_OPS = ("<=", ">=", "!=", "=", "<", ">")
_PUNCT = "()[],.%"


def _word_char(c: str, first: bool) -> bool:
    return c.isalpha() or c == "_" or (not first and (c.isdigit() or c == "-"))


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.col = 1
        self.tokens: list[Token] = []
        self.errors: list[Diagnostic] = []

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.text[self.pos] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.pos += 1

    def run(self) -> None:
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c.isspace():
                self.advance()
            elif c == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.advance()
            elif c in "\"'":
                self.string(c)
            elif c.isdigit() or (c == "-" and self.text[self.pos + 1 : self.pos + 2].isdigit()):
                self.number()
            elif _word_char(c, True):
                self.word()
            elif any(self.text.startswith(op, self.pos) for op in _OPS):
                op = next(op for op in _OPS if self.text.startswith(op, self.pos))
                self.emit(Kind.OP, op, len(op))
            elif c in _PUNCT:
                self.emit(Kind.PUNCT, c, 1)
            else:
                self.errors.append(
                    Diagnostic(
                        line=self.line, column=self.col, message=f"unexpected character {c!r}"
                    )
                )
                self.advance()
        self.tokens.append(Token(Kind.END, "end of rule", self.line, self.col))

    def emit(self, kind: Kind, text: str, length: int, value: object = None) -> None:
        self.tokens.append(Token(kind, text, self.line, self.col, value))
        self.advance(length)

    def word(self) -> None:
        end = self.pos + 1
        while end < len(self.text) and _word_char(self.text[end], False):
            end += 1
        self.emit(Kind.WORD, self.text[self.pos : end], end - self.pos)

    def number(self) -> None:
        end = self.pos + 1
        while end < len(self.text) and (self.text[end].isdigit() or self.text[end] in "._"):
            end += 1
        raw = self.text[self.pos : end].rstrip(".")
        try:
            value: float | int = int(raw.replace("_", "")) if "." not in raw else float(raw)
        except ValueError:
            self.errors.append(
                Diagnostic(line=self.line, column=self.col, message=f"{raw!r} is not a number")
            )
            value = 0
        self.emit(Kind.NUMBER, raw, len(raw), value)

    def string(self, quote: str) -> None:
        end = self.pos + 1
        while end < len(self.text) and self.text[end] != quote:
            end += 2 if self.text[end] == "\\" else 1
        if end >= len(self.text):
            self.errors.append(
                Diagnostic(
                    line=self.line,
                    column=self.col,
                    message=f"this text is missing its closing {quote}",
                )
            )
            end = len(self.text) - 1
        raw = self.text[self.pos + 1 : end]
        try:
            value = json.loads('"' + raw.replace('"', '\\"').replace("\\'", "'") + '"')
        except json.JSONDecodeError:
            value = raw
        if quote == '"':
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads('"' + raw + '"')
        self.emit(Kind.STRING, str(value), end + 1 - self.pos, value)


def tokenize(text: str) -> tuple[list[Token], list[Diagnostic]]:
    """Split ``text`` into tokens; returns the tokens and any lexical errors."""
    scanner = _Scanner(text)
    scanner.run()
    return scanner.tokens, scanner.errors
