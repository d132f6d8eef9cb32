//! Rendering beside reading: the slice loop hands rows to a render worker in compact
//! batches, so SQLite's stepping and the encoding of text run on two cores.
//!
//! The reading thread fetches each row's values from SQLite and appends their canonical
//! encoding (the one the table digest hashes, see [`super::digest`]) to a batch. The
//! worker decodes each row, hashes it for the digest, renders it in the dump's format and
//! writes it to the [`OutputSink`]. A batch is the chunk's whole output stream in order:
//! runs of rows, fixed bytes (DDL, the pieces of large values), and the starts and ends
//! of objects, so a thousand small tables cost a few batches, not a thousand hand-offs.
//! Batches travel over a bounded channel, so only a few are ever in flight (memory stays
//! bounded). Where the process has one core, the same renderer runs inline, no thread.
//!
//! Rows holding a value of [`LARGE_VALUE`] or more never go through the row encoding: the
//! reading thread renders them in pieces (see [`super::large`]) and sends the bytes.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use rusqlite::types::ValueRef;

use super::digest::{encode_row, HASHED_VALUE};
use super::output::OutputSink;
use super::render::{is_large, LARGE_VALUE};
use super::table::TableSource;
pub(super) use super::worker::Rendered;
use super::worker::{work, Batch, Command, Renderer, Segment, Shared, BATCH_BYTES, BIG_BATCH};

// A batch carries every value whole: none may be one the encoding replaces by its hash.
const _: () = assert!(LARGE_VALUE <= HASHED_VALUE);

/// Batches in flight at most.
const IN_FLIGHT: usize = 4;

