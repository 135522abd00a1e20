//! Offer, acceptance and response validation (RFC 7692 sections 5 and 7.1).

use super::{DeflateConfig, DeflateParams, ExtensionError, clamp_window_bits};
use crate::extension::{self, Extension};

/// The registered extension token (RFC 7692 7).
const NAME: &str = "permessage-deflate";
const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The parameters of one permessage-deflate element, already checked
/// against the rules offers and responses share: every name known, none
/// repeated, every value well formed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value, allowed in an offer only.
    client_max_window_bits: Option<Option<u8>>,
}

impl Params {
    fn parse(ext: &Extension) -> Result<Self, ExtensionError> {
        let mut p = Self::default();
        let mut seen = [false; 4];
        for (name, value) in &ext.params {
            let (i, canonical) = match name.to_ascii_lowercase().as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
                CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
                SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
                CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
                _ => return Err(ExtensionError::UnknownParameter { name: name.clone() }),
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(ExtensionError::DuplicateParameter(canonical));
            }
            let invalid = ExtensionError::InvalidParameterValue(canonical);
            match (i, value.as_deref()) {
                // 7.1.1.1 / 7.1.1.2: these two have no value.
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (0 | 1, Some(_)) => return Err(invalid),
                // 7.1.2.1: server_max_window_bits always has a value.
                (2, v) => p.server_max_window_bits = Some(v.and_then(window_bits).ok_or(invalid)?),
                (_, None) => p.client_max_window_bits = Some(None),
                (_, Some(v)) => {
                    p.client_max_window_bits = Some(Some(window_bits(v).ok_or(invalid)?))
                }
            }
        }
        Ok(p)
    }

    fn to_extension(self) -> Extension {
        let mut ext = Extension::new(NAME);
        if self.server_no_context_takeover {
            ext = ext.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            ext = ext.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if let Some(bits) = self.server_max_window_bits {
            ext = ext.with_param(SERVER_MAX_WINDOW_BITS, Some(bits.to_string()));
        }
        if let Some(bits) = self.client_max_window_bits {
            ext = ext.with_param(CLIENT_MAX_WINDOW_BITS, bits.map(|b| b.to_string()));
        }
        ext
    }
}

/// RFC 7692 7.1.2.1: "a decimal integer value without leading zeroes
/// between 8 to 15, inclusive".
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

impl DeflateConfig {
    /// Client: the `Sec-WebSocket-Extensions` value to offer, e.g.
    /// `permessage-deflate; client_max_window_bits`.
    ///
    /// `client_max_window_bits` is always present: without a value when
    /// [`DeflateConfig::client_max_window_bits`] is `None`, which tells the
    /// server we can compress with a smaller window if it asks (as browsers
    /// do); with the value otherwise, which promises we will.
    pub fn offer(&self) -> String {
        self.offered().to_extension().to_string()
    }

    /// What [`DeflateConfig::offer`] sends, as parameters.
    fn offered(&self) -> Params {
        Params {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits.map(clamp_window_bits),
            client_max_window_bits: Some(self.client_max_window_bits.map(clamp_window_bits)),
        }
    }

    /// Server: chooses the first acceptable permessage-deflate offer among
    /// every `Sec-WebSocket-Extensions` value of the request, in order.
    ///
    /// Returns the agreement and the value of the response header, or
    /// `Ok(None)` when nothing was offered or every offer was declined:
    /// answer then without the header. Offers of other extensions are
    /// ignored. A value that does not parse as the RFC 6455 9.1 grammar is
    /// an error: the handshake should be refused with 400.
    ///
    /// This config's fields are imposed: `*_no_context_takeover` is answered
    /// even if not asked, window sizes are lowered to the configured ones.
    /// `client_max_window_bits` can only be imposed on a client that offered
    /// the parameter (RFC 7692 7.1.2.2); a client that did not is accepted
    /// with a 15-bit window.
    pub fn accept<'a>(
        &self,
        offers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<(DeflateParams, String)>, ExtensionError> {
        let list = extension::parse_all(offers)?;
        Ok(list
            .iter()
            .filter(|ext| ext.name.eq_ignore_ascii_case(NAME))
            .find_map(|ext| self.accept_one(ext)))
    }

