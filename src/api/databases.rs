//! `GET /export/databases`: the databases under the root (`CHUNKDUMP_DATABASE_ROOT`,
//! `serve --database-root`), paged. (Which database a start dumps is the service's:
//! `crate::service::start::target`.)

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::AppState;
use crate::local::RootDatabase;

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
