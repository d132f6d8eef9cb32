//! The parts of a SQL dump that depend on data rather than schema (`sqlite_sequence`,
//! `sqlite_stat1`/`stat4` rows, `user_version` and `application_id`), generated when the
//! dump reaches them: a plan is reused while the schema is unchanged, and these must be
//! as of the end of the dump.

use std::collections::HashSet;

use rusqlite::Connection;

use super::render::quote_literal;

/// The data-dependent parts of the SQL trailer.
#[derive(Debug)]
pub enum Generated {
    /// `sqlite_sequence` rows of the dumped tables (`None`: all), then `sqlite_stat1`
    /// (whole-database dumps only).
    SequencesAndStats {
        only: Option<HashSet<String>>,
        has_sequence: bool,
        has_stat1: bool,
        has_stat4: bool,
    },
    /// `user_version` and `application_id`.
    HeaderPragmas,
}

/// Renders a [`Generated`] step from the database as it is now.
pub fn generate(conn: &Connection, step: &Generated) -> rusqlite::Result<Vec<u8>> {
    let mut out = String::new();
    match step {
        Generated::SequencesAndStats {
            only,
            has_sequence,
            has_stat1,
            has_stat4,
        } => {
            if *has_sequence {
                let rows: Vec<(String, i64)> = conn
                    .prepare("SELECT name, seq FROM sqlite_sequence ORDER BY rowid")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|(n, _)| {
                        only.as_ref()
                            .is_none_or(|o| o.contains(&n.to_ascii_lowercase()))
                    })
                    .collect();
                if !rows.is_empty() {
                    out.push_str("DELETE FROM sqlite_sequence;\n");
                    for (name, seq) in rows {
                        out.push_str(&format!(
                            "INSERT INTO sqlite_sequence(name,seq) VALUES({},{seq});\n",
                            quote_literal(&name)
                        ));
                    }
                }
            }
            if *has_stat1 {
                let rows: Vec<(String, Option<String>, String)> = conn
                    .prepare("SELECT tbl, idx, stat FROM sqlite_stat1 ORDER BY rowid")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                out.push_str("ANALYZE sqlite_schema;\n");
                for (tbl, idx, stat) in rows {
                    let idx = idx.map_or("NULL".to_string(), |i| quote_literal(&i));
                    out.push_str(&format!(
                        "INSERT INTO sqlite_stat1 VALUES({},{idx},{});\n",
                        quote_literal(&tbl),
                        quote_literal(&stat)
                    ));
                }
                if !has_stat4 {
                    // ANALYZE made an (empty) sqlite_stat4 in loaders built with STAT4,
                    // which the source does not have.
                    out.push_str("DROP TABLE IF EXISTS sqlite_stat4;\n");
                }
            }
        }
        Generated::HeaderPragmas => {
            for pragma in ["user_version", "application_id"] {
                let v: i64 = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))?;
                if v != 0 {
                    out.push_str(&format!("PRAGMA {pragma}={v};\n"));
                }
            }
        }
    }
    Ok(out.into_bytes())
}
