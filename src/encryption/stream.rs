//! age's payload (STREAM): ChaCha20-Poly1305 over 64 KiB chunks under the payload key
//! (HKDF-SHA256 of the file key, salted with the file's nonce), each chunk's nonce an
//! 11-byte counter and a last-chunk flag. Written here rather than with age's writer
//! because a dump continues an object's stream in a later chunk: [`AgeStream`] can be
//! rebuilt from the counter and the unfinished chunk's plaintext.

use std::io::{self, Write};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// Plaintext bytes per STREAM chunk (age's fixed size).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Bytes a chunk grows by when encrypted (Poly1305's tag).
const TAG_BYTES: usize = 16;

/// The encrypting side of one object's payload.
pub struct AgeStream {
    key: LessSafeKey,
    /// Chunks written so far.
    counter: u64,
    /// Plaintext of the chunk not yet written: held back even when full, because only
    /// the last chunk may be short and the last one carries a flag.
    pending: Vec<u8>,
}

impl AgeStream {
    /// A stream under the payload key of `file_key` and `nonce`, `counter` chunks in,
    /// with `pending` bytes of the next chunk (both 0 and empty for a new object).
    pub fn new(
        file_key: &age_core::format::FileKey,
        nonce: &[u8; 16],
        counter: u64,
        pending: Vec<u8>,
    ) -> Self {
        use age_core::secrecy::ExposeSecret;
        let key = age_core::primitives::hkdf(nonce, b"payload", file_key.expose_secret());
        let mut buffer = Vec::with_capacity(CHUNK_BYTES + TAG_BYTES);
        buffer.extend_from_slice(&pending);
        AgeStream {
            key: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).expect("32 bytes")),
            counter,
            pending: buffer,
        }
    }

    /// Chunks written so far.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The plaintext of the unfinished chunk (secret: kept only encrypted).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Encrypts `data` into `out`, a whole chunk at a time.
    pub fn write(&mut self, mut data: &[u8], out: &mut impl Write) -> io::Result<()> {
        while !data.is_empty() {
            if self.pending.len() == CHUNK_BYTES {
                self.emit(false, out)?;
            }
            let take = (CHUNK_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Writes the last chunk (possibly short; empty only for an empty payload).
    pub fn finish(mut self, out: &mut impl Write) -> io::Result<()> {
        self.emit(true, out)
    }

    fn emit(&mut self, last: bool, out: &mut impl Write) -> io::Result<()> {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&self.counter.to_be_bytes());
        nonce[11] = u8::from(last);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut self.pending,
            )
            .map_err(|_| io::Error::other("encrypting a chunk"))?;
        out.write_all(&self.pending)?;
        out.write_all(tag.as_ref())?;
        self.pending.clear();
        self.counter += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object's payload written in one go, and the same written in two streams the
    /// way two chunks write it (the second rebuilt from the first's counter and pending
    /// bytes), are the same bytes.
    #[test]
    fn a_stream_continued_from_its_state_writes_the_same_bytes() {
        let file_key = age_core::format::FileKey::init_with_mut(|k| k.fill(7));
        let nonce = [3u8; 16];
        let data: Vec<u8> = (0..(3 * CHUNK_BYTES + 1000))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for cut in [
            0,
            1,
            CHUNK_BYTES,
            CHUNK_BYTES + 5,
            3 * CHUNK_BYTES,
            data.len(),
        ] {
            let mut whole = Vec::new();
            let mut s = AgeStream::new(&file_key, &nonce, 0, Vec::new());
            s.write(&data, &mut whole).unwrap();
            s.finish(&mut whole).unwrap();

            let mut split = Vec::new();
            let mut first = AgeStream::new(&file_key, &nonce, 0, Vec::new());
            first.write(&data[..cut], &mut split).unwrap();
            let (counter, pending) = (first.counter(), first.pending().to_vec());
            let mut second = AgeStream::new(&file_key, &nonce, counter, pending);
            second.write(&data[cut..], &mut split).unwrap();
            second.finish(&mut split).unwrap();
            assert!(whole == split, "cut at {cut}");
            assert_eq!(whole.len(), data.len() + 4 * TAG_BYTES);
        }
    }
}
