//! How to read one table ([`TableSource`]): its key (the rowid, under a name no column
//! hides, or the primary key of a WITHOUT ROWID table), how each row is written in the
//! dump's format, and the slice queries that page through it by key.

use std::collections::HashSet;

use rusqlite::Connection;

use super::render::{quote_ident, RowEncoding, TextEncoding};
use super::table::{columns, Column, Paging, TableKind, TableSource};
use crate::error::DumpError;
use crate::model::{DumpSpec, Format};

/// The member of a JSON row object that carries a rowid no column carries.
pub const JSON_ROWID: &str = "$rowid";

/// SQLite's default `SQLITE_MAX_COLUMN`: a result set may not have more columns.
const MAX_RESULT_COLUMNS: usize = 2000;

/// How to read table `table` of kind `kind` for `spec`; per-table corner cases go to
/// `warnings`, each naming the table.
pub(super) fn table_source(
    conn: &Connection,
    spec: &DumpSpec,
    table: &str,
    kind: &TableKind,
    text: TextEncoding,
    warnings: &mut Vec<String>,
) -> Result<TableSource, DumpError> {
    let cols = columns(conn, spec, table)?;
    let q = quote_ident(table);
    let key = row_key(conn, spec, table, kind, &cols, warnings)?;
    let visible: Vec<&Column> = match spec.format {
        Format::Sql => cols.iter().filter(|c| c.hidden == 0).collect(),
        _ => cols.iter().filter(|c| c.hidden != 1).collect(),
    };
    let mut values: Vec<String> = Vec::new();
    let mut value_columns: Vec<(String, bool)> = Vec::new();
    // The rowid where no column carries it: SQL inserts it; JSON carries it as the
    // member `$rowid` (unless a column has that name); CSV has no place for it.
    let rowid_name = match spec.format {
        _ if !key.sql_rowid => None,
        Format::Sql => Some("rowid"),
        Format::Json | Format::Parquet if !cols.iter().any(|c| c.name == JSON_ROWID) => {
            Some(JSON_ROWID)
        }
        Format::Json | Format::Csv | Format::Parquet => None,
    };
    if matches!(spec.format, Format::Json | Format::Parquet)
        && key.sql_rowid
        && rowid_name.is_none()
    {
        warnings.push(format!(
            "table {table:?}: a column named {JSON_ROWID} takes the place that carries its rowid in {}, so its rows are dumped without their rowids (they get new ones on restore); dump it as SQL to keep them",
            spec.format.extension().to_uppercase()
        ));
    }
    let mut declared_types = Vec::new();
    if let Some(name) = rowid_name {
        values.push(key.columns[0].clone());
        value_columns.push((name.into(), false));
        declared_types.push("INTEGER".to_string());
    }
    declared_types.extend(visible.iter().map(|c| c.decl_type.clone()));
    values.extend(visible.iter().map(|c| quote_ident(&c.name)));
    value_columns.extend(
        visible
            .iter()
            .map(|c| (c.name.clone(), numeric_affinity(&c.decl_type))),
    );
    let all_plain = cols.iter().all(|c| c.hidden == 0);
    let encoding = row_encoding(
        spec,
        &q,
        &values,
        &value_columns,
        rowid_name.is_some() || !all_plain,
        text,
    );
    let queries = queries(table, &q, &key, values)?;
    Ok(TableSource {
        name: table.to_string(),
        key_len: key.columns.len(),
        key_list: queries.key_list,
        select_first: queries.select_first,
        select_after: queries.select_after,
        value_len: queries.value_len,
        select_rest: queries.select_rest,
        rest_len: queries.rest_len,
        paging: key.paging,
        column_names: visible.iter().map(|c| c.name.clone()).collect(),
        value_columns,
        declared_types,
        encoding,
    })
}

/// How a table's rows are keyed: its key columns (in keyset order), whether a SQL dump
/// inserts the rowid explicitly, and how it is paged.
struct RowKey {
    columns: Vec<String>,
    sql_rowid: bool,
    paging: Paging,
}

