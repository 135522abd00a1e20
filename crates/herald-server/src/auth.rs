//! Connection tokens: JWT (RFC 7519), verified with the `jsonwebtoken`
//! crate.
//!
//! The algorithm is the server's configuration (`token_algorithm`), never
//! the token's header: HS256, HS384 or HS512 with `token_secret`, or RS256
//! or ES256 with the PEM public key in `token_public_key`. A token whose
//! `alg` differs is refused before any key is used (the classic holes are
//! `"alg": "none"` and an HS256 token "signed" with an RSA public key).
//!
//! Claims used: `sub` (the user id), `exp`, `nbf` and `iat` (seconds since
//! the Unix epoch, each optional, checked with `token_leeway` for clock
//! skew), `channels` (optional list of channel names or `prefix*` patterns
//! the connection may subscribe to; absent means all), `name` (optional
//! display name).
//!
//! The time checks are made here rather than by `jsonwebtoken`, so that the
//! clock comes from the caller (deterministic tests) and `iat` is checked
//! too (the crate does not).

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::ServerConfig;

/// What a valid token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub exp: Option<u64>,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "numeric_date"
    )]
    pub iat: Option<u64>,
    /// Channels allowed; `None` allows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// RFC 7519 2: a NumericDate is "a JSON numeric value representing the
/// number of seconds from 1970-01-01T00:00:00Z UTC [...] ignoring leap
/// seconds", and may have a fraction. Fractions are dropped; negative or
/// non-finite values make the token malformed.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(u64),
        Float(f64),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Float(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
            Ok(Some(f as u64))
        }
        Some(Number::Float(_)) => Err(serde::de::Error::custom("NumericDate out of range")),
    }
}

/// Why a token was refused. Its `Display` names the check that failed and
/// is what close reasons and logs carry; it never includes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts of JSON, or claims of the wrong type.
    Malformed,
    /// The header's `alg` is not the configured algorithm (notably `none`).
    Algorithm,
    /// The signature does not match.
    Signature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
}

impl TokenError {
    /// The failed check, as close reasons and logs name it.
    pub fn check(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Algorithm => "wrong algorithm",
            Self::Signature => "bad signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not yet valid",
            Self::IssuedInFuture => "issued in the future",
        }
    }
}

impl TokenError {
    /// The reason of the 4100 close that refuses a `connect` with this
    /// token (RFC 6455 5.5.1 allows 123 bytes).
    pub(crate) fn close_reason(self) -> &'static str {
        match self {
            Self::Malformed => "invalid token: malformed",
            Self::Algorithm => "invalid token: wrong algorithm",
            Self::Signature => "invalid token: bad signature",
            Self::Expired => "invalid token: expired",
            Self::NotYetValid => "invalid token: not yet valid",
            Self::IssuedInFuture => "invalid token: issued in the future",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.check())
    }
}

impl std::error::Error for TokenError {}

/// The signature algorithms a server may be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// HMAC with SHA-256 and `token_secret`.
    #[default]
    HS256,
    /// HMAC with SHA-384 and `token_secret`.
    HS384,
    /// HMAC with SHA-512 and `token_secret`.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and the RSA public key in
    /// `token_public_key`.
    RS256,
    /// ECDSA with P-256 and SHA-256 and the EC public key in
    /// `token_public_key`.
    ES256,
}

impl TokenAlgorithm {
    /// Whether the key is a shared secret (HS*) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// The shortest HMAC secret that does not draw a startup warning, in
    /// bytes: RFC 7518 3.2, "A key of the same size as the hash output (for
    /// instance, 256 bits for "HS256") or larger MUST be used with this
    /// algorithm."
    fn min_secret_len(self) -> usize {
        match self {
            Self::HS384 => 48,
            Self::HS512 => 64,
            _ => 32,
        }
    }

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::HS256 => Algorithm::HS256,
            Self::HS384 => Algorithm::HS384,
            Self::HS512 => Algorithm::HS512,
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
        }
    }
}

impl std::str::FromStr for TokenAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "HS256" => Self::HS256,
            "HS384" => Self::HS384,
            "HS512" => Self::HS512,
            "RS256" => Self::RS256,
            "ES256" => Self::ES256,
            _ => {
                return Err(format!(
                    "unknown token algorithm {s:?}: expected HS256, HS384, HS512, RS256 or ES256"
                ));
            }
        })
    }
}

