//! Hostile connection tokens: every check (expired, not yet valid, issued
//! in the future, bad signature, malformed, wrong algorithm) refuses the
//! token with a close reason that names it; the algorithm is the
//! configuration's, never the token's; RS256 and ES256 with a PEM public
//! key; a connection is closed with 4005 when its token expires unless it
//! refreshes, and only with a token of the same user.
//!
//! Expiry runs on tokio's paused clock: the server reads the seconds left
//! off the wall clock once and counts them down on tokio's, so an hour
//! passes at once. Those tests run on one thread (tokio pauses only a
//! current-thread runtime); the others run on one and on two.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use herald_server::{
    Claims, ServerConfig, TokenAlgorithm, TokenVerifier, sign_token, sign_token_with, unix_now,
};
use serde_json::json;
use support::*;

const SECRET: &str = "a test secret of thirty-two bytes";

fn hs256_server() -> ServerConfig {
    let mut config = config();
    config.token_secret = Some(SECRET.into());
    config
}

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key")
}

/// A server that verifies `algorithm` with the committed public key.
fn pem_server(algorithm: TokenAlgorithm, public_key: &str) -> ServerConfig {
    let mut config = config();
    config.token_algorithm = algorithm;
    config.token_public_key = Some(key_path(public_key));
    config
}

fn alice() -> Claims {
    Claims {
        sub: "alice".into(),
        ..Default::default()
    }
}

fn hs256(claims: &Claims) -> String {
    sign_token(claims, SECRET.as_bytes())
}

/// Sends `connect` with `token`; the server must close with 4100 and a
/// reason naming `check`.
async fn refused(server: &TestServer, token: &str, check: &str) {
    let mut ws = open(&server.url()).await;
    send_text(
        &mut ws,
        json!({"id": 1, "connect": {"token": token}}).to_string(),
    )
    .await;
    let frame = closed(&mut ws).await;
    assert_eq!(frame.code.0, 4100, "token {token}: {frame:?}");
    assert_eq!(frame.reason, format!("invalid token: {check}"), "{token}");
}

/// base64url without padding, for hand-made tokens.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn each_failed_check_is_named_in_the_close_reason() {
    let server = TestServer::start(hs256_server()).await;
    let now = unix_now();
    let hour = 3600;

    let expired = hs256(&Claims {
        exp: Some(now - hour),
        ..alice()
    });
    refused(&server, &expired, "expired").await;

    // Accepted before: nothing looked at nbf.
    let nbf_ahead = hs256(&Claims {
        nbf: Some(now + hour),
        ..alice()
    });
    refused(&server, &nbf_ahead, "not yet valid").await;

    let iat_ahead = hs256(&Claims {
        iat: Some(now + hour),
        ..alice()
    });
    refused(&server, &iat_ahead, "issued in the future").await;

    let other_secret = sign_token(&alice(), b"not the server's secret, 32 bytes");
    refused(&server, &other_secret, "bad signature").await;

    // A valid token whose payload was changed: the signature no longer
    // matches.
    let valid = hs256(&alice());
    let parts: Vec<&str> = valid.split('.').collect();
    let mallory = b64(br#"{"sub":"mallory"}"#);
    refused(
        &server,
        &format!("{}.{mallory}.{}", parts[0], parts[2]),
        "bad signature",
    )
    .await;

    for garbage in [
        "garbage",
        "",
        "a.b.c",
        "a.b",
        "....",
        &format!("{}.e30.", b64(b"{}")),
    ] {
        refused(&server, garbage, "malformed").await;
    }
    // Signed, but `exp` is not a NumericDate.
    let bad_exp = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": "tomorrow"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    refused(&server, &bad_exp, "malformed").await;

    // "alg": "none" with a valid payload and no signature.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    refused(&server, &none, "wrong algorithm").await;
    // Another HMAC with the right secret: the configuration says HS256.
    let hs512 = sign_token_with(&alice(), TokenAlgorithm::HS512, SECRET.as_bytes()).unwrap();
    refused(&server, &hs512, "wrong algorithm").await;

    assert_eq!(server.hub().connection_count(), 0);
    server.stop().await;
}

