"""The search filter language (MLflow's ``search_runs`` style), parsed into a small AST.

``metrics.IC > 0.03 and params.num_leaves = 63 and tags.stage = 'prod' and
model_id LIKE 'alpha%'``: clauses joined by AND (no OR, no parentheses, as in MLflow).
Nothing here touches SQL: :mod:`cas_repo.catalog.search` compiles a :class:`Filter`
into SQL whose text depends only on the filter's shape; every name and value a user
wrote is a bound parameter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import InvalidFilterError
from .metadata import utc

GRAMMAR = (
    "a filter is CLAUSE [AND CLAUSE]...; CLAUSE is KEY OP VALUE or KEY [NOT] IN (VALUE, ...); KEY is "
    "metrics.NAME, params.NAME, tags.NAME (NAME in `backticks` or \"quotes\" when it holds spaces) or one of "
    "model_id, version, experiment_name, model_type, kind, digest, alias, created_at, saved_at; OP is "
    "= != < <= > >= LIKE ILIKE; VALUE is a number or a 'quoted string' "
    "(e.g. metrics.IC > 0.03 and tags.stage = 'prod' and model_id LIKE 'lgb%')")

Value = float | str | datetime

# What each kind of key compares with: a number, text, or a time (ISO 8601 text).
NUMBER, TEXT, TIME, ANY = "number", "text", "time", "any"
ATTRIBUTES = {"model_id": TEXT, "experiment_name": TEXT, "model_type": TEXT, "kind": TEXT, "digest": TEXT,
              "alias": TEXT, "version": NUMBER, "created_at": TIME, "saved_at": TIME}
# MLflow's spellings, read as ours.
_SYNONYMS = {"name": "model_id", "experiment": "experiment_name", "type": "model_type"}
ENTITIES = {"metrics": "metric", "metric": "metric", "params": "param", "param": "param",
            "parameters": "param", "parameter": "param", "hyperparameters": "param", "tags": "tag",
            "tag": "tag", "attributes": "attribute", "attribute": "attribute", "attr": "attribute"}
_OPS = {
    NUMBER: ("=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"),
    TIME: ("=", "!=", "<", "<=", ">", ">="),
    TEXT: ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
}
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE")


@dataclass(frozen=True, slots=True)
class Key:
    """What a clause or an order key reads: ``entity`` is metric, param, tag or attribute."""

    entity: str
    name: str

    def __str__(self) -> str:
        if self.entity == "attribute":
            return self.name
        return f"{self.entity}s.{_quote_name(self.name)}"

    @property
    def kind(self) -> str:
        """What its values are: NUMBER (metrics), TEXT (tags), ANY (params), or the attribute's."""
        return {"metric": NUMBER, "tag": TEXT, "param": ANY}.get(self.entity) or ATTRIBUTES[self.name]


@dataclass(frozen=True, slots=True)
class Clause:
    """``key op value``; for IN and NOT IN, ``value`` is a tuple of values of one type."""

    key: Key
    op: str
    value: Value | tuple[Value, ...]

    def __str__(self) -> str:
        if isinstance(self.value, tuple):
            return f"{self.key} {self.op} ({', '.join(_literal(v) for v in self.value)})"
        return f"{self.key} {self.op} {_literal(self.value)}"

    @property
    def numeric(self) -> bool:
        """Whether the clause compares numbers (a param compares as its literal does)."""
        first = self.value[0] if isinstance(self.value, tuple) else self.value
        return isinstance(first, float)


@dataclass(frozen=True, slots=True)
class Filter:
    """Clauses that must all hold (an empty filter matches every version)."""

    clauses: tuple[Clause, ...] = ()

    def __str__(self) -> str:
        return " and ".join(str(c) for c in self.clauses)

    def also(self, key: str, op: str, value: Value | tuple[Value, ...]) -> Filter:
        """This filter and one more clause on an attribute (``also("experiment_name", "=", e)``)."""
        return Filter((*self.clauses, _checked(Clause(Key("attribute", key), op, value), 0, "")))


@dataclass(frozen=True, slots=True)
class OrderKey:
    key: Key
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.key} {'DESC' if self.descending else 'ASC'}"


