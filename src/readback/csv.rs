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
