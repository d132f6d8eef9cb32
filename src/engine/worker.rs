//! The render worker of [`super::pipe`]: carries out the batches the reading thread
//! sends, in order. It decodes each row's canonical encoding, hashes it for the table
//! digest, notes what the census and the warnings need, renders the row in the dump's
//! format and writes the output to the [`OutputSink`]. The same [`Renderer`] runs on its
//! own thread ([`work`]) or inline, where the process has one core.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use rusqlite::types::ValueRef;
use xxhash_rust::xxh3::xxh3_128;

use super::digest::decode_value;
use super::output::OutputSink;
use super::render::render_row;
use super::table::note_nul_text;
use super::table::TableSource;

/// A batch is sent once it holds this many bytes.
pub(super) const BATCH_BYTES: usize = 512 * 1024;

/// A batch larger than this (it ends in a row of many values just under
/// [`LARGE_VALUE`]) is rendered before the reader goes on, so such rows are never queued
/// several deep, and buffers grown for one are not kept.
pub(super) const BIG_BATCH: usize = 2 * BATCH_BYTES;

/// One run of a batch's stream; `end` is where its bytes end in the batch.
pub(super) enum Segment<'p> {
    Begin {
        object: u32,
        key: &'p str,
    },
    Bytes {
        end: usize,
    },
    Rows {
        table: &'p TableSource,
        first_in_table: bool,
        end: usize,
    },
    FinishObject,
    /// Ends the gzip member or zstd frame (see [`super::output::FRAME_BYTES`]).
    EndFrame,
}

/// A stretch of the output stream: `bytes` holds the segments' bytes, back to back.
#[derive(Default)]
pub(super) struct Batch<'p> {
    pub bytes: Vec<u8>,
    pub segments: Vec<Segment<'p>>,
}

pub(super) enum Command<'p> {
    Batch(Batch<'p>),
    /// Answers once every batch before it is carried out.
    Settle(Sender<()>),
}

/// What rendering leaves besides the output: the sink, and what the digest and the
/// warnings need from the rows the renderer saw.
pub(super) struct Rendered<'p> {
    pub sink: OutputSink,
    /// Per run of a table's rows (in output order), the sum (mod 2^128) of their hashes.
    pub sums: Vec<(&'p str, u128)>,
    /// Per table, the value columns holding TEXT with a NUL in numeric affinity.
    pub nul_text_columns: Vec<(&'p TableSource, Vec<usize>)>,
    /// Per run of a CSV table's rows, their census (see [`super::census`]).
    pub census: Vec<(&'p str, Vec<u8>)>,
}

pub(super) struct Renderer<'p> {
    /// Render rows (not only hash them).
    pub render: bool,
    pub out: Rendered<'p>,
    /// Rendered output not yet written to the sink.
    pub line: Vec<u8>,
}

impl<'p> Renderer<'p> {
    /// Carries out a batch's segments in order.
    pub fn batch(&mut self, batch: &Batch<'p>) -> io::Result<()> {
        let mut start = 0;
        for segment in &batch.segments {
            match *segment {
                Segment::Begin { object, key } => {
                    self.write_line()?;
                    self.out.sink.begin(object, key)?;
                }
                Segment::FinishObject => {
                    self.write_line()?;
                    self.out.sink.finish_object()?;
                }
                Segment::EndFrame => {
                    self.write_line()?;
                    self.out.sink.end_frame()?;
                }
                Segment::Bytes { end } => {
                    self.line.extend_from_slice(&batch.bytes[start..end]);
                    start = end;
                }
                Segment::Rows {
                    table,
                    first_in_table,
                    end,
                } => {
                    self.rows(table, first_in_table, &batch.bytes[start..end])?;
                    start = end;
                }
            }
        }
        self.write_line()?;
        if self.line.capacity() > 2 * BIG_BATCH {
            self.line = Vec::with_capacity(2 * BATCH_BYTES);
        }
        Ok(())
    }

    pub fn write_line(&mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.out.sink.write_all(&self.line)?;
            self.line.clear();
        }
        Ok(())
    }

    /// Renders a run of `table`'s encoded rows into the line.
    fn rows(&mut self, table: &'p TableSource, mut first: bool, rows: &[u8]) -> io::Result<()> {
        let width = table.value_len + table.rest_len;
        let mut on_stack = [ValueRef::Null; 32];
        let mut on_heap = Vec::new();
        let mut sum = 0u128;
        let mut nul = Vec::new();
        let csv = matches!(table.encoding, super::render::RowEncoding::Csv);
        let mut census = Vec::new();
        let mut pos = 0;
        while pos < rows.len() {
            let start = pos;
            let values: &mut [ValueRef<'_>] = if width <= on_stack.len() {
                &mut on_stack[..width]
            } else {
                on_heap.resize(width, ValueRef::Null);
                &mut on_heap
            };
            for slot in values.iter_mut() {
                *slot = decode_value(rows, &mut pos)
                    .ok_or_else(|| io::Error::other("malformed row batch"))?;
            }
            sum = sum.wrapping_add(xxh3_128(&rows[start..pos]));
            note_nul_text(table, values, &mut nul);
            if csv {
                super::census::note_row(&mut census, values);
            }
            if self.render {
                render_row(
                    &table.encoding,
                    values,
                    first,
                    &mut self.line,
                    &mut |_, _| Err(io::Error::other("a large value in a row batch")),
                )?;
            }
            first = false;
        }
        // A table's rows come in one stretch: only the last entries can be this table's.
        match self.out.sums.last_mut() {
            Some((name, s)) if *name == table.name => *s = s.wrapping_add(sum),
            _ => self.out.sums.push((&table.name, sum)),
        }
        if csv {
            match self.out.census.last_mut() {
                Some((name, c)) if *name == table.name => super::census::merge(c, &census),
                _ => self.out.census.push((&table.name, census)),
            }
        }
        if !nul.is_empty() {
            match self.out.nul_text_columns.last_mut() {
                Some((t, found)) if std::ptr::eq(*t, table) => {
                    for c in nul {
                        if !found.contains(&c) {
                            found.push(c);
                        }
                    }
                }
                _ => self.out.nul_text_columns.push((table, nul)),
            }
        }
        Ok(())
    }
}

/// The worker's side of a threaded pipe: carries out commands until the reader hangs up.
/// After a failure it keeps draining (so the reader never blocks) and returns the error.
pub(super) fn work<'p>(
    mut renderer: Renderer<'p>,
    commands: Receiver<Command<'p>>,
    spare: Sender<Batch<'p>>,
    shared: Arc<Shared>,
) -> io::Result<Rendered<'p>> {
    let mut failure = None;
    for command in commands {
        let batch = match command {
            Command::Settle(answer) => {
                answer.send(()).ok();
                continue;
            }
            Command::Batch(_) if failure.is_some() => continue,
            Command::Batch(batch) => batch,
        };
        match renderer.batch(&batch) {
            Ok(()) if batch.bytes.capacity() <= BIG_BATCH => drop(spare.send(batch)),
            Ok(()) => {}
            Err(e) => {
                shared.failed.store(true, Ordering::Relaxed);
                failure = Some(e);
            }
        }
        shared
            .produced
            .store(renderer.out.sink.produced, Ordering::Relaxed);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(renderer.out),
    }
}

#[derive(Default)]
pub(super) struct Shared {
    pub produced: AtomicU64,
    pub failed: AtomicBool,
}
