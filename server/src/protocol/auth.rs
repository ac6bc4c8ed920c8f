//! `POST /kbs/v0/auth`: parses the Request, calls [`keylatch_broker::protocol::auth`], and
//! answers the challenge with the `kbs-session-id` cookie.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use keylatch_broker::protocol::AuthRequest;
use keylatch_broker::ApiError;
use serde_json::json;

use crate::error::HttpError;
use crate::extract::{json_body, COOKIE_NAME};
use crate::state::AppState;

pub async fn handle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let req: AuthRequest = json_body(body, "auth")?;
    let challenge =
        keylatch_broker::protocol::auth(&state, &req, time::OffsetDateTime::now_utc()).await?;
    let expires = time::OffsetDateTime::from_unix_timestamp(challenge.expires)
        .map_err(|e| ApiError::internal("session expiry", &e))?;
    let mut cookie = format!(
        "{COOKIE_NAME}={}; Expires={}; HttpOnly; Path=/kbs",
        challenge.session_id,
        http_date(expires)
    );
    if state.settings.secure_cookie {
        cookie.push_str("; Secure");
    }
    let body = json!({"nonce": challenge.nonce, "extra-params": ""});
    Ok(([(SET_COOKIE, cookie)], axum::Json(body)).into_response())
}

/// RFC 9110 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let day = days.get(usize::from(t.weekday().number_days_from_monday())).unwrap_or(&"Mon");
    let month = months.get(usize::from(u8::from(t.month())) - 1).unwrap_or(&"Jan");
    format!(
        "{day}, {:02} {month} {} {:02}:{:02}:{:02} GMT",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cookie_dates_as_imf_fixdate() {
        let t = time::OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
