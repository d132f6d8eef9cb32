"""Loads an SQL dump into a new database with the SQLite bundled in this venv's apsw.

Usage: python load-with-apsw.py DUMP.sql NEW.db   (one loader of the test matrix)
Exits non-zero, with SQLite's message on stderr, if any statement fails.
"""
import sys

import apsw

def main() -> int:
    dump, target = sys.argv[1], sys.argv[2]
    with open(dump, "rb") as f:
        script = f.read().decode("utf-8")
    con = apsw.Connection(target)
    try:
        for _ in con.cursor().execute(script):
            pass
    except apsw.Error as e:
        print(f"apsw {apsw.apswversion()} / SQLite {apsw.sqlitelibversion()}: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
