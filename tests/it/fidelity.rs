//! Corner cases from real databases, each restored by every loader of the matrix (the
//! `sqlite3` shell and the SQLite of several apsw wheels) and dumped as CSV and JSON too.
//! A per-table corner case never refuses the whole database: it is dumped as far as
//! it can be and reported as a warning that names the table.

use crate::common;

use std::path::Path;

use common::*;
use rusqlite::Connection;

fn many_chunks() -> Vec<&'static str> {
    vec!["--chunk-size", "2", "--budget-ms", "0", "--breathe-ms", "0"]
}

/// Dumps `src` as SQL in many chunks and checks every loader restores it exactly; then
/// dumps CSV and JSON and checks they parse strictly and hold every row. Returns the SQL
/// dump's stderr (where warnings go).
fn check_everywhere(src: &Path, work: &Path) -> String {
    let mut args = vec!["dump", src.to_str().unwrap(), "--out"];
    let out = work.join("out-sql");
    args.push(out.to_str().unwrap());
    args.extend(["--format", "sql"]);
    args.extend(many_chunks());
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "sql dump failed: {stderr}");
    let sql = std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap());
    assert!(sql.is_file(), "the printed path {} exists", sql.display());
    assert_restores_everywhere(src, &sql, work);
    for format in ["csv", "json"] {
        let (_, path) = dump_ok(
            src,
            &work.join(format!("out-{format}")),
            &[&["--format", format][..], &many_chunks()].concat(),
        );
        assert!(
            path.exists(),
            "{format}: the printed path {} exists",
            path.display()
        );
        let rows = parsed_rows(format, &path);
        let c = Connection::open(src).unwrap();
        for (table, n) in rows {
            let q = format!("\"{}\"", table.replace('"', "\"\""));
            let want: i64 = c
                .query_row(&format!("SELECT count(*) FROM {q}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n as i64, want, "{format}: rows of {table:?}");
        }
    }
    stderr
}

/// Table name -> row count, parsing the CSV directory or JSON document strictly.
fn parsed_rows(format: &str, path: &Path) -> Vec<(String, usize)> {
    if format == "json" {
        let text = std::fs::read_to_string(path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).expect("strict JSON");
        return doc["tables"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().unwrap().len()))
            .collect();
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).unwrap() {
        let p = e.unwrap().path();
        // The manifest and the schema file (what a restore needs besides the rows).
        if p.file_name().unwrap() == "manifest.json" || p.file_name().unwrap() == "schema.sql" {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        std::str::from_utf8(&bytes).expect("CSV is UTF-8");
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&bytes[..]);
        let n = reader
            .records()
            .filter(|r| r.as_ref().map(|_| true).expect("strict CSV"))
            .count();
        let stem = p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".csv")
            .to_string();
        // safe_file_name writes the empty name as %00.
        let name = if stem == "%00" {
            String::new()
        } else {
            percent_decode(&stem)
        };
        out.push((name, n));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The id of the one dump under `out`.
fn dump_id(out: std::path::PathBuf) -> String {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find_map(|n| n.strip_suffix(".sql").map(String::from))
        .unwrap()
}

fn db(work: &Path, name: &str, sql: &str) -> std::path::PathBuf {
    let path = work.join(name);
    Connection::open(&path).unwrap().execute_batch(sql).unwrap();
    path
}

#[test]
fn utf16_databases_keep_their_text_and_encoding() {
    for enc in ["UTF-16le", "UTF-16be"] {
        let work = tempfile::tempdir().unwrap();
        let src = db(
            work.path(),
            "u16.db",
            &format!(
                "PRAGMA encoding='{enc}';
                 CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, k);
                 CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
                 INSERT INTO t(s) VALUES ('plain'), ('emoji 😀 עברית'), ('nul' || char(0) || 'inside'), ('cr' || char(13) || char(10)), (''), (NULL);
                 UPDATE t SET k = s;
                 INSERT INTO w VALUES ('é', 1), ('a' || char(0), 2), ('z', 'zz');"
            ),
        );
        check_everywhere(&src, work.path());
        let back = work.path().join("restored-sqlite3-shell.db");
        let c = Connection::open(&back).unwrap();
        let got: String = c.query_row("PRAGMA encoding", [], |r| r.get(0)).unwrap();
        assert_eq!(got, enc);
        let s: String = c
            .query_row("SELECT s FROM t WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(s, "emoji 😀 עברית");
    }
}

#[test]
fn fts_tables_keep_their_rows_by_what_the_module_really_does() {
    let work = tempfile::tempdir().unwrap();
    let src = db(
        work.path(),
        "fts.db",
        r#"
        CREATE TABLE searchable(id INTEGER PRIMARY KEY, a TEXT, b TEXT);
        INSERT INTO searchable VALUES (1, 'apple pie', 'x'), (4, 'banana split', 'y');
        -- FTS3 has no content option: this is a third column named content.
        CREATE VIRTUAL TABLE f3 USING FTS3(text1, text2, content="searchable");
        INSERT INTO f3(docid, text1, text2, content) VALUES (5, 'hello', 'world', 'searchable words'), (9, 'other', 'thing', 'more');
        CREATE VIRTUAL TABLE f4 USING fts4(a, b);
        INSERT INTO f4(docid, a, b) VALUES (3, 'four', 'score');
        CREATE VIRTUAL TABLE f4ext USING fts4(content="searchable", a, b);
        INSERT INTO f4ext(f4ext) VALUES('rebuild');
        CREATE VIRTUAL TABLE f4none USING fts4(content="", a, b);
        INSERT INTO f4none(docid, a, b) VALUES (12, 'contentless four', 'words');
        CREATE VIRTUAL TABLE f5 USING fts5(a, b);
        INSERT INTO f5(rowid, a, b) VALUES (2, 'five', 'alive');
        CREATE VIRTUAL TABLE f5ext USING fts5(a, b, content='searchable', content_rowid='id');
        INSERT INTO f5ext(f5ext) VALUES('rebuild');
        CREATE VIRTUAL TABLE f5none USING fts5(a, b, content='');
        INSERT INTO f5none(rowid, a, b) VALUES (7, 'lost rows', 'no more'), (11, 'second contentless', 'row');
        CREATE VIRTUAL TABLE f5trigram USING fts5(a, tokenize='trigram');
        INSERT INTO f5trigram(rowid, a) VALUES (3, 'substring search');
        CREATE VIRTUAL TABLE r USING rtree(id, x0, x1);
        INSERT INTO r VALUES (1, -26.819604, 153.1);
        CREATE VIRTUAL TABLE ri USING rtree_i32(id, x0, x1, +label);
        INSERT INTO ri VALUES (2, 5, 10, 'aux');
        "#,
    );
    check_everywhere(&src, work.path());
    for loader in loaders() {
        let back = work.path().join(format!("restored-{}.db", loader.name));
        let c = Connection::open(&back).unwrap();
        let q = |sql: &str| -> Vec<i64> {
            c.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(
            q("SELECT docid FROM f3 WHERE f3 MATCH 'searchable'"),
            [5],
            "{}",
            loader.name
        );
        assert_eq!(
            q("SELECT docid FROM f4ext WHERE f4ext MATCH 'banana'"),
            [4],
            "{}",
            loader.name
        );
        assert_eq!(
            q("SELECT docid FROM f4none WHERE f4none MATCH 'contentless'"),
            [12],
            "{}",
            loader.name
        );
        assert_eq!(
            q("SELECT rowid FROM f5ext WHERE f5ext MATCH 'apple'"),
            [1],
            "{}",
            loader.name
        );
        assert_eq!(
            q("SELECT rowid FROM f5none WHERE f5none MATCH 'contentless OR lost'"),
            [7, 11],
            "{}",
            loader.name
        );
        assert_eq!(
            q("SELECT rowid FROM f5trigram WHERE f5trigram MATCH 'tring'"),
            [3],
            "{}",
            loader.name
        );
    }
}

#[test]
fn odd_names_and_affinities_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let names = [
        "",
        "a\"b",
        "[br]",
        "new\nline",
        "a/b\\c",
        "dot.ted",
        "100%",
        "😀",
        "select",
        "'q'",
        " sp ",
    ];
    let mut sql = String::new();
    for (i, n) in names.iter().enumerate() {
        let q = format!("\"{}\"", n.replace('"', "\"\""));
        sql.push_str(&format!(
            "CREATE TABLE {q}({q} TEXT, \"c{i}\" REAL, x NUMERIC, y BLOB, z INTEGER);\n"
        ));
        sql.push_str(&format!(
            "INSERT INTO {q} VALUES ('t', 1.5, '12', x'00', 3), (4, '4.0', 2.5, 'txt', 'abc'), (NULL, -26.819604, 1e308, 0.1, 9007199254740993);\n"
        ));
        sql.push_str(&format!(
            "CREATE INDEX \"i {i}\" ON {q}({q} COLLATE NOCASE DESC);\n"
        ));
    }
    sql.push_str("CREATE TABLE k(a TEXT COLLATE NOCASE, b TEXT COLLATE RTRIM, c, PRIMARY KEY(a DESC, b COLLATE BINARY)) WITHOUT ROWID;\n");
    sql.push_str("INSERT INTO k VALUES ('A', 'x ', 1), ('b', 'x', 2), ('B2', 'x  ', 3);\n");
    sql.push_str("CREATE TABLE s(id INTEGER PRIMARY KEY, n INT, r REAL, t TEXT, b BLOB, a ANY, g INT GENERATED ALWAYS AS (n + 1) STORED) STRICT;\n");
    sql.push_str("INSERT INTO s(n, r, t, b, a) VALUES (1, 0.1, 't', x'ff', 0.30000000000000004), (NULL, -0.0, NULL, NULL, 'x');\n");
    let src = db(work.path(), "names.db", &sql);
    check_everywhere(&src, work.path());
}

#[test]
fn a_table_whose_rowid_has_no_name_is_dumped_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let src = db(
        work.path(),
        "rowid.db",
        "CREATE TABLE fine(a); INSERT INTO fine VALUES (1), (2);
         CREATE TABLE hidden(rowid TEXT, oid INT, _rowid_ REAL, v);
         INSERT INTO hidden VALUES ('r', 1, 1.5, 'x'), ('s', 2, 2.5, 'y'), ('t', 3, NULL, NULL);",
    );
    let stderr = check_everywhere(&src, work.path());
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("\"hidden\"")),
        "a warning names the table: {stderr}"
    );
    // `chunkdump status` lists it too.
    let o = run(&[
        "status",
        "--out",
        work.path().join("out-sql").to_str().unwrap(),
        &dump_id(work.path().join("out-sql")),
    ]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .contains("\"hidden\""),
        "{status}"
    );
}