def _quote_name(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else "`" + name.replace("`", "``") + "`"


def _literal(v: Value) -> str:
    if isinstance(v, datetime):
        return "'" + v.isoformat() + "'"
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
    return "'" + v.replace("'", "''") + "'"


# -- tokens ------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<backtick>`(?:[^`]|``)*`)
  | (?P<single>'(?:[^']|'')*')
  | (?P<double>"(?:[^"]|"")*")
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    pos: int

    @property
    def unquoted(self) -> str:
        q = self.text[0]
        return self.text[1:-1].replace(q + q, q)


def _fail(text: str, pos: int, what: str) -> InvalidFilterError:
    shown = text if len(text) <= 200 else text[:200] + "…"
    caret = " " * min(pos, len(shown)) + "^"
    return InvalidFilterError(f"invalid filter at position {pos + 1}: {what}\n  {shown}\n  {caret}\n{GRAMMAR}")


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "`'\"":
                raise _fail(text, pos, f"the quote {text[pos]} is never closed")
            raise _fail(text, pos, f"unexpected character {text[pos]!r}")
        assert m.lastgroup is not None
        if m.lastgroup != "ws":
            out.append(_Token(m.lastgroup, m.group(), pos))
        pos = m.end()
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> _Token:
        t = self.peek()
        if t is None:
            raise _fail(self.text, len(self.text), f"the filter ends where {what} should come")
        self.i += 1
        return t

    def keyword(self, word: str) -> bool:
        t = self.peek()
        if t is not None and t.kind == "word" and t.text.upper() == word:
            self.i += 1
            return True
        return False

    def key(self) -> tuple[Key, int]:
        t = self.take("a key (metrics.NAME, params.NAME, tags.NAME or an attribute)")
        if t.kind != "word":
            raise _fail(self.text, t.pos, f"expected a key such as metrics.IC, got {t.text!r}")
        head, dot, rest = t.text.partition(".")
        if not dot:
            name = _SYNONYMS.get(t.text.lower(), t.text.lower())
            if name not in ATTRIBUTES:
                raise _fail(self.text, t.pos, f"unknown key {t.text!r}: write metrics.{t.text}, params.{t.text} "
                                              f"or tags.{t.text}, or one of {', '.join(ATTRIBUTES)}")
            return Key("attribute", name), t.pos
        entity = ENTITIES.get(head.lower())
        if entity is None:
            raise _fail(self.text, t.pos, f"unknown key {head!r}: keys start with metrics., params., tags. "
                                          "or attributes.")
        if not rest:
            q = self.take("a name after '" + t.text + "'")
            if q.kind not in ("backtick", "double"):
                raise _fail(self.text, q.pos, f"expected a name after {t.text!r}")
            rest = q.unquoted
            if not rest:
                raise _fail(self.text, q.pos, "a name cannot be empty")
        if entity == "attribute":
            name = _SYNONYMS.get(rest.lower(), rest.lower())
            if name not in ATTRIBUTES:
                raise _fail(self.text, t.pos, f"unknown attribute {rest!r}: one of {', '.join(ATTRIBUTES)}")
            return Key("attribute", name), t.pos
        return Key(entity, rest), t.pos

    def value(self) -> tuple[Value, int]:
        t = self.take("a value")
        if t.kind == "number":
            v = float(t.text)
            if not math.isfinite(v):
                raise _fail(self.text, t.pos, f"{t.text} is not a finite number")
            return v, t.pos
        if t.kind in ("single", "double"):
            return t.unquoted, t.pos
        raise _fail(self.text, t.pos, f"expected a number or a 'quoted string', got {t.text!r}")


def _time(v: Value) -> datetime:
    if isinstance(v, datetime):
        return v
    if isinstance(v, float):  # milliseconds since the epoch, as MLflow's times
        return datetime.fromtimestamp(v / 1000, UTC)
    return utc(datetime.fromisoformat(v.strip()))


