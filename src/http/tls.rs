//! Native HTTPS: the certificate and key from `TLS_CERT_FILE` and
//! `TLS_KEY_FILE`, the handshake under the head's deadline, and a stream
//! that reads and writes through the TLS session.
//!
//! **Why it is built this way.** TLS is `rustls` (already in the build for
//! the mail courier) with its safe defaults: TLS 1.2 and 1.3 only, the
//! `ring` provider's cipher suites, ALPN `http/1.1`. Everything the plain
//! listener guarantees must hold for TLS connections too, and the
//! handshake is where a slow or hostile client now spends its time, so:
//!
//! - the handshake must finish within `HEADER_TIMEOUT_MS` of the accept,
//!   each read and write bounded by the time left ([`Certificates::handshake`]);
//!   a connection still handshaking counts as waiting for input, so at the
//!   cap it is the first to be evicted;
//! - a failed handshake (a scanner, plain HTTP to this port, garbage) is
//!   logged at debug, not warn: the internet sends many;
//! - after the handshake the connection is served exactly as a plain one,
//!   through [`TlsStream`], whose reads keep the per-read deadlines of
//!   `parse.rs`.
//!
//! **Rotation.** [`Certificates::reload`] (on SIGHUP) reads both files
//! again; new connections use the new pair, connections already open keep
//! theirs, and a bad new pair leaves the old one in use and logs why. This
//! is how ACME clients (certbot, lego) rotate certificates.

use super::parse::Stream;
use crate::log;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's certificate chain and key, as loaded last.
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Mutex<Arc<ServerConfig>>,
}

/// Why a certificate pair could not be used: the setting at fault and why
/// (never the key's bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// `TLS_CERT_FILE` or `TLS_KEY_FILE`.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.reason)
    }
}

impl Certificates {
    /// Loads the pair: a PEM certificate chain (leaf first) and its PEM
    /// private key (PKCS#8, or PKCS#1 RSA, or SEC1 EC). Errors name the
    /// file at fault: unreadable, no certificate or key in it, or a key that
    /// is not the certificate's.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Certificates, TlsError> {
        let config = server_config(&cert_file, &key_file)?;
        Ok(Certificates {
            cert_file,
            key_file,
            current: Mutex::new(config),
        })
    }

    /// Reads both files again (SIGHUP). On success new connections use the
    /// new pair; on failure the old one stays, and the log says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert_file, &self.key_file)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs the handshake on `sock` until `deadline`; the session, or why
    /// not (for a debug line). Writes are bounded by `write_timeout` too.
    pub(super) fn handshake(
        &self,
        sock: &TcpStream,
        deadline: Instant,
        write_timeout: Duration,
    ) -> Result<ServerConnection, String> {
        let mut conn = ServerConnection::new(self.config()).map_err(|e| e.to_string())?;
        let mut io = sock;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the handshake did not finish in time".into());
            }
            sock.set_read_timeout(Some(left))
                .and_then(|()| sock.set_write_timeout(Some(left.min(write_timeout))))
                .map_err(|e| e.to_string())?;
            match conn.complete_io(&mut io) {
                Ok((0, 0)) => return Err("the client closed the connection".into()),
                Ok(_) => {}
                Err(e) => {
                    // Send the alert rustls queued, so the client learns why.
                    let _ = conn.write_tls(&mut io);
                    return Err(e.to_string());
                }
            }
        }
        Ok(conn)
    }
}

/// Reads the pair into a server configuration (see [`Certificates::load`]).
fn server_config(cert_file: &PathBuf, key_file: &PathBuf) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError {
        variable: "TLS_CERT_FILE",
        reason,
    };
    let key_error = |reason: String| TlsError {
        variable: "TLS_KEY_FILE",
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_error(format!("cannot read it: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| key_error(format!("no PEM private key could be read from it: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| key_error(format!("does not go with TLS_CERT_FILE's certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection after its handshake: reads and writes go through the TLS
/// session on the socket, and the read deadline is set on the socket.
pub(super) struct TlsStream<'a> {
    conn: ServerConnection,
    sock: &'a TcpStream,
}

impl<'a> TlsStream<'a> {
    /// The session `conn` on `sock`.
    pub(super) fn new(conn: ServerConnection, sock: &'a TcpStream) -> TlsStream<'a> {
        TlsStream { conn, sock }
    }

    /// Ends the session with a `close_notify` alert, before the socket is
    /// closed (so a client can tell the end from a truncation).
    pub(super) fn close(&mut self) {
        self.conn.send_close_notify();
        let mut io = self.sock;
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut io).is_err() {
                return;
            }
        }
    }
}

impl Read for TlsStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut io = self.sock;
        rustls::Stream::new(&mut self.conn, &mut io).read(buf)
    }
}

impl Write for TlsStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut io = self.sock;
        rustls::Stream::new(&mut self.conn, &mut io).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut io = self.sock;
        rustls::Stream::new(&mut self.conn, &mut io).flush()
    }
}

impl Stream for TlsStream<'_> {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(timeout))
    }
}

/// Logs a handshake that failed, at debug: scanners make many.
pub(super) fn handshake_failed(peer: std::net::IpAddr, why: &str) {
    log::debug(
        "TLS handshake failed",
        &[("client", peer.to_string().into()), ("error", why.into())],
    );
}

/// A client configuration that trusts exactly the leaf certificate in
/// `cert_file`, whatever name it is for: how `auth-server healthcheck`
/// talks HTTPS to its own server on 127.0.0.1, whose certificate names the
/// public host. Nothing else uses it.
pub fn pinned_client(cert_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let leaf = CertificateDer::pem_file_iter(cert_file)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok)
        .ok_or_else(|| TlsError {
            variable: "TLS_CERT_FILE",
            reason: "holds no readable PEM certificate".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        leaf,
        provider: Arc::clone(&provider),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            variable: "TLS_CERT_FILE",
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Trusts one certificate, by its exact bytes (see [`pinned_client`]); the
/// handshake's signatures are still checked against it.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the certificate in TLS_CERT_FILE".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
