//! The compression of one object's bytes: a gzip member or a zstd frame in front of the
//! part writer, each fed so that its bytes depend on the content alone (never on how
//! the renderer's writes or the chunks were cut).

use std::io::Write;

use flate2::write::GzEncoder;

use crate::model::Compression;

/// gzip level: the common default, a balance of speed and ratio.
pub(super) const GZIP_LEVEL: u32 = 6;
/// zstd level: at 3 zstd beats gzip -6's ratio on dumps at several times its speed.
pub const ZSTD_LEVEL: i32 = 3;
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// A gzip member or zstd frame ends at the first row end after this many bytes of the
/// output stream (counted in the reader's encoding, see `Pipe`), and a chunk stops only
/// where one ended. So frames sit at positions the rows fix, and a rerun, a resume or a
/// retry gives the same compressed bytes as one uninterrupted run. 32 MiB: a frame end
/// costs about 3 ms (zstd's workers drain and a new context starts), so on the 227 MB
/// bench database a zstd dump took 1.2x its time before frames at 8 MiB frames, and
/// 1.01x at 32 MiB (best of three, alternated with the build before); each frame restarting zstd's 2 MiB window costs well under 1% of
/// ratio; finishing a frame after the budget is spent takes a fraction of a second.
pub const FRAME_BYTES: u64 = 32 << 20;

/// Input handed to the gzip encoder per call. The deflate encoder's output depends on how
/// its input is split into calls (see `output`'s tests), so it is always fed whole blocks of this
/// size, whatever sizes the renderer writes, and the member's bytes depend on its content
/// alone.
const GZIP_BLOCK: usize = 64 * 1024;

/// A gzip member fed in [`GZIP_BLOCK`]s.
pub(super) struct GzipMember<W: Write> {
    pub encoder: GzEncoder<W>,
    pending: Vec<u8>,
}

impl<W: Write> GzipMember<W> {
    fn new(p: W) -> Self {
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

    fn finish(mut self) -> std::io::Result<W> {
        self.encoder.write_all(&self.pending)?;
        self.encoder.finish()
    }
}

/// The output of one object: plain, or inside a gzip member or zstd frame.
pub(super) enum Encoder<W: Write> {
    Plain(W),
    /// A gzip member.
    Gzip(GzipMember<W>),
    /// A zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts a gzip member or zstd frame in front of `p`.
    pub fn compressed(p: W, compression: Compression) -> std::io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(p),
            Compression::Gzip => Encoder::Gzip(GzipMember::new(p)),
            Compression::Zstd => Encoder::Zstd(zstd_encoder(p, zstd_workers())?),
        })
    }

    /// The writer under the compression.
    pub fn parts(&self) -> &W {
        match self {
            Encoder::Plain(p) => p,
            Encoder::Gzip(g) => g.encoder.get_ref(),
            Encoder::Zstd(z) => z.get_ref(),
        }
    }

    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Plain(p) => p.write_all(data),
            Encoder::Gzip(g) => g.write_all(data),
            Encoder::Zstd(z) => z.write_all(data),
        }
    }

    /// Ends the gzip member or zstd frame (if any) and returns the part buffer.
    pub fn into_parts(self) -> std::io::Result<W> {
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
}
