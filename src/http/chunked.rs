//! Decoding a chunked request body (RFC 9112 section 7.1), strictly, under
//! the body limits.
//!
//! Every line of the framing is validated here, byte by byte, rather than by
//! `httparse::parse_chunk_size`, which takes any byte after a `;` as part of
//! an extension (a bare LF included) and a line without digits as size 0.
//! Each such leniency is a place where a proxy in front and this server can
//! disagree on where the body ends, which is request smuggling: a proxy that
//! ends `2;\nxx\r\n` at the LF reads a chunk `xx`, and one that reads on to
//! the CRLF does not (the TERM.EXT pair). So:
//!
//! - a chunk-size line is `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS
//!   ( token / quoted-string ) ] ) CRLF`, nothing more, nothing less;
//! - chunk data is followed by CRLF;
//! - a trailer field is `token ":" value CRLF`, its value without control
//!   characters other than HTAB (so no obs-fold and no bare CR), and the
//!   section ends with an empty line;
//! - every line ends with CRLF: a bare LF anywhere in the framing is an
//!   error, never a line end.
//!
//! Any break of these answers 400 and the connection closes (the caller's
//! rule for every reader error). Extensions and trailer fields are checked,
//! then discarded: no handler reads them.
//!
//! Kept apart from the rest of the reader so that it carries its own tests.
//! It knows nothing of sockets: the caller hands it a way to read more.

use super::{MAX_BODY, MAX_HEAD};
use crate::error::ApiError;

/// Longest chunk-size line (size plus extensions) accepted in a chunked body.
pub(super) const MAX_CHUNK_LINE: usize = 1024;
/// Most raw bytes a chunked body may take on the wire: the decoded limit plus
/// generous room for chunk framing, so tiny chunks with long extensions cannot
/// make the server buffer without bound.
pub(super) const MAX_CHUNKED_WIRE: usize = 4 * MAX_BODY;

/// Decodes a chunked body starting at `buf[0]`, discarding extensions and
/// trailers, and removes it from `buf`; bytes after the body stay there.
/// `more` appends at least one byte to `buf`, or fails with the error to
/// answer (a deadline passed, the connection closed).
pub(super) fn decode(
    buf: &mut Vec<u8>,
    mut more: impl FnMut(&mut Vec<u8>) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let end = line_end(buf, pos, MAX_CHUNK_LINE, &mut more)?
            .ok_or_else(|| bad("Chunk size line too long."))?;
        let size = chunk_size(&buf[pos..end]).map_err(bad)?;
        pos = end + 2;
        if size == 0 {
            break;
        }
        if size > (MAX_BODY - body.len()) as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
        let size = size as usize;
        while buf.len() < pos + size + 2 {
            more(buf)?;
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(bad("Chunk data must end with CRLF."));
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
        if pos > MAX_CHUNKED_WIRE {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    // Trailer fields, up to the empty line that ends the message; the whole
    // section is held to the limit of a request head.
    let trailers_start = pos;
    loop {
        let room = (trailers_start + MAX_HEAD).saturating_sub(pos);
        let end = line_end(buf, pos, room, &mut more)?.ok_or(ApiError::HeadersTooLarge)?;
        if end - trailers_start > MAX_HEAD {
            return Err(ApiError::HeadersTooLarge);
        }
        let line = &buf[pos..end];
        pos = end + 2;
        if line.is_empty() {
            break;
        }
        trailer_field(line).map_err(bad)?;
    }
    buf.drain(..pos);
    Ok(body)
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(why.to_string())
}

/// Waits for the line that starts at `buf[start]` to be complete and returns
/// the index of its CR, or `None` if it is longer than `max` bytes (known as
/// soon as that many have arrived without a line end). A LF not preceded by CR is an error, never a line end.
fn line_end(
    buf: &mut Vec<u8>,
    start: usize,
    max: usize,
    more: &mut impl FnMut(&mut Vec<u8>) -> Result<(), ApiError>,
) -> Result<Option<usize>, ApiError> {
    let mut scanned = start;
    loop {
        if let Some(i) = buf[scanned..].iter().position(|b| *b == b'\n') {
            let lf = scanned + i;
            if lf == start || buf[lf - 1] != b'\r' {
                return Err(bad("A line of the chunked framing ends with a bare LF."));
            }
            return Ok((lf - 1 - start <= max).then_some(lf - 1));
        }
        if buf.len() - start > max {
            return Ok(None);
        }
        scanned = buf.len();
        more(buf)?;
    }
}

/// The size on a chunk-size line (without its CRLF), saturating at
/// `u64::MAX` (the caller's limit refuses it anyway), or why the line is
/// not `1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS value ] )`.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("A chunk must start with its size in hexadecimal digits.");
    }
    let size = line[..digits].iter().fold(0u64, |size, digit| {
        // Only hex digits were counted, so to_digit cannot fail.
        let value = char::from(*digit).to_digit(16).unwrap_or(0);
        size.saturating_mul(16).saturating_add(u64::from(value))
    });
    let invalid = "Invalid chunk extension.";
    let mut rest = &line[digits..];
    while !rest.is_empty() {
        let after_semicolon = skip_whitespace(rest).strip_prefix(b";").ok_or(invalid)?;
        let (name, after_name) = split_token(skip_whitespace(after_semicolon));
        if name.is_empty() {
            return Err(invalid);
        }
        rest = after_name;
        if let Some(after_equals) = skip_whitespace(rest).strip_prefix(b"=") {
            let value = skip_whitespace(after_equals);
            rest = if value.first() == Some(&b'"') {
                after_quoted_string(value).ok_or(invalid)?
            } else {
                let (token, after_value) = split_token(value);
                if token.is_empty() {
                    return Err(invalid);
                }
                after_value
            };
        }
    }
    Ok(size)
}

