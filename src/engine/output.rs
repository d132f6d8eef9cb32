//! The output side of the engine: cuts each object's byte stream into fixed-size parts
//! and hands them to the uploader over a bounded channel (so export and upload overlap
//! while memory stays at a few parts), optionally through a gzip member per chunk.

use std::io::Write;
use std::sync::{Arc, Mutex};

use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use crate::job::Compression;

/// What the engine asks the uploader to do, in order.
#[derive(Debug)]
pub enum UploadEvent {
    /// A full part of exactly the part size.
    Part { object: u32, key: Arc<str>, number: u32, bytes: Vec<u8> },
    /// The object is complete; `last` is its final (possibly short) part, if any.
    Finish { object: u32, key: Arc<str>, last: Option<(u32, Vec<u8>)>, size: u64 },
}

/// Part buffers handed back by the uploader once the store has released them, so the
/// export reuses a few buffers instead of allocating (and page-faulting) one per part.
#[derive(Clone, Default)]
pub struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// At most this many idle buffers are kept.
    const MAX_IDLE: usize = 1;

    /// Returns a buffer for reuse (dropped if enough are idle).
    pub fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut idle) = self.0.lock() {
            if idle.len() < Self::MAX_IDLE {
                idle.push(buf);
            }
        }
    }

    fn take(&self, capacity: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut idle| idle.pop());
        match reused {
            Some(buf) if buf.capacity() >= capacity => buf,
            _ => Vec::with_capacity(capacity),
        }
    }
}

/// The bytes of an unfinished object carried from one chunk to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    pub object: u32,
    pub key: String,
    pub bytes: Vec<u8>,
    /// Number the next full part will get.
    pub next_part: u32,
    /// Bytes of the object produced so far, tail included.
    pub size: u64,
}

/// Accumulates one object's bytes and ships every full part.
struct PartBuffer {
    object: u32,
    key: Arc<str>,
    buf: Vec<u8>,
    part_size: usize,
    next_part: u32,
    size: u64,
    tx: mpsc::Sender<UploadEvent>,
    pool: BufferPool,
}

impl Write for PartBuffer {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let take = (self.part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                let bytes = std::mem::replace(&mut self.buf, self.pool.take(self.part_size));
                let event = UploadEvent::Part { object: self.object, key: self.key.clone(), number: self.next_part, bytes };
                self.tx.blocking_send(event).map_err(|_| std::io::Error::other("uploader stopped"))?;
                self.next_part += 1;
            }
        }
        self.size += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Encoder {
    Plain(PartBuffer),
    /// A gzip member started in this chunk.
    Gzip(GzEncoder<PartBuffer>),
}

impl Encoder {
    /// Ends the gzip member (if any) and returns the part buffer.
    fn into_parts(self) -> std::io::Result<PartBuffer> {
        match self {
            Encoder::Plain(p) => Ok(p),
            Encoder::Gzip(g) => g.finish(),
        }
    }
}

/// Writes the objects of one chunk.
pub struct OutputSink {
    tx: mpsc::Sender<UploadEvent>,
    pool: BufferPool,
    part_size: usize,
    compression: Compression,
    current: Option<Encoder>,
    /// Output bytes produced in this chunk (after compression).
    pub produced: u64,
}

impl OutputSink {
    pub fn new(tx: mpsc::Sender<UploadEvent>, pool: BufferPool, part_size: usize, compression: Compression) -> Self {
        OutputSink { tx, pool, part_size, compression, current: None, produced: 0 }
    }

    /// Continues an object from the tail a previous chunk left.
    pub fn resume(&mut self, tail: Tail) {
        let mut buf = self.pool.take(self.part_size);
        buf.extend_from_slice(&tail.bytes);
        self.current = Some(Encoder::Plain(PartBuffer {
            object: tail.object,
            key: tail.key.into(),
            buf,
            part_size: self.part_size,
            next_part: tail.next_part,
            size: tail.size,
            tx: self.tx.clone(),
            pool: self.pool.clone(),
        }));
    }

    /// Index of the object being written, if any.
    pub fn current_object(&self) -> Option<u32> {
        self.current.as_ref().map(|e| match e {
            Encoder::Plain(p) => p.object,
            Encoder::Gzip(g) => g.get_ref().object,
        })
    }

    /// Starts a new object.
    pub fn begin(&mut self, object: u32, key: &str) {
        debug_assert!(self.current.is_none());
        self.current = Some(Encoder::Plain(PartBuffer {
            object,
            key: key.into(),
            buf: self.pool.take(self.part_size),
            part_size: self.part_size,
            next_part: 1,
            size: 0,
            tx: self.tx.clone(),
            pool: self.pool.clone(),
        }));
    }

    /// Appends bytes to the current object.
    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let enc = self.current.as_mut().ok_or_else(|| std::io::Error::other("no object started"))?;
        if let (Encoder::Plain(_), Compression::Gzip) = (&*enc, self.compression) {
            let Some(Encoder::Plain(p)) = self.current.take() else { unreachable!() };
            self.current = Some(Encoder::Gzip(GzEncoder::new(p, flate2::Compression::new(6))));
        }
        let before = self.size_now();
        match self.current.as_mut().expect("object started") {
            Encoder::Plain(p) => p.write_all(data)?,
            Encoder::Gzip(g) => g.write_all(data)?,
        }
        self.produced += self.size_now() - before;
        Ok(())
    }

    fn size_now(&self) -> u64 {
        match &self.current {
            Some(Encoder::Plain(p)) => p.size,
            Some(Encoder::Gzip(g)) => g.get_ref().size,
            None => 0,
        }
    }

    /// Finishes the current object: its last part goes to the uploader with `Finish`.
    pub fn finish_object(&mut self) -> std::io::Result<()> {
        let Some(enc) = self.current.take() else {
            return Ok(());
        };
        let before = match &enc {
            Encoder::Plain(p) => p.size,
            Encoder::Gzip(g) => g.get_ref().size,
        };
        let mut p = enc.into_parts()?;
        self.produced += p.size - before;
        let last = if !p.buf.is_empty() || p.next_part == 1 { Some((p.next_part, std::mem::take(&mut p.buf))) } else { None };
        let event = UploadEvent::Finish { object: p.object, key: p.key.clone(), last, size: p.size };
        p.tx.blocking_send(event).map_err(|_| std::io::Error::other("uploader stopped"))
    }

    /// Ends the chunk without finishing the current object: ends its gzip member and
    /// returns the tail to carry to the next chunk.
    pub fn suspend(mut self) -> std::io::Result<(Option<Tail>, u64)> {
        let Some(enc) = self.current.take() else {
            return Ok((None, self.produced));
        };
        let before = match &enc {
            Encoder::Plain(p) => p.size,
            Encoder::Gzip(g) => g.get_ref().size,
        };
        let p = enc.into_parts()?;
        self.produced += p.size - before;
        let tail = Tail { object: p.object, key: p.key.to_string(), bytes: p.buf, next_part: p.next_part, size: p.size };
        Ok((Some(tail), self.produced))
    }
}
