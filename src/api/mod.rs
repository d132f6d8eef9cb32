//! The HTTP API (the original request's contract): one axum `Router`, hosted by `chunkdump serve`
//! on a local socket and by the `functions/api` Lambda.
//!
//! | route | token |
//! | --- | --- |
//! | `POST /export/dump` | admin |
//! | `GET /export/dump/status/{id}` | admin or read-only |
//! | `GET /export/dump/download/{file}`, `…/{id}/{table}.csv` | admin or read-only |
//! | `DELETE /export/dump/{id}` | admin |
//! | `GET /export/dump` (with the recent scheduled runs) | admin or read-only |
//! | `GET /openapi.json` | admin or read-only |

//! Callbacks ([`callback`]) and the answers' shapes ([`views`]) are always built (the
//! chunk function sends callbacks); the router and its handlers need the `api` feature.

pub mod callback;
pub mod views;

#[cfg(feature = "api")]
mod app;
#[cfg(feature = "api")]
mod auth;
#[cfg(feature = "api")]
pub mod error;
#[cfg(feature = "api")]
mod handlers;
#[cfg(feature = "api")]
mod limits;
#[cfg(feature = "api")]
pub mod openapi;
#[cfg(feature = "api")]
pub mod schedule;
#[cfg(feature = "api")]
mod start;

#[cfg(feature = "api")]
pub use app::{router, ApiSettings, AppState};
#[cfg(feature = "api")]
pub use auth::Tokens;
#[cfg(feature = "api")]
pub use error::ApiError;
#[cfg(feature = "api")]
pub use limits::RateLimit;
