//! The SMTP relay the courier delivers through: one URL (`SMTP_URL`), as
//! Kratos configures it, turned into a `lettre` transport at start-up.
//!
//! | URL | connection |
//! |---|---|
//! | `smtp://user:pass@host:587` | STARTTLS, required: a server that does not offer it gets no mail |
//! | `smtps://user:pass@host:465` | TLS from the first byte |
//! | `smtp://host:1025/?tls=none` | plaintext, only when asked for in so many words (a local relay, a development sink) |
//!
//! Certificates are always verified, against the Mozilla roots compiled in
//! (`webpki-roots`) plus, with `SMTP_CA_FILE`, the PEM CA of a relay with a
//! private CA. User names and passwords may be percent-encoded. Connect,
//! TLS handshake and every SMTP command are bounded by `MAIL_TIMEOUT_MS`.
//! SMTP and TLS are `lettre`'s and `rustls`'s: none of it is written here.
//!
//! Nothing here ever formats the URL or the password: errors name the
//! variable and what is wrong with it.

use lettre::SmtpTransport;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::fmt;
use std::time::Duration;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plaintext greeting, then STARTTLS, which must be offered.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://...?tls=none`: no TLS at all.
    None,
}

/// The relay, parsed from `SMTP_URL`. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Relay {
    /// Host name or address; also the name its certificate must carry.
    pub host: String,
    /// TCP port (default 587 for `smtp`, 465 for `smtps`).
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// User name and password for SMTP AUTH, if the URL has them.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Relay {
    /// Parses an `SMTP_URL`. The error says what is wrong, never the value.
    pub fn parse(text: &str) -> Result<Relay, String> {
        let url = url::Url::parse(text).map_err(|_| {
            "must be a URL such as smtp://user:password@host:587 or smtps://host:465".to_string()
        })?;
        let mut security = match url.scheme() {
            "smtp" => Security::StartTls,
            "smtps" => Security::Implicit,
            _ => return Err("the scheme must be smtp:// (STARTTLS) or smtps:// (TLS)".into()),
        };
        for (name, value) in url.query_pairs() {
            match (name.as_ref(), value.as_ref()) {
                ("tls", "none") if security == Security::StartTls => security = Security::None,
                ("tls", "none") => return Err("tls=none goes with smtp://, not smtps://".into()),
                _ => return Err("the only query parameter understood is tls=none".into()),
            }
        }
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err("must not have a path or fragment".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("must name a host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(match security {
            Security::Implicit => 465,
            Security::StartTls | Security::None => 587,
        });
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user name and password must be UTF-8 once percent-decoded")
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(pass)) if !user.is_empty() => Some((decode(user)?, decode(pass)?)),
            _ => return Err("give both a user name and a password, or neither".into()),
        };
        Ok(Relay {
            host,
            port,
            security,
            credentials,
        })
    }

    /// The `lettre` transport for this relay: certificates verified against
    /// the compiled-in roots plus `extra_ca` (PEM), every step bounded by
    /// `timeout`, `EHLO` with `hello_name`.
    pub fn transport(
        &self,
        extra_ca: Option<&[u8]>,
        timeout: Duration,
        hello_name: &str,
    ) -> Result<SmtpTransport, String> {
        let tls = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(self.host.clone());
            if let Some(pem) = extra_ca {
                let certificate = Certificate::from_pem(pem)
                    .map_err(|_| "SMTP_CA_FILE is not a PEM certificate".to_string())?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build_rustls()
                .map_err(|_| "SMTP_CA_FILE holds no usable CA certificate".to_string())
        };
        let tls = match self.security {
            Security::StartTls => Tls::Required(tls()?),
            Security::Implicit => Tls::Wrapper(tls()?),
            Security::None => Tls::None,
        };
        let mut builder = SmtpTransport::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(ClientId::Domain(hello_name.to_string()));
        if let Some((user, pass)) = &self.credentials {
            builder = builder
                .credentials(Credentials::new(user.clone(), pass.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(builder.build())
    }
}

/// Checks that `pem` holds at least one certificate, so a wrong file (a key,
/// an empty file) stops start-up instead of failing every delivery.
pub fn check_ca(pem: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    // Building a transport parses every certificate in the file.
    let relay = Relay {
        host: "localhost".into(),
        port: 465,
        security: Security::Implicit,
        credentials: None,
    };
    relay
        .transport(Some(pem), Duration::from_secs(1), "localhost")
        .map(drop)
        .map_err(|_| "is not a valid PEM certificate".into())
}

/// Parses `MAIL_FROM` (`Example <no-reply@example.com>` or a bare address).
pub fn parse_from(text: &str) -> Result<Mailbox, String> {
    text.parse::<Mailbox>().map_err(|_| {
        "must be an address, optionally with a name: Example <no-reply@example.com>".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_their_defaults() {
        let r = Relay::parse("smtp://user:pa%40ss@mail.example.com:2525").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.security),
            ("mail.example.com", 2525, Security::StartTls)
        );
        assert_eq!(r.credentials, Some(("user".into(), "pa@ss".into())));
        let r = Relay::parse("smtps://mail.example.com").unwrap();
        assert_eq!(
            (r.port, r.security, r.credentials),
            (465, Security::Implicit, None)
        );
        let r = Relay::parse("smtp://localhost:1025/?tls=none").unwrap();
        assert_eq!((r.port, r.security), (1025, Security::None));
        assert_eq!(Relay::parse("smtp://h.example").unwrap().port, 587);
        let r = Relay::parse("smtp://%C3%A9l%C3%A8ve:p%20w@[::1]:25").unwrap();
        assert_eq!(r.host, "::1");
        assert_eq!(r.credentials, Some(("élève".into(), "p w".into())));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "http://mail.example.com",
            "mail.example.com:25",
            "smtps://h.example/?tls=none",
            "smtp://h.example/?tls=off",
            "smtp://h.example/?foo=1",
            "smtp://h.example/path",
            "smtp://user@h.example",
            "smtp://:secret-password@h.example",
            "smtp://",
        ] {
            let e = Relay::parse(bad).unwrap_err();
            assert!(
                !e.contains("secret-password") && !e.contains("h.example"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let r = Relay::parse("smtp://u:hunter2@h.example").unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn from_addresses() {
        let m = parse_from("Example <no-reply@example.com>").unwrap();
        assert_eq!(m.email.to_string(), "no-reply@example.com");
        assert!(parse_from("no-reply@example.com").is_ok());
        assert!(parse_from("not an address").is_err());
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        assert!(check_ca(b"").is_err());
        assert!(
            check_ca(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(
            check_ca(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