async fn the_configured_algorithm_wins_over_the_tokens() {
    // RS256 configured; an HS256 token "signed" with the RSA public key as
    // the HMAC secret: the classic algorithm confusion.
    let server = TestServer::start(pem_server(TokenAlgorithm::RS256, "rs256-public.pem")).await;
    let confused = sign_token(&alice(), &key("rs256-public.pem"));
    refused(&server, &confused, "wrong algorithm").await;
    let es256 =
        sign_token_with(&alice(), TokenAlgorithm::ES256, &key("es256-private.pem")).unwrap();
    refused(&server, &es256, "wrong algorithm").await;
    server.stop().await;

    // HS256 configured; an RS256 token with a valid RSA signature.
    let server = TestServer::start(hs256_server()).await;
    let rs256 =
        sign_token_with(&alice(), TokenAlgorithm::RS256, &key("rs256-private.pem")).unwrap();
    refused(&server, &rs256, "wrong algorithm").await;
    server.stop().await;
}

async fn rs256_and_es256_tokens_are_verified_with_the_pem_public_key() {
    for (algorithm, name) in [
        (TokenAlgorithm::RS256, "rs256"),
        (TokenAlgorithm::ES256, "es256"),
    ] {
        let server = TestServer::start(pem_server(algorithm, &format!("{name}-public.pem"))).await;
        let private = key(&format!("{name}-private.pem"));
        let token = sign_token_with(
            &Claims {
                exp: Some(unix_now() + 3600),
                channels: Some(vec!["chat:*".into()]),
                ..alice()
            },
            algorithm,
            &private,
        )
        .unwrap();
        let mut c = server.client(json!({ "token": token })).await;
        c.subscribe("chat:lobby").await;
        assert_eq!(
            c.ok("presence", json!({"channel": "chat:lobby"})).await,
            json!({"clients": [{"client": c.client, "user": "alice"}]}),
            "{name}"
        );
        assert_eq!(
            c.error("subscribe", json!({"channel": "quotes:ACME"}))
                .await,
            103,
            "{name}: the token's channels apply"
        );
        drop(c);

        // Tampered payload: the signature no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64(br#"{"sub":"mallory"}"#), parts[2]);
        refused(&server, &tampered, "bad signature").await;
        let expired = sign_token_with(
            &Claims {
                exp: Some(unix_now() - 3600),
                ..alice()
            },
            algorithm,
            &private,
        )
        .unwrap();
        refused(&server, &expired, "expired").await;
        server.stop().await;
    }
}

#[test]
fn a_key_that_does_not_fit_the_algorithm_is_a_startup_error() {
    let error = |f: &dyn Fn(&mut ServerConfig)| {
        let mut c = ServerConfig::default();
        f(&mut c);
        TokenVerifier::from_config(&c).expect_err("configuration error")
    };
    let e = error(&|c| c.token_algorithm = TokenAlgorithm::RS256);
    assert!(e.contains("token_public_key"), "{e}");
    let e = error(&|c| {
        c.token_algorithm = TokenAlgorithm::ES256;
        c.token_public_key = Some("/nonexistent/key.pem".into());
    });
    assert!(e.contains("/nonexistent/key.pem"), "names the file: {e}");
    let e = error(&|c| c.token_public_key = Some(key_path("rs256-public.pem")));
    assert!(e.contains("token_algorithm"), "{e}");
    let e = error(&|c| {
        c.token_algorithm = TokenAlgorithm::RS256;
        c.token_public_key = Some(key_path("es256-public.pem"));
    });
    assert!(
        e.contains("es256-public.pem"),
        "an EC key is not an RSA key: {e}"
    );
    let e = error(&|c| {
        c.token_algorithm = TokenAlgorithm::RS256;
        c.token_secret = Some(SECRET.into());
    });
    assert!(!e.contains(SECRET), "never the secret: {e}");
    // An empty secret would let anyone sign with the empty key.
    let e = error(&|c| c.token_secret = Some(String::new()));
    assert!(e.contains("empty"), "{e}");

    // Dev mode, and the valid combinations.
    assert!(
        TokenVerifier::from_config(&ServerConfig::default())
            .unwrap()
            .is_none()
    );
    let mut c = ServerConfig::default();
    c.token_secret = Some("short".into());
    assert!(TokenVerifier::from_config(&c).unwrap().is_some());
    assert!(c.warnings()[0].contains("5 bytes"), "{:?}", c.warnings());
    let c = pem_server(TokenAlgorithm::ES256, "es256-public.pem");
    assert!(TokenVerifier::from_config(&c).unwrap().is_some());
    assert!(c.warnings().is_empty());
}

