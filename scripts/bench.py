"""Benchmark driver for scripts/bench: times each command, reads its peak RSS from
wait4(), and prints ratios. Databases are generated once into .cache/bench/.

chunkdump syncs every part it writes (a dump is durable when it reports success), so on
disk the shell's output is synced too (`sync FILE`) for a like-for-like comparison; the
tmpfs section (/dev/shm) measures CPU alone, with no disk in the way."""
import os, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/chunkdump")
EX = os.path.join(ROOT, "target/release/examples")
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
        env = dict(os.environ, AWS_ENDPOINT_URL_S3=endpoint, AWS_ENDPOINT_URL_DYNAMODB=moto, AWS_ACCESS_KEY_ID=k,
                   AWS_SECRET_ACCESS_KEY=s_, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        suffix = f"{time.time_ns():x}"
        store, progress = f"s3://bench-{suffix}/dumps", f"dynamodb://bench-{suffix}"
        subprocess.run([BIN, "setup", "--store", store, "--progress", progress], env=env, check=True, stdout=subprocess.DEVNULL)
        cmd = [BIN, "dump", db, "--store", store, "--progress", progress, "--format", "sql",
               "--budget-ms", "25000", "--breathe-ms", "0", "--id", "bench"]
        start = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        t = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{name} dump failed: {p.stderr.read().decode()}")
        print(f"{name:20} {t:7.2f} s  {size / 1e6 / t:7.1f} MB/s  {usage.ru_maxrss / 1024:6.1f} MiB  {t / local_t:5.2f}x the local time")


def main():
    rows = int(sys.argv[1])
    small = bench(rows // 10)
    large = bench(rows)
    if os.path.isdir("/dev/shm"):
        bench(rows, "/dev/shm")
    if os.environ.get("CHUNKDUMP_TEST_MOTO"):
        cloud(rows)
    print("\npeak RSS, small -> large database:")
    for name in large:
        print(f"  {name:30} {small[name]:6.1f} MiB -> {large[name]:6.1f} MiB")


if __name__ == "__main__":
    main()
