//! A dump killed with SIGKILL mid-run and then resumed gives the same bytes as an
//! uninterrupted dump.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn status(id: &str, out: &Path) -> serde_json::Value {
    try_status(id, out).expect("status succeeds")
}

fn read_all(path: &Path, compression: &str) -> Vec<(String, Vec<u8>)> {
    let decode = |bytes: Vec<u8>| {
        let mut out = Vec::new();
        match compression {
            "gzip" => flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap(),
            "zstd" => zstd::stream::read::Decoder::new(&bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap(),
            _ => return bytes,
        };
        out
    };
    if path.is_file() {
        return vec![(String::new(), decode(std::fs::read(path).unwrap()))];
    }
    let mut v: Vec<_> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), e.path())
        })
        // The manifest is plain JSON with times in it; the dump's files must match.
        .filter(|(name, _)| name != "manifest.json")
        .map(|(name, path)| (name, decode(std::fs::read(path).unwrap())))
        .collect();
    v.sort();
    v
}

/// Small gzip members and zstd frames, so a compressed dump of the test database is cut
/// into dozens of chunks (a chunk stops only where a frame ends).
const FRAME_SIZE: &str = "262144";

/// Dumps in one-slice chunks with `upload_concurrency` part uploads at once, kills the
/// dump after `kill_after_chunks` chunks and resumes it.
fn kill_and_resume(
    format: &str,
    compression: &str,
    kill_after_chunks: u64,
    upload_concurrency: u32,
) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 100_000);
    let (_, reference) = dump_ok(
        &src,
        &dir.path().join("ref"),
        &[
            "--format",
            format,
            "--id",
            "d1",
            "--compression",
            compression,
            "--breathe-ms",
            "0",
            "--frame-size",
            FRAME_SIZE,
        ],
    );

    if format == "sql" && compression == "none" {
        let size = std::fs::metadata(&reference).unwrap().len();
        assert!(
            size > 2 * 5_242_880,
            "the dump must span several 5 MiB parts, has {size} bytes"
        );
    }
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            format,
            "--id",
            "d1",
        ])
        .args([
            "--compression",
            compression,
            "--chunk-size",
            "300",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "10",
            "--part-size",
            "5242880",
            "--frame-size",
            FRAME_SIZE,
        ])
        .args(["--upload-concurrency", &upload_concurrency.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "dump never reached {kill_after_chunks} chunks"
        );
        if child.try_wait().unwrap().is_some() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("dump ended before it could be killed: {err}");
        }
        if try_status("d1", &out)
            .is_some_and(|s| s["chunks"].as_u64().unwrap() >= kill_after_chunks)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Its runner is gone: `interrupted`, with the command that resumes it.
    let s = status("d1", &out);
    assert_eq!(s["status"], "interrupted", "{s}");
    assert_eq!(
        s["resumeWith"],
        format!("chunkdump resume d1 --out {}", out.display()).as_str()
    );
    assert!(s["progress"]["estimatedCompletion"].is_null(), "{s}");
    assert!(s["progress"]["processedRows"].as_u64().unwrap() > 0);
    let listed = run(&["list", "--out", out.to_str().unwrap(), "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");

    let resumed = resume_ok("d1", &out);
    assert_eq!(
        read_all(&resumed, compression),
        read_all(&reference, compression),
        "{format} {compression}: resumed dump differs"
    );
    // Not only the content: the compressed bytes too (frames end where the rows say).
    assert!(
        read_all(&resumed, "none") == read_all(&reference, "none"),
        "{format} {compression}: resumed dump's bytes differ"
    );

    assert_eq!(status("d1", &out)["status"], "completed");
    // Nothing is left behind: no open uploads, no staging objects.
    let left = leftovers(&out);
    assert!(
        left.is_empty(),
        "left behind: {left:?}; status {}",
        status("d1", &out)
    );
    // Resuming a completed dump just prints its path.
    let again = run(&["resume", "d1", "--out", out.to_str().unwrap()]);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8(again.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
        resumed.to_str().unwrap()
    );
}

/// Resumes dump `id` in `out` without breathing; returns the path it prints last.
fn resume_ok(id: &str, out: &Path) -> PathBuf {
    let o = run(&[
        "resume",
        id,
        "--out",
        out.to_str().unwrap(),
        "--breathe-ms",
        "0",
    ]);
    assert!(
        o.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8(o.stdout).unwrap().lines().last().unwrap())
}