// ----- expiry and refresh (paused clock) -----------------------------------------

/// An HS256 server whose time checks have no leeway, so deadlines are
/// exact, and whose keepalive does not tick while a test sleeps.
fn expiring_server() -> ServerConfig {
    let mut config = hs256_server();
    config.token_leeway = Duration::ZERO;
    config.ping_interval = Duration::from_secs(24 * 3600);
    config
}

fn alice_until(exp: u64) -> String {
    hs256(&Claims {
        exp: Some(exp),
        ..alice()
    })
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_closed_with_4005_when_its_token_expires() {
    let mut config = hs256_server();
    // The default leeway and keepalive: the client answers pings while
    // it waits.
    config.token_leeway = Duration::from_secs(30);
    let server = TestServer::start(config).await;
    let start = tokio::time::Instant::now();
    let exp = unix_now() + 60;
    let mut c = server.client(json!({"token": alice_until(exp)})).await;
    assert_eq!(c.connected["expires"], exp);
    let ttl = c.connected["ttl"].as_u64().expect("connect result has ttl");
    assert!(
        (80..=90).contains(&ttl),
        "exp + leeway - now: {}",
        c.connected
    );
    c.ok("ping", json!({})).await;
    let frame = closed_within(&mut c.ws, Duration::from_secs(3600))
        .await
        .expect("closed when the token expired");
    let elapsed = start.elapsed();
    assert_eq!(
        (frame.code.0, frame.reason.as_str()),
        (4005, "token expired")
    );
    // exp plus the leeway, less the wall-clock seconds the handshake took.
    assert!(
        (Duration::from_secs(80)..=Duration::from_secs(91)).contains(&elapsed),
        "closed after {elapsed:?}"
    );
    eventually("the expired connection to leave", || {
        server.hub().connection_count() == 0
    })
    .await;

    // A token without exp does not expire.
    let mut c = server.client(json!({"token": hs256(&alice())})).await;
    assert!(c.connected.get("expires").is_none(), "{}", c.connected);
    assert!(
        closed_within(&mut c.ws, Duration::from_secs(3600))
            .await
            .is_none()
    );
    c.ok("ping", json!({})).await;
    drop(c);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_moves_the_expiry_to_the_new_tokens() {
    let server = TestServer::start(expiring_server()).await;
    let mut c = server
        .client(json!({"token": alice_until(unix_now() + 60)}))
        .await;
    tokio::time::sleep(Duration::from_secs(50)).await;

    let exp = unix_now() + 3600;
    let result = c.ok("refresh", json!({"token": alice_until(exp)})).await;
    // ttl: seconds until the server closes, exp plus the (zero) leeway.
    assert_eq!(result["expires"], exp);
    let ttl = result["ttl"].as_u64().expect("ttl");
    assert!((3590..=3600).contains(&ttl), "{result}");
    // Past the first token's exp: still open and serving.
    assert!(
        closed_within(&mut c.ws, Duration::from_secs(600))
            .await
            .is_none()
    );
    c.ok("ping", json!({})).await;
    // Until the new exp.
    let frame = closed_within(&mut c.ws, Duration::from_secs(3600))
        .await
        .expect("closed at the refreshed exp");
    assert_eq!(frame.code.0, 4005);

    // A refresh token without exp lifts the expiry.
    let mut c = server
        .client(json!({"token": alice_until(unix_now() + 60)}))
        .await;
    assert_eq!(
        c.ok("refresh", json!({"token": hs256(&alice())})).await,
        json!({})
    );
    assert!(
        closed_within(&mut c.ws, Duration::from_secs(24 * 3600))
            .await
            .is_none()
    );
    c.ok("ping", json!({})).await;
    drop(c);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refresh_with_another_users_or_an_invalid_token_is_refused() {
    let server = TestServer::start(expiring_server()).await;
    let start = tokio::time::Instant::now();
    let mut c = server
        .client(json!({"token": alice_until(unix_now() + 60)}))
        .await;
    let later = unix_now() + 3600;

    let bob = hs256(&Claims {
        sub: "bob".into(),
        exp: Some(later),
        ..Default::default()
    });
    assert_eq!(c.error("refresh", json!({ "token": bob })).await, 103);

    let nbf_ahead = hs256(&Claims {
        exp: Some(later),
        nbf: Some(later - 60),
        ..alice()
    });
    let forged = sign_token(
        &Claims {
            exp: Some(later),
            ..alice()
        },
        b"not the server's secret, 32 bytes",
    );
    let expired = alice_until(unix_now() - 1);
    for token in [nbf_ahead, forged, expired, "garbage".into()] {
        assert_eq!(c.error("refresh", json!({ "token": token })).await, 101);
    }
    // A refresh without a token is not a command.
    assert_eq!(c.error("refresh", json!({})).await, 104);

    // The connect token's expiry still holds.
    let frame = closed_within(&mut c.ws, Duration::from_secs(3600))
        .await
        .expect("closed at the first exp");
    assert_eq!(frame.code.0, 4005);
    assert!(
        start.elapsed() <= Duration::from_secs(61),
        "{:?}",
        start.elapsed()
    );
    server.stop().await;
}

async fn refresh_in_dev_mode_is_a_no_op() {
    let server = TestServer::start(config()).await;
    let mut c = server.named("dev").await;
    assert_eq!(
        c.ok("refresh", json!({"token": "anything"})).await,
        json!({})
    );
    drop(c);
    server.stop().await;
}

#[test]
fn token_settings_from_toml_and_environment() {
    let c = ServerConfig::from_toml(
        r#"
        token_algorithm = "ES256"
        token_public_key = "/etc/herald/es256.pem"
        token_leeway = 5
        "#,
    )
    .unwrap();
    assert_eq!(c.token_algorithm, TokenAlgorithm::ES256);
    assert_eq!(c.token_public_key, Some("/etc/herald/es256.pem".into()));
    assert_eq!(c.token_leeway, Duration::from_secs(5));
    let e = ServerConfig::from_toml(r#"token_algorithm = "none""#).unwrap_err();
    assert!(e.contains("none"), "{e}");

    let defaults = ServerConfig::default();
    assert_eq!(
        (defaults.token_algorithm, defaults.token_leeway),
        (TokenAlgorithm::HS256, Duration::from_secs(30))
    );
    let mut c = ServerConfig::default();
    let var = |k: &str, v: &str| (k.to_string(), v.to_string());
    c.apply_env([
        var("HERALD_TOKEN_ALGORITHM", "RS256"),
        var("HERALD_TOKEN_PUBLIC_KEY", "/k.pem"),
        var("HERALD_TOKEN_LEEWAY", "10"),
    ])
    .unwrap();
    assert_eq!(c.token_algorithm, TokenAlgorithm::RS256);
    assert_eq!(c.token_public_key, Some("/k.pem".into()));
    assert_eq!(c.token_leeway, Duration::from_secs(10));
    let e = c
        .apply_env([var("HERALD_TOKEN_ALGORITHM", "none")])
        .unwrap_err();
    assert!(
        e.contains("HERALD_TOKEN_ALGORITHM"),
        "names the variable: {e}"
    );
    assert!(c.apply_env([var("HERALD_TOKEN_LEEWAY", "soon")]).is_err());
}

crate::on_1_and_2_threads!(
    each_failed_check_is_named_in_the_close_reason,
    the_configured_algorithm_wins_over_the_tokens,
    rs256_and_es256_tokens_are_verified_with_the_pem_public_key,
    refresh_in_dev_mode_is_a_no_op,
);
