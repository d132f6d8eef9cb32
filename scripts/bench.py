"""Benchmark driver for scripts/bench: times each command, reads its peak RSS from
wait4(), and prints ratios. Databases are generated once into .cache/bench/.

chunkdump syncs every part it writes (a dump is durable when it reports success), so on
disk the shell's output is synced too (`sync FILE`) for a like-for-like comparison; the
tmpfs section (/dev/shm) measures CPU alone, with no disk in the way."""
import json, os, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# cargo's target directory (CARGO_TARGET_DIR or a config may move it from target/).
TARGET = subprocess.check_output([os.path.join(ROOT, "scripts/target-dir")], text=True).strip()
BIN = os.path.join(TARGET, "release/chunkdump")
EX = os.path.join(TARGET, "release/examples")
CACHE = os.path.join(ROOT, ".cache/bench")


def build_db(path, rows):
    if os.path.exists(path):
        return
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    sql = f"""
    PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
    CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, qty INTEGER, data BLOB, note TEXT);
    CREATE TABLE events(ts INTEGER, kind TEXT, payload TEXT, PRIMARY KEY(ts, kind)) WITHOUT ROWID;
    CREATE INDEX items_name ON items(name);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
    INSERT INTO items SELECT i, 'item number ' || i, i * 1.37 + 0.01, i % 1000, randomblob(16),
        printf('%.*c', 20 + i % 60, 'n') FROM n;
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows // 10})
    INSERT INTO events SELECT i * 10, 'k' || (i % 5), '{{"v":' || i || '}}' FROM n;
    """
    subprocess.run(["sqlite3", tmp], input=sql.encode(), check=True, stdout=subprocess.DEVNULL)
    os.rename(tmp, path)