/// What a dump in `out` left behind: open uploads and staging objects.
fn leftovers(out: &Path) -> Vec<PathBuf> {
    walk(&out.join(".chunkdump/uploads"))
        .into_iter()
        .chain(walk(&out.join(".chunkdump/staging")))
        .collect()
}

#[test]
fn sql_dump_killed_early_resumes_identically() {
    kill_and_resume("sql", "none", 2, 1);
}

#[test]
fn sql_dump_killed_late_resumes_identically() {
    kill_and_resume("sql", "none", 40, 4);
}

#[test]
fn sql_dump_killed_late_resumes_identically_one_upload_at_a_time() {
    kill_and_resume("sql", "none", 40, 1);
}

#[test]
fn gzip_csv_dump_killed_resumes_identically() {
    kill_and_resume("csv", "gzip", 12, 4);
}

#[test]
fn zstd_sql_dump_killed_resumes_identically() {
    kill_and_resume("sql", "zstd", 20, 4);
}

#[test]
fn a_second_runner_of_the_same_dump_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 20_000);
    let out = dir.path().join("out");
    let mut first = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "once",
        ])
        .args([
            "--compression",
            "gzip",
            "--chunk-size",
            "200",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "20",
            "--frame-size",
            "65536",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while try_status("once", &out).is_none_or(|s| s["chunks"].as_u64().unwrap() < 2) {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = run(&["resume", "once", "--out", out.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another process is running this dump")
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // Once the first runner is gone (even killed), the dump can be resumed.
    let resumed = run(&[
        "resume",
        "once",
        "--out",
        out.to_str().unwrap(),
        "--breathe-ms",
        "0",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
}

/// SIGKILL in the middle of a chunk while several parts are being uploaded at once: the
/// resumed dump is byte-identical, and the abandoned upload is cleaned up.
#[test]
fn a_dump_killed_with_parts_in_flight_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 200_000);
    let (_, reference) = dump_ok(
        &src,
        &dir.path().join("ref"),
        &[
            "--format",
            "sql",
            "--id",
            "d1",
            "--breathe-ms",
            "0",
            "--upload-concurrency",
            "1",
        ],
    );
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args([
            "dump",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "sql",
            "--id",
            "d1",
        ])
        .args([
            "--budget-ms",
            "60000",
            "--part-size",
            "5242880",
            "--upload-concurrency",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part was ever uploaded"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "dump ended before it could be killed"
        );
        let parts = walk(&out.join(".chunkdump/uploads"))
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("part-")
            })
            .count();
        if parts >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        status("d1", &out)["chunks"],
        0,
        "killed inside its first chunk"
    );
    let resumed = resume_ok("d1", &out);
    assert_eq!(
        std::fs::read(&resumed).unwrap(),
        std::fs::read(&reference).unwrap(),
        "resumed dump differs"
    );
    let left = leftovers(&out);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A dump into a small file system that fills up pauses (`interrupted`, exit 75, the
/// error and the resume command on stderr, everything committed kept); once the file
/// system grows, `resume` completes it byte-identical to an uninterrupted dump, and
/// `verify` proves it. The file system is a tmpfs of 6 MiB in a private mount namespace
/// (`unshare -rm`, no privileges needed), remounted at 64 MiB for the resume.
#[test]
fn a_dump_into_a_full_disk_pauses_and_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 60_000);
    let flags = [
        "--format",
        "sql",
        "--id",
        "d1",
        "--chunk-size",
        "500",
        "--budget-ms",
        "1",
        "--breathe-ms",
        "0",
        "--part-size",
        "5242880",
    ];
    let (_, reference) = dump_ok(&src, &dir.path().join("ref"), &flags);
    assert!(
        std::fs::metadata(&reference).unwrap().len() > 6 << 20,
        "the dump must outgrow the small file system"
    );
    let (out, logs) = (dir.path().join("small"), dir.path().join("logs"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let bin = env!("CARGO_BIN_EXE_chunkdump");
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=6m chunkdump-test "$OUT" || exit 90
"$BIN" dump "$SRC" --out "$OUT" {flags} >"$LOGS/dump.out" 2>"$LOGS/dump.err"
echo $? >"$LOGS/dump.rc"
"$BIN" status d1 --out "$OUT" >"$LOGS/status.json" 2>&1 || exit 91
mount -o remount,size=64m "$OUT" || exit 92
"$BIN" resume d1 --out "$OUT" --breathe-ms 0 >"$LOGS/resume.out" 2>&1 || exit 93
"$BIN" verify d1 --out "$OUT" >"$LOGS/verify.out" 2>&1 || exit 94
cp "$OUT/d1.sql" "$LOGS/d1.sql"
"#,
        flags = flags.join(" ")
    );
    let o = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env("BIN", bin)
        .env("SRC", &src)
        .env("OUT", &out)
        .env("LOGS", &logs)
        .output()
        .expect("unshare (util-linux) runs");
    let log = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    assert!(
        o.status.success(),
        "{:?}: {}{}\nstatus: {}\nresume: {}\nverify: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        log("dump.err"),
        log("status.json"),
        log("resume.out"),
        log("verify.out")
    );
    assert_eq!(
        log("dump.rc").trim(),
        "75",
        "an interrupted dump exits 75: {}",
        log("dump.err")
    );
    let err = log("dump.err");
    // The file system's own words, or SQLite's for the progress file on the same disk.
    assert!(
        err.contains("No space left on device") || err.contains("database or disk is full"),
        "{err}"
    );
    let resume = format!("chunkdump resume d1 --out {}", out.display());
    assert!(err.contains(&format!("resume it with: {resume}")), "{err}");
    let status: serde_json::Value = serde_json::from_str(&log("status.json")).unwrap();
    assert_eq!(status["status"], "interrupted", "{status}");
    assert_eq!(status["resumeWith"], resume.as_str(), "{status}");
    // The pause is recorded in the progress file, which lives on the full disk too:
    // where the disk filled up decides whether that write found room. Either way the
    // dump is interrupted (its run is gone) and says how to resume; a recorded pause
    // also says why.
    if !status["error"].is_null() {
        assert_eq!(status["error"]["code"], "interrupted", "{status}");
    }
    assert!(
        status["chunks"].as_u64().unwrap() > 0,
        "chunks committed before the disk filled up: {status}"
    );
    assert!(
        status["progress"]["estimatedCompletion"].is_null(),
        "{status}"
    );
    assert!(
        log("verify.out").starts_with("ok:"),
        "{}",
        log("verify.out")
    );
    assert!(
        std::fs::read(logs.join("d1.sql")).unwrap() == std::fs::read(&reference).unwrap(),
        "the resumed dump differs from the uninterrupted one"
    );
}

/// Ctrl-C (SIGINT) during a dump says so in one line with the resume command, exits
/// 130, and that command finishes the dump into the same bytes as an uninterrupted one.
#[test]
fn ctrl_c_says_how_to_resume_and_the_resumed_dump_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 2_000);
    let args = |out: &Path| {
        vec![
            "dump".to_string(),
            src.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--format".into(),
            "sql".into(),
            "--id".into(),
            "d1".into(),
            "--chunk-size".into(),
            "50".into(),
            "--budget-ms".into(),
            "0".into(),
        ]
    };
    let reference = dir.path().join("ref");
    let o = chunkdump()
        .args(args(&reference))
        .args(["--breathe-ms", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("out");
    let mut child = chunkdump()
        .args(args(&out))
        .args(["--breathe-ms", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_chunks(&mut child, "d1", &out, 2);
    // SAFETY: a signal to our own child, which is still running (not yet reaped).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted: dump d1 stopped by Ctrl-C"),
        "{err}"
    );
    let resume = err
        .lines()
        .find_map(|l| l.strip_prefix("resume it with: chunkdump "))
        .unwrap_or_else(|| panic!("no resume command: {err}"));
    assert_eq!(resume, format!("resume d1 --out {}", out.display()));
    let o = chunkdump()
        .args([
            "resume",
            "d1",
            "--out",
            out.to_str().unwrap(),
            "--breathe-ms",
            "0",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        read_all(&out.join("d1.sql"), "none"),
        read_all(&reference.join("d1.sql"), "none"),
        "the resumed dump differs from an uninterrupted one"
    );
}
