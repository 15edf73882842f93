//! Request ids, which name a request in its response (`X-Request-Id`, the
//! problem body's `request_id`) and on its log lines. Apart from the server
//! loop because every answer needs one, those to requests that could not be
//! read included.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hands out request ids: the client's `X-Request-Id` when it is a sane
/// token (1 to 128 visible ASCII characters), otherwise a process-unique id
/// made of a random per-process prefix and a counter, which is cheaper than
/// fresh randomness per request and still unique across restarts and
/// instances.
pub(super) struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub(super) fn new() -> RequestIds {
        let mut seed = [0u8; 6];
        // Without OS randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut seed);
        let prefix = seed.iter().map(|b| format!("{b:02x}")).collect();
        RequestIds {
            prefix,
            counter: AtomicU64::new(1),
        }
    }

    /// A new generated id.
    pub(super) fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The id of a request whose `X-Request-Id` is `client` (if it sent
    /// one): that, when it is sane, or else a generated one.
    pub(super) fn for_client(&self, client: Option<&str>) -> String {
        match client {
            Some(id) if is_sane_request_id(id) => id.to_string(),
            _ => self.next(),
        }
    }
}

/// 1 to 128 visible ASCII characters (no spaces or controls), so the id is
/// safe to echo in headers and logs.
fn is_sane_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(is_sane_request_id("abc-123_XYZ.~"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id(&"a".repeat(129)));
        assert!(is_sane_request_id(&"a".repeat(128)));
        assert!(!is_sane_request_id("é"));
        let ids = RequestIds::new();
        assert_ne!(ids.next(), ids.next());
        assert_eq!(ids.for_client(Some("client-id-1")), "client-id-1");
        assert_ne!(ids.for_client(Some("bad id")), "bad id");
        assert!(ids.for_client(None).starts_with(&ids.prefix));
    }
}
