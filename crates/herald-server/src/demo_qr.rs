//! The QR-code login demo (`/demo/qr-login`): a desktop page shows a QR
//! code for a one-time login id and waits on a private channel; a phone
//! (`/demo/qr-login/phone?id=...`) confirms; the server pushes a one-time
//! code on the channel, which the desktop exchanges for the login.
//!
//! ```text
//!  desktop                      server                         phone
//!  POST new ───────────────> id (in the QR), channel (not)
//!  subscribe qr:<channel>
//!                               <───────────────── POST scan {id}
//!  <── push {event: scanned}
//!                               <───────── POST confirm {id, user}
//!  <── push {event: confirmed, code}
//!  POST exchange {id, code} ─> {user}; the login id is spent
//! ```
//!
//! What travels on the channel is a one-time code, never a session: a
//! subscriber that should not be there learns nothing it could use once the
//! desktop has exchanged it. The channel name is a second random value,
//! never shown in the QR code, so someone who reads the code over a
//! shoulder cannot subscribe to it; with a token key of the HMAC family,
//! `new` also hands out a short token limited to that one channel.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::auth::{Claims, TokenAlgorithm};
use crate::http::api::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::protocol::ErrorCode;

const DESKTOP: &str = include_str!("../../../web/demo/qr-login.html");
const PHONE: &str = include_str!("../../../web/demo/qr-phone.html");
const QRCODEGEN_JS: &str = include_str!("../../../web/demo/qrcodegen.js");

/// Logins waiting to be confirmed or exchanged at once: a demo open to
/// anyone must not grow without bound.
const MAX_PENDING: usize = 10_000;
/// How long a login id (and its channel token) lives.
const LOGIN_TTL: Duration = Duration::from_secs(300);
/// Longest user name the phone may confirm with, in bytes.
const MAX_USER: usize = 64;

#[derive(Debug)]
pub(crate) struct Login {
    channel: String,
    created: Instant,
    confirmed: Option<Confirmed>,
}

#[derive(Debug)]
struct Confirmed {
    user: String,
    code: String,
    at: Instant,
}

#[derive(Debug, Clone)]
struct Qr {
    hub: Arc<Hub>,
    logins: Logins,
}

/// The pending logins, one table for every server thread (each thread
/// builds its own router; a phone's request may land on any of them).
pub(crate) type Logins = Arc<Mutex<HashMap<String, Login>>>;

impl Qr {
    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn push(&self, channel: &str, data: serde_json::Value) -> Result<(), ApiError> {
        let raw = RawValue::from_string(data.to_string())
            .map_err(|_| ApiError::from(ErrorCode::Internal))?;
        self.hub.publish(channel, raw, None).await?;
        Ok(())
    }
}

/// The demo's pages and its four calls, for the public listener.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    hub: &Arc<Hub>,
    logins: &Logins,
) -> Router<S> {
    Router::new()
        .route("/demo/qr-login", get(|| async { Html(DESKTOP) }))
        .route("/demo/qr-login/phone", get(|| async { Html(PHONE) }))
        .route("/demo/qr-login/qrcodegen.js", get(qrcodegen_js))
        .route("/demo/qr-login/new", post(new_login))
        .route("/demo/qr-login/scan", post(scan))
        .route("/demo/qr-login/confirm", post(confirm))
        .route("/demo/qr-login/exchange", post(exchange))
        .with_state(Qr {
            hub: hub.clone(),
            logins: logins.clone(),
        })
}

async fn qrcodegen_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        QRCODEGEN_JS,
    )
}

/// 128 random bits, in hex.
fn random_hex() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BadRequest,
        "no such login (expired or used)",
    )
}