#[test]
fn a_table_with_2000_columns_is_dumped() {
    let work = tempfile::tempdir().unwrap();
    let cols: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
    let values: Vec<String> = (0..2000).map(|i| format!("{i}.5")).collect();
    let src = db(
        work.path(),
        "wide.db",
        &format!(
            "CREATE TABLE wide({}); INSERT INTO wide VALUES ({}); INSERT INTO wide(c0, c1999) VALUES ('first', 'last');
             CREATE TABLE small(a); INSERT INTO small VALUES (1);",
            cols.join(", "),
            values.join(", ")
        ),
    );
    check_everywhere(&src, work.path());
}

/// SQLite's maximum of columns with the rowid as an INTEGER PRIMARY KEY among them:
/// the key is one of the 2000 columns, so the slice query must not select it twice.
#[test]
fn a_table_with_2000_columns_and_an_integer_primary_key_is_dumped() {
    let work = tempfile::tempdir().unwrap();
    let cols: Vec<String> = (1..2000).map(|i| format!("c{i}")).collect();
    let values: Vec<String> = (1..2000).map(|i| format!("{i}.5")).collect();
    let src = db(
        work.path(),
        "wide_ipk.db",
        &format!(
            "CREATE TABLE wide(id INTEGER PRIMARY KEY, {}); INSERT INTO wide VALUES (7, {});
             INSERT INTO wide(c1, c1999) VALUES ('first', 'last');",
            cols.join(", "),
            values.join(", ")
        ),
    );
    check_everywhere(&src, work.path());
}