/// Verifies connection tokens with one algorithm and one key, built once
/// from the configuration.
#[derive(Clone)]
pub struct TokenVerifier {
    algorithm: TokenAlgorithm,
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TokenVerifier")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `algorithm`: `key` is the secret for HS256/384/512,
    /// a PEM public key (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY`
    /// for RS256) for RS256 and ES256. `leeway` allows for clock skew in
    /// the `exp`, `nbf` and `iat` checks.
    pub fn new(algorithm: TokenAlgorithm, key: &[u8], leeway: Duration) -> Result<Self, String> {
        let key = match algorithm {
            TokenAlgorithm::HS256 | TokenAlgorithm::HS384 | TokenAlgorithm::HS512 => {
                DecodingKey::from_secret(key)
            }
            TokenAlgorithm::RS256 => DecodingKey::from_rsa_pem(key),
            TokenAlgorithm::ES256 => DecodingKey::from_ec_pem(key),
        }
        .map_err(|e| format!("{} key: {e}", algorithm.name()))?;
        // The crate parses a key's contents lazily (an RSA key at every
        // verify): parse it now, so that a bad key is a startup error
        // rather than every token's "bad signature".
        if !algorithm.is_hmac() {
            let bad = |e: jsonwebtoken::errors::Error| format!("{} key: {e}", algorithm.name());
            let jwk = Jwk::from_decoding_key(&key, Some(algorithm.jwt())).map_err(bad)?;
            if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm
                && ec.curve != EllipticCurve::P256
            {
                return Err(format!("ES256 key: a {:?} key, not P-256", ec.curve));
            }
            // Checks that an EC point is on its curve.
            jsonwebtoken::crypto::verify("", b"", &key, algorithm.jwt()).map_err(bad)?;
        }
        let mut validation = Validation::new(algorithm.jwt());
        // Time claims are checked by `verify` with the caller's clock.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // No audience is configured; a token that names one is not refused
        // for it (as before this crate was used).
        validation.validate_aud = false;
        Ok(Self {
            algorithm,
            key,
            validation,
            leeway: leeway.as_secs(),
        })
    }

    /// The verifier `config` asks for: `None` in dev mode (neither
    /// `token_secret` nor `token_public_key`). `Err` says what is wrong
    /// with the configuration (never the secret).
    pub fn from_config(config: &ServerConfig) -> Result<Option<Self>, String> {
        let algorithm = config.token_algorithm;
        let leeway = config.token_leeway;
        match (&config.token_secret, &config.token_public_key) {
            (Some(_), Some(_)) => Err(
                "token_secret and token_public_key are both set: use one (the secret for HS256/384/512, the public key for RS256/ES256)"
                    .into(),
            ),
            (Some(secret), None) if secret.is_empty() => {
                Err("token_secret is empty: set a secret of at least 32 random bytes".into())
            }
            (Some(secret), None) if algorithm.is_hmac() => {
                Self::new(algorithm, secret.as_bytes(), leeway).map(Some)
            }
            (Some(_), None) => Err(format!(
                "token_algorithm {} needs token_public_key (a PEM file), not token_secret",
                algorithm.name()
            )),
            (None, Some(path)) if !algorithm.is_hmac() => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("token_public_key {}: {e}", path.display()))?;
                Self::new(algorithm, &pem, leeway)
                    .map(Some)
                    .map_err(|e| format!("token_public_key {}: {e}", path.display()))
            }
            (None, Some(_)) => Err(format!(
                "token_public_key is set but token_algorithm is {}: set token_algorithm = \"RS256\" or \"ES256\"",
                algorithm.name()
            )),
            (None, None) if !algorithm.is_hmac() => Err(format!(
                "token_algorithm {} needs token_public_key (a PEM file)",
                algorithm.name()
            )),
            (None, None) => Ok(None),
        }
    }

    /// The configured algorithm.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// The leeway of the time checks, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch): the
    /// header's `alg` must be the configured one, the signature must match,
    /// and `exp`, `nbf` and `iat` (where present) must hold within the
    /// leeway.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        // The crate refuses another `alg` too, but as an error that cannot
        // be told apart from a header that is not JSON; this names it.
        if header_alg(token)? != self.algorithm.name() {
            return Err(TokenError::Algorithm);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::MissingAlgorithm
                | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                _ => TokenError::Malformed,
            })?
            .claims;
        let leeway = self.leeway;
        // RFC 7519 4.1.4: "the current date/time MUST be before the
        // expiration date/time"; 4.1.5: "MUST be after or equal to the
        // not-before date/time". Both allow "some small leeway".
        if claims
            .exp
            .is_some_and(|exp| exp.saturating_add(leeway) <= now)
        {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        // A token from the future was minted by a clock that is wrong, or
        // by someone who wants it to outlive its issuer's intent.
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(claims)
    }
}

