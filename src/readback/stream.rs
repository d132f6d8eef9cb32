//! A stored file streamed to a reading thread as it is fetched.
//!
//! Ranges of 1 MiB are fetched a few at a time, in order, hashed with SHA-256 off the
//! async threads (the file digest is over part digests, as the uploader computed it), and
//! handed over a one-deep channel to a blocking [`PieceReader`] that a parser reads from.
//! So fetching, hashing and parsing overlap, nothing goes through a scratch file, and
//! memory stays at a few MiB whatever the file's or the part's size.

use std::io::{self, BufRead, Read};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::DumpError;
use crate::ports::ObjectReader;

/// Where a dump's bytes are read from, in ranges.
#[async_trait::async_trait]
pub trait RangeSource: Send + Sync {
    /// Up to `len` bytes of `key` from `offset`; `None` if the file does not exist.
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError>;

    /// Ranges fetched at once ahead of the reader.
    fn ahead(&self) -> usize {
        AHEAD
    }

    /// Whether the bytes are on this machine's disk already (reading them twice costs a
    /// local read, not a second download).
    fn is_local(&self) -> bool {
        false
    }
}

/// One local file, whatever key is asked for: a remote file copied here to be checked
/// before use (see `crate::restore`).
pub struct FileSource(pub std::path::PathBuf);

#[async_trait::async_trait]
impl RangeSource for FileSource {
    async fn range(&self, _key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError> {
        read_range(self.0.clone(), offset, len).await
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// Up to `len` bytes of the file at `path` from `offset`; `None` if it does not exist.
async fn read_range(
    path: std::path::PathBuf,
    offset: u64,
    len: u64,
) -> Result<Option<Vec<u8>>, DumpError> {
    use std::io::Seek;
    tokio::task::spawn_blocking(move || {
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(DumpError::InvalidRequest(format!(
                    "{}: {e}",
                    path.display()
                )))
            }
        };
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.seek(io::SeekFrom::Start(offset))
            .and_then(|_| f.take(len).read_to_end(&mut buf))
            .map_err(|e| DumpError::InvalidRequest(format!("{}: {e}", path.display())))?;
        Ok(Some(buf))
    })
    .await
    .map_err(|e| DumpError::Internal(e.to_string()))?
}

/// A dump in an object store, read `ahead` ranges at a time.
pub struct StoreSource<'a> {
    pub objects: &'a dyn ObjectReader,
    pub ahead: usize,
}

impl<'a> StoreSource<'a> {
    /// `objects`, read the default number of ranges at a time.
    pub fn new(objects: &'a dyn ObjectReader) -> Self {
        StoreSource {
            objects,
            ahead: AHEAD,
        }
    }
}

#[async_trait::async_trait]
impl RangeSource for StoreSource<'_> {
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError> {
        Ok(self.objects.get_range(key, offset, len).await?)
    }

    fn ahead(&self) -> usize {
        self.ahead.max(1)
    }
}

/// A dump copied to a local directory (read only).
pub struct DirSource(pub std::path::PathBuf);

#[async_trait::async_trait]
impl RangeSource for DirSource {
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, DumpError> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(DumpError::InvalidRequest(format!(
                "manifest lists an unsafe file name {key:?}"
            )));
        }
        read_range(self.0.join(key), offset, len).await
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// A streamed file's size and digest (SHA-256 over its parts' SHA-256 digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub size: u64,
    pub sha256: String,
}

/// Bytes fetched per request. Small, so memory stays small; several are fetched at once
/// ([`AHEAD`]), so a remote store's round trips overlap.
const RANGE: u64 = 1 << 20;

/// Ranges fetched ahead of the reader unless a source says otherwise.
const AHEAD: usize = crate::config::DEFAULT_DOWNLOAD_CONCURRENCY;

/// The smallest part size a manifest may give (see [`stream_file`]).
const MIN_READ_PART: u64 = 64 << 10;