/// Checks a trailer field line (without its CRLF): `token ":" value`, the
/// value made of visible characters, spaces, tabs and obs-text. A line that
/// starts with whitespace (obs-fold) has no token before its colon.
fn trailer_field(line: &[u8]) -> Result<(), &'static str> {
    let (name, rest) = split_token(line);
    let value = rest
        .strip_prefix(b":")
        .filter(|_| !name.is_empty())
        .ok_or("Invalid trailer field.")?;
    if value
        .iter()
        .all(|b| matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff))
    {
        Ok(())
    } else {
        Err("Invalid trailer field value.")
    }
}

/// Skips optional whitespace (BWS/OWS: spaces and tabs).
fn skip_whitespace(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

/// Splits off the longest prefix of token characters (RFC 9110 section
/// 5.6.2), which may be empty.
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| is_tchar(**b)).count();
    s.split_at(n)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What follows the quoted-string (RFC 9110 section 5.6.4) at the start of
/// `s`, which begins with `"`; `None` if it is unterminated or holds a
/// control character other than HTAB.
fn after_quoted_string(s: &[u8]) -> Option<&[u8]> {
    let text = |b: u8| matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff);
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(&s[i + 1..]),
            b'\\' if s.get(i + 1).is_some_and(|b| text(*b)) => i += 2,
            b'\\' => return None,
            b if text(b) => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input`, handed over `step` bytes at a time; returns the
    /// outcome and what was left unread after the body.
    fn decode_all(input: &[u8], step: usize) -> (Result<Vec<u8>, ApiError>, Vec<u8>) {
        let mut fed = step.min(input.len());
        let mut buf = input[..fed].to_vec();
        let result = decode(&mut buf, |buf| {
            if fed == input.len() {
                return Err(ApiError::BadRequest("end of input".into()));
            }
            let next = (fed + step).min(input.len());
            buf.extend_from_slice(&input[fed..next]);
            fed = next;
            Ok(())
        });
        buf.extend_from_slice(&input[fed..]);
        (result, buf)
    }

    const STEPS: [usize; 4] = [1, 2, 7, usize::MAX];

    #[test]
    fn well_formed_bodies_decode_and_leave_what_follows() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", b"hello!"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"0002;x\r\nhi\r\n000\r\n\r\n", b"hi"),
            (
                b"2 ; a=1 ;b = \"q \\\" ;x\"\t;c\r\nhi\r\n0;last=\"\"\r\n\r\n",
                b"hi",
            ),
            (
                b"2\r\nhi\r\n0\r\nT: v\r\nEmpty:\r\nX-Y:  a, \"b\" \t\r\n\r\n",
                b"hi",
            ),
        ];
        for (input, body) in cases {
            for step in STEPS {
                let with_next = [input, b"GET /next"].concat();
                let (result, rest) = decode_all(&with_next, step);
                let name = String::from_utf8_lossy(input);
                assert_eq!(result.as_deref(), Ok(body), "{name:?} step {step}");
                assert_eq!(rest, b"GET /next", "{name:?} step {step}");
            }
        }
    }

    /// Each of these is a shape two parsers can read differently; the
    /// first five are the ones an outside review found accepted.
    #[test]
    fn malformed_framing_is_rejected() {
        let cases: &[&[u8]] = &[
            // TERM.EXT: a bare LF inside a chunk extension.
            b"2;\nxx\r\nab\r\n0\r\n\r\n",
            // An empty chunk-size line, and one of a single space.
            b"\r\n\r\n",
            b" \r\n\r\n",
            // Trailers ended by a bare LF: what follows would be trailers.
            b"0\r\n\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
            // A trailer line ended by a bare LF.
            b"0\r\nT: v\nGET /smuggled HTTP/1.1\r\n\r\n",
            // Bare LF after the size, after the data, and at the very end.
            b"2\nxx\r\n0\r\n\r\n",
            b"2\r\nxx\n0\r\n\r\n",
            b"0\n\r\n",
            // Bare CR, and control characters in extensions.
            b"2\rxx\r\n0\r\n\r\n",
            b"2;a\rb\r\nxx\r\n0\r\n\r\n",
            b"2;a\x01b\r\nxx\r\n0\r\n\r\n",
            b"2;a=\"\x7f\"\r\nxx\r\n0\r\n\r\n",
            b"2;a=\"x\r\nxx\r\n0\r\n\r\n",
            b"2;a=\"x\\\r\nxx\r\n0\r\n\r\n",
            // Extensions without a name or a value, or with junk.
            b"2;\r\nxx\r\n0\r\n\r\n",
            b"2;=1\r\nxx\r\n0\r\n\r\n",
            b"2;a=\r\nxx\r\n0\r\n\r\n",
            b"2;a b\r\nxx\r\n0\r\n\r\n",
            b"2;a=\"x\"y\r\nxx\r\n0\r\n\r\n",
            // Sizes that are not plain hex digits.
            b"2 \r\nxx\r\n0\r\n\r\n",
            b" 2\r\nxx\r\n0\r\n\r\n",
            b"+2\r\nxx\r\n0\r\n\r\n",
            b"0x2\r\nxx\r\n0\r\n\r\n",
            b"2g\r\nxx\r\n0\r\n\r\n",
            // Data longer than its size.
            b"2\r\nabc\r\n0\r\n\r\n",
            // Trailers that are not fields: obs-fold, no name, no colon,
            // a space before the colon, a control character in the value.
            b"0\r\nT: v\r\n folded\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nT v\r\n\r\n",
            b"0\r\nT : v\r\n\r\n",
            b"0\r\nT: a\x00b\r\n\r\n",
        ];
        for input in cases {
            for step in STEPS {
                let (result, _) = decode_all(input, step);
                assert!(
                    matches!(result, Err(ApiError::BadRequest(_))),
                    "{:?} step {step}: {result:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn limits_give_413_400_and_431() {
        let huge = b"ffffffffffffffffffffffffffff\r\n";
        assert_eq!(decode_all(huge, 1).0, Err(ApiError::PayloadTooLarge));
        let half = MAX_BODY / 2 + 1;
        let chunk = format!("{half:x}\r\n{}\r\n", "y".repeat(half));
        let two = format!("{chunk}{chunk}0\r\n\r\n");
        assert_eq!(
            decode_all(two.as_bytes(), usize::MAX).0,
            Err(ApiError::PayloadTooLarge)
        );
        let at_limit = format!("{MAX_BODY:x}\r\n{}\r\n0\r\n\r\n", "z".repeat(MAX_BODY));
        assert_eq!(
            decode_all(at_limit.as_bytes(), usize::MAX)
                .0
                .map(|b| b.len()),
            Ok(MAX_BODY)
        );

        let long_line = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(matches!(
            decode_all(long_line.as_bytes(), 64).0,
            Err(ApiError::BadRequest(_))
        ));
        let endless_line = "1;".to_string() + &"e".repeat(3 * MAX_CHUNK_LINE);
        assert!(matches!(
            decode_all(endless_line.as_bytes(), 64).0,
            Err(ApiError::BadRequest(_))
        ));

        let many: String = (0..MAX_HEAD / 8)
            .map(|i| format!("T{i:04}: v\r\n"))
            .collect();
        let trailers = format!("0\r\n{many}\r\n");
        assert_eq!(
            decode_all(trailers.as_bytes(), 100).0,
            Err(ApiError::HeadersTooLarge)
        );
        let endless = format!("0\r\nT: {}", "v".repeat(3 * MAX_HEAD));
        assert_eq!(
            decode_all(endless.as_bytes(), 100).0,
            Err(ApiError::HeadersTooLarge)
        );
    }

    #[test]
    fn tiny_chunks_cannot_buffer_without_bound() {
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(MAX_CHUNK_LINE - 10));
        let body: String =
            std::iter::repeat_n(chunk.as_str(), MAX_CHUNKED_WIRE / chunk.len() + 2).collect();
        let input = format!("{body}0\r\n\r\n");
        let (result, _) = decode_all(input.as_bytes(), usize::MAX);
        assert_eq!(result.unwrap_err(), ApiError::PayloadTooLarge);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes, decoding ends in a body within the limit or
        /// an error, never a panic; and a decoded body's framing had no
        /// bare LF.
        #[test]
        fn random_framing_never_panics(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b';'), Just(b'0'), Just(b'1'), any::<u8>()],
                0..200,
            ),
            step in 1usize..16,
        ) {
            let (result, rest) = decode_all(&input, step);
            if let Ok(body) = result {
                prop_assert!(body.len() <= MAX_BODY);
                let used = &input[..input.len() - rest.len()];
                let bare_lf = used
                    .iter()
                    .enumerate()
                    .any(|(i, b)| *b == b'\n' && (i == 0 || used[i - 1] != b'\r'));
                prop_assert!(!bare_lf, "{:?}", String::from_utf8_lossy(used));
            }
        }
    }
}