    fn accept_one(&self, ext: &Extension) -> Option<(DeflateParams, String)> {
        // RFC 7692 7: "A server MUST decline an extension negotiation offer
        // for this extension if any of the following conditions are met: The
        // negotiation offer contains an extension parameter not defined for
        // use in an offer. [..] with an invalid value. [..] multiple
        // extension parameters with the same name."
        let offer = Params::parse(ext).ok()?;
        let server_cap = self.server_max_window_bits.map(clamp_window_bits);
        let client_cap = self.client_max_window_bits.map(clamp_window_bits);
        let response = Params {
            // 7.1.1.1: a server accepting an offer with
            // server_no_context_takeover "MUST include" it in the response.
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            // 7.1.1.2: optional; echoing the client's hint lets us drop our
            // inflate state between messages.
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            // 7.1.2.1: "the same or smaller value as the offer"; we may also
            // announce our limit unasked.
            server_max_window_bits: match offer.server_max_window_bits {
                Some(asked) => Some(asked.min(server_cap.unwrap_or(15))),
                None => server_cap,
            },
            client_max_window_bits: match offer.client_max_window_bits {
                // 7.1.2.2: "If a received extension negotiation offer doesn't
                // have the client_max_window_bits extension parameter, the
                // corresponding extension negotiation response to the offer
                // MUST NOT include the client_max_window_bits extension
                // parameter."
                None => None,
                Some(None) => client_cap.map(Some),
                Some(Some(promised)) => Some(Some(promised.min(client_cap.unwrap_or(15)))),
            },
        };
        let params = DeflateParams {
            server_no_context_takeover: response.server_no_context_takeover,
            client_no_context_takeover: response.client_no_context_takeover,
            server_max_window_bits: response.server_max_window_bits.unwrap_or(15),
            client_max_window_bits: response.client_max_window_bits.flatten().unwrap_or(15),
        };
        Some((params, response.to_extension().to_string()))
    }

    /// Client: checks the server's `Sec-WebSocket-Extensions` values against
    /// what [`DeflateConfig::offer`] sent, and returns the agreement, or
    /// `Ok(None)` if the server did not accept (no header).
    ///
    /// Any error means the client MUST fail the connection (RFC 6455 4.1 for
    /// an extension that was not offered, RFC 7692 7 for the rest).
    pub fn validate_response<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<DeflateParams>, ExtensionError> {
        validate_response(self.offered(), values)
    }
}

