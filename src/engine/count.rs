//! Counting the rows a dump will write (its progress total), in short read transactions.

use rusqlite::Connection;

use super::plan::{Plan, Step};

/// Counts the rows the plan will dump, in short slices for single-key tables so the
/// count never holds a long read lock. The first slice counts its keys in one query (a
/// small table costs just that); each further slice finds the key `SLICE` rows on with
/// `OFFSET` (SQLite steps over skipped rows without producing them, about 3x cheaper
/// than counting them), and only the last, shorter slice is counted.
pub(super) fn count_rows(conn: &Connection, plan: &Plan) -> rusqlite::Result<u64> {
    // About a millisecond of stepping per query: a count holds writers off no longer than
    // a slice does (rollback-journal mode).
    const SLICE: i64 = 20_000;
    let mut total = 0u64;
    for object in &plan.objects {
        for step in &object.steps {
            let Step::Rows(t) = step else { continue };
            let q = super::render::quote_ident(&t.name);
            let count = |filter: &str, after: Option<&rusqlite::types::Value>| {
                let sql = format!("SELECT count(*) FROM {q} {filter}");
                match after {
                    None => conn.query_row(&sql, [], |r| r.get::<_, i64>(0)),
                    Some(a) => conn.query_row(&sql, [a], |r| r.get::<_, i64>(0)),
                }
            };
            if t.key_len != 1 {
                total += count("", None)? as u64;
                continue;
            }
            let key = &t.key_list;
            let first = format!(
                "SELECT count(*), max(k) FROM (SELECT {key} AS k FROM {q} ORDER BY {key} LIMIT {SLICE})"
            );
            let (n, mut after) = conn.query_row(&first, [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, rusqlite::types::Value>(1)?))
            })?;
            total += n as u64;
            if n < SLICE {
                continue;
            }
            let next = format!(
                "SELECT {key} FROM {q} WHERE {key} > ?1 ORDER BY {key} LIMIT 1 OFFSET {}",
                SLICE - 1
            );
            loop {
                match conn.query_row(&next, [&after], |r| r.get(0)) {
                    Ok(last) => {
                        total += SLICE as u64;
                        after = last;
                    }
                    Err(rusqlite::Error::QueryReturnedNoRows) => {
                        total += count(&format!("WHERE {key} > ?1"), Some(&after))? as u64;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(total)
}
