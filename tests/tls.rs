//! Native HTTPS (issue 19) against the real binary: certificates made here
//! by a test CA (rcgen), a real rustls client, and raw sockets for what a
//! hostile client sends. The plain listener's guarantees must hold over
//! TLS: the handshake is cut at `HEADER_TIMEOUT_MS`, so is a slow head
//! after it, the idle cap evicts, bodies are capped, pipelined requests
//! are answered in order; plain HTTP and random bytes to the TLS port are
//! closed without harm. Also: HSTS, ALPN, start-up errors naming the
//! setting at fault, certificate reload on SIGHUP, `healthcheck` over TLS.

mod common;

use common::smtp::TestCa;
use common::{Server, TestDb, spawn, wait_exit};
use proptest::prelude::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A certificate pair on disk, where the server reads it.
struct Pair {
    dir: PathBuf,
}

impl Pair {
    /// A new directory holding a pair issued by `ca`.
    fn new(ca: &TestCa, name: &str) -> Pair {
        let dir = std::env::temp_dir().join(format!("auth-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = Pair { dir };
        pair.write(ca);
        pair
    }

    /// Replaces the pair with a new one issued by `ca`; the new leaf's PEM.
    fn write(&self, ca: &TestCa) -> String {
        let (cert, key) = ca.issue();
        std::fs::write(self.cert(), &cert).unwrap();
        std::fs::write(self.key(), key).unwrap();
        cert
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_builder(pair: &Pair) -> common::Builder {
    Server::builder()
        .env("TLS_CERT_FILE", pair.cert().to_str().unwrap())
        .env("TLS_KEY_FILE", pair.key().to_str().unwrap())
}

/// A client trusting `ca`, offering h2 and http/1.1 (the server must pick
/// the latter).
fn client_config(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A finished handshake with the server at `addr`.
fn connect(ca: &TestCa, addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(client_config(ca), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("the handshake");
    }
    tls
}

/// Everything the server sends until it closes the connection.
fn read_all(tls: &mut Tls) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET path` with `Connection: close` over a new TLS connection.
fn get(ca: &TestCa, addr: SocketAddr, path: &str) -> String {
    let mut tls = connect(ca, addr);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_all(&mut tls)
}

/// True if the server closes the raw connection within `within` (EOF or
/// reset), having sent at most a TLS alert.
fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    tcp.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) if started.elapsed() < within => {}
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn https_serves_the_api_with_hsts_over_http_1_1() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "basic");
    let server = tls_builder(&pair).start();
    let mut tls = connect(&ca, server.addr);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(matches!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
    ));
    // Two requests in one write: answered in order, on one connection.
    tls.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 63\r\nConnection: close\r\n\r\n\
          {\"email\": \"ada@example.com\", \"password\": \"a long passphrase!\"} ",
    )
    .unwrap();
    let answers = read_all(&mut tls);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answers[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "201"], "{answers}");
    assert!(
        answers.contains("Strict-Transport-Security: max-age=31536000\r\n"),
        "{answers}"
    );
    // Bodies are capped as on the plain listener.
    let mut tls = connect(&ca, server.addr);
    write!(
        tls,
        "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 70000\r\n\r\n"
    )
    .unwrap();
    assert!(read_all(&mut tls).starts_with("HTTP/1.1 413"));
    drop(server);

    let server = tls_builder(&pair).env("HSTS_MAX_AGE_SECONDS", "0").start();
    let answer = get(&ca, server.addr, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200") && !answer.contains("Strict-Transport"));
}

#[test]
fn slow_clients_are_cut_at_the_header_deadline_during_and_after_the_handshake() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "slow");
    let server = tls_builder(&pair).env("HEADER_TIMEOUT_MS", "600").start();
    // Silent after connecting, and half a ClientHello: both cut at 600 ms.
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    assert!(closed_within(&mut half, Duration::from_secs(3)));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "cut after {took:?}");
    // After the handshake, a head that stops half-way is answered 408.
    let mut tls = connect(&ca, server.addr);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
    let answer = read_all(&mut tls);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Failed handshakes are a debug line each, not a warning.
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("\"level\":\"debug\"")),
        "{lines:?}"
    );
}

#[test]
fn at_the_cap_the_longest_waiting_tls_connection_is_evicted() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "cap");
    let server = tls_builder(&pair).env("MAX_CONNECTIONS", "4").start();
    let idle: Vec<Tls> = (0..4).map(|_| connect(&ca, server.addr)).collect();
    // A fifth is served: room is made by closing the longest idle one.
    let answer = get(&ca, server.addr, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(idle);
}

#[test]
fn plain_http_and_garbage_on_the_tls_port_are_closed_and_harm_nothing() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "garbage");
    let mut server = tls_builder(&pair).start();
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "no plain HTTP answer on the TLS port"
    );
    let addr = server.addr;
    proptest!(ProptestConfig::with_cases(64), |(bytes in prop::collection::vec(any::<u8>(), 0..2048))| {
        let mut tcp = TcpStream::connect(addr).unwrap();
        let _ = tcp.write_all(&bytes);
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        prop_assert!(closed_within(&mut tcp, Duration::from_secs(5)));
    });
    assert!(server.alive(), "the server died");
    assert!(get(&ca, server.addr, "/healthz").starts_with("HTTP/1.1 200"));
}

/// The leaf certificate a new connection is shown.
fn presented(ca: &TestCa, addr: SocketAddr) -> Vec<u8> {
    let tls = connect(ca, addr);
    tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn hup(server: &Server) {
    let status = Command::new("kill")
        .args(["-HUP", &server.process.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_rotates_the_certificate_for_new_connections_and_keeps_a_good_one() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "reload");
    let first = std::fs::read_to_string(pair.cert()).unwrap();
    let server = tls_builder(&pair).start();
    assert_eq!(presented(&ca, server.addr), der(&first));
    let mut open = connect(&ca, server.addr);

    let second = pair.write(&ca);
    hup(&server);
    assert!(server.wait_for_log("TLS certificates reloaded", Duration::from_secs(5)));
    assert_eq!(presented(&ca, server.addr), der(&second));
    // The connection opened before keeps its session.
    write!(
        open,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert!(read_all(&mut open).starts_with("HTTP/1.1 200"));

    // A key that is not the certificate's: the second pair stays.
    let (_, other_key) = ca.issue();
    std::fs::write(pair.key(), other_key).unwrap();
    hup(&server);
    assert!(server.wait_for_log("TLS certificates not reloaded", Duration::from_secs(5)));
    assert_eq!(presented(&ca, server.addr), der(&second));
}

#[test]
fn tls_settings_that_cannot_work_stop_the_start_naming_the_setting() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "bad");
    let (_, other_key) = ca.issue();
    let mismatched = pair.dir.join("other.pem");
    std::fs::write(&mismatched, other_key).unwrap();
    let cert = pair.cert().to_str().unwrap().to_string();
    let key = pair.key().to_str().unwrap().to_string();
    let missing = pair.dir.join("missing.pem").to_str().unwrap().to_string();
    let db = TestDb::new();
    for (env, named) in [
        (vec![("TLS_CERT_FILE", cert.as_str())], "TLS_KEY_FILE"),
        (vec![("TLS_KEY_FILE", key.as_str())], "TLS_CERT_FILE"),
        (
            vec![
                ("TLS_CERT_FILE", missing.as_str()),
                ("TLS_KEY_FILE", key.as_str()),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert.as_str()),
                ("TLS_KEY_FILE", missing.as_str()),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert.as_str()),
                ("TLS_KEY_FILE", mismatched.to_str().unwrap()),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", key.as_str()),
                ("TLS_KEY_FILE", key.as_str()),
            ],
            "TLS_CERT_FILE",
        ),
    ] {
        let log = common::failed_start(&db, &env);
        let line = log
            .lines()
            .find(|l| l.contains("invalid configuration"))
            .unwrap_or_else(|| panic!("{env:?}: {log}"));
        assert!(line.contains(named), "{env:?}: {line}");
        assert!(!line.contains("PRIVATE KEY"), "{line}");
    }
}

#[test]
fn healthcheck_talks_https_to_its_own_server() {
    let ca = TestCa::new("tls test CA");
    let pair = Pair::new(&ca, "health");
    let server = tls_builder(&pair).start();
    let bind = format!("0.0.0.0:{}", server.addr.port());
    let run = |env: &[(&str, &Path)]| {
        let mut vars = vec![("BIND_ADDR".to_string(), bind.clone())];
        vars.extend(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())),
        );
        let (mut child, _) = spawn(&vars, &["healthcheck"], None);
        wait_exit(&mut child, Duration::from_secs(10))
    };
    assert_eq!(run(&[("TLS_CERT_FILE", &pair.cert())]), Some(0));
    // Plain HTTP to the TLS port, or another certificate: unhealthy.
    assert_eq!(run(&[]), Some(1));
    let stranger = Pair::new(&TestCa::new("another CA"), "stranger");
    assert_eq!(run(&[("TLS_CERT_FILE", &stranger.cert())]), Some(1));
}
