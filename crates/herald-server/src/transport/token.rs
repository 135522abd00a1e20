//! Session tokens of the HTTP transports: a stream's `session` and a
//! poller's `client`. Each names the node that made it and is signed
//! (HS256) with `transport_secret`, so a node can tell its own tokens,
//! its fleet's (same secret, another node: forwarded to it through the
//! broker) and strangers' (refused) without any shared state.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The node that made it.
    pub(crate) node: String,
    /// The stream or poller, unique on that node.
    pub(crate) sid: u64,
    /// `"stream"` or `"poll"`: a token of one kind is no good for the
    /// other.
    pub(crate) kind: String,
    /// The user it was made for.
    pub(crate) sub: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not signed with this fleet's secret, malformed, or of the other
    /// kind.
    Invalid,
    /// Signed by the fleet, made by another node (what it says).
    ElseWhere(Claims),
}

/// Makes and checks this node's tokens.
pub(crate) struct Tokens {
    node: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens of node `node` signed with `secret`, or with a random
    /// secret of this process when there is none.
    pub(crate) fn new(secret: Option<&str>, node: &str) -> Self {
        let secret: Vec<u8> = match secret {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => rand::random::<[u8; 32]>().to_vec(),
        };
        let node = node.to_owned();
        match (
            EncodingKey::from_secret(&secret),
            DecodingKey::from_secret(&secret),
        ) {
            (Ok(encoding), Ok(decoding)) => Self {
                node,
                encoding,
                decoding,
            },
            // Only an empty secret is refused, and there is none here.
            _ => Self::new(None, &node),
        }
    }

    /// A token for `sid` of `kind`, for `user`.
    pub(crate) fn sign(&self, kind: &str, sid: u64, user: &str) -> String {
        let claims = Claims {
            node: self.node.clone(),
            sid,
            kind: kind.to_owned(),
            sub: user.to_owned(),
        };
        // Encoding a small struct with an HMAC key does not fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The claims of `token` if it is this node's, of `kind`.
    pub(crate) fn verify(&self, token: &str, kind: &str) -> Result<Claims, Refused> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Session tokens live as long as their session; the session's end
        // is what invalidates them.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| Refused::Invalid)?
            .claims;
        if claims.kind != kind {
            return Err(Refused::Invalid);
        }
        if claims.node != self.node {
            return Err(Refused::ElseWhere(claims));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_fleet_and_strangers_are_told_apart() {
        let a = Tokens::new(Some("fleet secret"), "a");
        let b = Tokens::new(Some("fleet secret"), "b");
        let stranger = Tokens::new(None, "a");
        let t = a.sign("stream", 7, "alice");
        assert_eq!(a.verify(&t, "stream").map(|c| c.sid), Ok(7));
        assert_eq!(a.verify(&t, "poll"), Err(Refused::Invalid));
        assert!(matches!(
            b.verify(&t, "stream"),
            Err(Refused::ElseWhere(Claims { node, sid: 7, .. })) if node == "a"
        ));
        assert_eq!(stranger.verify(&t, "stream"), Err(Refused::Invalid));
        let mut forged = t.clone();
        forged.pop();
        assert_eq!(a.verify(&forged, "stream"), Err(Refused::Invalid));
        assert_eq!(a.verify("not a token", "stream"), Err(Refused::Invalid));
    }
}
