//! Reading a dump back: the files chunkdump wrote, streamed from where they are stored
//! with their SHA-256 checked as the bytes arrive ([`stream`]), and parsed into per-table
//! row counts and content hashes ([`sql`] with `statements` and `literal`, [`json`],
//! [`csv`]) without loading the rows
//! anywhere. `verify` compares the result with the manifest; the readers are the ones a
//! restore reads with.
//!
//! Why it is cheaper than the dump: no SQLite reads, no REAL formatting; the values are
//! parsed straight from the text into the digest's canonical encoding, on a thread of
//! their own while the next part is fetched and hashed.

// The Lambda functions drill (which restores) but do not verify: what only `verify`
// uses is unused in their build.
#![cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]

pub mod allowed;
pub mod csv;
pub mod declared;
pub mod guard;
pub mod json;
mod literal;
pub mod parquet;
pub mod sql;
mod statements;
pub mod stream;

pub use guard::bound_sqlite_heap;
pub use statements::{max_statement, set_max_statement, Statements};

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::engine::digest::{DigestState, TableDigest};
use crate::engine::{run_export, ExportInput};
use crate::error::DumpError;
use crate::model::{Compression, Cursor, DumpSpec};

/// Per-table row counts and sums of row hashes, in the order the tables appear.
#[derive(Default)]
pub(crate) struct TableSums {
    tables: Vec<(String, u64, u128)>,
    index: HashMap<String, usize>,
    current: Option<usize>,
}

impl TableSums {
    /// Makes `name` the table rows are added to (found again if it appeared before).
    pub fn begin(&mut self, name: &str) {
        let at = match self.index.get(name) {
            Some(&at) => at,
            None => {
                self.tables.push((name.to_string(), 0, 0));
                self.index.insert(name.to_string(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        self.current = Some(at);
    }

    /// Whether rows are being added to `name`.
    pub fn is_current(&self, name: &str) -> bool {
        self.current.is_some_and(|at| self.tables[at].0 == name)
    }

    /// Whether `name` has appeared.
    pub fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Adds a row with hash `hash` to the current table.
    pub fn add_row(&mut self, hash: u128) -> Result<(), String> {
        let at = self.current.ok_or("a row before any table")?;
        let table = &mut self.tables[at];
        table.1 += 1;
        table.2 = table.2.wrapping_add(hash);
        Ok(())
    }

    /// Adds `hash` to the sum of `name`'s rows (a row counted before its hash was known).
    pub fn add_hash(&mut self, name: &str, hash: u128) -> Result<(), String> {
        let at = *self.index.get(name).ok_or("a row of a table never begun")?;
        let table = &mut self.tables[at];
        table.2 = table.2.wrapping_add(hash);
        Ok(())
    }

    /// The digests, in order of appearance.
    pub fn finish(self) -> Vec<TableDigest> {
        self.tables
            .into_iter()
            .map(|(name, rows, sum)| {
                let mut digest = TableDigest::new(&name);
                digest.add(rows, sum);
                digest
            })
            .collect()
    }
}

/// The plain bytes of a streamed file. `longest_line` is what the dump's manifest
/// declares (older manifests declare nothing): no line may be longer, nor longer than the
/// configured cap ([`max_statement`]).
pub(crate) fn decompress(
    bytes: stream::PieceReader,
    compression: Compression,
    longest_line: Option<u64>,
    keys: &crate::manifest::OpenedWith,
) -> std::io::Result<Box<dyn BufRead>> {
    const BUFFER: usize = 256 * 1024;
    // An encrypted file is decrypted first (it was compressed, then encrypted).
    let plain: Box<dyn BufRead + Send> = match &keys.0 {
        None => Box::new(bytes),
        Some(identities) => Box::new(std::io::BufReader::with_capacity(
            BUFFER,
            crate::encryption::decrypt_reader(bytes, identities).map_err(std::io::Error::other)?,
        )),
    };
    let decoded: Box<dyn std::io::Read> = match compression {
        Compression::None => Box::new(plain),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(plain)),
        // The decoder reads concatenated frames (one per chunk) as one stream.
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(plain)?),
    };
    // Every format is line by line (a row or statement per line, or a few), so a line
    // longer than the longest statement is refused before a parser holds it: a CSV or
    // JSON reader, like the SQL one, stays bounded whatever a tampered file decodes to.
    Ok(Box::new(std::io::BufReader::with_capacity(
        BUFFER,
        LineBound::new(decoded, longest_line),
    )))
}

/// A reader that fails once a line (bytes without `\n`) grows past `limit`.
struct LineBound<R> {
    inner: R,
    /// Bytes since the last newline.
    run: u64,
    limit: u64,
    /// Whether `limit` is the manifest's declared longest line (not the configured cap).
    declared: bool,
}

impl<R> LineBound<R> {
    fn new(inner: R, longest_line: Option<u64>) -> Self {
        let cap = max_statement() as u64;
        let (limit, declared) = match longest_line {
            Some(longest) if longest < cap => (longest, true),
            _ => (cap, false),
        };
        LineBound {
            inner,
            run: 0,
            limit,
            declared,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // Every line ended in this read counts, not only the one left open: a declared
        // limit can be shorter than a read.
        let mut longest = 0;
        let mut start = 0;
        for at in memchr::memchr_iter(b'\n', &buf[..n]) {
            longest = longest.max(self.run + (at - start) as u64);
            self.run = 0;
            start = at + 1;
        }
        self.run += (n - start) as u64;
        if self.run.max(longest) > self.limit {
            let why = if self.declared {
                format!(
                    "a line longer than {} bytes, the longest the dump's manifest declares",
                    self.limit
                )
            } else {
                format!(
                    "a line longer than {} bytes, the most a restore holds (set CHUNKDUMP_MAX_STATEMENT_BYTES to allow more)",
                    self.limit
                )
            };
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
        }
        Ok(n)
    }
}

/// The request of a dump whose manifest predates `spec`.
pub(crate) fn spec_of(manifest: &crate::manifest::Manifest) -> crate::model::DumpSpec {
    crate::model::DumpSpec {
        database: manifest.source.path.clone(),
        format: manifest.format,
        compression: manifest.compression,
        tables: None,
        include_schema: true,
        slice_rows: crate::model::SliceRows::DEFAULT,
        part_size: manifest.part_size,
        snapshot: manifest.consistency.snapshot,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    }
}

/// Rows per slice when a database is read back for its digests (no writer waits on it).
const READ_BACK_SLICE: crate::model::SliceRows = crate::model::SliceRows::of(10_000);

/// Table digests of a database, read by the engine exactly as a dump of `spec` reads it.
pub(crate) fn digests_of(spec: &DumpSpec) -> Result<Vec<TableDigest>, DumpError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let input = ExportInput {
        sealing: None,
        spec: DumpSpec {
            slice_rows: READ_BACK_SLICE,
            part_size: 1 << 20,
            compression: Compression::None,
            ..spec.clone()
        },
        dump_id: "verify".into(),
        cursor: Cursor::default(),
        tail: None,
        fingerprint: None,
        first_change_token: None,
        count_rows: false,
        deadline: Instant::now() + Duration::from_secs(365 * 24 * 3600),
        progress: None,
        pool: Default::default(),
        digests: DigestState::default(),
        digest_only: true,
        database_inode: None,
    };
    let outcome = run_export(input, tx);
    let _ = drain.join();
    Ok(outcome?.digests.done)
}