def measure(cmd, stdout_path=None):
    """Runs cmd; returns (seconds, peak RSS in MiB)."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    err = p.stderr.read().decode(errors="replace")
    if stdout_path:
        out.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss / 1024


def best(cmd, stdout_path=None, runs=2):
    results = []
    for _ in range(runs):
        if cmd[0] == BIN:  # a fresh output directory for every chunkdump run
            shutil.rmtree(cmd[cmd.index("--out") + 1], ignore_errors=True)
        results.append(measure(cmd, stdout_path))
    return min(r[0] for r in results), max(r[1] for r in results)


def dump(db, out, *args):
    return [BIN, "dump", db, "--out", out, "--budget-ms", "25000", "--breathe-ms", "0", "--id", "bench", *args]


def durable(shell_cmd, path):
    """The shell command writing to `path`, then syncing it."""
    return ["sh", "-c", '"$@" > "$OUT" && sync "$OUT"', "sh", *shell_cmd], path


def bench(rows, where=None):
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    size = os.path.getsize(db) / 1e6
    label = "disk"
    if where:
        shutil.copy(db, os.path.join(where, "bench.db"))
        db, label = os.path.join(where, "bench.db"), f"tmpfs {where}"
    base = where or CACHE
    out = os.path.join(base, "out")
    shell_out = os.path.join(base, "shell.out")
    print(f"\n== {rows:,} rows, database {size:.0f} MB, on {label} ==")
    scan_t, scan_rss = best([os.path.join(EX, "scan"), db])
    print(f"{'bare scan of all values (rusqlite)':44} {scan_t:7.2f} s  {scan_rss:6.1f} MiB")
    cases = [
        ("sql (.dump)", dump(db, out, "--format", "sql"), ["sqlite3", db, ".dump"]),
        ("csv (table items)", dump(db, out, "--format", "csv", "--tables", "items"),
         ["sqlite3", "-csv", "-header", db, "SELECT * FROM items"]),
        ("json (table items)", dump(db, out, "--format", "json", "--tables", "items"),
         ["sqlite3", "-json", db, "SELECT * FROM items"]),
        ("sql gzip", dump(db, out, "--format", "sql", "--compression", "gzip"), None),
    ]
    rss = {}
    for name, ours, shell in cases:
        t, m = best(ours)
        out_size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) if ".chunkdump" not in dp for f in fs)
        line = f"{'chunkdump ' + name:44} {t:7.2f} s  {m:6.1f} MiB  {out_size / 1e6 / t:7.1f} MB/s out"
        if shell:
            cmd, path = durable(shell, shell_out)
            os.environ["OUT"] = path
            st, sm = best(cmd)
            line += f" | sqlite3 shell {st:6.2f} s {sm:6.1f} MiB | {st / t:5.2f}x faster than the shell, {t / scan_t:4.2f}x the bare scan"
        print(line)
        rss[name] = m
    slice_cost = subprocess.run([os.path.join(EX, "slice_cost"), db, "items", "1000"], capture_output=True, text=True, check=True)
    print(f"{'keyset resume cost':44} {slice_cost.stdout.strip()}")
    for leftover in (out, shell_out) + ((db,) if where else ()):
        shutil.rmtree(leftover, ignore_errors=True) if os.path.isdir(leftover) else os.path.exists(leftover) and os.remove(leftover)
    return rss


def cloud(rows):
    """End-to-end SQL dump of the large database: local directory vs S3 on moto and on
    s3s-fs, progress in DynamoDB on moto. Each target gets a fresh bucket and table."""
    db = os.path.join(CACHE, f"bench-{rows}.db")
    moto, s3s = os.environ["CHUNKDUMP_TEST_MOTO"], os.environ["CHUNKDUMP_TEST_S3S"]
    key, secret = os.environ["CHUNKDUMP_TEST_S3S_KEY"], os.environ["CHUNKDUMP_TEST_S3S_SECRET"]
    print(f"\n== end to end, {rows:,} rows, SQL, 8 MiB parts, 25 s budget ==")
    out = os.path.join(CACHE, "out")
    local_t, local_m = best(dump(db, out, "--format", "sql"), runs=1)
    size = os.path.getsize(os.path.join(out, "bench.sql"))
    print(f"{'local directory':20} {local_t:7.2f} s  {size / 1e6 / local_t:7.1f} MB/s  {local_m:6.1f} MiB")
    for name, endpoint, k, s_ in (("S3 on moto", moto, "moto", "moto"), ("S3 on s3s-fs", s3s, key, secret)):
        t, rss = cloud_dump(db, endpoint, k, s_)
        print(f"{name:20} {t:7.2f} s  {size / 1e6 / t:7.1f} MB/s  {rss:6.1f} MiB  {t / local_t:5.2f}x the local time")


def cloud_dump(db, endpoint, key, secret, *args):
    """A SQL dump of db to a fresh bucket at endpoint (progress in DynamoDB on moto);
    returns (seconds, peak RSS in MiB)."""
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=endpoint, AWS_ENDPOINT_URL_DYNAMODB=os.environ["CHUNKDUMP_TEST_MOTO"],
               AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    suffix = f"{time.time_ns():x}"
    store, progress = f"s3://bench-{suffix}/dumps", f"dynamodb://bench-{suffix}"
    subprocess.run([BIN, "setup", "--store", store, "--progress", progress], env=env, check=True, stdout=subprocess.DEVNULL)
    cmd = [BIN, "dump", db, "--store", store, "--progress", progress, "--format", "sql",
           "--budget-ms", "25000", "--breathe-ms", "0", "--id", "bench", *args]
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    t = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"dump to {endpoint} failed: {p.stderr.read().decode()}")
    return t, usage.ru_maxrss / 1024


def uploads(rows):
    """Parallel part uploads: the same SQL dump to S3 on s3s-fs, directly and behind a
    link model (examples/throttle.rs: 30 ms round trip, 50 MB/s per connection), with one
    part upload at a time and with the default four."""
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    s3s, key, secret = os.environ["CHUNKDUMP_TEST_S3S"], os.environ["CHUNKDUMP_TEST_S3S_KEY"], os.environ["CHUNKDUMP_TEST_S3S_SECRET"]
    proxy = subprocess.Popen([os.path.join(EX, "throttle"), s3s.split("//")[1], "30", "50"], stdout=subprocess.PIPE, text=True)
    try:
        slow = f"http://127.0.0.1:{proxy.stdout.readline().strip()}"
        out = os.path.join(CACHE, "out")
        best(dump(db, out, "--format", "sql"), runs=1)
        size = os.path.getsize(os.path.join(out, "bench.sql"))
        print(f"\n== part uploads, {rows:,} rows ({size / 1e6:.0f} MB SQL), 8 MiB parts, S3 on s3s-fs ==")
        for link, endpoint in (("unthrottled", s3s), ("30 ms RTT, 50 MB/s/conn", slow)):
            times = {}
            for n in (1, 4, 8):
                t, rss = cloud_dump(db, endpoint, key, secret, "--upload-concurrency", str(n))
                times[n] = t
                print(f"{link:24} concurrency {n}  {t:7.2f} s  {size / 1e6 / t:7.1f} MB/s  peak RSS {rss:6.1f} MiB"
                      f"  {times[1] / t:5.2f}x concurrency 1")
    finally:
        proxy.kill()


def compression(rows):
    """SQL dump of the large database with each compression, on tmpfs when there is one
    (so the figure is the CPU cost), against `gzip -6` of the plain dump for the ratio."""
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else CACHE
    print(f"\n== compression, {rows:,} rows, SQL ==")
    results = {}
    for c in ("none", "gzip", "zstd"):
        out = os.path.join(base, f"chunkdump-bench-{c}")
        t, rss = best(dump(db, out, "--format", "sql", "--compression", c), runs=2)
        name = {"none": "bench.sql", "gzip": "bench.sql.gz", "zstd": "bench.sql.zst"}[c]
        results[c] = (t, os.path.getsize(os.path.join(out, name)), rss)
    plain = results["none"][1]
    start = time.perf_counter()
    with open(os.path.join(base, "chunkdump-bench-none", "bench.sql"), "rb") as f:
        gz6 = len(subprocess.run(["gzip", "-6", "-c"], stdin=f, stdout=subprocess.PIPE, check=True).stdout)
    gz6_t = time.perf_counter() - start
    for c, (t, size, rss) in results.items():
        print(f"{c:5} {t:7.2f} s  {size / 1e6:8.1f} MB  ratio {plain / size:5.2f}  peak RSS {rss:6.1f} MiB"
              f"  {results['gzip'][0] / t:5.2f}x gzip's speed")
    print(f"gzip -6 of the plain dump: ratio {plain / gz6:5.2f} ({gz6_t:.2f} s)")
    for c in results:
        shutil.rmtree(os.path.join(base, f"chunkdump-bench-{c}"), ignore_errors=True)


def encryption(rows):
    """Dumps of the large database unencrypted and encrypted to one age recipient (the
    same chunks, the same compression), alternated, on tmpfs when there is one: the cost
    of encryption, and its memory."""
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else CACHE
    key = os.path.join(CACHE, "bench-age-key.txt")
    if not os.path.exists(key):
        subprocess.run(["age-keygen", "-o", key], check=True, stderr=subprocess.DEVNULL)
    recipient = next(l.split(": ")[1].strip() for l in open(key) if l.startswith("# public key:"))
    print(f"\n== encryption (age, one recipient), {rows:,} rows ==")
    for fmt, c in (("sql", "none"), ("sql", "zstd"), ("csv", "zstd")):
        out = os.path.join(base, "chunkdump-bench-age")
        plain, sealed = [], []
        for _ in range(3):
            plain.append(best(dump(db, out, "--format", fmt, "--compression", c), runs=1))
            sealed.append(best(dump(db, out, "--format", fmt, "--compression", c, "--recipient", recipient), runs=1))
        p, s = min(t for t, _ in plain), min(t for t, _ in sealed)
        print(f"{fmt} {c:5}  plain {p:6.2f} s  encrypted {s:6.2f} s  = {s / p:4.2f}x"
              f"  peak RSS {max(r for _, r in plain):6.1f} -> {max(r for _, r in sealed):6.1f} MiB")
        shutil.rmtree(out, ignore_errors=True)


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if f != "manifest.json")


def parquet(rows):
    """Parquet dumps of the large database against CSV (zstd), alternated, on tmpfs when
    there is one: time, peak RSS and total size of the files (manifest aside)."""
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else CACHE
    print(f"\n== parquet, {rows:,} rows ({os.path.getsize(db) / 1e6:.0f} MB database) ==")
    runs = {"csv zstd": ("--format", "csv", "--compression", "zstd"),
            "csv none": ("--format", "csv"),
            "parquet zstd": ("--format", "parquet"),
            "parquet none": ("--format", "parquet", "--compression", "none")}
    results = {name: [] for name in runs}
    sizes = {}
    for _ in range(3):
        for name, args in runs.items():
            out = os.path.join(base, "chunkdump-bench-parquet")
            results[name].append(best(dump(db, out, *args), runs=1))
            sizes[name] = dir_size(out)
            shutil.rmtree(out, ignore_errors=True)
    csv = min(t for t, _ in results["csv zstd"])
    for name, r in results.items():
        t = min(x for x, _ in r)
        print(f"{name:13} {t:6.2f} s = {t / csv:4.2f}x CSV's time  {sizes[name] / 1e6:7.1f} MB"
              f" = {sizes[name] / sizes['csv zstd']:4.2f}x CSV's size  peak RSS {max(m for _, m in r):6.1f} MiB")


def startup():
    """Cold start of the API function's bootstrap: from exec to its answer to a first
    request (events/api-list.json, which reads DynamoDB and S3 on moto), through a
    minimal Lambda Runtime API (scripts/lambda_emulator.py). STARTUP_COMPARE=PATH adds
    another bootstrap (e.g. one built with an earlier profile)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from lambda_emulator import time_first_response
    moto = os.environ["CHUNKDUMP_TEST_MOTO"]
    suffix = f"{time.time_ns():x}"
    store, progress = f"s3://startup-{suffix}", f"dynamodb://startup-{suffix}"
    aws = dict(AWS_ENDPOINT_URL=moto, AWS_ACCESS_KEY_ID="moto", AWS_SECRET_ACCESS_KEY="moto", AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    subprocess.run([BIN, "setup", "--store", store, "--progress", progress], env=dict(os.environ, **aws), check=True,
                   stdout=subprocess.DEVNULL)
    db = os.path.join(CACHE, "startup.db")
    subprocess.run(["sqlite3", db, "CREATE TABLE IF NOT EXISTS t(x);"], check=True)
    env = dict(aws, CHUNKDUMP_STORE=store, CHUNKDUMP_PROGRESS=progress, CHUNKDUMP_DATABASE=db,
               CHUNKDUMP_STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:bench",
               CHUNKDUMP_API_TOKEN="local-admin-token-0123456789", RUST_LOG="warn")
    event = json.load(open(os.path.join(ROOT, "events/api-list.json")))
    print("\n== API function cold start: exec to first answer (events/api-list.json, moto), median of 7 ==")
    bootstraps = [("this build", os.environ.get("STARTUP_BOOTSTRAP", os.path.join(TARGET, "release/chunkdump-api")))]
    if os.environ.get("STARTUP_COMPARE"):
        bootstraps.append(("STARTUP_COMPARE", os.environ["STARTUP_COMPARE"]))
    for name, path in bootstraps:
        times = []
        for _ in range(7):
            t, kind, body = time_first_response(path, event, env)
            if kind != "response" or '"statusCode":200' not in body.replace(" ", ""):
                sys.exit(f"{path}: unexpected answer ({kind}): {body[:300]}")
            times.append(t)
        times.sort()
        print(f"{name:16} {os.path.getsize(path) / 1e6:6.1f} MB  {times[3] * 1000:7.1f} ms"
              f"  (min {times[0] * 1000:.1f}, max {times[-1] * 1000:.1f})")


def reals(rows):
    """Cost of the exact REAL encoding: a table of coordinates, money and computed
    values, dumped as SQL, against the same dump with every REAL as its shortest
    decimal (what a correctly rounding loader would need) and the shell's .dump."""
    import random, re
    db = os.path.join(CACHE, f"reals-{rows}.db")
    if not os.path.exists(db):
        random.seed(1)
        import sqlite3
        c = sqlite3.connect(db + ".tmp")
        c.execute("CREATE TABLE places(id INTEGER PRIMARY KEY, lat REAL, lon REAL, price REAL, ratio REAL)")
        c.executemany("INSERT INTO places(lat, lon, price, ratio) VALUES (?, ?, ?, ?)",
                      ((round(random.uniform(-90, 90), 6), round(random.uniform(-180, 180), 6),
                        round(random.uniform(0, 5000), 2), random.random() / 3) for _ in range(rows)))
        c.commit()
        c.close()
        os.rename(db + ".tmp", db)
    out = os.path.join(CACHE, "out-reals")
    t, rss = best(dump(db, out, "--format", "sql"))
    path = os.path.join(out, "bench.sql")
    text = open(path).read()
    def shortest(m):
        # Evaluates the exact expression as SQLite does (IEEE doubles, left to right).
        toks = re.split(r"([*/])", m.group(0)[1:-1])
        v = float(toks[0])
        for op, num in zip(toks[1::2], toks[2::2]):
            v = v * float(num) if op == "*" else v / float(num)
        return repr(v)
    plain = re.sub(r"\((-?[0-9.]+)((?:[*/][0-9e]+)+)\)", shortest, text)
    st, _ = best(["sh", "-c", f"sqlite3 {db} .dump > {CACHE}/reals-shell.sql"])
    shell_size = os.path.getsize(f"{CACHE}/reals-shell.sql")
    n_expr = text.count("(")
    print(f"\n== exact REALs: {rows:,} rows x 4 REAL columns (coordinates, money, ratios) ==")
    print(f"chunkdump sql        {t:7.2f} s  {len(text) / 1e6:7.1f} MB  ({n_expr:,} REALs as exact expressions)")
    print(f"same, shortest REALs          {len(plain) / 1e6:7.1f} MB  (+{(len(text) / len(plain) - 1) * 100:.1f}% size for exactness in every loader)")
    print(f"sqlite3 .dump        {st:7.2f} s  {shell_size / 1e6:7.1f} MB  ({st / t:.2f}x chunkdump's time)")


def many_tables(n):
    """A chunk's fixed cost must not grow with the number of tables: n small tables
    dumped in many short chunks against one chunk."""
    db = os.path.join(CACHE, f"tables-{n}.db")
    if not os.path.exists(db):
        sql = "PRAGMA journal_mode=OFF; BEGIN;" + "".join(
            f"CREATE TABLE t{i}(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t{i}(v) VALUES ('a'), ('b'), ('c');" for i in range(n)) + "COMMIT;"
        subprocess.run(["sqlite3", db + ".tmp"], input=sql.encode(), check=True, stdout=subprocess.DEVNULL)
        os.rename(db + ".tmp", db)
    out = os.path.join(CACHE, "out-tables")
    one, _ = best(dump(db, out, "--format", "sql"), runs=1)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [BIN, "dump", db, "--out", out, "--budget-ms", "20", "--breathe-ms", "0", "--chunk-size", "1", "--id", "bench", "--format", "sql"]
    many, _ = measure(cmd)
    chunks = subprocess.run([BIN, "status", "bench", "--out", out], capture_output=True, text=True).stdout
    import json
    n_chunks = json.loads(chunks)["chunks"]
    print(f"\n== {n:,} tables of 3 rows ==")
    print(f"one chunk            {one:7.2f} s")
    print(f"20 ms chunks         {many:7.2f} s  ({n_chunks} chunks, {many / one:.1f}x the one-chunk time)")


def large_values():
    """Peak RSS of dumping one 200 MB BLOB and one 100 MB TEXT."""
    db = os.path.join(CACHE, "large-values.db")
    if not os.path.exists(db):
        sql = ("PRAGMA journal_mode=OFF; CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB, t TEXT);"
               "INSERT INTO big(b) VALUES (randomblob(200000000));"
               "INSERT INTO big(t) VALUES (printf('%.*c', 100000000, 'x'));")
        subprocess.run(["sqlite3", db + ".tmp"], input=sql.encode(), check=True, stdout=subprocess.DEVNULL)
        os.rename(db + ".tmp", db)
    print("\n== one 200 MB BLOB and one 100 MB TEXT ==")
    for fmt in ["sql", "csv", "json"]:
        t, rss = best(dump(db, os.path.join(CACHE, "out-large"), "--format", fmt), runs=1)
        print(f"{fmt:5} {t:7.2f} s  peak RSS {rss:7.1f} MiB")


def verify(rows):
    """Dump and verify times per format on the same database, in one run. With
    VERIFY_BEFORE=/path/to/an/older/chunkdump, that binary's verify runs too, alternated
    with this one's (before, after, before, after), so both see the same machine state."""
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    before = os.environ.get("VERIFY_BEFORE")
    print(f"\n== verify, {rows:,} rows, database {os.path.getsize(db) / 1e6:.0f} MB ==")
    for fmt, compression in [("sql", "none"), ("csv", "none"), ("json", "none"), ("sql", "zstd")]:
        out = os.path.join(CACHE, "out-verify")
        t_dump, _ = best(dump(db, out, "--format", fmt, "--compression", compression))
        cmd = lambda binary: [binary, "verify", "bench", "--out", out]
        runs = {"after": [], "before": []}
        for _ in range(2):
            for label, binary in ([("before", before)] if before else []) + [("after", BIN)]:
                runs[label].append(measure(cmd(binary)))
        after_t, after_rss = min(r[0] for r in runs["after"]), max(r[1] for r in runs["after"])
        line = f"{fmt + ' ' + compression:10} dump {t_dump:6.2f} s | verify {after_t:6.2f} s {after_rss:6.1f} MiB = {after_t / t_dump:4.2f}x the dump"
        if before:
            bt, brss = min(r[0] for r in runs["before"]), max(r[1] for r in runs["before"])
            line += f" | before: {bt:6.2f} s {brss:6.1f} MiB = {bt / t_dump:4.2f}x the dump ({bt / after_t:4.1f}x faster now)"
        print(line)
        shutil.rmtree(out, ignore_errors=True)


def restore(rows):
    """Restore times per format against the sqlite3 shell loading the SQL dump into a new
    database (synced, as the restore syncs), in one run; peak RSS; and the SQL restore
    from S3 on s3s-fs (when the servers run) against the one from a local directory."""
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    into = os.path.join(CACHE, "restored.db")
    out = os.path.join(CACHE, "out-restore")
    print(f"\n== restore, {rows:,} rows, database {os.path.getsize(db) / 1e6:.0f} MB ==")

    def fresh():
        if os.path.exists(into):
            os.remove(into)

    def timed(cmd, runs=2):
        results = []
        for _ in range(runs):
            fresh()
            results.append(measure(cmd))
        return min(r[0] for r in results), max(r[1] for r in results)

    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(dump(db, out, "--format", "sql")[:], check=True, stdout=subprocess.DEVNULL)
    sql = os.path.join(out, "bench.sql")
    shell_t, shell_rss = timed(["sh", "-c", 'sqlite3 "$1" < "$2" && sync "$1"', "sh", into, sql])
    print(f"{'sqlite3 shell < sql':22} {shell_t:7.2f} s {shell_rss:7.1f} MiB")
    cmd = [BIN, "restore", "bench", "--out", out, "--into", into, "--force"]
    sql_t, rss = timed(cmd)
    print(f"{'restore sql':22} {sql_t:7.2f} s {rss:7.1f} MiB   {shell_t / sql_t:4.2f}x faster than the shell")
    for fmt, compression in [("json", "none"), ("csv", "none"), ("sql", "zstd")]:
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(dump(db, out, "--format", fmt, "--compression", compression), check=True, stdout=subprocess.DEVNULL)
        t, rss = timed(cmd)
        print(f"{'restore ' + fmt + ' ' + compression:22} {t:7.2f} s {rss:7.1f} MiB   {t / sql_t:4.2f}x the SQL restore, {shell_t / t:4.2f}x faster than the shell")
    if os.environ.get("CHUNKDUMP_TEST_S3S"):
        s3s, moto = os.environ["CHUNKDUMP_TEST_S3S"], os.environ["CHUNKDUMP_TEST_MOTO"]
        key, secret = os.environ["CHUNKDUMP_TEST_S3S_KEY"], os.environ["CHUNKDUMP_TEST_S3S_SECRET"]
        env = dict(os.environ, AWS_ENDPOINT_URL_S3=s3s, AWS_ENDPOINT_URL_DYNAMODB=moto, AWS_ACCESS_KEY_ID=key,
                   AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        suffix = f"{time.time_ns():x}"
        store, progress = f"s3://bench-{suffix}/dumps", f"dynamodb://bench-{suffix}"
        subprocess.run([BIN, "setup", "--store", store, "--progress", progress], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(dump(db, "x", "--format", "sql")[:3] + ["--store", store, "--progress", progress, "--format", "sql",
                       "--budget-ms", "25000", "--breathe-ms", "0", "--id", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        results = []
        for _ in range(2):
            fresh()
            start = time.perf_counter()
            p = subprocess.Popen([BIN, "restore", "bench", "--store", store, "--into", into], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                sys.exit(f"restore from s3s-fs failed: {p.stderr.read().decode()}")
            results.append((time.perf_counter() - start, usage.ru_maxrss / 1024))
        t, rss = min(r[0] for r in results), max(r[1] for r in results)
        print(f"{'restore sql from s3s-fs':22} {t:7.2f} s {rss:7.1f} MiB   {t / sql_t:4.2f}x the local restore")
    fresh()
    shutil.rmtree(out, ignore_errors=True)


def drill(rows):
    """A restore drill against its parts, in one run: the drill's whole time (restore into
    a scratch database, then integrity, foreign key, view, FTS and schema checks) beside a
    plain restore and the sqlite3 shell's PRAGMA integrity_check of the restored file."""
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    into = os.path.join(CACHE, "restored.db")
    out = os.path.join(CACHE, "out-drill")
    print(f"\n== drill, {rows:,} rows, database {os.path.getsize(db) / 1e6:.0f} MB ==")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(dump(db, out, "--format", "sql", "--compression", "zstd"), check=True, stdout=subprocess.DEVNULL)
    restore_t, _ = measure([BIN, "restore", "bench", "--out", out, "--into", into, "--force"])
    check_t, _ = measure(["sqlite3", into, "PRAGMA integrity_check"])
    start = time.perf_counter()
    p = subprocess.run([BIN, "drill", "bench", "--out", out, "--json", "--scratch-dir", CACHE],
                       check=True, capture_output=True)
    drill_t = time.perf_counter() - start
    report = json.loads(p.stdout)
    print(f"{'restore sql zstd':22} {restore_t:7.2f} s")
    print(f"{'sqlite3 integrity_check':22} {check_t:7.2f} s")
    print(f"{'drill':22} {drill_t:7.2f} s   restore {report['restoreSeconds']:.2f} s + checks {report['checkSeconds']:.2f} s, "
          f"{drill_t / (restore_t + check_t):4.2f}x restore + integrity_check, peak {report['peakMemoryBytes'] / 2**20:.0f} MiB, "
          f"{'passed' if report['passed'] else 'FAILED'}")
    os.remove(into)
    shutil.rmtree(out, ignore_errors=True)


def before_after(rows):
    """Dump times of this build against DUMP_BEFORE=/path/to/an/older/chunkdump on the same
    database, alternated (before, after, before, after, …) so both see the same machine
    state; the best of three each. For a change that must not make dumps slower."""
    before = os.environ["DUMP_BEFORE"]
    os.makedirs(CACHE, exist_ok=True)
    db = os.path.join(CACHE, f"bench-{rows}.db")
    build_db(db, rows)
    out = os.path.join(CACHE, "out-before-after")
    print(f"\n== dump, this build vs {before}, {rows:,} rows, database {os.path.getsize(db) / 1e6:.0f} MB ==")
    for name, args in [("sql", ["--format", "sql"]), ("csv", ["--format", "csv"]),
                       ("json", ["--format", "json"]), ("sql zstd", ["--format", "sql", "--compression", "zstd"]),
                       ("csv gzip", ["--format", "csv", "--compression", "gzip"])]:
        runs = {"before": [], "after": []}
        for _ in range(3):
            for label, binary in [("before", before), ("after", BIN)]:
                shutil.rmtree(out, ignore_errors=True)
                runs[label].append(measure([binary] + dump(db, out, *args)[1:]))
        (bt, bm), (at, am) = [(min(r[0] for r in runs[k]), max(r[1] for r in runs[k])) for k in ("before", "after")]
        print(f"{name:10} before {bt:6.2f} s {bm:6.1f} MiB | after {at:6.2f} s {am:6.1f} MiB | after/before {at / bt:4.2f}x")
    shutil.rmtree(out, ignore_errors=True)


def build_tenants(dir, count):
    """`count` small tenant databases (a file each, 100 to 2,000 customers with money and
    coordinates, and their orders), made once with the sqlite3 shell."""
    done = os.path.join(dir, ".done")
    if os.path.exists(done):
        return
    shutil.rmtree(dir, ignore_errors=True)
    os.makedirs(dir)
    for n in range(count):
        rows = 100 + (n * 7919) % 1900
        sql = f"""
        PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance NUMERIC, lat REAL, lon REAL);
        CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers, total NUMERIC, placed TEXT);
        CREATE INDEX orders_customer ON orders(customer);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
        INSERT INTO customers SELECT i, 'customer ' || i, round(i * 13.37 % 10000, 2),
            round(-90 + (i * 0.618034 % 180), 6), round(-180 + (i * 1.414214 % 360), 6) FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows * 3})
        INSERT INTO orders SELECT i, 1 + i % {rows}, round(i * 2.71 % 500, 2), date('2026-01-01', '+' || (i % 300) || ' days') FROM n;
        """
        subprocess.run(["sqlite3", os.path.join(dir, f"tenant-{n:04}.db")], input=sql.encode(), check=True,
                       stdout=subprocess.DEVNULL)
    open(done, "w").close()


def many_databases(count=300):
    """Many small databases: `dump DB… --parallel N` against a shell loop of
    `sqlite3 DB .dump > FILE` over the same files (synced, as chunkdump syncs its files),
    alternated, the best of three each; peak RSS by --parallel."""
    dir = os.path.join(CACHE, f"tenants-{count}")
    build_tenants(dir, count)
    dbs = sorted(os.path.join(dir, f) for f in os.listdir(dir) if f.endswith(".db"))
    size = sum(os.path.getsize(d) for d in dbs)
    out = os.path.join(CACHE, "out-many")
    loop = ["sh", "-c", 'mkdir -p "$0" && for f in "$@"; do sqlite3 "$f" .dump > "$0/$(basename "$f").sql"; done && sync "$0"/*',
            out] + dbs
    print(f"\n== {count} databases ({size / 1e6:.0f} MB): dump DB… --parallel N vs a shell loop of sqlite3 .dump ==")
    times = {}
    for _ in range(3):
        for label, cmd in [("shell loop", loop)] + [
                (f"--parallel {p}", [BIN, "dump", "--format", "sql", "--out", out, "--parallel", str(p),
                                      "--budget-ms", "25000", "--breathe-ms", "0", *dbs]) for p in (1, 4)]:
            shutil.rmtree(out, ignore_errors=True)
            times.setdefault(label, []).append(measure(cmd))
    shell = min(t for t, _ in times["shell loop"])
    for label, runs in times.items():
        t, rss = min(r[0] for r in runs), max(r[1] for r in runs)
        print(f"{label:12} {t:6.2f} s  peak {rss:6.1f} MiB  ({t / shell:4.2f}x the shell loop)")
    # Memory grows with --parallel, not with the number of databases.
    for p in (1, 4, 16):
        shutil.rmtree(out, ignore_errors=True)
        t, rss = measure([BIN, "dump", "--format", "sql", "--out", out, "--parallel", str(p),
                          "--budget-ms", "25000", "--breathe-ms", "0", *dbs[: count // 3]])
        shutil.rmtree(out, ignore_errors=True)
        t2, rss2 = measure([BIN, "dump", "--format", "sql", "--out", out, "--parallel", str(p),
                            "--budget-ms", "25000", "--breathe-ms", "0", *dbs])
        print(f"peak RSS --parallel {p:2}: {count // 3} databases {rss:6.1f} MiB, {count} databases {rss2:6.1f} MiB")
    shutil.rmtree(out, ignore_errors=True)


def fleet(count=1000):
    """One local fleet run of `count` databases through `chunkdump serve --database-root`
    (the fleet state machine, interpreted in-process), every dump verified afterwards;
    the server's peak RSS (VmHWM) at two concurrencies: it follows the concurrency, not
    the number of databases."""
    import urllib.request
    dir = os.path.join(CACHE, f"tenants-{count}")
    build_tenants(dir, count)
    print(f"\n== a fleet of {count} databases through chunkdump serve ==")
    for concurrency in (4, 16):
        out = os.path.join(CACHE, "out-fleet")
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ, CHUNKDUMP_API_TOKEN="bench-token-0123456789", CHUNKDUMP_FLEET_CONCURRENCY=str(concurrency),
                   CHUNKDUMP_FLEET_POLL_MS="50", DUMP_BREATHING_INTERVAL="0", RUST_LOG="warn")
        server = subprocess.Popen([BIN, "serve", "--database-root", dir, "--out", out, "--listen", "127.0.0.1:0"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        base = server.stdout.readline().decode().split()[-1]

        def call(method, path, body=None):
            req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                         headers={"Authorization": "Bearer bench-token-0123456789",
                                                  "Content-Type": "application/json"})
            with urllib.request.urlopen(req) as r:
                return json.load(r)
        start = time.perf_counter()
        fleet_id = call("POST", "/export/fleet", {"databases": "*.db", "format": "sql", "compression": "zstd"})["fleetId"]
        while True:
            status = call("GET", f"/export/fleet/{fleet_id}?limit=1000")
            if status["status"] == "completed":
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        with open(f"/proc/{server.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
        server.terminate()
        server.wait()
        ids = [i["dumpId"] for i in status["items"] if i["dumpId"]]
        verify_start = time.perf_counter()
        bad = 0
        for id in ids:
            if subprocess.run([BIN, "verify", id, "--out", out], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0:
                bad += 1
        verified = time.perf_counter() - verify_start
        print(f"concurrency {concurrency:2}: {elapsed:6.1f} s for {count} dumps ({status['counts']}), "
              f"server peak {hwm:6.1f} MiB; verify: {len(ids) - bad} of {len(ids)} ok in {verified:5.1f} s")
        shutil.rmtree(out, ignore_errors=True)


def main():
    rows = int(sys.argv[1])
    if os.environ.get("BENCH_ONLY"):
        for part in os.environ["BENCH_ONLY"].split(","):
            {"reals": lambda: reals(rows), "tables": lambda: many_tables(3000), "large": large_values,
             "uploads": lambda: uploads(rows), "compression": lambda: compression(rows), "startup": startup,
             "encryption": lambda: encryption(rows), "parquet": lambda: parquet(rows),
             "verify": lambda: verify(rows), "restore": lambda: restore(rows), "drill": lambda: drill(rows), "before-after": lambda: before_after(rows),
             "many": many_databases, "fleet": fleet}[part]()
        return
    small = bench(rows // 10)
    large = bench(rows)
    if os.path.isdir("/dev/shm"):
        bench(rows, "/dev/shm")
    if os.environ.get("CHUNKDUMP_TEST_MOTO"):
        cloud(rows)
        uploads(rows)
        startup()
    print("\npeak RSS, small -> large database:")
    for name in large:
        print(f"  {name:30} {small[name]:6.1f} MiB -> {large[name]:6.1f} MiB")
    compression(rows)
    encryption(rows)
    parquet(rows)
    verify(rows)
    restore(rows)
    drill(rows)
    reals(rows // 4)
    many_tables(3000)
    large_values()
    many_databases()
    fleet()


if __name__ == "__main__":
    main()
