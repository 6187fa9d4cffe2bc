"""Run search: MLflow's filter syntax (plus OR, NOT, parentheses) compiled to DuckDB SQL.

``parse_filter`` turns text into a typed AST (``syntax``), ``compile_filter`` and
``compile_order_by`` turn text or ASTs into SQL with bound parameters, ``to_text`` and
``describe`` turn an AST back into text for people.
"""

from runlake.lake.search.compiler import OrderPlan, compile_filter, compile_order_by
from runlake.lake.search.errors import SearchSyntaxError
from runlake.lake.search.parser import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_NODES,
    parse_filter,
    parse_order_entry,
)
from runlake.lake.search.printer import describe, order_text, to_text

__all__ = [
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_NODES",
    "OrderPlan",
    "SearchSyntaxError",
    "compile_filter",
    "compile_order_by",
    "describe",
    "order_text",
    "parse_filter",
    "parse_order_entry",
    "to_text",
]
