//! Rate limits, enforced through the progress store so they hold across processes and
//! Lambda instances: a number of accepted starts per token per window (429 with
//! `Retry-After`; a refused start gives its count back), and one active dump per database
//! (409 naming the running or interrupted dump; a start that fails releases the database
//! at once).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Who is calling: a digest of the token (the token itself is never stored).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// A 429 with `Retry-After`.
pub struct TooManyRequests {
    retry_after: u64,
    error: ApiError,
}

impl IntoResponse for TooManyRequests {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

/// A start counted against its caller's window, until it is given back.
pub struct CountedStart {
    key: String,
}

impl CountedStart {
    /// Gives the count back: the start was refused, so it does not use up the limit.
    pub async fn give_back(self, state: &AppState) {
        let window = state.settings.rate_limit.window;
        if let Err(e) = state.rates.count_in_window(&self.key, window, -1).await {
            tracing::warn!(error = %e, "could not give back a refused start's count");
        }
    }
}

/// Counts this start against the caller's window (429 past the limit).
pub async fn count_start(state: &AppState, caller: &Caller) -> Result<CountedStart, Response> {
    let limit = state.settings.rate_limit;
    let key = format!("starts:{}", caller.0);
    let (count, retry_after) = state
        .rates
        .count_in_window(&key, limit.window, 1)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    if count > limit.starts {
        // Over the limit: this start is refused, so it is not counted either.
        CountedStart { key }.give_back(state).await;
        let message = format!(
            "at most {} dumps may be started per {} s with this token; retry in {retry_after} s",
            limit.starts,
            limit.window.as_secs()
        );
        return Err(TooManyRequests {
            retry_after,
            error: ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message),
        }
        .into_response());
    }
    Ok(CountedStart { key })
}
