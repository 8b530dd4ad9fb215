"""Metadata filters for queries: ``category == 'bags' and price <= 5000``.

An expression is parsed with Python's :mod:`ast` and evaluated over the metadata columns, never
with ``eval``: only column names, literals (numbers, strings, lists of them), comparisons
(``== != < <= > >= in``, ``not in``, chains such as ``1000 <= price < 5000``), ``and``, ``or``,
``not`` and parentheses are allowed. A missing value never passes a comparison.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

import numpy as np

from mltk.errors import InputError

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}

_ALLOWED = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.cmpop,
            ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple)


class Where:
    """A parsed filter: ``Where(text).mask(table)`` -> boolean array over the table's rows."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self.tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise InputError(f"--where {text!r}: not a filter expression ({exc.msg})") from None
        for node in ast.walk(self.tree):
            if not isinstance(node, _ALLOWED):
                raise InputError(f"--where {text!r}: {ast.unparse(node)!r} is not a column, a "
                                 f"literal or a comparison")
        self.columns = sorted({n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)})

    def mask(self, table: Any) -> np.ndarray:
        missing = [c for c in self.columns if c not in table.columns]
        if missing:
            raise InputError(f"--where {self.text!r}: no column {', '.join(map(repr, missing))}"
                             f" in the index metadata (columns: "
                             f"{', '.join(map(str, table.columns)) or 'none'})")
        result = self._eval(self.tree, table)
        if np.ndim(result) == 0:
            raise InputError(f"--where {self.text!r}: names no column")
        return np.asarray(result, dtype=bool)

    def _eval(self, node: ast.AST, table: Any) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [np.asarray(self._eval(v, table), dtype=bool) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = parts[0]
            for part in parts[1:]:
                out = combine(out, part)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~np.asarray(self._eval(node.operand, table), dtype=bool)
        if isinstance(node, ast.Compare):
            return self._compare(node, table)
        return self._value(node, table)

    def _compare(self, node: ast.Compare, table: Any) -> Any:
        left = self._value(node.left, table)
        out: Any = True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._value(right_node, table)
            out = np.logical_and(out, self._apply(op, left, right))
            left = right
        return out

    def _apply(self, op: ast.cmpop, left: Any, right: Any) -> Any:
        import pandas as pd

        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(left, pd.Series) or not isinstance(right, list):
                raise InputError(f"--where {self.text!r}: use COLUMN in [values]")
            hit = left.isin(right).to_numpy()
            return hit if isinstance(op, ast.In) else ~hit & left.notna().to_numpy()
        fn = _COMPARE.get(type(op))
        if fn is None:
            raise InputError(f"--where {self.text!r}: operator {type(op).__name__} is not "
                             f"allowed")
        try:
            result = fn(left, right)
        except TypeError:
            raise InputError(f"--where {self.text!r}: cannot compare a column with "
                             f"{right if not isinstance(right, pd.Series) else left!r} "
                             f"(a number column with text?)") from None
        if isinstance(result, pd.Series):
            result = result.fillna(False).to_numpy(dtype=bool)
        return result

    def _value(self, node: ast.AST, table: Any) -> Any:
        if isinstance(node, ast.Name):
            return table[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(
                node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)):
            return -node.operand.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self._value(v, table) for v in node.elts]
        raise InputError(f"--where {self.text!r}: {ast.unparse(node)!r} is not a column, a "
                         f"literal or a comparison")
