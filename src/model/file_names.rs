//! Names made from outside strings: a table's file name, and a database's name in a store
//! that holds several databases (`<database>/dump_…`).

use std::path::Path;

use sha2::Digest;

use super::spec::InvalidValue;

/// The longest file name [`safe_file_name`] gives: with the dump's `.csv.zst` it stays
/// under the 255 bytes file systems allow.
pub const MAX_FILE_NAME: usize = 200;

/// A file name for a table that is safe on any file system and in any URL: bytes outside
/// `[A-Za-z0-9_-]` are percent-encoded (so `a/b c` becomes `a%2Fb%20c`). A name longer
/// than [`MAX_FILE_NAME`] is cut (never inside a `%XX`) and ends in `~` and 16 hex digits
/// of the table name's SHA-256, so long names that share a beginning stay apart.
pub fn safe_file_name(table: &str) -> String {
    let mut out = String::new();
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    if out.len() > MAX_FILE_NAME {
        let digest = hex::encode(&sha2::Sha256::digest(table.as_bytes())[..8]);
        let mut cut = MAX_FILE_NAME - 1 - digest.len();
        // Step back over a cut `%XX`: a `%` in the last two kept bytes starts one.
        if let Some(at) = out.as_bytes()[cut.saturating_sub(2)..cut]
            .iter()
            .position(|&b| b == b'%')
        {
            cut = cut - 2 + at;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&digest);
    }
    out
}

/// The name a database goes by in a store holding several: its path relative to the
/// database root, without the file's extension, each component encoded like a table's
/// file name (so `tenants/acme corp.db` is `tenants/acme%20corp`). Refuses paths that are
/// empty, absolute, or step outside the root (`..`).
pub fn database_name(relative: &Path) -> Result<String, InvalidValue> {
    use std::path::Component;
    let bad = |message: String| InvalidValue {
        field: "database",
        message,
    };
    let shown = relative.display();
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(bad(format!(
                    "{shown}: `..` may not leave the database root"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(format!(
                    "{shown}: give a path relative to the database root, not an absolute one"
                )))
            }
        }
    }
    let Some(last) = parts.pop() else {
        return Err(bad(format!("{shown:?}: an empty database path")));
    };
    let stem = match last.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem.to_string(),
        _ => last,
    };
    parts.push(stem);
    if parts.len() > MAX_DATABASE_DEPTH {
        return Err(bad(format!(
            "{shown}: more than {MAX_DATABASE_DEPTH} directories deep"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| safe_file_name(p))
        .collect::<Vec<_>>()
        .join("/"))
}

/// How many path components a database name may have.
pub const MAX_DATABASE_DEPTH: usize = 16;

/// Whether `segment` could be one component of a [`database_name`]: what
/// [`safe_file_name`] gives (never `.`, `..` or a hidden name).
pub(super) fn is_database_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_FILE_NAME
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(safe_file_name("a/b c.\"x\""), "a%2Fb%20c%2E%22x%22");
        assert_eq!(safe_file_name(".."), "%2E%2E");
        assert_eq!(safe_file_name("plain_Name-1"), "plain_Name-1");
        // Long names are cut to a bounded length, never inside an escape, and stay apart.
        let long = "é".repeat(50);
        let (a, b) = (safe_file_name(&long), safe_file_name(&format!("{long}x")));
        assert!(a.len() <= MAX_FILE_NAME && b.len() <= MAX_FILE_NAME, "{a}");
        assert_ne!(a, b);
        let kept = a.split('~').next().unwrap();
        assert!(kept.len() % 3 == 0 && kept.starts_with("%C3%A9"), "{kept}");
        for n in 190..210 {
            let name = safe_file_name(&"a".repeat(n));
            assert!(name.len() <= MAX_FILE_NAME, "{n}: {name}");
        }
    }

    #[test]
    fn database_names_are_relative_encoded_and_without_extension() {
        let name = |p: &str| database_name(Path::new(p));
        assert_eq!(name("acme.db").unwrap(), "acme");
        assert_eq!(
            name("./tenants/acme corp.sqlite3").unwrap(),
            "tenants/acme%20corp"
        );
        assert_eq!(name("a.b.db").unwrap(), "a%2Eb");
        assert_eq!(name(".hidden").unwrap(), "%2Ehidden");
        assert_eq!(name("noext").unwrap(), "noext");
        for bad in ["", ".", "/etc/x.db", "../x.db", "a/../../x.db"] {
            let e = name(bad).unwrap_err();
            assert_eq!(e.field, "database", "{bad}");
        }
        assert!(name(&"d/".repeat(MAX_DATABASE_DEPTH + 1)).is_err());
        for ok in ["acme", "tenants/acme%20corp", "%2Ehidden"] {
            assert!(ok.split('/').all(is_database_segment), "{ok}");
        }
        assert!(![".", "..", "", "a.b", "a b"]
            .into_iter()
            .any(is_database_segment));
    }
}
