//! The API's router: the routes, the token check in front of them, the body limit and
//! the JSON error bodies.

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{bearer, check, digest, Access};
use super::error::ApiError;
use super::state::AppState;
use super::{handlers, openapi};

/// Request bodies are small JSON documents.
const MAX_BODY: usize = 16 * 1024;

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/export/dump", post(handlers::start).get(handlers::list))
        .route("/export/dump/status/{id}", get(handlers::status))
        .route("/export/dump/download/{file}", get(handlers::download))
        .route(
            "/export/dump/download/{id}/{file}",
            get(handlers::download_csv),
        )
        .route("/export/dump/manifest/{id}", get(handlers::manifest))
        .route("/export/dump/{id}", delete(handlers::cancel))
        .route("/export/dump/{id}/resume", post(super::runs::resume))
        .route("/export/databases", get(super::databases::list))
        .route("/export/fleet", post(super::fleet::start))
        .route("/export/fleet/{id}", get(super::fleet::status))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(
            super::error::json_error_bodies,
        ))
        .with_state(state)
}

/// Middleware: 401 (with `WWW-Authenticate`) without a valid token, 403 when a
/// read-only token asks for a write.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string);
    let unauthorized = |message: &str| {
        let mut res =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"chunkdump\""),
        );
        res
    };
    let Some(given) = given else {
        return unauthorized("missing Authorization: Bearer token");
    };
    state.tokens.refresh_if_due().await;
    match check(&state.tokens, &given) {
        None => unauthorized("invalid token"),
        Some(Access::ReadOnly) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may only read (status, list, download)",
            )
            .into_response()
        }
        Some(_) => {
            req.extensions_mut()
                .insert(super::limits::Caller(hex::encode(&digest(&given)[..12])));
            next.run(req).await
        }
    }
}
