//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 section 9.1).
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-token = registered-token
//! registered-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! This module knows nothing about any particular extension: it turns a
//! header value into a list of [`Extension`]s and back. What a parameter
//! means is up to the extension (see [`crate::deflate`]).
//!
//! ```
//! use herald_proto::extension::{self, Extension};
//!
//! let offers = extension::parse(b"permessage-deflate; client_max_window_bits, foo")?;
//! assert_eq!(offers[0].name, "permessage-deflate");
//! assert_eq!(offers[0].param("client_max_window_bits"), Some(None));
//! assert_eq!(offers[1], Extension::new("foo"));
//! assert_eq!(
//!     extension::format(&offers),
//!     "permessage-deflate; client_max_window_bits, foo",
//! );
//! # Ok::<(), extension::ParseError>(())
//! ```

use std::fmt;

/// One element of an extension list: a name and its parameters, in the
/// order they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// `(name, value)` pairs; the value is `None` for a bare parameter.
    /// A quoted value is stored unescaped.
    pub params: Vec<(String, Option<String>)>,
}

impl Extension {
    /// An extension with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Appends a parameter, builder style.
    pub fn with_param(mut self, name: impl Into<String>, value: Option<String>) -> Self {
        self.params.push((name.into(), value));
        self
    }

    /// The first parameter called `name` (ASCII case-insensitive):
    /// `None` if absent, `Some(None)` if present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for Extension {
    /// Writes `name; param; param=value`. A value that is not a token is
    /// written as a quoted-string so the header stays well formed, although
    /// RFC 6455 9.1 only allows values that are tokens after unescaping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            match value {
                None => {}
                Some(v) if is_token(v.as_bytes()) => write!(f, "={v}")?,
                Some(v) => {
                    f.write_str("=\"")?;
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

/// Why a header value does not follow the RFC 6455 9.1 grammar. Offsets are
/// byte positions in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// No extension at all: the grammar is `1#extension`.
    Empty,
    /// A token (extension name, parameter name or bare value) was expected.
    ExpectedToken {
        /// Where the token should have started.
        offset: usize,
    },
    /// A byte that is none of `;`, `,`, `=` or the end where one was expected.
    UnexpectedByte {
        /// Position of the byte.
        offset: usize,
    },
    /// A quoted-string with no closing `"`, or holding a control byte.
    BadQuotedString {
        /// Where the quoted-string started.
        offset: usize,
    },
    /// A quoted value that is not a token once unescaped.
    QuotedValueNotToken {
        /// Where the quoted-string started.
        offset: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty extension list"),
            Self::ExpectedToken { offset } => write!(f, "expected a token at byte {offset}"),
            Self::UnexpectedByte { offset } => write!(f, "unexpected byte at {offset}"),
            Self::BadQuotedString { offset } => {
                write!(f, "malformed quoted-string at byte {offset}")
            }
            Self::QuotedValueNotToken { offset } => {
                write!(f, "quoted value at byte {offset} is not a token")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one `Sec-WebSocket-Extensions` header value.
///
/// Whitespace (SP, HTAB) is allowed around `,`, `;` and `=`. Empty list
/// elements (`a, , b`) are skipped, as RFC 7230 section 7 asks of a
/// recipient, but a value with no extension at all is an error.
pub fn parse(value: &[u8]) -> Result<Vec<Extension>, ParseError> {
    let mut p = Parser { s: value, i: 0 };
    let mut list = Vec::new();
    loop {
        p.skip_ows();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.i += 1;
                continue;
            }
            Some(_) => {}
        }
        list.push(p.extension()?);
        p.skip_ows();
        match p.peek() {
            None => break,
            Some(b',') => p.i += 1,
            Some(_) => return Err(ParseError::UnexpectedByte { offset: p.i }),
        }
    }
    if list.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(list)
}

/// Parses every value of a repeated header, in order, as one list (RFC
/// 6455 11.3.2: the header "MAY appear multiple times in an HTTP request",
/// which is the same as one header holding all the values).
pub fn parse_all<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Extension>, ParseError> {
    let mut list = Vec::new();
    for value in values {
        list.extend(parse(value)?);
    }
    Ok(list)
}

/// Formats a list as one header value: elements joined by `", "`.
pub fn format(list: &[Extension]) -> String {
    let mut out = String::new();
    for (i, ext) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&ext.to_string());
    }
    out
}

