"""Writer- and reader-latency benchmark for scripts/bench-breathing.

While chunkdump dumps the ~230 MB benchmark database, a second process writes (an insert
and an update in one transaction) every 2 ms with a 5 s busy timeout, or reads (a point
query) every 2 ms; their latencies are compared with the same process running with no
dump, in rollback-journal and WAL modes. Prints figures; asserts nothing.

The writer is also measured with the dump written to a tmpfs, which separates the read
locks' part of its wait from the disk's. BREATHING_OUT=DIR puts the dumps elsewhere.
BREATHING_COMPARE="a=PATH b=PATH" compares builds instead: the writer's latency during dumps
with no breathing, each binary in turn (to this disk and to tmpfs), over three rounds."""
import glob, json, os, shutil, sqlite3, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo's target directory (CARGO_TARGET_DIR or a config may move it from target/).
TARGET = subprocess.check_output([os.path.join(ROOT, "scripts/target-dir")], text=True).strip()
BIN = os.path.join(TARGET, "release/chunkdump")
CACHE = os.path.join(ROOT, ".cache/bench")
OUT = os.environ.get("BREATHING_OUT", CACHE)
# Dumps written to memory, not to the database's disk: what is left of the writer's wait
# is the read locks' part; the rest of the same-disk figure is the disk's (the database's
# writer syncs behind the dump's writes, in WAL mode too). Dumps to R2 write no disk.
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") else None


def worker(kind, db, stop_file):
    """Runs in a child process: writes or reads every 2 ms until stop_file exists."""
    conn = sqlite3.connect(db, timeout=5, isolation_level=None)
    lat, failed, i = [], 0, 0
    while not os.path.exists(stop_file):
        i += 1
        t = time.perf_counter()
        try:
            if kind == "write":
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO writes(v) VALUES (?)", (f"w{i}",))
                conn.execute("UPDATE items SET qty = qty + 1 WHERE id = ?", (1 + i % 100000,))
                conn.execute("COMMIT")
            else:
                conn.execute("SELECT * FROM items WHERE id = ?", (1 + (i * 7919) % 1000000,)).fetchall()
            lat.append((time.perf_counter() - t) * 1e3)
        except sqlite3.OperationalError:
            failed += 1
            try:
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
        time.sleep(0.002)
    print(json.dumps({"lat": lat, "failed": failed}))


def measure(kind, db, during):
    """Starts a worker, runs `during()`, stops the worker; returns its figures."""
    stop = db + ".stop"
    if os.path.exists(stop):
        os.remove(stop)
    p = subprocess.Popen([sys.executable, __file__, "worker", kind, db, stop], stdout=subprocess.PIPE)
    time.sleep(0.3)
    during()
    open(stop, "w").close()
    result = json.loads(p.communicate()[0])
    os.remove(stop)
    for out in glob.glob(os.path.join(OUT, "breathe-out*")) + glob.glob(os.path.join(TMPFS, "breathe-out*")):
        shutil.rmtree(out, ignore_errors=True)
    lat = sorted(result["lat"])
    pick = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))]
    return {"n": len(lat), "failed": result["failed"], "p50": pick(0.5), "p99": pick(0.99), "max": lat[-1]}


def dumps(db, args, times=3, binary=BIN, out_dir=None):
    def run():
        for i in range(times):
            # A fresh folder each time: deleting the last dump's files is left until the
            # measurement ends (on a disk mounted with `discard`, freeing 200 MB stalls
            # every other writer's fsync, and that is not the dump's doing).
            out = os.path.join(out_dir or OUT, f"breathe-out-{i}")
            subprocess.run([binary, "dump", db, "--out", out, "--format", "sql", *args], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run


def row(label, f, base=None):
    extra = f"   p99 {f['p99'] - base['p99']:+6.2f} ms vs baseline" if base else ""
    print(f"  {label:42} {f['n']:6} ops {f['failed']:3} failed   p50 {f['p50']:6.2f}  p99 {f['p99']:6.2f}  max {f['max']:7.2f} ms{extra}")


def main(rows):
    src = os.path.join(CACHE, f"bench-{rows}.db")
    if not os.path.exists(src):
        sys.exit(f"{src} is missing: run scripts/bench first")
    for mode in ("delete", "wal"):
        db = os.path.join(CACHE, f"breathe-{mode}.db")
        shutil.copy(src, db)
        c = sqlite3.connect(db)
        c.execute(f"PRAGMA journal_mode = {mode}")
        c.execute("CREATE TABLE writes(id INTEGER PRIMARY KEY, v TEXT)")
        c.commit()
        c.close()
        print(f"\n== journal_mode={mode}, {os.path.getsize(db) / 1e6:.0f} MB ==")
        print(" writer (insert + update every 2 ms, busy timeout 5 s):")
        base = measure("write", db, lambda: time.sleep(3))
        row("no dump (baseline)", base)
        compare = [b.split("=", 1) for b in os.environ.get("BREATHING_COMPARE", "").split()]
        if compare:
            for r in range(1, 4):
                for label, binary in compare:
                    for where, out_dir in (("same disk", OUT), ("tmpfs", TMPFS)):
                        if out_dir:
                            f = measure("write", db, dumps(db, ["--breathe-ms", "0"], binary=binary, out_dir=out_dir))
                            row(f"no breathing, {label}, to {where} (round {r})", f, base)
            row("no dump (baseline, again)", measure("write", db, lambda: time.sleep(3)))
            continue
        # A snapshot dump copies the whole database in one read transaction first: in WAL
        # mode writers never wait for it; in rollback mode they wait for the copy.
        row("during snapshot dumps (copy, then dump)", measure("write", db, dumps(db, ["--snapshot", "--snapshot-max-block-ms", "600000", "--breathe-ms", "0"])), base)
        if os.environ.get("BREATHING_ONLY") != "snapshot":
            row("during dumps, no breathing", measure("write", db, dumps(db, ["--breathe-ms", "0"])), base)
            if TMPFS:
                row("during dumps, no breathing, dump to tmpfs", measure("write", db, dumps(db, ["--breathe-ms", "0"], out_dir=TMPFS)), base)
            print(" reader (point query every 2 ms):")
            rbase = measure("read", db, lambda: time.sleep(3))
            row("no dump (baseline)", rbase)
            row("during dumps, default budget and breathing", measure("read", db, dumps(db, [])), rbase)
            row("during one dump, 200 ms budget, 200 ms breathing", measure("read", db, dumps(db, ["--budget-ms", "200", "--breathe-ms", "200"], 1)), rbase)
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(*sys.argv[2:5])
    else:
        main(int(sys.argv[1]))
