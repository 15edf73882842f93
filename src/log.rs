//! Structured logging: one JSON object per line on standard error.
//!
//! Every line carries `ts` (RFC 3339 UTC with milliseconds), `level`, `msg`
//! and `request_id` (`system` outside requests), then the fields the caller
//! passes (`method`, `status`, `user_id`, ...).
//! JSON lines because operators feed them to a log pipeline, and because a
//! value can never break out of its field the way it can in a text format.
//!
//! Nothing secret is ever passed here: callers log identifiers (user and
//! session ids, request ids), never passwords, tokens or keys. Each line is
//! written with a single `write_all` on the locked handle, so lines from
//! different threads never interleave.

use serde_json::Value;
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Severity of a log line; `LOG_LEVEL` drops everything below its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The server cannot do what it was asked and an operator should look.
    Error = 0,
    /// Something unusual that the server handled (a client cut off, a retry).
    Warn = 1,
    /// One line per request and per life-cycle event.
    Info = 2,
    /// Detail for debugging; never secrets even here.
    Debug = 3,
}

impl Level {
    /// Parses `error`, `warn`, `info` or `debug` (case-insensitive).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The `request_id` of lines logged outside any request.
pub const SYSTEM_REQUEST_ID: &str = "system";

thread_local! {
    /// The id of the request this thread is serving, added to every line it
    /// logs, so a handler's lines can be traced without passing the id down.
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

thread_local! {
    /// The account the current request acts for, once a handler knows it.
    static USER_ID: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Records the account the current request acts for, so the request's log
/// line can carry `user_id`.
pub fn set_user_id(id: u64) {
    USER_ID.with(|u| u.set(Some(id)));
}

/// Takes the account recorded for the current request, if any.
pub fn take_user_id() -> Option<u64> {
    USER_ID.with(|u| u.take())
}

/// The id of the request this thread is serving, or [`SYSTEM_REQUEST_ID`].
pub fn current_request_id() -> String {
    REQUEST_ID.with(|id| {
        id.borrow()
            .clone()
            .unwrap_or_else(|| SYSTEM_REQUEST_ID.to_string())
    })
}

/// Runs `f` with `request_id` attached to every line logged on this thread.
pub fn with_request_id<T>(request_id: &str, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REQUEST_ID.with(|id| id.borrow_mut().take());
        }
    }
    REQUEST_ID.with(|id| *id.borrow_mut() = Some(request_id.to_string()));
    let _reset = Reset;
    f()
}

/// Sets the most verbose level that is written. Call once at start-up.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// True when a line at `level` would be written; lets callers skip building
/// fields nobody will see.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Writes one log line with the given fields, if `level` is enabled.
pub fn log(level: Level, msg: &str, fields: &[(&str, Value)]) {
    if !enabled(level) {
        return;
    }
    // Built by hand so the fixed members come first, in this order.
    let mut line = format!(
        "{{\"ts\":\"{}\",\"level\":\"{}\",\"msg\":{}",
        crate::time::rfc3339_millis(crate::time::unix_now_millis()),
        level.name(),
        Value::from(msg)
    );
    let mut field = |key: &str, value: &Value| {
        line.push(',');
        line.push_str(&Value::from(key).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    };
    // Every line carries a request id: the current request's, one the
    // caller passes (requests rejected before they had one), or `system` for
    // start-up, shutdown and background work.
    let current = REQUEST_ID.with(|id| id.borrow().clone());
    let passed = fields
        .iter()
        .find(|(k, _)| *k == "request_id")
        .map(|(_, v)| v.clone());
    let request_id = match (current, passed) {
        (Some(id), _) => Value::from(id),
        (None, Some(id)) => id,
        (None, None) => Value::from(SYSTEM_REQUEST_ID),
    };
    field("request_id", &request_id);
    for (key, value) in fields.iter().filter(|(k, _)| *k != "request_id") {
        field(key, value);
    }
    line.push_str("}\n");
    // A log line that cannot be written (stderr closed) is dropped: failing
    // the request because of its log line would be worse.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// [`log`] at [`Level::Error`].
pub fn error(msg: &str, fields: &[(&str, Value)]) {
    log(Level::Error, msg, fields);
}

/// [`log`] at [`Level::Warn`].
pub fn warn(msg: &str, fields: &[(&str, Value)]) {
    log(Level::Warn, msg, fields);
}

/// [`log`] at [`Level::Info`].
pub fn info(msg: &str, fields: &[(&str, Value)]) {
    log(Level::Info, msg, fields);
}

/// [`log`] at [`Level::Debug`].
pub fn debug(msg: &str, fields: &[(&str, Value)]) {
    log(Level::Debug, msg, fields);
}

/// Routes panic messages through the JSON log instead of the default hook's
/// free text, so a panicking handler still yields one parseable line. The
/// request id is added by the HTTP layer, which logs the 500 it answers.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        error(
            "panic",
            &[
                ("panic", payload.into()),
                ("location", location.into()),
                ("thread", thread.into()),
            ],
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_context_is_scoped() {
        with_request_id("abc", || {
            REQUEST_ID.with(|id| assert_eq!(id.borrow().as_deref(), Some("abc")));
        });
        REQUEST_ID.with(|id| assert!(id.borrow().is_none()));
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse("INFO"), Some(Level::Info));
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("trace"), None);
        assert!(Level::Error < Level::Debug);
    }
}
