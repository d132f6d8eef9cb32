//! Bare scan: reads every value of every user table with rusqlite and does nothing with
//! it. The floor for any exporter built on rusqlite; `scripts/bench` compares against it.

use rusqlite::types::ValueRef;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: scan DB"))?;
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let (mut values, mut bytes) = (0u64, 0u64);
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", t.replace('"', "\"\"")))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            for i in 0..n {
                values += 1;
                bytes += match row.get_ref(i)? {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.len() as u64,
                    _ => 8,
                };
            }
        }
    }
    println!("{values} values, {bytes} bytes");
    Ok(())
}
