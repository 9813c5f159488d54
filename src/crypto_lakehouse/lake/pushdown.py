"""Which rows of each lake table a query can need, read from its SQL, for Iceberg planning.

DuckDB applies the whole SQL to whatever data files it is handed, so this module only has
to give pyiceberg, per table, a filter that every row the SQL needs satisfies; pyiceberg then
drops the files whose partition values or column statistics rule that filter out. The
filter may be too wide, never too narrow. So only what is certain is kept: AND-ed (and
OR-ed, when every branch speaks of the same table) comparisons of one column of one table
with literals in a SELECT's WHERE. Functions of columns, comparisons between columns,
subqueries, columns an unqualified name cannot pin to one table, and joins that pair rows
by position or nearness (ASOF, POSITIONAL, SEMI, ANTI) give nothing. A table read in
several places gets the OR of each place's filter; one place without a filter means none.

The module is pure (no catalog, no pyiceberg until `to_iceberg`), so it is tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema

# A lake table as `namespace.name` (the fallback when the SQL cannot be parsed).
_QUALIFIED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_INTEGER = re.compile(r"^\d+$")
_DECIMAL = re.compile(r"^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_OPS = {exp.EQ: "=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
# Joins after which a WHERE on one side still only drops that side's own rows.
_PLAIN_JOIN_KINDS = {"", "INNER", "OUTER", "CROSS"}
# DuckDB orders NaN above every number, Iceberg statistics leave NaN out of the bounds:
# on floating columns only comparisons that NaN never satisfies are pushed.
_FLOAT_OPS = {"=", "in", "<", "<="}


@dataclass(frozen=True)
class Lit:
    """A literal as written: kind string|number|bool|date|timestamp.

    A timestamp carries a timezone when the SQL gave an offset or said TIMESTAMPTZ.
    """

    kind: str
    value: Any


@dataclass(frozen=True)
class Pred:
    """`column op values`; op is =, <, <=, >, >= (one value) or in (several)."""

    column: str
    op: str
    values: tuple[Any, ...]

    def __str__(self) -> str:
        if self.op == "in":
            return f"{self.column} IN ({', '.join(_show(v) for v in self.values)})"
        return f"{self.column} {self.op} {_show(self.values[0])}"


@dataclass(frozen=True)
class AllOf:
    """Every part holds (AND); no parts at all means no restriction."""

    parts: tuple[Filter, ...]

    def __str__(self) -> str:
        return " AND ".join(_group(p) for p in self.parts) if self.parts else "TRUE"


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds (OR)."""

    parts: tuple[Filter, ...]

    def __str__(self) -> str:
        return " OR ".join(_group(p) for p in self.parts)


Filter = Pred | AllOf | AnyOf
TRUE = AllOf(())


def _show(value: Any) -> str:
    if isinstance(value, Lit):
        value = value.value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat(sep=' ')}'"
    return "'" + str(value).replace("'", "''") + "'"


def _group(part: Filter) -> str:
    return f"({part})" if isinstance(part, AnyOf | AllOf) and len(part.parts) > 1 else str(part)


Columns = Callable[[str], Collection[str] | None]


class SqlReads:
    """The lake tables a SQL text reads, and for each the filter its rows must pass."""

    def __init__(self, sql: str, namespaces: Collection[str]) -> None:
        self.namespaces = {n.lower() for n in namespaces}
        self._statements: list[exp.Expression] | None
        try:
            statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
        except (sqlglot.errors.SqlglotError, RecursionError):
            statements = None
        if statements is not None and any(s.find(exp.Command) for s in statements):
            statements = None  # parts sqlglot did not understand: no push-down
        self._statements = statements

    @property
    def tables(self) -> list[str]:
        """`namespace.name` of every lake table the SQL names, lower case, in order."""
        if self._statements is None:
            return []
        names = (_lake_name(t, self.namespaces) for s in self._statements for t in _tables(s))
        return list(dict.fromkeys(n for n in names if n))

    @property
    def parsed(self) -> bool:
        return self._statements is not None

    def filters(self, columns: Columns) -> dict[str, Filter]:
        """Per table, the OR of the filters of every place the SQL reads it.

        `columns(table)` gives a table's column names (lower case), None when unknown; they
        decide which table an unqualified column belongs to.
        """
        found: dict[str, list[Filter]] = {}
        for statement in self._statements or []:
            for table in _tables(statement):
                name = _lake_name(table, self.namespaces)
                if name:
                    found.setdefault(name, []).append(
                        _reference_filter(table, columns, self.namespaces)
                    )
        return {name: _union(parts) for name, parts in found.items()}