/// RFC 7230 3.2.6: `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 7230 3.2.6: `token = 1*tchar`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if start == self.i {
            return Err(ParseError::ExpectedToken { offset: start });
        }
        // tchar is ASCII, so this is valid UTF-8.
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn extension(&mut self) -> Result<Extension, ParseError> {
        let mut ext = Extension::new(self.token()?);
        loop {
            self.skip_ows();
            if self.peek() != Some(b';') {
                return Ok(ext);
            }
            self.i += 1;
            self.skip_ows();
            let name = self.token()?;
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                self.skip_ows();
                Some(if self.peek() == Some(b'"') {
                    self.quoted_value()?
                } else {
                    self.token()?
                })
            } else {
                None
            };
            ext.params.push((name, value));
        }
    }

    /// RFC 7230 3.2.6 quoted-string, then RFC 6455 9.1: "When using the
    /// quoted-string syntax variant, the value after quoted-string
    /// unescaping MUST conform to the 'token' ABNF."
    fn quoted_value(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        let bad = ParseError::BadQuotedString { offset: start };
        self.i += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(bad),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    match self.s.get(self.i + 1) {
                        Some(&c) if c == b'\t' || (c >= b' ' && c != 0x7f) => value.push(c),
                        _ => return Err(bad),
                    }
                    self.i += 2;
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(c) if c == b'\t' || (c >= b' ' && c != 0x7f) => {
                    value.push(c);
                    self.i += 1;
                }
                Some(_) => return Err(bad),
            }
        }
        if !is_token(&value) {
            return Err(ParseError::QuotedValueNotToken { offset: start });
        }
        Ok(String::from_utf8_lossy(&value).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn single_bare_extension() {
        assert_eq!(
            parse(b"permessage-deflate").unwrap(),
            [ext("permessage-deflate", &[])]
        );
    }

    #[test]
    fn params_with_and_without_values() {
        assert_eq!(
            parse(b"permessage-deflate; client_max_window_bits; server_max_window_bits=10")
                .unwrap(),
            [ext(
                "permessage-deflate",
                &[
                    ("client_max_window_bits", None),
                    ("server_max_window_bits", Some("10"))
                ]
            )]
        );
    }

    #[test]
    fn whitespace_around_separators() {
        let want = [
            ext("a", &[("x", Some("1")), ("y", None)]),
            ext("b", &[("z", Some("2"))]),
        ];
        for v in [
            &b"a;x=1;y,b;z=2"[..],
            b"  a \t; x = 1 ;y ,\tb;z= \"2\"  ",
            b"a; x=\"1\"; y, b; z=2",
        ] {
            assert_eq!(parse(v).unwrap(), want, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        assert_eq!(
            parse(b", a, , b ,").unwrap(),
            [ext("a", &[]), ext("b", &[])]
        );
    }

    #[test]
    fn quoted_values_are_unescaped() {
        assert_eq!(
            parse(br#"x; p="a\bc""#).unwrap(),
            [ext("x", &[("p", Some("abc"))])]
        );
    }

    #[test]
    fn quoted_value_must_be_a_token_after_unescaping() {
        assert_eq!(
            parse(br#"x; p="a b""#),
            Err(ParseError::QuotedValueNotToken { offset: 5 })
        );
        assert_eq!(
            parse(br#"x; p="""#),
            Err(ParseError::QuotedValueNotToken { offset: 5 })
        );
        assert_eq!(
            parse(br#"x; p="a,b""#),
            Err(ParseError::QuotedValueNotToken { offset: 5 })
        );
    }

    #[test]
    fn bad_syntax() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b" , ,", ParseError::Empty),
            (b";", ParseError::ExpectedToken { offset: 0 }),
            (b"a;", ParseError::ExpectedToken { offset: 2 }),
            (b"a; =1", ParseError::ExpectedToken { offset: 3 }),
            (b"a; p=", ParseError::ExpectedToken { offset: 5 }),
            (b"a; p=,", ParseError::ExpectedToken { offset: 5 }),
            (b"a b", ParseError::UnexpectedByte { offset: 2 }),
            (b"a; p=1 2", ParseError::UnexpectedByte { offset: 7 }),
            (b"a; p=1=2", ParseError::UnexpectedByte { offset: 6 }),
            (b"a@b", ParseError::UnexpectedByte { offset: 1 }),
            (b"a; p=\"1", ParseError::BadQuotedString { offset: 5 }),
            (b"a; p=\"1\\", ParseError::BadQuotedString { offset: 5 }),
            (b"a; p=\"1\x01\"", ParseError::BadQuotedString { offset: 5 }),
            (b"\xff", ParseError::ExpectedToken { offset: 0 }),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn parse_all_concatenates_header_lines() {
        let got = parse_all([&b"a"[..], b"b; x, c"]).unwrap();
        assert_eq!(
            got,
            [ext("a", &[]), ext("b", &[("x", None)]), ext("c", &[])]
        );
        assert_eq!(parse_all([&b"a"[..], b""]), Err(ParseError::Empty));
    }

    #[test]
    fn param_lookup_is_case_insensitive_and_first_wins() {
        let e = ext("x", &[("P", Some("1")), ("p", Some("2")), ("q", None)]);
        assert_eq!(e.param("p"), Some(Some("1")));
        assert_eq!(e.param("q"), Some(None));
        assert_eq!(e.param("r"), None);
    }

    #[test]
    fn format_round_trips() {
        let list = vec![
            Extension::new("permessage-deflate")
                .with_param("server_no_context_takeover", None)
                .with_param("client_max_window_bits", Some("10".into())),
            Extension::new("x-other"),
        ];
        let s = format(&list);
        assert_eq!(
            s,
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10, x-other"
        );
        assert_eq!(parse(s.as_bytes()).unwrap(), list);
    }

    #[test]
    fn format_quotes_values_that_are_not_tokens() {
        let e = Extension::new("x").with_param("p", Some("a \"b\"".into()));
        assert_eq!(e.to_string(), r#"x; p="a \"b\"""#);
    }
}