def _checked(c: Clause, pos: int, text: str) -> Clause:
    """``c`` if its op and values suit its key (times parsed); else a positioned error."""
    kind = c.key.kind
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    ops = _OPS.get(kind, _OPS[NUMBER] + ("LIKE", "ILIKE") if kind == ANY else ())
    if c.op not in ops:
        raise _fail(text, pos, f"{c.key} compares with {', '.join(ops)}, not {c.op}")
    if kind == TIME:
        try:
            return Clause(c.key, c.op, _time(values[0]))
        except (ValueError, OverflowError, OSError) as exc:
            raise _fail(text, pos, f"{c.key} compares with a time, e.g. '2026-03-01T09:00Z', not "
                                   f"{_literal(values[0])}") from exc
    numbers = [isinstance(v, float) for v in values]
    if kind == NUMBER and not all(numbers):
        raise _fail(text, pos, f"{c.key} compares with numbers: drop the quotes")
    if kind == TEXT and any(numbers):
        raise _fail(text, pos, f"{c.key} compares with text: quote the value, e.g. {c.key} = '3'")
    if kind == ANY:
        if any(numbers) and not all(numbers):
            raise _fail(text, pos, "the values of IN are all numbers or all 'quoted strings'")
        if all(numbers) and c.op in ("LIKE", "ILIKE"):
            raise _fail(text, pos, f"{c.op} compares with a 'quoted pattern'")
        if not any(numbers) and c.op in ("<", "<=", ">", ">="):
            raise _fail(text, pos, f"{c.op} compares {c.key} with a number, not text")
    return c


def parse_filter(text: str | Filter | None) -> Filter:
    """``text`` as a :class:`Filter` (None or blank: match everything).

    Raises:
        InvalidFilterError: naming the position, what was expected, and the grammar.
    """
    if text is None:
        return Filter()
    if isinstance(text, Filter):
        return text
    if not isinstance(text, str):
        raise InvalidFilterError(f"a filter is text, got {type(text).__name__}. {GRAMMAR}")
    r = _Reader(text)
    clauses: list[Clause] = []
    if r.peek() is None:
        return Filter()
    while True:
        key, pos = r.key()
        negated = r.keyword("NOT")
        if r.keyword("IN"):
            op = "NOT IN" if negated else "IN"
            t = r.take("'('")
            if t.text != "(":
                raise _fail(text, t.pos, f"expected '(' after {op}, got {t.text!r}")
            values = [r.value()[0]]
            while (t := r.take("',' or ')'")).text == ",":
                values.append(r.value()[0])
            if t.text != ")":
                raise _fail(text, t.pos, f"expected ',' or ')', got {t.text!r}")
            clauses.append(_checked(Clause(key, op, tuple(values)), pos, text))
        else:
            t = r.take("an operator")
            if negated:
                raise _fail(text, t.pos, "NOT is only accepted as NOT IN")
            op = {"<>": "!="}.get(t.text, t.text.upper())
            if op not in COMPARISONS:
                raise _fail(text, t.pos, f"expected an operator ({' '.join(COMPARISONS)} IN), got {t.text!r}")
            value, _ = r.value()
            clauses.append(_checked(Clause(key, op, value), pos, text))
        after = r.peek()
        if after is None:
            return Filter(tuple(clauses))
        if not r.keyword("AND"):
            what = "OR is not supported (as in MLflow): run two searches" if after.text.upper() == "OR" else \
                f"expected AND or the end of the filter, got {after.text!r}"
            raise _fail(text, after.pos, what)


def parse_order_by(keys: str | Sequence[str | OrderKey] | None) -> tuple[OrderKey, ...]:
    """``["metrics.IC DESC", "created_at"]`` as order keys (ASC unless DESC is given).

    Raises:
        InvalidFilterError: an unknown key, or text after the direction.
    """
    if keys is None:
        return ()
    items: Iterable[str | OrderKey] = [keys] if isinstance(keys, str) else keys
    out = []
    for item in items:
        if isinstance(item, OrderKey):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise InvalidFilterError(f"an order_by key is text like 'metrics.IC DESC', got {type(item).__name__}")
        r = _Reader(item)
        key, _ = r.key()
        descending = r.keyword("DESC")
        if not descending:
            r.keyword("ASC")
        t = r.peek()
        if t is not None:
            raise _fail(item, t.pos, "an order_by key is KEY [ASC|DESC], e.g. 'metrics.IC DESC'")
        if key == Key("attribute", "alias"):
            raise _fail(item, 0, "versions cannot be ordered by alias")
        out.append(OrderKey(key, descending))
    return tuple(out)