def qualified_names(sql: str) -> list[str]:
    """Every `a.b` in the text, lower case: a cheap first look before anything is parsed."""
    return list(dict.fromkeys(f"{a}.{b}".lower() for a, b in _QUALIFIED.findall(sql)))


def _tables(statement: exp.Expression) -> Iterable[exp.Table]:
    return statement.find_all(exp.Table)


def _lake_name(table: exp.Table, namespaces: set[str]) -> str | None:
    if table.catalog or not table.db or not table.name:
        return None
    if table.db.lower() not in namespaces:
        return None
    return f"{table.db}.{table.name}".lower()


def _union(parts: list[Filter]) -> Filter:
    unique = list(dict.fromkeys(parts))
    if any(p == TRUE for p in unique):
        return TRUE
    return unique[0] if len(unique) == 1 else AnyOf(tuple(unique))


def _arg(node: exp.Expression, *keys: str) -> Any:
    for key in keys:
        if node.args.get(key) is not None:
            return node.args[key]
    return None


def _reference_filter(table: exp.Table, columns: Columns, namespaces: set[str]) -> Filter:
    """What the WHERE of the SELECT reading `table` directly implies about its rows."""
    alias = table.args.get("alias")
    if table.args.get("sample") or table.args.get("pivots") or (alias and alias.columns):
        return TRUE
    holder = table.parent
    if not isinstance(holder, exp.From | exp.Join):
        return TRUE
    select = holder.parent
    if not isinstance(select, exp.Select) or _arg(select, "sample"):
        return TRUE
    where = select.args.get("where")
    if where is None:
        return TRUE
    joins = select.args.get("joins") or []
    if any(not _plain(join) for join in joins):
        return TRUE
    from_ = _arg(select, "from", "from_")
    sources = [from_.this] if from_ is not None else []
    sources += [join.this for join in joins]
    scope = _Scope(sources, columns, namespaces)
    me = scope.key_of(table)
    if me is None:
        return TRUE
    return _implied(where.this, scope).get(me, TRUE)


def _plain(join: exp.Join) -> bool:
    if (join.args.get("method") or "").upper() not in {"", "NATURAL"}:
        return False
    return (join.args.get("kind") or "").upper() in _PLAIN_JOIN_KINDS


class _Scope:
    """The sources of one SELECT, to tell which one a column belongs to."""

    def __init__(self, sources: list[exp.Expression], columns: Columns, namespaces: set[str]):
        self.keys: dict[str, exp.Expression | None] = {}
        self.known: dict[str, Collection[str] | None] = {}
        for source in sources:
            key = source.alias_or_name.lower()
            if key in self.keys:
                self.keys[key] = None  # the same name twice: ambiguous
                continue
            self.keys[key] = source
            lake = _lake_name(source, namespaces) if isinstance(source, exp.Table) else None
            names = columns(lake) if lake else None
            self.known[key] = {c.lower() for c in names} if names is not None else None

    def key_of(self, table: exp.Table) -> str | None:
        key = table.alias_or_name.lower()
        return key if self.keys.get(key) is table else None

    def resolve(self, column: exp.Column) -> str | None:
        name = column.name.lower()
        if column.args.get("catalog"):
            return None
        if column.table:
            key = column.table.lower()
            source = self.keys.get(key)
            if source is None or not isinstance(source, exp.Table):
                return None
            if column.db and (column.db.lower() != source.db.lower() or source.alias):
                return None
            known = self.known.get(key)
            return key if known is not None and name in known else None
        if any(known is None for known in self.known.values()) and len(self.keys) > 1:
            return None
        owners = [k for k, known in self.known.items() if known is not None and name in known]
        return owners[0] if len(owners) == 1 and self.keys.get(owners[0]) is not None else None


