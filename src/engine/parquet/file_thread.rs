//! A Parquet file written on its own thread: the reading thread fills row groups, this
//! one takes their digests, encodes, compresses and writes them into the output sink.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use parquet::file::properties::WriterPropertiesPtr;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::TypePtr;

use super::writer::{RowGroup, ROW_GROUP_BYTES};
use crate::engine::output::OutputSink;

/// A file written on its own thread (encoding and compressing beside the reading):
/// full row groups go in, emptied ones come back to be filled again.
pub struct FileThread<'scope> {
    groups: SyncSender<RowGroup>,
    spare: Receiver<RowGroup>,
    handle: ScopedJoinHandle<'scope, Result<u128, String>>,
    /// Groups sent and not yet given back.
    outstanding: usize,
    /// Bytes of the file written so far.
    pub written: Arc<AtomicU64>,
}

impl<'scope> FileThread<'scope> {
    /// Starts writing a file of `schema` into `sink` (its object already begun).
    pub fn spawn<'env>(
        scope: &'scope Scope<'scope, 'env>,
        sink: &'scope mut OutputSink,
        schema: TypePtr,
        props: WriterPropertiesPtr,
    ) -> std::io::Result<Self> {
        // A rendezvous: the reader hands a group over only when the writer is free, so
        // at most two exist (one filled, one written).
        let (groups, incoming) = sync_channel::<RowGroup>(0);
        let (give_back, spare) = channel();
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let handle = std::thread::Builder::new()
            .name("chunkdump-parquet".into())
            .spawn_scoped(scope, move || {
                let pq = |e: parquet::errors::ParquetError| format!("writing Parquet: {e}");
                let mut file =
                    SerializedFileWriter::new(SinkWrite(sink), schema, props).map_err(pq)?;
                // The rows' digest is taken here, beside the reading, not on its thread.
                let mut sum = 0u128;
                for mut group in incoming {
                    sum = sum.wrapping_add(group.row_hash_sum());
                    group.write_to(&mut file).map_err(pq)?;
                    counter.store(file.bytes_written() as u64, Ordering::Relaxed);
                    let _ = give_back.send(group);
                }
                file.close().map_err(pq)?;
                Ok(sum)
            })?;
        Ok(FileThread {
            groups,
            spare,
            handle,
            outstanding: 0,
            written,
        })
    }

    /// Hands `group` (full) to the writer; returns an empty group to fill.
    pub fn write(&mut self, group: RowGroup) -> Result<RowGroup, String> {
        let empty = group.empty_like();
        // A group swollen by a large value is written before the next is read, so no
        // second large value is held beside it (memory: one large value, not two).
        let large = group.bytes() >= 2 * ROW_GROUP_BYTES;
        let stopped = || "the Parquet writer stopped".to_string();
        self.groups.send(group).map_err(|_| stopped())?;
        self.outstanding += 1;
        if large {
            // Every group sent comes back once written: wait for all of them.
            let mut last = empty;
            while self.outstanding > 0 {
                last = self.spare.recv().map_err(|_| stopped())?;
                self.outstanding -= 1;
            }
            return Ok(last);
        }
        match self.spare.try_recv() {
            Ok(spare) => {
                self.outstanding -= 1;
                Ok(spare)
            }
            Err(_) => Ok(empty),
        }
    }

    /// Writes `last` (if it has rows), the footer, and waits for the writer; returns
    /// the sum of the file's rows' digest hashes.
    pub fn close(self, last: RowGroup) -> Result<u128, String> {
        if last.rows() > 0 {
            let _ = self.groups.send(last);
        }
        drop(self.groups);
        self.handle
            .join()
            .unwrap_or_else(|_| Err("the Parquet writer panicked".into()))
    }
}

/// The output sink as a file's destination.
pub struct SinkWrite<'a>(pub &'a mut OutputSink);

impl Write for SinkWrite<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