fn validate_response<'a>(
    offered: Params,
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<DeflateParams>, ExtensionError> {
    let list = extension::parse_all(values)?;
    let mut accepted = None;
    for ext in &list {
        // RFC 6455 4.1: if the response "indicates the use of an extension
        // that was not present in the client's handshake [..] the client
        // MUST _Fail the WebSocket Connection_".
        if !ext.name.eq_ignore_ascii_case(NAME) {
            return Err(ExtensionError::UnexpectedExtension {
                name: ext.name.clone(),
            });
        }
        // We made one offer, so it can be accepted once; a second element
        // would claim RSV1 for a second extension.
        if accepted.replace(ext).is_some() {
            return Err(ExtensionError::DuplicateExtension);
        }
    }
    let Some(ext) = accepted else {
        return Ok(None);
    };
    let got = Params::parse(ext)?;

    // 7.1.1.1: the server "MUST include" server_no_context_takeover when
    // asked; it may add it unasked.
    if offered.server_no_context_takeover && !got.server_no_context_takeover {
        return Err(ExtensionError::MissingServerNoContextTakeover);
    }
    // 7.1.2.1: "the same or smaller value as the offer". An absent
    // parameter means 15, which is fine only if we asked for 15.
    let server_bits = got.server_max_window_bits.unwrap_or(15);
    if server_bits > offered.server_max_window_bits.unwrap_or(15) {
        return Err(ExtensionError::ServerWindowTooLarge);
    }
    let client_bits = match (offered.client_max_window_bits, got.client_max_window_bits) {
        (_, Some(None)) => {
            // 7.1.2.2: in a response the parameter carries the value the
            // client must use; a bare one is meaningless.
            return Err(ExtensionError::InvalidParameterValue(
                CLIENT_MAX_WINDOW_BITS,
            ));
        }
        (None, Some(Some(_))) => return Err(ExtensionError::UnexpectedClientMaxWindowBits),
        (Some(Some(promised)), Some(Some(asked))) if asked > promised => {
            return Err(ExtensionError::ClientWindowTooLarge);
        }
        (_, Some(Some(asked))) => asked,
        // We keep the promise made in the offer even if not echoed.
        (offered, None) => offered.flatten().unwrap_or(15),
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: got.server_no_context_takeover,
        // Our own offer of client_no_context_takeover binds us even if the
        // server did not echo it.
        client_no_context_takeover: got.client_no_context_takeover
            || offered.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::ParseError;

    fn accept(config: &DeflateConfig, offers: &[&str]) -> Option<(DeflateParams, String)> {
        config
            .accept(offers.iter().map(|s| s.as_bytes()))
            .expect("offers parse")
    }

    fn response(config: &DeflateConfig, offer: &str) -> Option<String> {
        accept(config, &[offer]).map(|(_, r)| r)
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }

    fn validate(
        config: &DeflateConfig,
        values: &[&str],
    ) -> Result<Option<DeflateParams>, ExtensionError> {
        config.validate_response(values.iter().map(|s| s.as_bytes()))
    }

    // ---- offer -------------------------------------------------------------

    #[test]
    fn default_offer_is_what_browsers_send() {
        assert_eq!(
            DeflateConfig::default().offer(),
            "permessage-deflate; client_max_window_bits"
        );
    }

    #[test]
    fn offer_with_every_parameter() {
        let config = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(9));
        assert_eq!(
            config.offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
    }

    #[test]
    #[should_panic(expected = "8..=15")]
    fn builder_refuses_bad_window_bits() {
        let _ = DeflateConfig::default().server_max_window_bits(Some(16));
    }

    // ---- RFC 7692 7.1.3 examples -------------------------------------------

    #[test]
    fn rfc_simplest_offer_and_answer() {
        // "The simplest "Sec-WebSocket-Extensions" header in a server's
        // opening handshake to accept use of the "permessage-deflate"
        // extension is the same"
        let (agreed, resp) = accept(&DeflateConfig::default(), &["permessage-deflate"]).unwrap();
        assert_eq!(resp, "permessage-deflate");
        assert_eq!(agreed, DeflateParams::default());
    }

    #[test]
    fn rfc_offer_asking_for_a_small_server_window() {
        let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=10";
        let (agreed, resp) = accept(&DeflateConfig::default(), &[offer]).unwrap();
        assert_eq!(resp, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(agreed, params(false, false, 10, 15));
    }

    #[test]
    fn rfc_offer_with_fallback_first_declined() {
        // The first offer is declined (here: an unknown parameter makes it
        // unacceptable), the fallback is taken.
        let offers = "permessage-deflate; client_max_window_bits; server_max_window_bits=10; x=1, \
                      permessage-deflate; client_max_window_bits";
        let (agreed, resp) = accept(&DeflateConfig::default(), &[offers]).unwrap();
        assert_eq!(resp, "permessage-deflate");
        assert_eq!(agreed, DeflateParams::default());
    }

    #[test]
    fn rfc_offer_with_fallback_first_accepted() {
        let offers = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                      permessage-deflate; client_max_window_bits";
        assert_eq!(
            response(&DeflateConfig::default(), offers).unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
    }

    #[test]
    fn rfc_client_validates_both_example_answers() {
        let client = DeflateConfig::default().server_max_window_bits(Some(10));
        assert_eq!(
            validate(&client, &["permessage-deflate; server_max_window_bits=10"]),
            Ok(Some(params(false, false, 10, 15)))
        );
        let client = DeflateConfig::default();
        assert_eq!(
            validate(&client, &["permessage-deflate"]),
            Ok(Some(DeflateParams::default()))
        );
    }

    // ---- server acceptance -------------------------------------------------

    #[test]
    fn offers_spread_over_several_header_lines() {
        let (_, resp) = accept(
            &DeflateConfig::default(),
            &[
                "x-unknown-ext",
                "permessage-deflate; bogus",
                "permessage-deflate; server_no_context_takeover",
            ],
        )
        .unwrap();
        assert_eq!(resp, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn no_offer_no_answer() {
        assert_eq!(accept(&DeflateConfig::default(), &[]), None);
        assert_eq!(
            accept(&DeflateConfig::default(), &["x-webkit-deflate-frame"]),
            None
        );
    }

    #[test]
    fn every_offer_declined() {
        assert_eq!(
            accept(
                &DeflateConfig::default(),
                &["permessage-deflate; server_max_window_bits=7, permessage-deflate; a"]
            ),
            None
        );
    }

    #[test]
    fn names_are_case_insensitive_and_answered_canonically() {
        assert_eq!(
            response(
                &DeflateConfig::default(),
                "PerMessage-Deflate; Server_No_Context_Takeover"
            )
            .unwrap(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn server_no_context_takeover_asked_or_imposed() {
        let (agreed, resp) = accept(
            &DeflateConfig::default(),
            &["permessage-deflate; server_no_context_takeover"],
        )
        .unwrap();
        assert_eq!(resp, "permessage-deflate; server_no_context_takeover");
        assert!(agreed.server_no_context_takeover);

        let config = DeflateConfig::default().server_no_context_takeover(true);
        let (agreed, resp) = accept(&config, &["permessage-deflate"]).unwrap();
        assert_eq!(resp, "permessage-deflate; server_no_context_takeover");
        assert!(agreed.server_no_context_takeover);
    }

    #[test]
    fn client_no_context_takeover_hint_is_echoed_or_imposed() {
        let (agreed, resp) = accept(
            &DeflateConfig::default(),
            &["permessage-deflate; client_no_context_takeover"],
        )
        .unwrap();
        assert_eq!(resp, "permessage-deflate; client_no_context_takeover");
        assert!(agreed.client_no_context_takeover);

        let config = DeflateConfig::default().client_no_context_takeover(true);
        let (agreed, resp) = accept(&config, &["permessage-deflate"]).unwrap();
        assert_eq!(resp, "permessage-deflate; client_no_context_takeover");
        assert!(agreed.client_no_context_takeover);
    }

    #[test]
    fn server_max_window_bits_is_the_smaller_of_asked_and_configured() {
        let config = DeflateConfig::default().server_max_window_bits(Some(12));
        for (offer, want) in [
            ("permessage-deflate; server_max_window_bits=10", 10),
            ("permessage-deflate; server_max_window_bits=14", 12),
            // Announced unasked (7.1.2.1 "MAY include").
            ("permessage-deflate", 12),
        ] {
            let (agreed, resp) = accept(&config, &[offer]).unwrap();
            assert_eq!(agreed.server_max_window_bits, want, "{offer}");
            assert_eq!(
                resp,
                format!("permessage-deflate; server_max_window_bits={want}")
            );
        }
    }

    #[test]
    fn client_max_window_bits_offered_with_a_value_is_honored() {
        let (agreed, resp) = accept(
            &DeflateConfig::default(),
            &["permessage-deflate; client_max_window_bits=9"],
        )
        .unwrap();
        assert_eq!(resp, "permessage-deflate; client_max_window_bits=9");
        assert_eq!(agreed.client_max_window_bits, 9);

        let config = DeflateConfig::default().client_max_window_bits(Some(8));
        let (agreed, resp) =
            accept(&config, &["permessage-deflate; client_max_window_bits=9"]).unwrap();
        assert_eq!(resp, "permessage-deflate; client_max_window_bits=8");
        assert_eq!(agreed.client_max_window_bits, 8);
    }

    #[test]
    fn client_max_window_bits_without_value() {
        // Supported but not configured: nothing to say.
        let (agreed, resp) = accept(
            &DeflateConfig::default(),
            &["permessage-deflate; client_max_window_bits"],
        )
        .unwrap();
        assert_eq!(resp, "permessage-deflate");
        assert_eq!(agreed.client_max_window_bits, 15);

        let config = DeflateConfig::default().client_max_window_bits(Some(10));
        let (agreed, resp) =
            accept(&config, &["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(resp, "permessage-deflate; client_max_window_bits=10");
        assert_eq!(agreed.client_max_window_bits, 10);
    }

    #[test]
    fn client_max_window_bits_cannot_be_imposed_unoffered() {
        let config = DeflateConfig::default().client_max_window_bits(Some(10));
        let (agreed, resp) = accept(&config, &["permessage-deflate"]).unwrap();
        assert_eq!(resp, "permessage-deflate");
        assert_eq!(agreed.client_max_window_bits, 15);
    }

    #[test]
    fn every_parameter_at_once() {
        let offer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=9; client_max_window_bits=11";
        let (agreed, resp) = accept(&DeflateConfig::default(), &[offer]).unwrap();
        assert_eq!(resp, offer);
        assert_eq!(agreed, params(true, true, 9, 11));
    }

    #[test]
    fn quoted_values_are_accepted() {
        let (agreed, resp) = accept(
            &DeflateConfig::default(),
            &[r#"permessage-deflate; server_max_window_bits="10"; client_max_window_bits="8""#],
        )
        .unwrap();
        assert_eq!(
            resp,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=8"
        );
        assert_eq!(agreed, params(false, false, 10, 8));
    }

    #[test]
    fn every_window_size_is_accepted() {
        for bits in 8..=15u8 {
            let offer = format!(
                "permessage-deflate; server_max_window_bits={bits}; client_max_window_bits={bits}"
            );
            let (agreed, resp) = accept(&DeflateConfig::default(), &[&offer]).unwrap();
            assert_eq!(resp, offer);
            assert_eq!(agreed, params(false, false, bits, bits));
        }
    }

    #[test]
    fn offers_with_bad_parameters_are_declined() {
        for bad in [
            // duplicates
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            // values where none is allowed
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            // server_max_window_bits needs a value
            "permessage-deflate; server_max_window_bits",
            // out of range or malformed
            "permessage-deflate; server_max_window_bits=0",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=abc",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=256",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=abc",
            r#"permessage-deflate; client_max_window_bits="08""#,
            // unknown
            "permessage-deflate; max_window_bits=10",
        ] {
            assert_eq!(accept(&DeflateConfig::default(), &[bad]), None, "{bad}");
            // ...and the next offer is still considered.
            let two = [bad, "permessage-deflate"];
            assert_eq!(
                response(&DeflateConfig::default(), &two.join(", ")).as_deref(),
                Some("permessage-deflate"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unparsable_header_is_an_error() {
        for (bad, want) in [
            (
                "permessage-deflate; server_max_window_bits=",
                ParseError::ExpectedToken { offset: 43 },
            ),
            (
                r#"permessage-deflate; server_max_window_bits="""#,
                ParseError::QuotedValueNotToken { offset: 43 },
            ),
            (
                "permessage-deflate;; x",
                ParseError::ExpectedToken { offset: 19 },
            ),
            ("", ParseError::Empty),
        ] {
            assert_eq!(
                DeflateConfig::default().accept([bad.as_bytes()]),
                Err(ExtensionError::Syntax(want)),
                "{bad}"
            );
        }
        // A malformed later line spoils the whole request, even after an
        // acceptable offer.
        assert!(
            DeflateConfig::default()
                .accept([&b"permessage-deflate"[..], b"a b"])
                .is_err()
        );
    }

    // ---- client validation -------------------------------------------------

    #[test]
    fn no_response_header_means_not_accepted() {
        assert_eq!(validate(&DeflateConfig::default(), &[]), Ok(None));
    }

    #[test]
    fn response_is_checked_against_the_offer() {
        let client = DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(12));
        assert_eq!(
            validate(
                &client,
                &[
                    "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11"
                ]
            ),
            Ok(Some(params(true, false, 9, 11)))
        );
        // The promise made in the offer stands when not echoed.
        assert_eq!(
            validate(
                &client,
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"]
            ),
            Ok(Some(params(true, false, 10, 12)))
        );
    }

    #[test]
    fn server_may_add_parameters_we_did_not_ask_for() {
        assert_eq!(
            validate(
                &DeflateConfig::default(),
                &[
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8"
                ]
            ),
            Ok(Some(params(true, true, 8, 8)))
        );
    }

    #[test]
    fn our_client_no_context_takeover_binds_us_even_unechoed() {
        let client = DeflateConfig::default().client_no_context_takeover(true);
        assert_eq!(
            validate(&client, &["permessage-deflate"]),
            Ok(Some(params(false, true, 15, 15)))
        );
    }

    #[test]
    fn response_validation_errors() {
        let asked = DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(10));
        let cases: &[(&DeflateConfig, &[&str], ExtensionError)] = &[
            (
                &asked,
                &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
                ExtensionError::ServerWindowTooLarge,
            ),
            (
                &asked,
                &["permessage-deflate; server_no_context_takeover"],
                ExtensionError::ServerWindowTooLarge,
            ),
            (
                &asked,
                &["permessage-deflate; server_max_window_bits=10"],
                ExtensionError::MissingServerNoContextTakeover,
            ),
            (
                &asked,
                &[
                    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11",
                ],
                ExtensionError::ClientWindowTooLarge,
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; client_max_window_bits"],
                ExtensionError::InvalidParameterValue(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; server_max_window_bits"],
                ExtensionError::InvalidParameterValue(SERVER_MAX_WINDOW_BITS),
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; server_max_window_bits=16"],
                ExtensionError::InvalidParameterValue(SERVER_MAX_WINDOW_BITS),
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; client_no_context_takeover=1"],
                ExtensionError::InvalidParameterValue(CLIENT_NO_CONTEXT_TAKEOVER),
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; mystery"],
                ExtensionError::UnknownParameter {
                    name: "mystery".into(),
                },
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                ExtensionError::DuplicateParameter(SERVER_NO_CONTEXT_TAKEOVER),
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate, permessage-deflate"],
                ExtensionError::DuplicateExtension,
            ),
            (
                &DeflateConfig::default(),
                &[
                    "permessage-deflate",
                    "permessage-deflate; client_max_window_bits=9",
                ],
                ExtensionError::DuplicateExtension,
            ),
            (
                &DeflateConfig::default(),
                &["x-webkit-deflate-frame"],
                ExtensionError::UnexpectedExtension {
                    name: "x-webkit-deflate-frame".into(),
                },
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate, foo"],
                ExtensionError::UnexpectedExtension { name: "foo".into() },
            ),
            (
                &DeflateConfig::default(),
                &["permessage-deflate;"],
                ExtensionError::Syntax(ParseError::ExpectedToken { offset: 19 }),
            ),
        ];
        for (config, values, want) in cases {
            assert_eq!(validate(config, values).as_ref(), Err(want), "{values:?}");
            // Every error has a one-line reason.
            assert!(!want.to_string().contains('\n'));
        }
    }

    #[test]
    fn client_max_window_bits_in_response_when_not_offered() {
        // Our offer() always carries the parameter; this checks the rule for
        // an offer without it (RFC 7692 7.1.2.2 "MUST NOT include").
        let offered = Params {
            client_max_window_bits: None,
            ..Params::default()
        };
        assert_eq!(
            validate_response(
                offered,
                [&b"permessage-deflate; client_max_window_bits=10"[..]]
            ),
            Err(ExtensionError::UnexpectedClientMaxWindowBits)
        );
        assert_eq!(
            validate_response(offered, [&b"permessage-deflate"[..]]),
            Ok(Some(DeflateParams::default()))
        );
    }

    #[test]
    fn server_answer_always_satisfies_our_client() {
        // Whatever the two configs, what accept() answers to offer() passes
        // validate_response() and both sides agree.
        let bits = [None, Some(8), Some(11), Some(15)];
        for snct in [false, true] {
            for cnct in [false, true] {
                for sb in bits {
                    for cb in bits {
                        let client = DeflateConfig::default()
                            .server_no_context_takeover(snct)
                            .client_no_context_takeover(cnct)
                            .server_max_window_bits(sb)
                            .client_max_window_bits(cb);
                        for server in [
                            DeflateConfig::default(),
                            DeflateConfig::default()
                                .server_no_context_takeover(!snct)
                                .client_no_context_takeover(!cnct)
                                .server_max_window_bits(cb)
                                .client_max_window_bits(sb),
                        ] {
                            let offer = client.offer();
                            let (agreed, resp) = accept(&server, &[&offer]).unwrap();
                            assert_eq!(
                                client.validate_response([resp.as_bytes()]),
                                Ok(Some(agreed)),
                                "{offer} -> {resp}"
                            );
                        }
                    }
                }
            }
        }
    }
}
