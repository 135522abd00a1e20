//! Connection tokens: JWT (RFC 7519) signed with HMAC-SHA256 (HS256).
//!
//! Claims used: `sub` (the user id), `exp` (expiry, seconds since the Unix
//! epoch, optional), `channels` (optional list of channel names or
//! `prefix*` patterns the connection may subscribe to; absent means all),
//! `name` (optional display name).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a valid token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Channels allowed; `None` allows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Why a token was refused. The client only ever sees "unauthorized".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// `alg` is not HS256 (notably `none`).
    Algorithm,
    /// The signature does not match.
    Signature,
    /// `exp` has passed.
    Expired,
}

/// Verifies `token` with `secret` at `now` (seconds since the Unix epoch).
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    // Only HS256: accepting the token's own choice of algorithm is the
    // classic JWT hole ("alg": "none").
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signature = B64.decode(s).map_err(|_| TokenError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Signature)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.exp.is_some_and(|exp| exp <= now) {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Signs `claims` (for tests, demos and backends written in Rust).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7515_a1_style_round_trip_and_rejections() {
        let claims = Claims {
            sub: "alice".into(),
            exp: Some(2_000),
            channels: Some(vec!["chat:*".into()]),
            name: None,
        };
        let token = sign(&claims, b"secret");
        assert_eq!(verify(&token, b"secret", 1_000), Ok(claims));
        assert_eq!(verify(&token, b"other", 1_000), Err(TokenError::Signature));
        assert_eq!(verify(&token, b"secret", 2_000), Err(TokenError::Expired));
        assert_eq!(verify("a.b", b"secret", 0), Err(TokenError::Malformed));
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(verify(&none, b"secret", 0), Err(TokenError::Algorithm));
    }

    #[test]
    fn known_hs256_token_from_jwt_io() {
        // The example token shown on jwt.io, secret "your-256-bit-secret".
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let claims = verify(token, b"your-256-bit-secret", 0).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.name.as_deref()),
            ("1234567890", Some("John Doe"))
        );
    }
}