/// The header's `alg`, or `Malformed` if the header is not base64url JSON
/// with a string `alg`.
fn header_alg(token: &str) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    let header = token.split('.').next().unwrap_or_default();
    B64.decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice::<Alg>(&b).ok())
        .map(|h| h.alg)
        .ok_or(TokenError::Malformed)
}

/// Verifies an HS256 `token` with `secret` at `now` (seconds since the
/// Unix epoch) with the default leeway of 30 s: a shortcut for Rust
/// backends and tests. A server verifies with [`TokenVerifier`].
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<Claims, TokenError> {
    TokenVerifier::new(TokenAlgorithm::HS256, secret, DEFAULT_LEEWAY)
        .map_err(|_| TokenError::Signature)?
        .verify(token, now)
}

/// The default `token_leeway`.
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Signs `claims` with HS256 and `secret` (for tests, demos and backends
/// written in Rust).
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    // HMAC takes a key of any length, and `Claims` always serializes.
    sign_with(claims, TokenAlgorithm::HS256, secret).unwrap_or_default()
}

/// Signs `claims` with `algorithm`: `key` is the secret for HS256/384/512,
/// a PEM private key (PKCS#8 `-----BEGIN PRIVATE KEY-----`) for RS256 and
/// ES256. `Err` says what is wrong with the key.
pub fn sign_with(claims: &Claims, algorithm: TokenAlgorithm, key: &[u8]) -> Result<String, String> {
    let key = match algorithm {
        TokenAlgorithm::HS256 | TokenAlgorithm::HS384 | TokenAlgorithm::HS512 => {
            EncodingKey::from_secret(key)
        }
        TokenAlgorithm::RS256 => EncodingKey::from_rsa_pem(key),
        TokenAlgorithm::ES256 => EncodingKey::from_ec_pem(key),
    }
    .map_err(|e| format!("{} key: {e}", algorithm.name()))?;
    jsonwebtoken::encode(&Header::new(algorithm.jwt()), claims, &key).map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The wall clock in milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a connection's token runs out: a timer on tokio's clock, set from
/// the token's `exp` at `connect` and again at each `refresh`.
#[derive(Debug, Default)]
pub(crate) struct Expiry {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Expiry {
    /// Arms the timer for `exp` (plus `leeway`), or disarms it for a token
    /// without `exp`; returns the seconds left (the `ttl` of the connect
    /// and refresh results). They are read off the wall clock (`now`, Unix
    /// seconds) once and counted down on tokio's clock, so a test's paused
    /// clock drives the timer.
    pub(crate) fn set(&mut self, exp: Option<u64>, leeway: u64, now: u64) -> Option<u64> {
        let left = exp.map(|exp| exp.saturating_add(leeway).saturating_sub(now));
        // tokio clamps a deadline past its range to "far future".
        self.sleep = left.map(|left| Box::pin(tokio::time::sleep(Duration::from_secs(left))));
        left
    }

    /// Ready once the token has expired; never without `exp`.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// Startup warnings about the token configuration.
pub(crate) fn warnings(config: &ServerConfig) -> Vec<String> {
    let min = config.token_algorithm.min_secret_len();
    match &config.token_secret {
        Some(secret) if secret.len() < min => vec![format!(
            "token_secret is {} bytes; {} secrets should be at least {min} random bytes (RFC 7518 3.2), or tokens can be forged by guessing it",
            secret.len(),
            config.token_algorithm.name(),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(secret: &[u8]) -> TokenVerifier {
        TokenVerifier::new(TokenAlgorithm::HS256, secret, Duration::from_secs(30)).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let claims = Claims {
            sub: "alice".into(),
            exp: Some(2_000),
            channels: Some(vec!["chat:*".into()]),
            ..Default::default()
        };
        let token = sign(&claims, b"secret");
        assert_eq!(hs256(b"secret").verify(&token, 1_000), Ok(claims));
        assert_eq!(
            hs256(b"other").verify(&token, 1_000),
            Err(TokenError::Signature)
        );
        // The leeway: still good 29 s after exp, not 30 s after.
        assert!(hs256(b"secret").verify(&token, 2_029).is_ok());
        assert_eq!(
            hs256(b"secret").verify(&token, 2_030),
            Err(TokenError::Expired)
        );
        assert_eq!(
            hs256(b"secret").verify("a.b", 0),
            Err(TokenError::Malformed)
        );
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(
            hs256(b"secret").verify(&none, 0),
            Err(TokenError::Algorithm)
        );
    }

    #[test]
    fn nbf_and_iat_with_leeway() {
        let v = hs256(b"k");
        let at = |nbf, iat| {
            sign(
                &Claims {
                    sub: "a".into(),
                    nbf,
                    iat,
                    ..Default::default()
                },
                b"k",
            )
        };
        assert!(v.verify(&at(Some(1_030), None), 1_000).is_ok());
        assert_eq!(
            v.verify(&at(Some(1_031), None), 1_000),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            v.verify(&at(Some(4_600), None), 1_000),
            Err(TokenError::NotYetValid)
        );
        assert!(v.verify(&at(None, Some(1_030)), 1_000).is_ok());
        assert_eq!(
            v.verify(&at(None, Some(1_031)), 1_000),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn numeric_dates_may_have_fractions() {
        let payload = B64.encode(br#"{"sub":"a","exp":2000.5}"#);
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(claims.exp, Some(2000));
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":-1}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"sub":"a","exp":"soon"}"#).is_err());
    }

    #[test]
    fn known_hs256_token_from_jwt_io() {
        // The example token shown on jwt.io, secret "your-256-bit-secret".
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let claims = verify(token, b"your-256-bit-secret", 1_516_239_022).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.name.as_deref()),
            ("1234567890", Some("John Doe"))
        );
        // Issued in 2018: refused by a clock that says 1970.
        assert_eq!(
            verify(token, b"your-256-bit-secret", 0),
            Err(TokenError::IssuedInFuture)
        );
    }

    #[test]
    fn hs384_and_hs512() {
        for alg in [TokenAlgorithm::HS384, TokenAlgorithm::HS512] {
            let claims = Claims {
                sub: "a".into(),
                ..Default::default()
            };
            let token = sign_with(&claims, alg, b"k").unwrap();
            let v = TokenVerifier::new(alg, b"k", DEFAULT_LEEWAY).unwrap();
            assert_eq!(v.verify(&token, 0), Ok(claims));
            // The same key, another HMAC: the configuration decides.
            assert_eq!(hs256(b"k").verify(&token, 0), Err(TokenError::Algorithm));
        }
    }

    #[test]
    fn a_key_that_does_not_parse_is_refused_up_front() {
        // Well-formed PEM and SubjectPublicKeyInfo (rsaEncryption), but the
        // RSAPublicKey inside is `SEQUENCE { INTEGER 5 }`: no exponent.
        let broken_rsa = b"-----BEGIN PUBLIC KEY-----
MBcwDQYJKoZIhvcNAQEBBQADBgAwAwIBBQ==
-----END PUBLIC KEY-----
";
        let e = TokenVerifier::new(TokenAlgorithm::RS256, broken_rsa, DEFAULT_LEEWAY).unwrap_err();
        assert!(e.starts_with("RS256 key"), "{e}");
        assert!(TokenVerifier::new(TokenAlgorithm::ES256, b"not PEM", DEFAULT_LEEWAY).is_err());
        // A P-384 key for ES256 (RFC 7518 3.4: ES256 is P-256).
        let p384 = b"-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAErqdpZAzmhZGz1zC+gJ0UDqjkE23rmxvz
QinqBPdVxSRkDtPQEfcwqphvZnrkg8FmjKXKCJVNB2Bx+0k3ssnuxvw9VghblQm1
igg+zZUDc5igz+7gJ3DbcMA5How/nn4S
-----END PUBLIC KEY-----
";
        let e = TokenVerifier::new(TokenAlgorithm::ES256, p384, DEFAULT_LEEWAY).unwrap_err();
        assert!(e.contains("not P-256"), "{e}");
    }

    #[test]
    fn short_secrets_are_warned_about() {
        let mut c = ServerConfig::default();
        assert!(warnings(&c).is_empty());
        c.token_secret = Some("s3cret".into());
        let w = warnings(&c);
        assert!(w[0].contains("6 bytes"), "{w:?}");
        assert!(!w[0].contains("s3cret"), "never the secret: {w:?}");
        c.token_secret = Some("x".repeat(32));
        assert!(warnings(&c).is_empty());
        // RFC 7518 3.2: as long as the hash output.
        c.token_algorithm = TokenAlgorithm::HS512;
        assert!(
            warnings(&c)[0].contains("at least 64"),
            "{:?}",
            warnings(&c)
        );
        c.token_secret = Some("x".repeat(64));
        assert!(warnings(&c).is_empty());
    }
}
