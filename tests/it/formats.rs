//! CSV and JSON output, parsed strictly and checked value by value against the database.

use crate::common;

use base64::Engine;
use common::*;
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// The documented CSV rendering of a value, or `None` for NULL (an empty unquoted field).
fn csv_expected(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) if f.is_infinite() => {
            Some(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
        }
        // Any text that parses back to the same bits and reads as a REAL; normalised here.
        ValueRef::Real(f) => Some(format!("real:{:x}", f.to_bits())),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

#[test]
fn csv_is_strict_rfc4180_and_lossless_where_csv_allows() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (id, out) = dump_ok(
        &src,
        &dir.path().join("out"),
        &[
            "--format",
            "csv",
            "--chunk-size",
            "2",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    assert_eq!(
        out.file_name().unwrap().to_str().unwrap(),
        id,
        "CSV dumps are a directory named after the id"
    );
    let conn = Connection::open(&src).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_list WHERE schema='main' AND type IN ('table','virtual') AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut expected_files: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.csv", chunkdump::engine::plan::safe_file_name(t)))
        .collect();
    expected_files.push("manifest.json".into());
    expected_files.push("schema.sql".into());
    expected_files.sort();
    assert_eq!(
        files, expected_files,
        "one file per user-visible table, no shadow tables, the manifest and the schema file"
    );
    assert!(files.contains(&"weird%20%22name%22%20%2F%20with%2C%20chars.csv".to_string()));

    for table in &tables {
        let path = out.join(format!(
            "{}.csv",
            chunkdump::engine::plan::safe_file_name(table)
        ));
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            std::str::from_utf8(&bytes).is_ok(),
            "{table}: CSV must be UTF-8"
        );
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(&bytes[..]);
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let q = format!("\"{}\"", table.replace('"', "\"\""));
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {q} ORDER BY rowid"))
            .or_else(|_| conn.prepare(&format!("SELECT * FROM {q}")))
            .unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        assert_eq!(header, names, "{table}: header");
        let n = names.len();
        let want: Vec<Vec<Option<String>>> = stmt
            .query_map([], |r| {
                (0..n).map(|i| Ok(csv_expected(r.get_ref(i)?))).collect()
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut got = Vec::new();
        for rec in reader.byte_records() {
            let rec = rec.unwrap();
            let pos = rec.position().unwrap().byte() as usize;
            // Distinguish NULL (empty, unquoted) from '' (quoted) by looking at the raw field.
            let mut raw_line = &bytes[pos..];
            while let [b'\r' | b'\n', rest @ ..] = raw_line {
                raw_line = rest;
            }
            let mut fields = Vec::new();
            let mut offset = 0;
            for f in rec.iter() {
                let quoted = raw_line[offset..].first() == Some(&b'"');
                let value = String::from_utf8(f.to_vec()).unwrap();
                fields.push(if value.is_empty() && !quoted {
                    None
                } else {
                    Some(normalise_real(value))
                });
                offset += raw_field_len(&raw_line[offset..]) + 1;
            }
            got.push(fields);
        }
        if table == "wr" {
            // WITHOUT ROWID tables come out in primary-key order.
            let mut w = want.clone();
            w.sort();
            got.sort();
            assert_eq!(got, w, "{table}");
        } else {
            assert_eq!(got, want, "{table}");
        }
    }
}

/// Maps a field that is a finite REAL rendering (has `.` or an exponent and parses) to
/// the same `real:<bits>` form as the expectation.
fn normalise_real(field: String) -> String {
    let looks_real =
        field.contains(['.', 'e']) && !field.contains(|c: char| c.is_alphabetic() && c != 'e');
    match field.parse::<f64>() {
        Ok(f) if looks_real => format!("real:{:x}", f.to_bits()),
        _ => field,
    }
}

/// Length of the raw (possibly quoted) CSV field at the start of `s`.
fn raw_field_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'"') {
        return s
            .iter()
            .position(|&b| b == b',' || b == b'\r' || b == b'\n')
            .unwrap_or(s.len());
    }
    let mut i = 1;
    while i < s.len() {
        if s[i] == b'"' {
            if s.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

fn json_expected(v: ValueRef<'_>) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) if f.is_infinite() => {
            serde_json::json!({"$real": if f > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        ValueRef::Real(f) => serde_json::Number::from_f64(f).unwrap().into(),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => s.into(),
            Err(_) => serde_json::json!({"$textBase64": b64.encode(t)}),
        },
        ValueRef::Blob(b) => serde_json::json!({"$base64": b64.encode(b)}),
    }
}

#[test]
fn json_is_one_strict_document_with_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (_, out) = dump_ok(
        &src,
        &dir.path().join("out"),
        &[
            "--format",
            "json",
            "--chunk-size",
            "2",
            "--budget-ms",
            "0",
            "--breathe-ms",
            "0",
        ],
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !text.contains("NaN") && !text.contains("Infinity,"),
        "no non-standard tokens"
    );
    // serde_json is strict (no NaN/Infinity tokens, no trailing commas); arbitrary_precision
    // is off, so compare integers through the raw text as well.
    let doc: serde_json::Value = serde_json::from_str(&text).expect("strictly valid JSON");
    assert!(
        text.contains("-9223372036854775808") && text.contains("9223372036854775807"),
        "int64 extremes written exactly"
    );
    let tables = doc["tables"].as_object().expect("tables member");
    let conn = Connection::open(&src).unwrap();
    for (name, rows) in tables {
        let q = format!("\"{}\"", name.replace('"', "\"\""));
        // A rowid no column carries travels as `$rowid` (format 2), equal to the source's.
        let with_rowid = rows
            .as_array()
            .unwrap()
            .first()
            .is_some_and(|r| r.get("$rowid").is_some());
        let columns: Vec<String> = conn
            .prepare("SELECT lower(name) FROM pragma_table_xinfo(?1)")
            .unwrap()
            .query_map([name], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let alias = ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|a| !columns.iter().any(|c| c == a));
        let select = match alias {
            Some(a) if with_rowid => format!("{a} AS \"$rowid\", *"),
            _ => "*".to_string(),
        };
        let mut stmt = conn
            .prepare(&format!("SELECT {select} FROM {q} ORDER BY rowid"))
            .or_else(|_| conn.prepare(&format!("SELECT {select} FROM {q}")))
            .unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut want: Vec<serde_json::Value> = stmt
            .query_map([], |r| {
                let mut m = serde_json::Map::new();
                for (i, n) in names.iter().enumerate() {
                    m.insert(n.clone(), json_expected(r.get_ref(i)?));
                }
                Ok(serde_json::Value::Object(m))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut got = rows.as_array().unwrap().clone();
        if name == "wr" {
            want.sort_by_key(|v| v.to_string());
            got.sort_by_key(|v| v.to_string());
        }
        assert_eq!(got, want, "table {name}");
    }
    // `INTEGER PRIMARY KEY DESC` is no rowid alias: its rowids travel beside it; an
    // AUTOINCREMENT key is the rowid, so nothing is added.
    assert!(tables["desc_pk"][0].get("$rowid").is_some());
    assert!(tables["seq"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("$rowid").is_none()));
    assert!(
        tables.contains_key("fts")
            && !tables.contains_key("fts_data")
            && !tables.contains_key("sqlite_sequence")
    );
}

/// A CSV dump says at dump time, naming each table, which tables' rowids it cannot carry
/// (a rowid table with rows and no INTEGER PRIMARY KEY), while SQL or JSON can still be
/// chosen; a table whose rowid is a column, a WITHOUT ROWID table and an empty table get
/// no such warning, and a SQL dump none at all.
#[test]
fn a_csv_dump_warns_at_dump_time_of_rowids_it_cannot_carry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("rowids.db");
    Connection::open(&src)
        .unwrap()
        .execute_batch(
            "CREATE TABLE loose(a TEXT); INSERT INTO loose(rowid, a) VALUES (10, 'x'), (20, 'y');
             CREATE TABLE keyed(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO keyed VALUES (7, 'x');
             CREATE TABLE pairs(a, b, PRIMARY KEY(a, b)) WITHOUT ROWID; INSERT INTO pairs VALUES (1, 2);
             CREATE TABLE empty(a TEXT);",
        )
        .unwrap();
    let out = dir.path().join("out");
    let (id, _) = dump_ok(&src, &out, &["--format", "csv"]);
    let status = try_status(&id, &out).unwrap();
    let warnings: Vec<&str> = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("table \"loose\": CSV carries no rowids"),
        "{warnings:?}"
    );
    let (id, _) = dump_ok(&src, &out, &["--format", "sql"]);
    assert_eq!(
        try_status(&id, &out).unwrap()["warnings"],
        serde_json::json!([])
    );
}
