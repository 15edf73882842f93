//! Decoding a chunked request body (RFC 9112 section 7.1), under the body
//! limits.
//!
//! Kept apart from the rest of the reader because it is the part of the
//! framing with the most room for two parsers to disagree, so it gets its own
//! tests. It knows nothing of sockets: the caller hands it a way to read more.

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
    let bad = |why: &str| ApiError::BadRequest(why.to_string());
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (line_len, size) = loop {
            match httparse::parse_chunk_size(&buf[pos..]) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) if buf.len() - pos > MAX_CHUNK_LINE => {
                    return Err(bad("Chunk size line too long."));
                }
                Ok(httparse::Status::Partial) => more(buf)?,
                Err(_) => return Err(bad("Invalid chunk size.")),
            }
        };
        pos += line_len;
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
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(bad("Chunk data must end with CRLF."));
        }
        pos += size + 2;
        if pos > MAX_CHUNKED_WIRE {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    // Trailer fields, up to the empty line that ends the message.
    let trailers_start = pos;
    loop {
        match buf[pos..].windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                pos += 2;
                break;
            }
            Some(i) => pos += i + 2,
            None => more(buf)?,
        }
        if buf.len() - trailers_start > MAX_HEAD {
            return Err(ApiError::HeadersTooLarge);
        }
    }
    buf.drain(..pos);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn tiny_chunks_cannot_buffer_without_bound() {
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(MAX_CHUNK_LINE - 10));
        let body: String =
            std::iter::repeat_n(chunk.as_str(), MAX_CHUNKED_WIRE / chunk.len() + 2).collect();
        let input = format!("{body}0\r\n\r\n");
        let (result, _) = decode_all(input.as_bytes(), usize::MAX);
        assert_eq!(result.unwrap_err(), ApiError::PayloadTooLarge);
    }
}
