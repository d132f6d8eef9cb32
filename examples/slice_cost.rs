//! Cost of one slice at the start of a table versus one resumed near its end: keyset
//! pagination should make them equal. Prints the median of repeated runs.
//! Usage: slice_cost DB TABLE [ROWS_PER_SLICE]

use std::time::{Duration, Instant};

use chunkdump::engine::{run_export, ExportInput, Tail};
use chunkdump::model::{Compression, Cursor, DumpSpec, Format, KeyValue};

fn one_slice(spec: &DumpSpec, step: u32, after: Option<i64>) -> anyhow::Result<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let input = ExportInput {
        spec: spec.clone(),
        dump_id: "bench".into(),
        cursor: Cursor {
            object: 0,
            step,
            after: after.map(|k| vec![KeyValue::Integer(k)]),
            file: 0,
        },
        tail: Some(Tail {
            object: 0,
            key: "bench.sql".into(),
            bytes: Vec::new(),
            next_part: 1,
            size: 0,
            age: None,
        }),
        fingerprint: None,
        first_change_token: None,
        count_rows: false,
        deadline: Instant::now(), // budget 0: exactly one slice
        progress: None,
        pool: Default::default(),
        digests: Default::default(),
        digest_only: false,
        database_inode: None,
        sealing: None,
    };
    let start = Instant::now();
    let outcome = run_export(input, tx)?;
    let elapsed = start.elapsed();
    drain.join().unwrap();
    anyhow::ensure!(
        outcome.rows == u64::from(spec.slice_rows.get()),
        "slice read {} rows",
        outcome.rows
    );
    Ok(elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: slice_cost DB TABLE [ROWS_PER_SLICE]"
    );
    let rows: u32 = args.get(3).map_or(Ok(1000), |s| s.parse())?;
    let spec = DumpSpec {
        database: args[1].clone(),
        format: Format::Sql,
        compression: Compression::None,
        tables: Some(vec![args[2].clone()]),
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(rows).unwrap(),
        part_size: 8 << 20,
        snapshot: false,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    };
    let conn = rusqlite::Connection::open(&args[1])?;
    let max: i64 = conn.query_row(
        &format!("SELECT max(rowid) FROM \"{}\"", args[2]),
        [],
        |r| r.get(0),
    )?;
    // Steps of the SQL object: header, CREATE, rows of the table, trailer.
    let (mut start, mut end) = (Vec::new(), Vec::new());
    for _ in 0..31 {
        start.push(one_slice(&spec, 2, None)?);
        end.push(one_slice(&spec, 2, Some(max - i64::from(rows) - 1))?);
    }
    let (s, e) = (median(start), median(end));
    println!(
        "slice of {rows} rows: at start {:.3} ms, near row {max} {:.3} ms, ratio end/start {:.2}",
        s.as_secs_f64() * 1e3,
        e.as_secs_f64() * 1e3,
        e.as_secs_f64() / s.as_secs_f64()
    );
    Ok(())
}