/// Streams `key` from `source` to `consume`, which runs on a blocking thread reading the
/// bytes through a [`PieceReader`]. The bytes are hashed as they pass, part by part of
/// `part_size` (the uploader's digest), the first `skip` bytes left out (an encrypted
/// file's age header). Returns the file's size and digest with what
/// `consume` returned, or `None` if the file does not exist. The whole file is fetched
/// and hashed even if `consume` stops reading early. Memory: about `AHEAD + 2` ranges.
pub async fn stream_file<T: Send + 'static>(
    source: &dyn RangeSource,
    key: &str,
    (part_size, skip): (u64, u64),
    on_read: &mut (dyn FnMut(u64) + Send),
    consume: impl FnOnce(PieceReader) -> T + Send + 'static,
) -> Result<Option<(Fetched, T)>, DumpError> {
    use futures_util::stream::{self, StreamExt};
    // The manifest's part size sets the reads: one of a byte would make a restore take
    // hours per GB. chunkdump's parts are 5 MiB or more (tests write 64 KiB).
    if !(MIN_READ_PART..=crate::config::MAX_PART_SIZE).contains(&part_size) {
        return Err(DumpError::InvalidRequest(format!(
            "{key}: the manifest's part size {part_size} is outside 64 KiB..5 GiB; not a manifest chunkdump writes"
        )));
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1);
    let mut tx = Some(tx);
    let consumer = tokio::task::spawn_blocking(move || {
        consume(PieceReader {
            pieces: rx,
            piece: Vec::new(),
            pos: 0,
        })
    });
    // Ranges never cross a part boundary, so each part's digest is of its own bytes.
    let ranges = std::iter::successors(Some((0u64, RANGE.min(part_size))), |&(at, len)| {
        let next = at + len;
        let part_end = (next / part_size + 1) * part_size;
        Some((next, RANGE.min(part_end - next)))
    });
    let mut pieces = stream::iter(ranges)
        .map(|(at, len)| async move { (len, source.range(key, at, len).await) })
        .buffered(source.ahead());
    let (mut size, mut in_part, mut parts) = (0u64, 0u64, Vec::new());
    let mut hasher = Some(Sha256::new());
    let fetched = loop {
        let Some((asked, piece)) = pieces.next().await else {
            break None; // the ranges never end
        };
        let Some(piece) = piece? else {
            break None;
        };
        let len = piece.len() as u64;
        let mut h = hasher.take().expect("returned after every piece");
        // The first `skip` bytes (an encrypted file's age header) are not digested.
        let from = if size == 0 { skip.min(len) as usize } else { 0 };
        let (h, piece) = tokio::task::spawn_blocking(move || {
            h.update(&piece[from..]);
            (h, piece)
        })
        .await
        .map_err(|e| DumpError::Internal(e.to_string()))?;
        let mut h = h;
        size += len;
        in_part += len;
        let short = len < asked;
        // A full part, the last (partial) one, or the one empty part of an empty file.
        if in_part == part_size || (short && (in_part > 0 || parts.is_empty())) {
            parts.push(hex::encode(h.finalize_reset()));
            in_part = 0;
        }
        hasher = Some(h);
        on_read(len);
        // A reader that stopped early (a parse error) gets no more; hashing goes on.
        if let Some(sender) = tx.as_ref().filter(|_| len > 0) {
            if sender.send(piece).await.is_err() {
                tx = None;
            }
        }
        if short {
            break Some(size);
        }
    };
    drop(pieces);
    drop(tx);
    let consumed = consumer
        .await
        .map_err(|e| DumpError::Internal(format!("reading {key}: {e}")))?;
    Ok(fetched.map(|size| {
        (
            Fetched {
                size,
                sha256: crate::uploader::file_digest(&parts),
            },
            consumed,
        )
    }))
}

/// The bytes of a streamed file, piece by piece, for a blocking reader.
pub struct PieceReader {
    pieces: mpsc::Receiver<Vec<u8>>,
    piece: Vec<u8>,
    pos: usize,
}

impl Read for PieceReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for PieceReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.piece.len() {
            match self.pieces.blocking_recv() {
                Some(piece) => {
                    self.piece = piece;
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.piece[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.piece.len());
    }
}
