//! The output side of the engine: cuts each object's byte stream into fixed-size parts
//! and hands them to the uploader over a bounded channel (so export and upload overlap
//! while memory stays at a few parts), optionally compressed as a series of gzip members
//! or zstd frames. Where a member or frame ends is decided by the content, never by the
//! clock (see [`FRAME_BYTES`]), so a dump's compressed bytes are the same however its
//! chunks are cut.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use super::buffers::{BufferPool, PartBuf};
use super::digest::LineLengths;
use super::encoder::Encoder;
pub use super::encoder::{FRAME_BYTES, ZSTD_LEVEL};
use crate::encryption::{AgeStream, Sealing};
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
    /// An encrypted object's age stream: chunks written, and the plaintext of the
    /// unfinished one (secret: staged only encrypted).
    pub age: Option<AgeTail>,
}

/// Where an encrypted object's age stream stands between chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct AgeTail {
    pub counter: u64,
    pub pending: Vec<u8>,
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

/// The part buffer behind an object's age stream, if the dump is encrypted: what the
/// compressor writes into.
struct SealedParts {
    parts: PartBuffer,
    age: Option<AgeStream>,
}

impl Write for SealedParts {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.age {
            None => self.parts.write(data),
            Some(age) => age.write(data, &mut self.parts).map(|()| data.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SealedParts {
    /// Ends the age stream (its last chunk), if there is one.
    fn finish(mut self) -> std::io::Result<PartBuffer> {
        if let Some(age) = self.age.take() {
            age.finish(&mut self.parts)?;
        }
        Ok(self.parts)
    }
}

/// Writes the objects of one chunk.
pub struct OutputSink {
    tx: mpsc::Sender<UploadEvent>,
    pool: BufferPool,
    part_size: usize,
    compression: Compression,
    /// The recipients and key of an encrypted dump.
    sealing: Option<Arc<Sealing>>,
    current: Option<Encoder<SealedParts>>,
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
        sealing: Option<Arc<Sealing>>,
    ) -> Self {
        OutputSink {
            tx,
            pool,
            part_size,
            compression,
            sealing,
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
    pub fn resume(&mut self, tail: Tail) -> std::io::Result<()> {
        let mut buf = self.pool.take(self.part_size);
        buf.extend_from_slice(&tail.bytes);
        let age = match (&self.sealing, tail.age) {
            (None, None) => None,
            (Some(sealing), Some(age)) => Some(sealing.stream(&tail.key, age.counter, age.pending)),
            (Some(_), None) | (None, Some(_)) => {
                return Err(std::io::Error::other(
                    "the staged tail and the dump disagree on whether it is encrypted",
                ))
            }
        };
        self.current = Some(Encoder::Plain(SealedParts {
            parts: PartBuffer {
                object: tail.object,
                key: tail.key.into(),
                buf,
                part_size: self.part_size,
                next_part: tail.next_part,
                size: tail.size,
                tx: self.tx.clone(),
                pool: self.pool.clone(),
            },
            age,
        }));
        Ok(())
    }

    /// Index of the object being written, if any.
    pub fn current_object(&self) -> Option<u32> {
        self.current.as_ref().map(|e| e.parts().parts.object)
    }

    /// Starts a new object (with its age header, if the dump is encrypted).
    pub fn begin(&mut self, object: u32, key: &str) -> std::io::Result<()> {
        debug_assert!(self.current.is_none());
        let mut parts = PartBuffer {
            object,
            key: key.into(),
            buf: self.pool.take(self.part_size),
            part_size: self.part_size,
            next_part: 1,
            size: 0,
            tx: self.tx.clone(),
            pool: self.pool.clone(),
        };
        let age = match &self.sealing {
            None => None,
            Some(sealing) => {
                let start = sealing.start(key).map_err(std::io::Error::other)?;
                parts.write_all(&start)?;
                self.produced += start.len() as u64;
                Some(sealing.stream(key, 0, Vec::new()))
            }
        };
        self.current = Some(Encoder::Plain(SealedParts { parts, age }));
        Ok(())
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
        self.current.as_ref().map_or(0, |e| e.parts().parts.size)
    }

    /// Finishes the current object: its last part goes to the uploader with `Finish`.
    pub fn finish_object(&mut self) -> std::io::Result<()> {
        let Some(enc) = self.current.take() else {
            return Ok(());
        };
        self.lines.end_object();
        let before = enc.parts().parts.size;
        let p = enc.into_parts()?.finish()?;
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
                let before = enc.parts().parts.size;
                let p = enc.into_parts()?;
                self.produced += p.parts.size - before;
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
        let before = enc.parts().parts.size;
        let SealedParts { parts: p, age } = enc.into_parts()?;
        self.produced += p.size - before;
        let tail = Tail {
            object: p.object,
            key: p.key.to_string(),
            bytes: p.buf.into_vec(),
            next_part: p.next_part,
            size: p.size,
            age: age.map(|a| AgeTail {
                counter: a.counter(),
                pending: a.pending().to_vec(),
            }),
        };
        Ok((Some(tail), self.produced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::encoder::GZIP_LEVEL;
    use flate2::write::GzEncoder;

    /// Data written in pieces of `sizes` (cycled) through a fresh sink; its bytes.
    fn through_sink(text: &[u8], compression: Compression, sizes: &[usize]) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(100_000);
        let mut sink = OutputSink::new(tx, BufferPool::default(), 1 << 20, compression, None);
        sink.begin(0, "k").unwrap();
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