/// The key of `table`: the primary key of a WITHOUT ROWID table; the rowid (under a name
/// no column hides, or its INTEGER PRIMARY KEY) of a rowid table, or OFFSET paging with a
/// warning when columns hide every name of it; the rowid of a virtual table.
fn row_key(
    conn: &Connection,
    spec: &DumpSpec,
    table: &str,
    kind: &TableKind,
    cols: &[Column],
    warnings: &mut Vec<String>,
) -> Result<RowKey, DumpError> {
    let names: HashSet<String> = cols.iter().map(|c| c.name.to_ascii_lowercase()).collect();
    let rowid_alias = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|a| !names.contains(*a));
    let key = |columns: Vec<String>, sql_rowid: bool, paging: Paging| RowKey {
        columns,
        sql_rowid,
        paging,
    };
    Ok(match kind {
        TableKind::Ordinary {
            without_rowid: true,
        } => {
            let mut pk: Vec<&Column> = cols.iter().filter(|c| c.pk > 0).collect();
            pk.sort_by_key(|c| c.pk);
            key(
                pk.iter().map(|c| quote_ident(&c.name)).collect(),
                false,
                Paging::Keyset,
            )
        }
        TableKind::Ordinary {
            without_rowid: false,
        } => match (rowid_alias, integer_primary_key(conn, spec, table, cols)?) {
            (Some(alias), ipk) => key(vec![alias.to_string()], ipk.is_none(), Paging::Keyset),
            // The INTEGER PRIMARY KEY column is the rowid under its own name.
            (None, Some(ipk)) => key(vec![quote_ident(ipk)], false, Paging::Keyset),
            (None, None) => {
                warnings.push(format!(
                    "table {table:?}: columns named rowid, oid and _rowid_ hide its rowid, so its rows are dumped without their rowids \
                     (they get new ones on restore) and read by OFFSET, which is slow on large tables"
                ));
                key(Vec::new(), false, Paging::Offset)
            }
        },
        TableKind::Virtual { module, .. } => key(
            vec![rowid_alias.unwrap_or("rowid").to_string()],
            !module.starts_with("rtree"),
            Paging::Keyset,
        ),
    })
}

/// How each row of the table is written in the dump's format. A SQL row names its
/// columns when `name_columns` (an explicit rowid, or hidden columns left out).
fn row_encoding(
    spec: &DumpSpec,
    quoted_table: &str,
    values: &[String],
    value_columns: &[(String, bool)],
    name_columns: bool,
    text: TextEncoding,
) -> RowEncoding {
    match spec.format {
        Format::Sql => {
            let prefix = if name_columns {
                format!("INSERT INTO {quoted_table}({}) VALUES(", values.join(","))
            } else {
                format!("INSERT INTO {quoted_table} VALUES(")
            };
            RowEncoding::Sql {
                prefix: prefix.into_bytes(),
                text,
            }
        }
        Format::Csv => RowEncoding::Csv,
        // Parquet's rows are gathered as columns (`engine::parquet`), never rendered as
        // text: JSON's encoding stands in wherever one is asked for.
        Format::Json | Format::Parquet => RowEncoding::Json {
            keys: value_columns
                .iter()
                .map(|(name, _)| {
                    let mut k = Vec::new();
                    super::render::push_json_string(&mut k, name.as_bytes());
                    k.push(b':');
                    k
                })
                .collect(),
        },
    }
}

/// The statements that read a table, and how its values split between them.
struct Queries {
    key_list: String,
    select_first: String,
    select_after: String,
    /// Value columns read by the slice query (the rest by `select_rest`).
    value_len: usize,
    select_rest: Option<String>,
    rest_len: usize,
}

