//! The HTTP API (the original request's contract): one axum `Router`, hosted by `chunkdump serve`
//! on a local socket and by the `functions/api` Lambda.
//!
//! | route | token |
//! | --- | --- |
//! | `POST /export/dump` | admin |
//! | `GET /export/dump/status/{id}` | admin or read-only |
//! | `GET /export/dump/download/{file}`, `…/{id}/{table}.csv` | admin or read-only |
//! | `DELETE /export/dump/{id}` | admin |
//! | `POST /export/dump/{id}/resume` (an interrupted dump) | admin |
//! | `GET /export/dump` (with the recent scheduled runs) | admin or read-only |
//! | `GET /export/databases` (with a database root) | admin or read-only |
//! | `POST /export/fleet` (with a database root) | admin |
//! | `GET /export/fleet/{id}` | admin or read-only |
//! | `GET /openapi.json` | admin or read-only |

//! HTTP only: routing, auth, limits, request and answer shapes, errors to statuses. The
//! use cases behind the routes are the service's ([`crate::service`]). The whole module
//! needs the `api` feature; what the chunk function shares with it lives outside:
//! callbacks in [`crate::callback`], the answers' shapes in `crate::views`.

mod app;
mod auth;
mod databases;
pub mod error;
mod fleet;
mod handlers;
mod limits;
pub mod openapi;
mod runs;
mod state;

pub use app::router;
pub use auth::{admits, TokenLoader, Tokens, TOKEN_TTL};
pub use error::ApiError;
pub use state::RateLimit;
pub use state::{ApiSettings, AppState};