def _implied(node: exp.Expression, scope: _Scope) -> dict[str, Filter]:
    """For each source, a filter its row satisfies whenever `node` is TRUE."""
    if isinstance(node, exp.Paren):
        return _implied(node.this, scope)
    if isinstance(node, exp.And):
        left, right = _implied(node.this, scope), _implied(node.expression, scope)
        merged = dict(left)
        for key, part in right.items():
            merged[key] = _and(merged[key], part) if key in merged else part
        return merged
    if isinstance(node, exp.Or):
        left, right = _implied(node.this, scope), _implied(node.expression, scope)
        return {key: _or(left[key], right[key]) for key in left.keys() & right.keys()}
    found = _comparison(node, scope)
    return {found[0]: found[1]} if found else {}


def _and(a: Filter, b: Filter) -> Filter:
    return AllOf(_parts(a, AllOf) + _parts(b, AllOf))


def _or(a: Filter, b: Filter) -> Filter:
    return AnyOf(_parts(a, AnyOf) + _parts(b, AnyOf))


def _parts(found: Filter, kind: type) -> tuple[Filter, ...]:
    return found.parts if isinstance(found, kind) else (found,)


def _comparison(node: exp.Expression, scope: _Scope) -> tuple[str, Filter] | None:
    if type(node) in _OPS:
        op = _OPS[type(node)]
        left, right = node.this, node.expression
        if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
            left, right, op = right, left, _FLIP[op]
        value = literal(right)
        if not isinstance(left, exp.Column) or value is None:
            return None
        key = scope.resolve(left)
        return (key, Pred(left.name.lower(), op, (value,))) if key else None
    if isinstance(node, exp.Between) and isinstance(node.this, exp.Column):
        if node.args.get("symmetric"):
            return None
        low, high = literal(node.args.get("low")), literal(node.args.get("high"))
        key = scope.resolve(node.this)
        if key is None or low is None or high is None:
            return None
        name = node.this.name.lower()
        return key, AllOf((Pred(name, ">=", (low,)), Pred(name, "<=", (high,))))
    if isinstance(node, exp.In) and isinstance(node.this, exp.Column):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            return None
        values = [literal(v) for v in node.expressions]
        key = scope.resolve(node.this)
        if key is None or not values or any(v is None for v in values):
            return None
        return key, Pred(node.this.name.lower(), "in", tuple(values))
    return None


def literal(node: exp.Expression | None) -> Lit | None:
    """A SQL literal as a typed value, or None when `node` is anything else.

    An impossible date or time (`DATE '2024-02-30'`) is None too: DuckDB reports it.
    """
    try:
        return _literal(node)
    except (ValueError, OverflowError):
        return None


def _literal(node: exp.Expression | None) -> Lit | None:
    if isinstance(node, exp.Paren):
        return _literal(node.this)
    if isinstance(node, exp.Boolean):
        return Lit("bool", bool(node.this))
    if isinstance(node, exp.Neg):
        inner = _literal(node.this)
        return Lit("number", -inner.value) if inner and inner.kind == "number" else None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return Lit("string", node.this)
        text = str(node.this)
        if _INTEGER.match(text):
            return Lit("number", int(text))
        return Lit("number", float(text)) if _DECIMAL.match(text) else None
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        text, to = node.this.this, node.to.this
        if to == exp.DataType.Type.DATE and _DATE.match(text):
            return Lit("date", date.fromisoformat(text))
        if to in {exp.DataType.Type.TIMESTAMPTZ} and _TIMESTAMP.match(text):
            moment = datetime.fromisoformat(text)
            return Lit("timestamp", moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        timestamps = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ}
        if to in timestamps and _TIMESTAMP.match(text):
            moment = datetime.fromisoformat(text)
            # DuckDB drops an offset written in a TIMESTAMP literal; do not guess.
            return Lit("timestamp", moment) if moment.tzinfo is None else None
        if to in {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT}:
            return Lit("string", text)
    return None


# ---- binding to a table's schema, and the pyiceberg expression ----------------------------