async fn new_login(State(qr): State<Qr>) -> ApiResult {
    let id = random_hex();
    let channel = format!("qr:{}", random_hex());
    {
        let mut logins = qr.logins();
        logins.retain(|_, l| l.created.elapsed() < LOGIN_TTL);
        if logins.len() >= MAX_PENDING {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::LimitExceeded,
                "too many logins pending; try again in a few minutes",
            ));
        }
        logins.insert(
            id.clone(),
            Login {
                channel: channel.clone(),
                created: Instant::now(),
                confirmed: None,
            },
        );
    }
    let mut answer = json!({
        "id": id,
        "channel": channel,
        "phone": format!("/demo/qr-login/phone?id={id}"),
        "ttl": LOGIN_TTL.as_secs(),
    });
    if let Some(token) = channel_token(&qr.hub, &channel) {
        answer["token"] = token.into();
    }
    Ok(Json(answer))
}

/// A token for the desktop page that allows only its login channel, when
/// the server's key can sign (HMAC); `None` in dev mode, where none is
/// needed, and with a public key, where the issuer is elsewhere.
fn channel_token(hub: &Hub, channel: &str) -> Option<String> {
    let config = hub.config();
    let secret = config.token_secret.as_ref()?;
    let algorithm: TokenAlgorithm = config.token_algorithm;
    if !algorithm.is_hmac() {
        return None;
    }
    let claims = Claims {
        sub: "qr-login".into(),
        exp: Some(crate::auth::unix_now() + LOGIN_TTL.as_secs()),
        channels: Some(vec![channel.to_owned()]),
        ..Claims::default()
    };
    crate::auth::sign_with(&claims, algorithm, secret.as_bytes()).ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scan {
    id: String,
}

/// The phone opened the link: the desktop can say "scanned".
async fn scan(State(qr): State<Qr>, Json(body): Json<Scan>) -> ApiResult {
    let channel = {
        let logins = qr.logins();
        match logins.get(&body.id) {
            Some(l) if l.created.elapsed() < LOGIN_TTL && l.confirmed.is_none() => {
                l.channel.clone()
            }
            _ => return Err(not_found()),
        }
    };
    qr.push(&channel, json!({"event": "scanned"})).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirm {
    id: String,
    user: String,
}

/// The phone confirms as `user` (a real backend takes the user from the
/// phone's own session): the desktop gets a one-time code.
async fn confirm(State(qr): State<Qr>, Json(body): Json<Confirm>) -> ApiResult {
    let user = body.user.trim();
    if user.is_empty() || user.len() > MAX_USER {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("user: 1 to {MAX_USER} bytes"),
        ));
    }
    let code = random_hex();
    let channel = {
        let mut logins = qr.logins();
        let login = match logins.get_mut(&body.id) {
            Some(l) if l.created.elapsed() < LOGIN_TTL => l,
            _ => return Err(not_found()),
        };
        if login.confirmed.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::BadRequest,
                "already confirmed",
            ));
        }
        login.confirmed = Some(Confirmed {
            user: user.to_owned(),
            code: code.clone(),
            at: Instant::now(),
        });
        login.channel.clone()
    };
    qr.push(
        &channel,
        json!({"event": "confirmed", "user": user, "code": code}),
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    id: String,
    code: String,
}

/// The desktop trades the one-time code for the login; the id is spent
/// either way once the code matches. `ms_since_confirm` is the server's
/// own measure of confirm -> exchange, which the page shows.
async fn exchange(State(qr): State<Qr>, Json(body): Json<Exchange>) -> ApiResult {
    let mut logins = qr.logins();
    let Some(confirmed) = logins
        .get(&body.id)
        .filter(|l| l.created.elapsed() < LOGIN_TTL)
        .and_then(|l| l.confirmed.as_ref())
    else {
        return Err(not_found());
    };
    if !same(confirmed.code.as_bytes(), body.code.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "wrong code",
        ));
    }
    let ms = confirmed.at.elapsed().as_secs_f64() * 1000.0;
    let user = confirmed.user.clone();
    logins.remove(&body.id);
    Ok(Json(json!({"user": user, "ms_since_confirm": ms})))
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guessed code was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert_eq!(random_hex().len(), 32);
        assert_ne!(random_hex(), random_hex());
    }
}
