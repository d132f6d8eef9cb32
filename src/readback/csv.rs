//! A CSV dump's table file read back: RFC 4180, strictly (every record as wide as the
//! header). CSV carries no storage classes, so a table file gives its row count only.

use std::io::Read;

/// The number of records after the header row.
pub fn csv_rows(reader: impl Read) -> Result<u64, String> {
    let mut csv = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(256 * 1024)
        .from_reader(reader);
    let mut record = ::csv::ByteRecord::new();
    let mut rows = 0u64;
    while csv
        .read_byte_record(&mut record)
        .map_err(|e| e.to_string())?
    {
        rows += 1;
    }
    Ok(rows)
}

/// A CSV dump's records, with what RFC 4180 readers drop: whether a field was quoted.
/// chunkdump writes NULL as an empty unquoted field and the empty string as `""`.
pub(crate) struct CsvRecords<R> {
    reader: R,
    /// The current record's fields, back to back, and where each ends.
    bytes: Vec<u8>,
    ends: Vec<(usize, bool)>,
}

impl<R: std::io::BufRead> CsvRecords<R> {
    pub(crate) fn new(reader: R) -> Self {
        CsvRecords {
            reader,
            bytes: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Reads the next record; `false` at the end. Its fields are then [`Self::field`].
    pub(crate) fn next_record(&mut self) -> Result<bool, String> {
        self.bytes.clear();
        self.ends.clear();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut field_start = true;
        let mut any = false;
        loop {
            let buf = self.reader.fill_buf().map_err(|e| e.to_string())?;
            if buf.is_empty() {
                if in_quotes {
                    return Err("the file ends inside a quoted field".into());
                }
                if any {
                    self.ends.push((self.bytes.len(), quoted));
                }
                return Ok(any);
            }
            any = true;
            let mut used = 0;
            let mut done = false;
            while used < buf.len() {
                let b = buf[used];
                used += 1;
                if in_quotes {
                    if b == b'"' {
                        in_quotes = false;
                    } else {
                        self.bytes.push(b);
                    }
                    continue;
                }
                match b {
                    b'"' if field_start => {
                        quoted = true;
                        in_quotes = true;
                        field_start = false;
                    }
                    // `""` inside a quoted field: the quote character itself.
                    b'"' if quoted => {
                        self.bytes.push(b'"');
                        in_quotes = true;
                    }
                    b',' => {
                        self.ends.push((self.bytes.len(), quoted));
                        quoted = false;
                        field_start = true;
                    }
                    b'\r' => {}
                    b'\n' => {
                        self.ends.push((self.bytes.len(), quoted));
                        done = true;
                        break;
                    }
                    b => {
                        if quoted {
                            return Err("text after a quoted field's closing quote".into());
                        }
                        field_start = false;
                        self.bytes.push(b);
                    }
                }
            }
            self.reader.consume(used);
            if done {
                return Ok(true);
            }
        }
    }

    /// The current record's number of fields.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` of the current record: `None` for an empty unquoted field (NULL).
    pub(crate) fn field(&self, i: usize) -> Option<&[u8]> {
        let start = if i == 0 { 0 } else { self.ends[i - 1].0 };
        let (end, quoted) = self.ends[i];
        (quoted || end > start).then(|| &self.bytes[start..end])
    }
}
