//! What a request is once read: the type handlers take.

use std::net::{IpAddr, Ipv4Addr};

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client
    /// asked for `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says `close`.
    Http11,
}

/// A complete request: head and body, read and validated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method token as sent (methods are case-sensitive).
    pub method: String,
    /// The path of the request target, without the query.
    pub path: String,
    /// The query string after `?`, if any, undecoded.
    pub query: Option<String>,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header fields in order, names lowercased, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked; empty when there was none.
    pub body: Vec<u8>,
    /// The address of the peer that sent the request.
    pub peer: IpAddr,
    /// Identifies the request in logs and problem bodies.
    pub request_id: String,
    /// Whether the connection may carry another request after this one.
    pub(crate) keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive), if present and
    /// valid UTF-8. Non-UTF-8 values are treated as absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` joined with `", "`, as RFC 9110 section
    /// 5.3 says several field lines of one name mean; `None` if absent.
    /// Lists such as `X-Forwarded-For` must be read this way, or a client
    /// could hide an entry from the reader in a second line.
    pub fn header_list(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or(""))
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// A request with the given method and path and nothing else; for tests
    /// of code that takes a `Request`.
    pub fn for_tests(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: None,
            version: Version::Http11,
            headers: Vec::new(),
            body: Vec::new(),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            request_id: "test".to_string(),
            keep_alive: true,
        }
    }
}
