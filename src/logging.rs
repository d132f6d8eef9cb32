//! Log records that stay one line each, whatever their values hold.
//!
//! Log fields carry what callers and files name: a database file name under a root, a
//! table, an error's text. A newline in one would start what reads as a record of its
//! own (a forged `INFO … dump completed`). The formatter writes each record with one
//! `write_all`; this writer escapes every line break and other control character in it
//! but the record's final newline, so a record is always exactly one line.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] whose records are one line each (see the module doc).
pub struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }
}

/// The writer of [`OneLine`].
pub struct OneLineWriter<W>(W);

/// `record` with its control characters escaped (`\n` as `\\n`, others as `\\x..`), its
/// final newline kept; ANSI colour sequences (ESC `[`) are the formatter's own, kept.
pub fn one_line(record: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match record.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (record, &b""[..]),
    };
    let needs = |b: u8| (b < 0x20 && b != b'\t' && b != 0x1b) || b == 0x7f;
    if !body.iter().any(|&b| needs(b)) {
        return std::borrow::Cow::Borrowed(record);
    }
    let mut out = Vec::with_capacity(record.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if needs(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&one_line(buf))?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(&one_line(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_line_whatever_its_values_hold() {
        let forged = b"INFO dump accepted database=a.db\nINFO dump completed id=x\r\x07\n";
        assert_eq!(
            &*one_line(forged),
            &b"INFO dump accepted database=a.db\\nINFO dump completed id=x\\r\\x07\n"[..]
        );
        let plain = b"\x1b[32mINFO\x1b[0m ok\tfine\n";
        assert_eq!(&*one_line(plain), &plain[..]);
    }

    #[test]
    fn the_subscriber_writes_each_event_in_one_line() {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let make = move || SharedVec(sink.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(OneLine(make))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(database = %"evil\nINFO forged", "dump accepted");
            tracing::warn!(error = %"two\nlines", "second");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("evil\\nINFO forged"), "{text}");
    }

    struct SharedVec(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for SharedVec {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
