//! The output side of the engine: cuts each object's byte stream into fixed-size parts
//! and hands them to the uploader over a bounded channel (so export and upload overlap
//! while memory stays at a few parts), optionally compressed as a series of gzip members
//! or zstd frames. Where a member or frame ends is decided by the content, never by the
//! clock (see [`FRAME_BYTES`]), so a dump's compressed bytes are the same however its
//! chunks are cut.

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;
use tokio::sync::mpsc;

pub use super::buffers::{BufferPool, PartBuf};
use super::digest::LineLengths;
use crate::model::Compression;

/// What the engine asks the uploader to do, in order.
#[derive(Debug)]
pub enum UploadEvent {
    /// A full part of exactly the part size.
    Part {
        object: u32,
        key: Arc<str>,
        number: u32,
        bytes: PartBuf,
    },
    /// The object is complete; `last` is its final (possibly short) part, if any.
    Finish {
        object: u32,
        key: Arc<str>,
        last: Option<(u32, PartBuf)>,
        size: u64,
    },
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
                let event = UploadEvent::Part {
                    object: self.object,
                    key: self.key.clone(),
                    number: self.next_part,
                    bytes,
                };
                self.tx
                    .blocking_send(event)
                    .map_err(|_| std::io::Error::other("uploader stopped"))?;
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

/// gzip level: the common default, a balance of speed and ratio.
const GZIP_LEVEL: u32 = 6;
/// zstd level: at 3 zstd beats gzip -6's ratio on dumps at several times its speed.
pub const ZSTD_LEVEL: i32 = 3;
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// A gzip member or zstd frame ends at the first row end after this many bytes of the
/// output stream (counted in the reader's encoding, see `Pipe`), and a chunk stops only
/// where one ended. So frames sit at positions the rows fix, and a rerun, a resume or a
/// retry gives the same compressed bytes as one uninterrupted run. 8 MiB: four zstd jobs
/// (one per worker) per frame, and each frame restarting zstd's 2 MiB window costs well
/// under 1% of ratio; finishing a frame after the budget is spent takes tens of ms.
pub const FRAME_BYTES: u64 = 8 << 20;

/// Input handed to the gzip encoder per call. The deflate encoder's output depends on how
/// its input is split into calls (tested below), so it is always fed whole blocks of this
/// size, whatever sizes the renderer writes, and the member's bytes depend on its content
/// alone.
const GZIP_BLOCK: usize = 64 * 1024;

/// A gzip member fed in [`GZIP_BLOCK`]s.
struct GzipMember {
    encoder: GzEncoder<PartBuffer>,
    pending: Vec<u8>,
}

impl GzipMember {
    fn new(p: PartBuffer) -> Self {
        GzipMember {
            encoder: GzEncoder::new(p, flate2::Compression::new(GZIP_LEVEL)),
            pending: Vec::with_capacity(GZIP_BLOCK),
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let take = (GZIP_BLOCK - self.pending.len()).min(data.len());
            if take == GZIP_BLOCK {
                // A whole block straight from the caller's bytes: no copy.
                self.encoder.write_all(&data[..take])?;
            } else {
                self.pending.extend_from_slice(&data[..take]);
                if self.pending.len() == GZIP_BLOCK {
                    self.encoder.write_all(&self.pending)?;
                    self.pending.clear();
                }
            }
            data = &data[take..];
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<PartBuffer> {
        self.encoder.write_all(&self.pending)?;
        self.encoder.finish()
    }
}

enum Encoder {
    Plain(PartBuffer),
    /// A gzip member.
    Gzip(GzipMember),
    /// A zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, PartBuffer>),
}

impl Encoder {
    /// Starts a gzip member or zstd frame in front of `p`.
    fn compressed(p: PartBuffer, compression: Compression) -> std::io::Result<Encoder> {
        Ok(match compression {
            Compression::None => Encoder::Plain(p),
            Compression::Gzip => Encoder::Gzip(GzipMember::new(p)),
            Compression::Zstd => Encoder::Zstd(zstd_encoder(p, zstd_workers())?),
        })
    }

    fn parts(&self) -> &PartBuffer {
        match self {
            Encoder::Plain(p) => p,
            Encoder::Gzip(g) => g.encoder.get_ref(),
            Encoder::Zstd(z) => z.get_ref(),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(p) => p.write_all(data),
            Encoder::Gzip(g) => g.write_all(data),
            Encoder::Zstd(z) => z.write_all(data),
        }
    }

    /// Ends the gzip member or zstd frame (if any) and returns the part buffer.
    fn into_parts(self) -> std::io::Result<PartBuffer> {
        match self {
            Encoder::Plain(p) => Ok(p),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

/// A zstd frame writer at [`ZSTD_LEVEL`] with `workers` threads.
fn zstd_encoder<W: Write>(
    w: W,
    workers: u32,
) -> std::io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut z = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
    // Always at least one worker: zstd's output is then the same whatever the number of
    // workers, so a chunk retried on another machine gives the same bytes; more workers
    // use the function's other cores.
    z.multithread(workers.max(1))?;
    // Jobs of 2 MiB (the default at this level is 8 MiB) keep the workers' buffers within
    // the chunk's memory bound, for well under 1% of ratio.
    z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    z.include_checksum(true)?;
    Ok(z)
}

/// zstd worker threads: the cores this process may use, at most 4.
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
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
    /// Line lengths of the plain bytes, counted on from earlier chunks.
    pub lines: LineLengths,
}

impl OutputSink {
    pub fn new(
        tx: mpsc::Sender<UploadEvent>,
        pool: BufferPool,
        part_size: usize,
        compression: Compression,
    ) -> Self {
        OutputSink {
            tx,
            pool,
            part_size,
            compression,
            current: None,
            produced: 0,
            lines: LineLengths::default(),
        }
    }

    /// Whether the output is compressed (in frames).
    pub fn compressed(&self) -> bool {
        self.compression != Compression::None
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
        self.current.as_ref().map(|e| e.parts().object)
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
        let enc = self
            .current
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no object started"))?;
        if matches!(enc, Encoder::Plain(_)) && self.compression != Compression::None {
            let Some(Encoder::Plain(p)) = self.current.take() else {
                unreachable!()
            };
            self.current = Some(Encoder::compressed(p, self.compression)?);
        }
        self.lines.note(data);
        let before = self.size_now();
        self.current
            .as_mut()
            .expect("object started")
            .write_all(data)?;
        self.produced += self.size_now() - before;
        Ok(())
    }

    fn size_now(&self) -> u64 {
        self.current.as_ref().map_or(0, |e| e.parts().size)
    }

    /// Finishes the current object: its last part goes to the uploader with `Finish`.
    pub fn finish_object(&mut self) -> std::io::Result<()> {
        let Some(enc) = self.current.take() else {
            return Ok(());
        };
        self.lines.end_object();
        let before = enc.parts().size;
        let p = enc.into_parts()?;
        self.produced += p.size - before;
        let PartBuffer {
            object,
            key,
            buf,
            next_part,
            size,
            tx,
            ..
        } = p;
        let last = if !buf.is_empty() || next_part == 1 {
            Some((next_part, buf))
        } else {
            None
        };
        tx.blocking_send(UploadEvent::Finish {
            object,
            key,
            last,
            size,
        })
        .map_err(|_| std::io::Error::other("uploader stopped"))
    }

    /// Ends the current gzip member or zstd frame, if one is open; the next write starts
    /// another.
    pub fn end_frame(&mut self) -> std::io::Result<()> {
        match self.current.take() {
            Some(enc @ (Encoder::Gzip(_) | Encoder::Zstd(_))) => {
                let before = enc.parts().size;
                let p = enc.into_parts()?;
                self.produced += p.size - before;
                self.current = Some(Encoder::Plain(p));
            }
            other => self.current = other,
        }
        Ok(())
    }

    /// Ends the chunk without finishing the current object: ends its gzip member and
    /// returns the tail to carry to the next chunk.
    pub fn suspend(mut self) -> std::io::Result<(Option<Tail>, u64)> {
        let Some(enc) = self.current.take() else {
            return Ok((None, self.produced));
        };
        let before = enc.parts().size;
        let p = enc.into_parts()?;
        self.produced += p.size - before;
        let tail = Tail {
            object: p.object,
            key: p.key.to_string(),
            bytes: p.buf.into_vec(),
            next_part: p.next_part,
            size: p.size,
        };
        Ok((Some(tail), self.produced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a zstd frame must not depend on the cores of the machine that
    /// wrote it: a chunk retried elsewhere overwrites parts with the same bytes.
    #[test]
    fn zstd_frames_are_the_same_whatever_the_number_of_workers() {
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| {
                format!(
                    "INSERT INTO t VALUES({i},'row {}',{}.25);\n",
                    i % 977,
                    i * 3
                )
                .into_bytes()
            })
            .collect();
        assert!(
            text.len() > 3 * ZSTD_JOB_SIZE as usize,
            "spans several jobs"
        );
        let frame = |workers| {
            let mut z = zstd_encoder(Vec::new(), workers).unwrap();
            z.write_all(&text).unwrap();
            z.finish().unwrap()
        };
        let one = frame(1);
        assert_eq!(frame(2), one);
        assert_eq!(frame(4), one);
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), text);
    }

    /// Data written in pieces of `sizes` (cycled) through a fresh sink; its bytes.
    fn through_sink(text: &[u8], compression: Compression, sizes: &[usize]) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(100_000);
        let mut sink = OutputSink::new(tx, BufferPool::default(), 1 << 20, compression);
        sink.begin(0, "k");
        let mut rest = text;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            sink.write_all(piece).unwrap();
            rest = tail;
        }
        sink.finish_object().unwrap();
        drop(sink);
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            match event {
                UploadEvent::Part { bytes, .. } => out.extend(bytes.into_vec()),
                UploadEvent::Finish { last, .. } => {
                    out.extend(last.map(|(_, p)| p.into_vec()).unwrap_or_default())
                }
            }
        }
        out
    }

    /// The renderer writes in sizes that depend on batching and on where chunks ended;
    /// the compressed bytes must not. (Fed straight to flate2, gzip's are not: the first
    /// assertion shows why the sink feeds it whole blocks.)
    #[test]
    fn compressed_bytes_do_not_depend_on_how_writes_are_split() {
        let text: Vec<u8> = (0..60_000u32)
            .flat_map(|i| format!("({i},'row {}',{}.25)\n", i % 977, i * 3).into_bytes())
            .collect();
        let raw_gzip = |step: usize| {
            let mut g = GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
            text.chunks(step).for_each(|p| g.write_all(p).unwrap());
            g.finish().unwrap()
        };
        assert_ne!(raw_gzip(1000), raw_gzip(text.len()), "flate2 alone varies");
        for compression in [Compression::Gzip, Compression::Zstd] {
            let whole = through_sink(&text, compression, &[text.len()]);
            for sizes in [&[1000][..], &[7, 65_536, 300_001], &[131_072, 1]] {
                assert!(
                    through_sink(&text, compression, sizes) == whole,
                    "{compression:?}, writes of {sizes:?}"
                );
            }
        }
    }
}
