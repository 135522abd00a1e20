//! Header fields as received, and the list rules the handshake relies on.
//!
//! RFC 7230 3.2.2 lets a field whose value is a comma-separated list appear
//! several times; the recipient must treat the occurrences as one list. So
//! `Connection: keep-alive` + `Connection: Upgrade` is the same as
//! `Connection: keep-alive, Upgrade`, and every lookup here walks all of them.

/// The header fields of one message, in order, names as the peer spelled them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderList {
    fields: Vec<(String, Vec<u8>)>,
}

impl HeaderList {
    /// Copies the fields httparse found. httparse has already checked that
    /// names are tokens and values hold no CR, LF or NUL.
    pub(crate) fn from_httparse(headers: &[httparse::Header<'_>]) -> Self {
        Self {
            fields: headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.trim_ascii().to_vec()))
                .collect(),
        }
    }

    /// Builds the list from parts another HTTP stack parsed. It checks what
    /// httparse would have checked, because values chosen from this list
    /// (a subprotocol) are echoed into our response.
    pub(crate) fn from_parts<N, V>(
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, InvalidField>
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut fields = Vec::new();
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !is_token(name) || !is_field_value(value) {
                return Err(InvalidField);
            }
            // A token is ASCII, so this cannot fail.
            let name = std::str::from_utf8(name).map_err(|_| InvalidField)?;
            fields.push((name.to_owned(), value.trim_ascii().to_vec()));
        }
        Ok(Self { fields })
    }

    /// Every field, in the order received.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Values of every field named `name` (ASCII case-insensitive).
    pub(crate) fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// The value of a field that may appear at most once.
    pub(crate) fn get_single(&self, name: &str) -> Result<Option<&[u8]>, Duplicate> {
        let mut values = self.get_all(name);
        let first = values.next();
        match values.next() {
            Some(_) => Err(Duplicate),
            None => Ok(first),
        }
    }

    /// The elements of the comma-separated list `name`, across all its
    /// occurrences, trimmed, empty elements dropped (RFC 7230 7: "a recipient
    /// MUST parse and ignore a reasonable number of empty list elements").
    pub(crate) fn list<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).flat_map(split_list)
    }

    /// Whether the list `name` holds `token`, compared ASCII case-insensitively
    /// (RFC 6455 4.2.1 and 4.1 compare both `Upgrade` and `Connection` so).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Two occurrences of a field that may appear once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate;

/// A header name that is not a token or a value with a control character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidField;

/// Splits one list value on commas, trimming each element. The lists read
/// here (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`) hold only tokens,
/// so no quoted string can hide a comma.
pub(crate) fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// RFC 7230 3.2.6: `token = 1*tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` may be written after `Name: ` without ending the line or
/// smuggling in another field: visible bytes, spaces and tabs only
/// (RFC 7230 3.2: `field-content`, obs-text allowed, no CTL but HTAB).
pub(crate) fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Appends `Name: value\r\n`.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[(&str, &str)]) -> HeaderList {
        HeaderList::from_parts(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))).unwrap()
    }

    #[test]
    fn tokens_are_found_across_repeated_fields_in_any_case() {
        let h = list(&[("connection", "keep-alive"), ("CONNECTION", " upgrade ,")]);
        assert!(h.has_token("Connection", "Upgrade"));
        assert!(!h.has_token("Connection", "close"));
        assert_eq!(h.list("connection").count(), 2);
    }

    #[test]
    fn a_token_must_match_whole() {
        let h = list(&[("Upgrade", "websocketx, xwebsocket")]);
        assert!(!h.has_token("Upgrade", "websocket"));
    }

    #[test]
    fn single_fields_reject_repeats() {
        let h = list(&[("Host", "a"), ("host", "b")]);
        assert_eq!(h.get_single("Host"), Err(Duplicate));
        assert_eq!(h.get("HOST"), Some(&b"a"[..]));
        assert_eq!(h.get_single("Origin"), Ok(None));
    }

    #[test]
    fn parts_with_line_breaks_or_bad_names_are_refused() {
        for (n, v) in [
            ("X", "a\r\nY: b"),
            ("X", "a\nb"),
            ("X", "a\0"),
            ("X Y", "a"),
            ("", "a"),
        ] {
            let r = HeaderList::from_parts([(n.as_bytes(), v.as_bytes())]);
            assert_eq!(r, Err(InvalidField), "{n:?}: {v:?}");
        }
        assert!(HeaderList::from_parts([(b"X", b"a\tb \xff")]).is_ok());
    }
}