#[test]
fn empty_databases_give_dumps_that_exist() {
    let work = tempfile::tempdir().unwrap();
    let zero = work.path().join("zero.db");
    std::fs::write(&zero, b"").unwrap();
    let no_tables = db(work.path(), "none.db", "PRAGMA user_version = 7;");
    for src in [zero, no_tables] {
        for format in ["sql", "csv", "json"] {
            let (_, path) = dump_ok(
                &src,
                &work.path().join(format!("out-{format}")),
                &["--format", format],
            );
            assert!(
                path.exists(),
                "{format} of {}: printed {} which does not exist",
                src.display(),
                path.display()
            );
        }
    }
}

#[test]
fn wal_databases_with_commits_still_in_the_wal_are_dumped_whole() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("wal.db");
    let writer = Connection::open(&src).unwrap();
    writer
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v REAL);
             INSERT INTO t(v) VALUES (0.1), (-26.819604), (19.99);",
        )
        .unwrap();
    assert!(
        std::fs::metadata(work.path().join("wal.db-wal"))
            .unwrap()
            .len()
            > 0,
        "commits are in the WAL"
    );
    let (_, sql) = dump_ok(&src, &work.path().join("out"), &["--format", "sql"]);
    let text = std::fs::read_to_string(&sql).unwrap();
    assert_eq!(text.matches("INSERT INTO \"t\"").count(), 3, "{text}");
    drop(writer);
}

