"""COPY between pyarrow tables and PostgreSQL, as CSV (vectorised both ways).

Shared by the PostGIS store and the migration runner's Python steps: rows
travel as CSV written and parsed by pyarrow, never as per-row Python objects.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

_COPY_BATCH = 65_536  # rows per CSV chunk sent to COPY


def copy_in(conn: psycopg.Connection, table: str, t: pa.Table, columns: Sequence[str] | None = None) -> None:
    """COPY a pyarrow table into ``table`` as CSV (quoted values, unquoted empty = NULL)."""
    opts = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    target = sql.Identifier(table)
    if columns is not None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
    else:
        stmt = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(target)
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        for start in range(0, t.num_rows, _COPY_BATCH):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(t.slice(start, _COPY_BATCH), sink, opts)
            cp.write(memoryview(sink.getvalue()))


def copy_out(conn: psycopg.Connection, query: str, params: Sequence[object], types: dict[str, pa.DataType]) -> pa.Table:
    """Run ``query`` as ``COPY ... TO STDOUT (FORMAT csv)`` and parse it with pyarrow.

    ``types`` names the query's columns in order. The parameters are merged
    client-side (COPY takes none), so the planner sees constants: partition
    pruning happens at plan time.
    """
    buf = io.BytesIO()
    with conn.cursor() as cur:
        with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)", params or None) as cp:
            for block in cp:
                buf.write(block)
    data = buf.getvalue()
    names = list(types)
    if not data:
        return pa.table({n: pa.array([], type=t) for n, t in types.items()})
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,  # PostgreSQL writes '' as "" and NULL as nothing
            true_values=["t"],
            false_values=["f"],
        ),
    )