/// The slice queries of a table (first slice, slice after a key) and, for a row wider
/// than a result set may be, the query that reads the rest of it by key.
fn queries(
    table: &str,
    quoted_table: &str,
    key: &RowKey,
    mut values: Vec<String>,
) -> Result<Queries, DumpError> {
    let (q, keys, paging) = (quoted_table, &key.columns, key.paging);
    let key_list = keys.join(",");
    let params: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
    // A result set holds at most MAX_RESULT_COLUMNS: the rest of a wide row is read by key.
    let room = MAX_RESULT_COLUMNS - keys.len().min(MAX_RESULT_COLUMNS - 1);
    let rest: Vec<String> = if values.len() > room {
        values.split_off(room)
    } else {
        Vec::new()
    };
    let select_rest = match (rest.is_empty(), paging) {
        (true, _) => None,
        (false, Paging::Offset) => {
            return Err(DumpError::InvalidRequest(format!("table {table:?} is wider than a result set and its rowid has no name; leave it out with --tables")))
        }
        (false, Paging::Keyset) => {
            let key_match = if keys.len() == 1 { format!("{key_list} = ?1") } else { format!("({key_list}) = ({})", params.join(",")) };
            Some(format!("SELECT {} FROM {q} WHERE {key_match}", rest.join(",")))
        }
    };
    let select_cols = match (keys.is_empty(), values.is_empty()) {
        (_, true) => key_list.clone(),
        (true, false) => values.join(","),
        (false, false) => format!("{key_list},{}", values.join(",")),
    };
    let (select_first, select_after) = match paging {
        Paging::Keyset => {
            let after = if keys.len() == 1 {
                format!("{key_list} > {}", params[0])
            } else {
                format!("({key_list}) > ({})", params.join(","))
            };
            (
                format!("SELECT {select_cols} FROM {q} ORDER BY {key_list} LIMIT ?1"),
                format!(
                    "SELECT {select_cols} FROM {q} WHERE {after} ORDER BY {key_list} LIMIT ?{}",
                    keys.len() + 1
                ),
            )
        }
        // NOT INDEXED: a scan of the table itself, in rowid order, the same every time.
        Paging::Offset => (
            format!("SELECT {select_cols} FROM {q} NOT INDEXED LIMIT ?1"),
            format!("SELECT {select_cols} FROM {q} NOT INDEXED LIMIT ?2 OFFSET ?1"),
        ),
    };
    Ok(Queries {
        key_list,
        select_first,
        select_after,
        value_len: values.len(),
        select_rest,
        rest_len: rest.len(),
    })
}

/// Whether a declared type gives numeric affinity (SQLite's rules, section 3.1 of its
/// datatype documentation): INT → INTEGER; CHAR/CLOB/TEXT → TEXT; BLOB or none → BLOB;
/// REAL/FLOA/DOUB → REAL; anything else → NUMERIC. (`ANY` in STRICT tables keeps values.)
fn numeric_affinity(decl: &str) -> bool {
    let t = decl.to_ascii_uppercase();
    if t.contains("INT") {
        return true;
    }
    if ["CHAR", "CLOB", "TEXT", "BLOB"]
        .iter()
        .any(|k| t.contains(k))
        || t.is_empty()
        || t == "ANY"
    {
        return false;
    }
    true
}

/// The INTEGER PRIMARY KEY column that aliases the rowid, if any. (`INTEGER PRIMARY KEY
/// DESC` does not: such a table gets an automatic `pk` index, an alias never.)
fn integer_primary_key<'c>(
    conn: &Connection,
    spec: &DumpSpec,
    table: &str,
    cols: &'c [Column],
) -> Result<Option<&'c str>, DumpError> {
    let pk: Vec<&Column> = cols.iter().filter(|c| c.pk > 0).collect();
    if pk.len() != 1 || !pk[0].decl_type.eq_ignore_ascii_case("integer") {
        return Ok(None);
    }
    let pk_index: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'",
            [table],
            |r| r.get(0),
        )
        .map_err(|e| DumpError::from_sqlite(&spec.database, e))?;
    Ok((pk_index == 0).then_some(pk[0].name.as_str()))
}
