//! The output side of the engine: cuts each object's byte stream into fixed-size parts
//! and hands them to the uploader over a bounded channel (so export and upload overlap
//! while memory stays at a few parts), optionally through a gzip member per chunk.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use crate::job::Compression;

/// What the engine asks the uploader to do, in order.
#[derive(Debug)]
pub enum UploadEvent {
    /// A full part of exactly the part size.
    Part { object: u32, key: Arc<str>, number: u32, bytes: PartBuf },
    /// The object is complete; `last` is its final (possibly short) part, if any.
    Finish { object: u32, key: Arc<str>, last: Option<(u32, PartBuf)>, size: u64 },
}

/// Part buffers, lent to the export and returned when the store is done with them (a
/// [`PartBuf`] returns itself when dropped). Reusing a few buffers avoids allocating (and
/// page-faulting) one per part; bounding how many are lent at once bounds the chunk's
/// memory, whatever the gap between export and upload speed.
#[derive(Clone)]
pub struct BufferPool(Arc<PoolInner>);

struct PoolInner {
    state: Mutex<PoolState>,
    returned: Condvar,
    max_lent: usize,
    max_idle: usize,
}

struct PoolState {
    idle: Vec<Vec<u8>>,
    lent: usize,
    /// The uploader has stopped: lend without waiting (the export is about to stop too).
    closed: bool,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new(usize::MAX, 1)
    }
}

impl BufferPool {
    /// A pool lending at most `max_lent` buffers at once and keeping `max_idle` spare.
    pub fn new(max_lent: usize, max_idle: usize) -> Self {
        let state = Mutex::new(PoolState { idle: Vec::new(), lent: 0, closed: false });
        BufferPool(Arc::new(PoolInner { state, returned: Condvar::new(), max_lent: max_lent.max(1), max_idle }))
    }

    /// Lends a buffer of at least `capacity` bytes, waiting while `max_lent` are out.
    fn take(&self, capacity: usize) -> PartBuf {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.lent >= self.0.max_lent && !state.closed {
            state = self.0.returned.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.lent += 1;
        let bytes = match state.idle.pop() {
            Some(buf) if buf.capacity() >= capacity => buf,
            _ => Vec::with_capacity(capacity),
        };
        PartBuf { bytes, pool: Some(self.clone()) }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.lent = state.lent.saturating_sub(1);
        if buf.capacity() > 0 && state.idle.len() < self.0.max_idle {
            buf.clear();
            state.idle.push(buf);
        }
        self.0.returned.notify_one();
    }

    /// Stops making the export wait for buffers (called when the uploader stops).
    pub fn close(&self) {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.0.returned.notify_all();
    }
}

/// A part's bytes, lent by a [`BufferPool`]: dropping it (after the store released the
/// last `Bytes` made from it) returns the buffer.
pub struct PartBuf {
    bytes: Vec<u8>,
    pool: Option<BufferPool>,
}

impl PartBuf {
    /// The bytes, returning the loan now (for a buffer that leaves the pool's care).
    pub fn into_vec(mut self) -> Vec<u8> {
        if let Some(pool) = self.pool.take() {
            pool.give_back(Vec::new());
        }
        std::mem::take(&mut self.bytes)
    }
}

impl From<Vec<u8>> for PartBuf {
    /// A buffer that belongs to no pool.
    fn from(bytes: Vec<u8>) -> Self {
        PartBuf { bytes, pool: None }
    }
}

impl std::ops::Deref for PartBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl std::ops::DerefMut for PartBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for PartBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartBuf({} bytes)", self.bytes.len())
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.bytes));
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
    buf: PartBuf,
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
        let p = enc.into_parts()?;
        self.produced += p.size - before;
        let PartBuffer { object, key, buf, next_part, size, tx, .. } = p;
        let last = if !buf.is_empty() || next_part == 1 { Some((next_part, buf)) } else { None };
        tx.blocking_send(UploadEvent::Finish { object, key, last, size }).map_err(|_| std::io::Error::other("uploader stopped"))
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
        let tail = Tail { object: p.object, key: p.key.to_string(), bytes: p.buf.into_vec(), next_part: p.next_part, size: p.size };
        Ok((Some(tail), self.produced))
    }
}