#[test]
fn reals_drawn_like_real_data_restore_bit_exactly_everywhere() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("reals.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch("CREATE TABLE r(id INTEGER PRIMARY KEY, lat REAL, lon REAL, price REAL, measured REAL, bits)").unwrap();
    let mut rng = fastrand::Rng::with_seed(2026);
    let tx = c.unchecked_transaction().unwrap();
    {
        let mut ins = tx
            .prepare("INSERT INTO r(lat, lon, price, measured, bits) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for _ in 0..20_000 {
            let lat = rng.i64(-90_000_000..=90_000_000) as f64 / 1e6;
            let lon = rng.i64(-180_000_000..=180_000_000) as f64 / 1e6;
            let price = rng.i64(0..10_000_000) as f64 / 100.0;
            let digits = rng.u32(1..=17);
            let measured: f64 = format!("{}e{}", rng.u64(..10u64.pow(digits)), rng.i32(-320..300))
                .parse()
                .unwrap();
            let bits = f64::from_bits(rng.u64(..));
            let bits = if bits.is_nan() { 0.5 } else { bits };
            ins.execute(rusqlite::params![lat, lon, price, measured, bits])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    drop(c);
    let (_, sql) = dump_ok(&src, &work.path().join("out"), &["--format", "sql"]);
    assert_restores_everywhere(&src, &sql, work.path());
}

#[test]
fn nul_text_in_numeric_columns_is_warned_and_older_loaders_keep_it() {
    let work = tempfile::tempdir().unwrap();
    let src = db(work.path(), "nul.db", "CREATE TABLE n(id INTEGER PRIMARY KEY, amount NUMERIC, note TEXT); INSERT INTO n(amount, note) VALUES (CAST(X'3800280a' AS TEXT), CAST(X'3800' AS TEXT)), (5, 'x');");
    let o = run(&[
        "dump",
        src.to_str().unwrap(),
        "--out",
        work.path().join("out").to_str().unwrap(),
        "--format",
        "sql",
        "--breathe-ms",
        "0",
    ]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(
        warned.len(),
        1,
        "one warning, for the numeric column only: {stderr}"
    );
    assert!(
        warned[0].contains("\"n\"") && warned[0].contains("\"amount\""),
        "{stderr}"
    );
    let sql = std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last().unwrap());
    for loader in loaders() {
        let back = work.path().join(format!("{}.db", loader.name));
        loader.load(&sql, &back).unwrap();
        let kind: String = Connection::open(&back)
            .unwrap()
            .query_row("SELECT typeof(amount) FROM n WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        let converts = loader.name.contains("3.54");
        assert_eq!(
            kind,
            if converts { "integer" } else { "text" },
            "{}: the warning's claim",
            loader.name
        );
    }
}
