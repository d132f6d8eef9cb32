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

//! The whole module needs the `api` feature; what the chunk function shares with it
//! lives outside: callbacks in [`crate::callback`], the answers' shapes in
//! `crate::views`.

mod app;
mod auth;
mod databases;
pub mod error;
pub mod fleet;
pub mod fleet_tasks;
mod fleet_views;
mod handlers;
mod limits;
pub mod openapi;
mod runs;
pub mod schedule;
mod start;

pub use app::{router, ApiSettings, AppState};
pub use auth::{admits, TokenLoader, Tokens, TOKEN_TTL};
pub use error::ApiError;
pub use limits::RateLimit;