enum Route<'scope, 'p> {
    Inline(Box<Renderer<'p>>),
    Threaded {
        commands: SyncSender<Command<'p>>,
        spare: Receiver<Batch<'p>>,
        worker: ScopedJoinHandle<'scope, io::Result<Rendered<'p>>>,
        shared: Arc<Shared>,
    },
}

/// Why [`Pipe::row`] failed: fetching a value, or writing.
pub(super) enum PipeRowError {
    Db(rusqlite::Error),
    Io(io::Error),
}

/// The reader's end: rows, bytes and object boundaries, in output order.
pub(super) struct Pipe<'scope, 'p> {
    route: Route<'scope, 'p>,
    batch: Batch<'p>,
    /// A batch rendered inline, for reuse.
    spare: Option<Batch<'p>>,
    /// A batch the worker had no room for (or a big one, which waits until rendered): it
    /// is sent by [`Pipe::send_held`] once the reader has closed its read transaction,
    /// so waiting for the worker never holds writers off (rollback-journal mode).
    held: Option<Batch<'p>>,
    /// Bytes sent into the current compressed frame so far, and the count at which it
    /// ends at the next row end (`u64::MAX` when nothing is compressed).
    frame_bytes: u64,
    frame_limit: u64,
}

impl<'scope, 'p: 'scope> Pipe<'scope, 'p> {
    /// A pipe into `sink`, rendered on a worker thread of `scope` when `threaded`.
    pub fn new<'env>(
        scope: &'scope Scope<'scope, 'env>,
        sink: OutputSink,
        threaded: bool,
        render: bool,
        frame_size: u64,
    ) -> io::Result<Self> {
        let frame_limit = if render && sink.compressed() {
            frame_size
        } else {
            u64::MAX
        };
        let renderer = Renderer {
            render,
            out: Rendered {
                sink,
                sums: Vec::new(),
                nul_text_columns: Vec::new(),
                census: Vec::new(),
            },
            line: Vec::with_capacity(2 * BATCH_BYTES),
        };
        let route = if threaded {
            let (commands, inbox) = sync_channel(IN_FLIGHT);
            let (give_back, spare) = channel();
            let shared = Arc::new(Shared::default());
            let for_worker = shared.clone();
            let worker = std::thread::Builder::new()
                .name("chunkdump-render".into())
                .spawn_scoped(scope, move || work(renderer, inbox, give_back, for_worker))?;
            Route::Threaded {
                commands,
                spare,
                worker,
                shared,
            }
        } else {
            Route::Inline(Box::new(renderer))
        };
        Ok(Pipe {
            route,
            batch: Batch::default(),
            spare: None,
            held: None,
            frame_bytes: 0,
            frame_limit,
        })
    }

    /// Whether rendering runs on its own thread: when the process may use two cores.
    pub fn worth_a_thread() -> bool {
        std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
    }

    /// Starts output object `object`, stored under `key`.
    pub fn begin(&mut self, object: u32, key: &'p str) {
        self.batch.segments.push(Segment::Begin { object, key });
        self.frame_bytes = 0;
    }

    /// Appends `bytes` to the current object.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.frame_bytes += bytes.len() as u64;
        self.batch.bytes.extend_from_slice(bytes);
        let end = self.batch.bytes.len();
        match self.batch.segments.last_mut() {
            Some(Segment::Bytes { end: last }) => *last = end,
            _ => self.batch.segments.push(Segment::Bytes { end }),
        }
        self.flush_if_full()
    }

    /// Finishes the current object.
    pub fn finish_object(&mut self) {
        self.batch.segments.push(Segment::FinishObject);
        self.frame_bytes = 0;
    }

    /// Marks the end of a row: ends the compressed frame there if it has reached
    /// the frame size (see `FRAME_BYTES`). Returns whether the chunk may now stop (see [`Pipe::may_stop`]).
    pub fn end_row(&mut self) -> bool {
        if self.frame_limit != u64::MAX && self.frame_bytes >= self.frame_limit {
            self.batch.segments.push(Segment::EndFrame);
            self.frame_bytes = 0;
        }
        self.may_stop()
    }

    /// Whether the chunk may stop here without moving a frame boundary: nothing is
    /// compressed, or no frame is open (one just ended, or the object did).
    pub fn may_stop(&self) -> bool {
        self.frame_limit == u64::MAX || self.frame_bytes == 0
    }

    /// Appends a row of `table` to be rendered, its `width` values fetched by `value`;
    /// returns the size of its encoding, or `None` (and appends nothing) if a value
    /// [`is_large`]: such a row is for the caller to render in pieces.
    /// `first_in_table`: it is the table's first row.
    pub fn row<'v>(
        &mut self,
        table: &'p TableSource,
        width: usize,
        value: &dyn Fn(usize) -> rusqlite::Result<ValueRef<'v>>,
        first_in_table: bool,
    ) -> Result<Option<usize>, PipeRowError> {
        let before = self.batch.bytes.len();
        for i in 0..width {
            let v = value(i).map_err(|e| {
                self.batch.bytes.truncate(before);
                PipeRowError::Db(e)
            })?;
            if is_large(&v) {
                self.batch.bytes.truncate(before);
                return Ok(None);
            }
            encode_row(std::iter::once(v), &mut self.batch.bytes);
        }
        let end = self.batch.bytes.len();
        self.frame_bytes += (end - before) as u64;
        match self.batch.segments.last_mut() {
            Some(Segment::Rows {
                table: t,
                end: last,
                ..
            }) if std::ptr::eq(*t, table) && !first_in_table => *last = end,
            _ => self.batch.segments.push(Segment::Rows {
                table,
                first_in_table,
                end,
            }),
        }
        self.flush_if_full().map_err(PipeRowError::Io)?;
        Ok(Some(end - before))
    }

    /// Whether a batch waits for the worker: the reader should end its read transaction,
    /// then call [`Pipe::send_held`].
    pub fn backed_up(&self) -> bool {
        self.held.is_some()
    }

    /// Sends the held batch, if any, waiting for room (and, for a big batch, until it is
    /// rendered). Call with no read transaction open.
    pub fn send_held(&mut self) -> io::Result<()> {
        let (Some(batch), Route::Threaded { commands, .. }) = (self.held.take(), &self.route)
        else {
            return Ok(());
        };
        let stopped = || io::Error::other("the render worker stopped");
        let big = batch.bytes.len() > BIG_BATCH;
        commands
            .send(Command::Batch(batch))
            .map_err(|_| stopped())?;
        if big {
            let (answer, done) = channel();
            commands
                .send(Command::Settle(answer))
                .map_err(|_| stopped())?;
            // No answer: the worker failed and is draining; `end` says why.
            done.recv().ok();
        }
        Ok(())
    }

    /// Output bytes produced so far in this chunk (behind by the batches in flight).
    pub fn produced(&self) -> u64 {
        match &self.route {
            Route::Inline(r) => r.out.sink.produced,
            Route::Threaded { shared, .. } => shared.produced.load(Ordering::Relaxed),
        }
    }

    /// Whether writing has failed (the error comes from [`Pipe::end`]).
    pub fn failed(&self) -> bool {
        match &self.route {
            Route::Inline(_) => false,
            Route::Threaded { shared, .. } => shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Renders what is left and hands back the sink and what the rows left behind.
    pub fn end(mut self) -> io::Result<Rendered<'p>> {
        self.flush()?;
        self.send_held()?;
        match self.route {
            Route::Inline(r) => Ok(r.out),
            Route::Threaded {
                commands, worker, ..
            } => {
                drop(commands);
                worker
                    .join()
                    .map_err(|_| io::Error::other("the render worker panicked"))?
            }
        }
    }

    fn flush_if_full(&mut self) -> io::Result<()> {
        if self.batch.bytes.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch so far to be rendered.
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.segments.is_empty() {
            return Ok(());
        }
        // Only a caller that did not stop for a held batch (a large row's pieces) waits here.
        self.send_held()?;
        let reused = match &self.route {
            Route::Threaded { spare, .. } => spare.try_recv().ok(),
            Route::Inline(_) => self.spare.take(),
        };
        let mut fresh = reused.unwrap_or_else(|| Batch {
            bytes: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            segments: Vec::new(),
        });
        fresh.bytes.clear();
        fresh.segments.clear();
        let batch = std::mem::replace(&mut self.batch, fresh);
        let big = batch.bytes.len() > BIG_BATCH;
        let stopped = || io::Error::other("the render worker stopped");
        match &mut self.route {
            Route::Inline(r) => {
                r.batch(&batch)?;
                if !big {
                    self.spare = Some(batch);
                }
            }
            Route::Threaded { commands, .. } => {
                if big {
                    self.held = Some(batch);
                } else {
                    match commands.try_send(Command::Batch(batch)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(Command::Batch(batch))) => self.held = Some(batch),
                        Err(_) => return Err(stopped()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::digest::row_hash;
    use crate::engine::output::{BufferPool, UploadEvent, FRAME_BYTES};
    use crate::engine::render::{render_row, RowEncoding, TextEncoding};
    use crate::engine::table::Paging;
    use crate::model::Compression;

    fn table(name: &str, encoding: RowEncoding, width: usize) -> TableSource {
        TableSource {
            name: name.into(),
            key_len: 0,
            key_list: String::new(),
            select_first: String::new(),
            select_after: String::new(),
            value_len: width,
            select_rest: None,
            rest_len: 0,
            paging: Paging::Keyset,
            value_columns: (0..width).map(|i| (format!("c{i}"), i == 1)).collect(),
            column_names: Vec::new(),
            declared_types: vec![String::new(); width],
            encoding,
        }
    }

    type Output = (Vec<u8>, Vec<(String, u128)>, Vec<(String, Vec<usize>)>);

    /// Sends `rows` (table index, values) through a pipe; returns the object's bytes,
    /// the sums and the NUL-text columns the renderer reports.
    fn through_pipe(
        threaded: bool,
        tables: &[TableSource],
        rows: &[(usize, Vec<ValueRef<'_>>)],
    ) -> Output {
        let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
        let sink = OutputSink::new(tx, BufferPool::default(), 4096, Compression::None, None);
        let rendered = std::thread::scope(|scope| {
            let mut pipe = Pipe::new(scope, sink, threaded, true, FRAME_BYTES).unwrap();
            pipe.begin(0, "out");
            pipe.write(b"head\n").unwrap();
            let mut seen = vec![false; tables.len()];
            for (t, values) in rows {
                let first = !std::mem::replace(&mut seen[*t], true);
                let written = pipe.row(&tables[*t], values.len(), &|i| Ok(values[i]), first);
                assert!(matches!(written, Ok(Some(n)) if n > 0));
            }
            let large = [ValueRef::Integer(1), ValueRef::Blob(&[7; LARGE_VALUE])];
            let refused = pipe.row(&tables[0], 2, &|i| Ok(large[i]), false);
            assert!(
                matches!(refused, Ok(None)),
                "a row with a large value is the caller's"
            );
            pipe.write(b"tail\n").unwrap();
            pipe.finish_object();
            pipe.end().unwrap()
        });
        // Per table, in order of first appearance (the test's tables recur in runs).
        let mut sums: Vec<(String, u128)> = Vec::new();
        for (t, sum) in &rendered.sums {
            match sums.iter_mut().find(|(n, _)| n == t) {
                Some((_, s)) => *s = s.wrapping_add(*sum),
                None => sums.push((t.to_string(), *sum)),
            }
        }
        let mut nul: Vec<(String, Vec<usize>)> = Vec::new();
        for (t, columns) in &rendered.nul_text_columns {
            if !nul.iter().any(|(n, c)| *n == t.name && c == columns) {
                nul.push((t.name.clone(), columns.clone()));
            }
        }
        drop(rendered.sink);
        let mut bytes = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event {
                UploadEvent::Part { bytes: part, .. } => bytes.extend(part.into_vec()),
                UploadEvent::Finish { last, .. } => {
                    bytes.extend(last.map(|(_, p)| p.into_vec()).unwrap_or_default())
                }
            }
        }
        (bytes, sums, nul)
    }

    /// Inline and on a thread, the pipe writes exactly what rendering each row directly
    /// writes, in order, across batches and tables, and sums the same row hashes.
    #[test]
    fn batched_rows_render_as_each_row_would() {
        let sql = RowEncoding::Sql {
            prefix: b"INSERT INTO t VALUES(".to_vec(),
            text: TextEncoding::Utf8,
        };
        let json = RowEncoding::Json {
            keys: vec![b"\"a\":".to_vec(), b"\"b\":".to_vec()],
        };
        let tables = [
            table("t", sql, 2),
            table("j", json, 2),
            table("c", RowEncoding::Csv, 2),
        ];
        let texts: Vec<String> = (0..30000)
            .map(|i| format!("row {i} 'quoted' é {}", "x".repeat(i % 90)))
            .collect();
        let big = vec![b'x'; LARGE_VALUE - 1];
        let rows: Vec<(usize, Vec<ValueRef<'_>>)> = (0..30000usize)
            .map(|i| {
                let a = match i % 4 {
                    0 => ValueRef::Integer(i as i64 - 4500),
                    1 => ValueRef::Real(i as f64 * 0.1),
                    2 => ValueRef::Null,
                    _ => ValueRef::Blob(&[0, 1, 2, 255]),
                };
                // Now and then a row bigger than a batch (values just under
                // LARGE_VALUE), which the reader waits to see rendered.
                let a = if i % 7000 == 3 {
                    ValueRef::Blob(&big)
                } else {
                    a
                };
                let b = if i % 1000 == 7 {
                    ValueRef::Text(b"nul\0inside")
                } else {
                    ValueRef::Text(texts[i].as_bytes())
                };
                // Runs of each table, so batches end both on size and on a new table.
                ((i / 5000) % 3, vec![a, b])
            })
            .collect();
        let mut expected = b"head\n".to_vec();
        let mut seen = [false; 3];
        let mut sums: Vec<(String, u128)> = Vec::new();
        for (t, values) in &rows {
            let first = !std::mem::replace(&mut seen[*t], true);
            render_row(
                &tables[*t].encoding,
                values,
                first,
                &mut expected,
                &mut |_, _| unreachable!(),
            )
            .unwrap();
            let hash = row_hash(values.iter().copied());
            match sums.iter_mut().find(|(n, _)| *n == tables[*t].name) {
                Some((_, s)) => *s = s.wrapping_add(hash),
                None => sums.push((tables[*t].name.clone(), hash)),
            }
        }
        expected.extend_from_slice(b"tail\n");
        assert!(expected.len() > 3 * BATCH_BYTES, "several batches");
        for threaded in [false, true] {
            let (bytes, got_sums, nul) = through_pipe(threaded, &tables, &rows);
            assert!(bytes == expected, "threaded {threaded}: output differs");
            assert_eq!(got_sums, sums, "threaded {threaded}");
            // Only SQL restores convert NUL text in numeric affinity (column 1 here).
            assert_eq!(nul, vec![("t".to_string(), vec![1])], "threaded {threaded}");
        }
    }
}
