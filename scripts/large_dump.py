"""`scripts/test-dump large`: a database over 1 GB (generated into .cache/, never
committed) dumped through many chunks with real continuation (short budget and breathing),
then round-tripped: loaded with the sqlite3 shell and dumped again, which must give the
same bytes (the output is a pure function of the rows). Prints chunks, time, throughput
and peak RSS; exits non-zero on any mismatch."""
import json, os, runpy, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo's target directory (CARGO_TARGET_DIR or a config may move it from target/).
TARGET = subprocess.check_output([os.path.join(ROOT, "scripts/target-dir")], text=True).strip()
BIN = os.path.join(TARGET, "release/chunkdump")
CACHE = os.path.join(ROOT, ".cache/large")


def dump(db, out, dump_id):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    p = subprocess.Popen([BIN, "dump", db, "--out", out, "--format", "sql", "--id", dump_id,
                          "--budget-ms", "500", "--breathe-ms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    lines = p.stdout.read().decode().split()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("dump failed")
    st = json.loads(subprocess.run([BIN, "status", dump_id, "--out", out], capture_output=True, check=True).stdout)
    return lines[-1], elapsed, usage.ru_maxrss / 1024, st


def main(rows):
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "chunkdump"], cwd=ROOT, check=True)
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"large-{rows}.db")
    build_db = runpy.run_path(os.path.join(ROOT, "scripts/bench.py"), run_name="lib")["build_db"]
    t = time.perf_counter()
    build_db(db, rows)
    size = os.path.getsize(db)
    print(f"database: {rows:,} rows, {size / 1e9:.2f} GB (built/reused in {time.perf_counter() - t:.0f} s)")
    if size < 1e9:
        sys.exit("the large suite needs a database over 1 GB: pass more rows")
    path, elapsed, rss, st = dump(db, os.path.join(CACHE, "out"), "large")
    out_size = os.path.getsize(path)
    print(f"dump: {st['chunks']} chunks, {elapsed:.1f} s (breathing included), {out_size / 1e6 / elapsed:.0f} MB/s, "
          f"{st['progress']['processedRows']:,} rows, peak RSS {rss:.1f} MiB")
    if st["chunks"] < 2 or st["status"] != "completed":
        sys.exit("expected a completed dump over several chunks")
    back = os.path.join(CACHE, "back.db")
    if os.path.exists(back):
        os.remove(back)
    t = time.perf_counter()
    with open(path, "rb") as f:
        subprocess.run(["sqlite3", "-bail", back], stdin=f, check=True)
    print(f"loaded with the sqlite3 shell in {time.perf_counter() - t:.0f} s")
    again, _, rss2, _ = dump(back, os.path.join(CACHE, "out2"), "large")
    same = subprocess.run(["cmp", "-s", path, again]).returncode == 0
    print(f"re-dump of the loaded copy is {'identical' if same else 'DIFFERENT'}; peak RSS {rss2:.1f} MiB")
    os.remove(back)
    if not same:
        sys.exit(1)


main(int(sys.argv[1]))
