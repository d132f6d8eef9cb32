"""Reads a chunkdump Parquet dump with readers chunkdump did not write (pyarrow, DuckDB)
and compares it with the source database value by value, by storage class.

Usage: read-parquet.py SOURCE.db DUMP_DIR
Prints one JSON object: {"tables": {name: rows}, "files": n}; exits non-zero on the
first difference, naming the table, column and value.

For each table (a directory of part-*.parquet files; its name comes from the files'
`chunkdump` metadata): every value of every row, against the source's `typeof(c), c`:
an INTEGER is an int64 equal to it, a REAL a double with the same bits, TEXT the same
bytes (a string when the column's TEXT is UTF-8), a BLOB the same bytes, NULL null, and
a mixed column a struct with exactly the field of the value's class set. Rows are
compared as multisets (files and row groups may come in any order). Then DuckDB's
`count(*)` and `sum(col)` over `<dir>/*.parquet` against SQLite's over the source.
"""
import glob
import json
import math
import os
import sqlite3
import struct
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def canon_source(kind, value):
    kind = kind.decode()
    if kind == "null":
        return ("null",)
    if kind == "integer":
        return ("integer", value)
    if kind == "real":
        return ("real", struct.pack(">d", value).hex())
    if kind == "text":
        return ("text", bytes(value).hex())
    return ("blob", bytes(value).hex())


def canon_parquet(column, value, where):
    classes = column["classes"]
    if value is None:
        return ("null",)
    if len(classes) > 1:
        if not isinstance(value, dict):
            fail(f"{where}: a mixed column's value is not a struct: {value!r}")
        set_fields = [(k, v) for k, v in value.items() if v is not None]
        if len(set_fields) != 1:
            fail(f"{where}: a mixed column's struct sets {len(set_fields)} fields: {value!r}")
        cls, value = set_fields[0]
    else:
        cls = classes[0]
    if cls == "integer":
        if not isinstance(value, int):
            fail(f"{where}: an INTEGER read as {type(value).__name__}")
        return ("integer", value)
    if cls == "real":
        if not isinstance(value, float):
            fail(f"{where}: a REAL read as {type(value).__name__}")
        return ("real", struct.pack(">d", value).hex())
    if cls == "text":
        if isinstance(value, str):
            if not column.get("utf8", True):
                fail(f"{where}: non-UTF-8 TEXT read as a string")
            return ("text", value.encode("utf-8").hex())
        return ("text", bytes(value).hex())
    return ("blob", bytes(value).hex())


def expected_type(column, cls):
    if cls == "integer":
        return pa.int64()
    if cls == "real":
        return pa.float64()
    if cls == "text" and column.get("utf8", True):
        return pa.string()
    return pa.binary()


def main():
    source, dump = sys.argv[1], sys.argv[2]
    con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    con.text_factory = bytes
    duck = duckdb.connect()
    dirs = sorted(d for d in glob.glob(os.path.join(dump, "*")) if os.path.isdir(d))
    report = {"tables": {}, "files": 0}
    for d in dirs:
        files = sorted(glob.glob(os.path.join(d, "part-*.parquet")))
        if not files:
            fail(f"{d}: no part-*.parquet files")
        report["files"] += len(files)
        schema = pq.read_schema(files[0])
        layout = json.loads(schema.metadata[b"chunkdump"])
        table, columns = layout["table"], layout["columns"]
        for f in files[1:]:
            if not pq.read_schema(f).equals(schema, check_metadata=True):
                fail(f"{f}: another schema than {files[0]}")
        # The types each column has, by its census.
        for column, field in zip(columns, schema):
            where = f"table {table!r}, column {column['name']!r}"
            if field.name != column["name"]:
                fail(f"{where}: field named {field.name!r}")
            if len(column["classes"]) > 1:
                want = pa.struct(
                    [(c, expected_type(column, c)) for c in column["classes"]]
                )
            else:
                want = expected_type(column, column["classes"][0])
            if field.type != want:
                fail(f"{where}: typed {field.type}, expected {want}")
        got = pq.read_table(files).to_pylist()
        names = [c["name"] for c in columns]
        lower = {n.lower() for n in names}
        rowid = next((r for r in ("rowid", "_rowid_", "oid") if r not in lower), None)
        exprs = []
        for n in names:
            e = rowid if (n == "$rowid" and rowid) else quote(n)
            exprs.append(f"typeof({e}), {e}")
        rows = con.execute(f"SELECT {', '.join(exprs)} FROM {quote(table)}").fetchall()
        want_rows = sorted(
            tuple(canon_source(r[2 * i], r[2 * i + 1]) for i in range(len(names)))
            for r in rows
        )
        got_rows = sorted(
            tuple(
                canon_parquet(c, row[c["name"]], f"table {table!r}, column {c['name']!r}")
                for c in columns
            )
            for row in got
        )
        if len(got_rows) != len(want_rows):
            fail(f"table {table!r}: {len(got_rows)} rows in Parquet, {len(want_rows)} in the source")
        for g, w in zip(got_rows, want_rows):
            if g != w:
                fail(f"table {table!r}: a row differs:\n parquet {g}\n source  {w}")
        # DuckDB over the directory, as a user queries it.
        pattern = os.path.join(d, "*.parquet").replace("'", "''")
        (count,) = duck.execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchone()
        if count != len(rows):
            fail(f"table {table!r}: DuckDB counts {count}, the source has {len(rows)}")
        for i, c in enumerate(columns):
            if len(c["classes"]) != 1 or c["classes"][0] not in ("integer", "real"):
                continue
            values = [r[2 * i + 1] for r in rows if r[2 * i].decode() == c["classes"][0]]
            (total,) = duck.execute(
                f"SELECT sum({quote(c['name'])}) FROM read_parquet('{pattern}')"
            ).fetchone()
            if c["classes"][0] == "integer":
                want = sum(values) if values else None
                if total != want:
                    fail(f"table {table!r}, column {c['name']!r}: DuckDB sums {total}, the source {want}")
            elif values:
                (want,) = con.execute(
                    f"SELECT sum({quote(c['name'])}) FROM {quote(table)}"
                ).fetchone()
                # SQLite gives NULL for a NaN sum (inf + -inf), DuckDB NaN; a finite
                # sum may differ in its last bits (the order of additions).
                if want is None:
                    same = total is not None and math.isnan(total)
                else:
                    same = total == want or (
                        math.isfinite(want)
                        and math.isclose(total, want, rel_tol=1e-9, abs_tol=1e-9)
                    )
                if not same:
                    fail(f"table {table!r}, column {c['name']!r}: DuckDB sums {total}, SQLite {want}")
        report["tables"][table] = len(rows)
    print(json.dumps(report, sort_keys=True))


main()
