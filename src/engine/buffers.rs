//! Part buffers: a pool lends them to the export and takes them back when the store is
//! done with a part, so a chunk's memory stays bounded and parts are not allocated (and
//! page-faulted) one by one.

use std::sync::{Arc, Condvar, Mutex};

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
        let state = Mutex::new(PoolState {
            idle: Vec::new(),
            lent: 0,
            closed: false,
        });
        BufferPool(Arc::new(PoolInner {
            state,
            returned: Condvar::new(),
            max_lent: max_lent.max(1),
            max_idle,
        }))
    }

    /// Lends a buffer of at least `capacity` bytes, waiting while `max_lent` are out.
    pub(super) fn take(&self, capacity: usize) -> PartBuf {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.lent >= self.0.max_lent && !state.closed {
            state = self
                .0
                .returned
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.lent += 1;
        let bytes = match state.idle.pop() {
            Some(buf) if buf.capacity() >= capacity => buf,
            _ => Vec::with_capacity(capacity),
        };
        PartBuf {
            bytes,
            pool: Some(self.clone()),
        }
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
        self.0
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
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
