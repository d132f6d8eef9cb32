//! The real SQLite files from registry packages (`scripts/fetch-fixtures`), by name, and
//! [`each_real_sqlite_file!`], which makes one test per file: nextest runs them side by
//! side (several processes) instead of one long test working through seven databases.

use std::path::PathBuf;

use super::skip_without;

/// The seven files `scripts/fetch-fixtures` puts in the fixture directory, smallest
/// first. Every test of "the real files" covers each of them: a file fetched but not
/// listed here fails [`fixture_file`], so none is silently left out.
pub const REAL_SQLITE_FILES: [&str; 7] = [
    "debian-qgis-3.22-spatialite.db",
    "dnd5e-2024-en-v5.10.0.sqlite3",
    "debian-qgis-3.22-srs-template.db",
    "dnd5e-2014-en-v5.10.0.sqlite3",
    "debian-proj-data-9.1.1-proj.db",
    "pyproj-3.7.2-proj.db",
    "debian-qgis-3.22-world_map.db",
];

/// The directory of the real SQLite files (`scripts/fetch-fixtures`, or
/// `CHUNKDUMP_FIXTURES`).
fn fixture_dir() -> String {
    std::env::var("CHUNKDUMP_FIXTURES")
        .unwrap_or_else(|_| format!("{}/.cache/fixtures", env!("CARGO_MANIFEST_DIR")))
}

/// The SQLite files in the fixture directory, sorted.
fn find_fixture_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sqlite3" || e == "db"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Whether a test of the real SQLite files should skip (see [`skip_without`]).
pub fn skip_without_fixtures() -> bool {
    skip_without(
        &format!("the seven real SQLite files in {}", fixture_dir()),
        find_fixture_files().len() >= REAL_SQLITE_FILES.len(),
        "run scripts/fetch-fixtures (scripts/test does)",
    )
}

/// The real SQLite files from registry packages; panics unless all seven are there (a
/// test calls [`skip_without_fixtures`] first).
pub fn fixture_files() -> Vec<PathBuf> {
    let files = find_fixture_files();
    assert!(
        files.len() >= REAL_SQLITE_FILES.len(),
        "expected the seven real SQLite files in {}; run scripts/fetch-fixtures",
        fixture_dir()
    );
    files
}

/// The path of the real file `name` (one of [`REAL_SQLITE_FILES`]), or `None` when the
/// fixtures are missing and the test should skip (a failure under `CI=true`). Panics if
/// the directory holds a SQLite file the list does not name.
pub fn fixture_file(name: &str) -> Option<PathBuf> {
    assert!(REAL_SQLITE_FILES.contains(&name), "{name} is not a fixture");
    if skip_without_fixtures() {
        return None;
    }
    let files = find_fixture_files();
    let unlisted: Vec<_> = files
        .iter()
        .filter(|p| !REAL_SQLITE_FILES.iter().any(|n| p.ends_with(n)))
        .collect();
    assert!(
        unlisted.is_empty(),
        "fixture files not in REAL_SQLITE_FILES (so no per-file test covers them): {unlisted:?}"
    );
    let path = PathBuf::from(fixture_dir()).join(name);
    assert!(
        path.is_file(),
        "{} missing; run scripts/fetch-fixtures",
        path.display()
    );
    Some(path)
}

/// One `#[test]` per real SQLite file, each calling `$check(&Path)` with that file (and
/// skipping like [`fixture_file`]). Use inside a module named for the property, e.g.
/// `mod real_sqlite_files_round_trip { each_real_sqlite_file!(super::round_trips); }`.
macro_rules! each_real_sqlite_file {
    ($check:path) => {
        $crate::common::fixtures::each_real_sqlite_file!(@tests $check;
            spatialite = 0, dnd5e_2024 = 1, srs_template = 2, dnd5e_2014 = 3,
            debian_proj_db = 4, pyproj_proj_db = 5, world_map = 6);
    };
    (@tests $check:path; $($name:ident = $index:literal),*) => {
        $(
            #[test]
            fn $name() {
                let name = $crate::common::fixtures::REAL_SQLITE_FILES[$index];
                if let Some(path) = $crate::common::fixtures::fixture_file(name) {
                    $check(&path);
                }
            }
        )*
    };
}
pub(crate) use each_real_sqlite_file;