def bind(found: Filter, schema: Schema) -> Filter | None:
    """`found` with values of each column's type, parts that do not fit dropped.

    None means nothing can be pushed. An AND keeps the parts that bind; an OR needs all.
    """
    if isinstance(found, Pred):
        return _bind_pred(found, schema)
    parts = [bind(p, schema) for p in found.parts]
    if isinstance(found, AnyOf):
        return None if any(p is None for p in parts) else AnyOf(tuple(p for p in parts if p))
    kept = tuple(p for p in parts if p is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else AllOf(kept)


def _bind_pred(pred: Pred, schema: Schema) -> Pred | None:
    from pyiceberg import types as t

    fields = [f for f in schema.fields if f.name.lower() == pred.column]
    if len(fields) != 1 or not fields[0].field_type.is_primitive:
        return None
    field = fields[0]
    kind = field.field_type
    if isinstance(kind, t.FloatType | t.DoubleType) and pred.op not in _FLOAT_OPS:
        return None
    try:
        values = [_value(v, kind) for v in pred.values]
    except (ValueError, OverflowError):  # a date DuckDB will reject, a time out of range
        return None
    if any(v is None for v in values):
        return None
    return Pred(field.name, pred.op, tuple(values))


def _value(lit: Lit, kind: Any) -> Any:
    """The Python value of `lit` compared with a column of Iceberg type `kind`, or None."""
    from pyiceberg import types as t

    if isinstance(kind, t.StringType):
        return lit.value if lit.kind == "string" else None
    if isinstance(kind, t.BooleanType):
        return lit.value if lit.kind == "bool" else None
    if isinstance(kind, t.IntegerType | t.LongType):
        return _whole(lit, 2**31 if isinstance(kind, t.IntegerType) else 2**63)
    if isinstance(kind, t.DoubleType):
        if lit.kind != "number" or (isinstance(lit.value, int) and abs(lit.value) > 2**53):
            return None
        return float(lit.value)
    if isinstance(kind, t.FloatType):
        whole = _whole(lit, 2**24)  # exact in float32
        return float(whole) if whole is not None else None
    if isinstance(kind, t.DateType):
        return _day(lit)
    if isinstance(kind, t.TimestamptzType | t.TimestampType):
        moment = _moment(lit)
        if moment is None or (isinstance(kind, t.TimestampType) and moment.tzinfo is not None):
            return None  # an offset against a column without a zone: do not guess
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _whole(lit: Lit, bound: int) -> int | None:
    if lit.kind != "number":
        return None
    value = lit.value
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    return value if -bound <= value < bound else None


def _day(lit: Lit) -> date | None:
    if lit.kind == "date":
        return lit.value
    if lit.kind == "string" and _DATE.match(lit.value):
        return date.fromisoformat(lit.value)
    if lit.kind == "timestamp":
        moment = lit.value.astimezone(UTC) if lit.value.tzinfo else lit.value
        if moment.time() == datetime.min.time():
            return moment.date()
    return None


def _moment(lit: Lit) -> datetime | None:
    """A timestamp literal; a naive one is UTC (the engine's session time zone)."""
    if lit.kind == "timestamp":
        return lit.value
    if lit.kind == "date":
        return datetime(lit.value.year, lit.value.month, lit.value.day)
    if lit.kind == "string" and _TIMESTAMP.match(lit.value):
        return datetime.fromisoformat(lit.value)
    return None


def to_iceberg(bound: Filter | None) -> BooleanExpression:
    """The pyiceberg row filter for a bound filter (AlwaysTrue for None)."""
    from pyiceberg import expressions as ie

    if bound is None or bound == TRUE:
        return ie.AlwaysTrue()
    if isinstance(bound, AllOf | AnyOf):
        parts = [to_iceberg(p) for p in bound.parts]
        if len(parts) == 1:
            return parts[0]
        return ie.And(*parts) if isinstance(bound, AllOf) else ie.Or(*parts)
    values = [_iceberg_value(v) for v in bound.values]
    if bound.op == "in":
        return (
            ie.In(bound.column, set(values))
            if len(values) > 1
            else ie.EqualTo(bound.column, values[0])
        )
    compare = {
        "=": ie.EqualTo,
        "<": ie.LessThan,
        "<=": ie.LessThanOrEqual,
        ">": ie.GreaterThan,
        ">=": ie.GreaterThanOrEqual,
    }[bound.op]
    return compare(bound.column, values[0])


def _iceberg_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)  # micros since the epoch, UTC
    return value
