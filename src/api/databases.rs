//! Which database a request dumps: the server's one database, or with a database root
//! (`CHUNKDUMP_DATABASE_ROOT`, `serve --database-root`) the one it names under the root;
//! and `GET /export/databases`, the databases under the root, paged.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;
use crate::local::RootDatabase;

/// The database a start dumps: its path on this machine, and its name in the store when
/// the server has a root (dumps of it are `<name>/dump_…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) path: String,
    pub(crate) name: Option<String>,
    /// The database as callers see it (never the server's path): the path under the root
    /// they named, or the file name of the server's one database.
    pub(crate) shown_as: String,
}

/// Resolves a start's `database` (a path relative to the root): 400 naming the problem
/// when it is not a SQLite file inside the root, or when the server has no root.
pub(crate) fn target(state: &AppState, requested: Option<&str>) -> Result<Target, ApiError> {
    let settings = &state.settings;
    match (requested, &settings.database_root, &settings.database) {
        (Some(relative), Some(root), _) => {
            let found = root
                .resolve(relative)
                .map_err(|e| ApiError::bad_field("database", e.message))?;
            Ok(Target {
                path: found.path.display().to_string(),
                name: Some(found.name),
                shown_as: found.database,
            })
        }
        (Some(_), None, _) => Err(ApiError::bad_field(
            "database",
            "this server dumps one database and takes no `database`; \
             a server with a database root (CHUNKDUMP_DATABASE_ROOT) does",
        )),
        (None, _, Some(database)) => Ok(Target {
            path: database.clone(),
            name: None,
            shown_as: std::path::Path::new(database)
                .file_name()
                .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned()),
        }),
        (None, _, None) => Err(ApiError::bad_field(
            "database",
            "name the database to dump: a path under the database root \
             (GET /export/databases lists them)",
        )),
    }
}

/// A listing's page size: 100 unless asked, at most 1000.
pub(crate) fn page_limit(asked: Option<usize>) -> Result<usize, ApiError> {
    let limit = asked.unwrap_or(100);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_field(
            "limit",
            "limit must be between 1 and 1000",
        ))
    }
}

/// Query of `GET /export/databases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Databases per page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// A page of `GET /export/databases`.
#[derive(schemars::JsonSchema, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabasePage {
    databases: Vec<RootDatabase>,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// `GET /export/databases`: the SQLite databases under the root, by path, paged.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DatabasePage>, ApiError> {
    let Query(query) = query.map_err(ApiError::bad_query)?;
    let Some(root) = state.settings.database_root.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server dumps one database; it has no database root to list",
        ));
    };
    let limit = page_limit(query.limit)?;
    let (databases, more) =
        tokio::task::spawn_blocking(move || root.list(query.cursor.as_deref(), limit))
            .await?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    e.message,
                )
            })?;
    let next_cursor = more
        .then(|| databases.last().map(|d| d.database.clone()))
        .flatten();
    Ok(Json(DatabasePage {
        databases,
        next_cursor,
    }))
}
