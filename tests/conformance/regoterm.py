"""A small parser for Rego values as ACGS prints them (and as cases spell
``input_term``).

JSON keeps no distinction between arrays and sets, so results are read in
Rego value syntax, where a set prints as ``{a, b}`` or ``set()``. Objects may
have non-string keys. Only ground values are accepted: a reference, variable
or call makes the parse fail, which callers treat as "not a plain value".
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any


class RegoParseError(ValueError):
    pass


class Num(Decimal):
    """A number that remembers how it was spelled (OPA keeps number text)."""

    text: str

    def __new__(cls, text: str) -> "Num":
        try:
            obj = super().__new__(cls, text)
        except InvalidOperation as exc:
            raise RegoParseError(f"bad number {text!r}") from exc
        obj.text = text
        return obj


class RegoSet:
    __slots__ = ("items",)

    def __init__(self, items: list[Any]):
        self.items = items

    def __repr__(self) -> str:
        return f"RegoSet({self.items!r})"


class RegoObject:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]]):
        self.items = items

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.items:
            if isinstance(k, str) and k == key:
                return v
        return default

    def __repr__(self) -> str:
        return f"RegoObject({self.items!r})"


_WS = " \t\r\n"
_NUMBER_CHARS = set("0123456789+-.eE")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, msg: str) -> RegoParseError:
        snippet = self.text[self.pos : self.pos + 30]
        return RegoParseError(f"{msg} at offset {self.pos} near {snippet!r}")

    def skip_ws(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in _WS:
                self.pos += 1
            elif ch == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            else:
                break

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos : self.pos + 1]

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def value(self) -> Any:
        ch = self.peek()
        if ch == "":
            raise self.fail("unexpected end of input")
        if ch == "[":
            return self.array()
        if ch == "{":
            return self.brace()
        if ch == '"':
            return self.string()
        if ch == "`":
            return self.raw_string()
        if ch == "-" or ch.isdigit():
            return self.number()
        for word, val in (("null", None), ("true", True), ("false", False)):
            if self._keyword(word):
                return val
        if self._keyword("set"):
            self.expect("(")
            self.expect(")")
            return RegoSet([])
        raise self.fail("not a ground Rego value")

    def _keyword(self, word: str) -> bool:
        end = self.pos + len(word)
        if self.text[self.pos : end] != word:
            return False
        nxt = self.text[end : end + 1]
        if nxt and (nxt.isalnum() or nxt == "_"):
            return False
        self.pos = end
        return True

    def array(self) -> list[Any]:
        self.expect("[")
        items: list[Any] = []
        while True:
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            sep = self.peek()
            if sep == ",":
                self.pos += 1
            elif sep != "]":
                raise self.fail("expected ',' or ']'")

    def brace(self) -> Any:
        self.expect("{")
        if self.peek() == "}":
            self.pos += 1
            return RegoObject([])
        first = self.value()
        if self.peek() == ":":
            self.pos += 1
            pairs = [(first, self.value())]
            while True:
                sep = self.peek()
                if sep == "}":
                    self.pos += 1
                    return RegoObject(pairs)
                if sep != ",":
                    raise self.fail("expected ',' or '}'")
                self.pos += 1
                if self.peek() == "}":
                    self.pos += 1
                    return RegoObject(pairs)
                key = self.value()
                self.expect(":")
                pairs.append((key, self.value()))
        items = [first]
        while True:
            sep = self.peek()
            if sep == "}":
                self.pos += 1
                return RegoSet(items)
            if sep != ",":
                raise self.fail("expected ',' or '}'")
            self.pos += 1
            if self.peek() == "}":
                self.pos += 1
                return RegoSet(items)
            items.append(self.value())

    def string(self) -> str:
        # A Rego string literal is a JSON string literal; find its end and let
        # the json module decode the escapes.
        start = self.pos
        text = self.text
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                break
            i += 1
        else:
            raise self.fail("unterminated string")
        self.pos = i + 1
        try:
            return json.loads(text[start : i + 1])
        except json.JSONDecodeError as exc:
            raise self.fail(f"bad string literal: {exc}") from exc

    def raw_string(self) -> str:
        end = self.text.find("`", self.pos + 1)
        if end < 0:
            raise self.fail("unterminated raw string")
        out = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return out

    def number(self) -> Num:
        start = self.pos
        text = self.text
        i = start
        while i < len(text) and text[i] in _NUMBER_CHARS:
            i += 1
        self.pos = i
        return Num(text[start:i])


def parse(text: str) -> Any:
    """Parses one ground Rego value; raises RegoParseError otherwise."""
    parser = _Parser(text)
    val = parser.value()
    if parser.peek() != "":
        raise parser.fail("trailing characters")
    return val


def to_plain_json(value: Any) -> Any:
    """Converts a parsed value to plain JSON data, or raises ValueError when it
    holds something JSON cannot carry (a set, a non-string object key)."""
    if isinstance(value, RegoSet):
        raise ValueError("contains a set")
    if isinstance(value, RegoObject):
        out: dict[str, Any] = {}
        for k, v in value.items:
            if not isinstance(k, str):
                raise ValueError(f"has a non-string object key {render(k)}")
            out[k] = to_plain_json(v)
        return out
    if isinstance(value, list):
        return [to_plain_json(v) for v in value]
    if isinstance(value, Num):
        # Keep the spelling: as JSON input, 1.0 and 1 are not the same text.
        return value
    return value


def render(value: Any) -> str:
    """Rego-syntax text of a parsed value (for messages and diffs)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Num):
        return value.text
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, RegoSet):
        if not value.items:
            return "set()"
        return "{" + ", ".join(render(v) for v in value.items) + "}"
    if isinstance(value, RegoObject):
        return "{" + ", ".join(f"{render(k)}: {render(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render(k)}: {render(v)}" for k, v in value.items()) + "}"
    return repr(value)
