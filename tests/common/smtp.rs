//! A real SMTP server for the tests: `tests/smtp_server.py` (aiosmtpd) on a
//! free port, with certificates made here by a test CA (rcgen), and the
//! messages it received read back, their MIME parts decoded by Python's
//! `email` package. Nothing is mocked: the server under test speaks SMTP,
//! STARTTLS and AUTH to a real server over TCP.

use super::Builder;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A certificate authority of the test's own.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A fresh CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A certificate and key (PEM) for 127.0.0.1 and localhost, signed by
    /// this CA.
    pub fn issue(&self) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
                127, 0, 0, 1,
            ])));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// How the test server secures connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Security {
    /// Offers STARTTLS and requires it before MAIL.
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// Offers no TLS at all.
    Plain,
}

/// What the test server should do.
#[derive(Clone, Debug)]
pub struct Options {
    /// How connections are secured.
    pub security: Security,
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
    /// Answer the first N messages' DATA with 451.
    pub tempfail: u32,
    /// Answer RCPT TO for these addresses with 550.
    pub reject: Vec<String>,
    /// Listen on this port (to come back where a stopped server was).
    pub port: Option<u16>,
    /// Never answer the first message's DATA.
    pub stall_first: bool,
}

impl Default for Options {
    /// STARTTLS with AUTH as `courier` / `p@ss word`: what a real provider
    /// asks for.
    fn default() -> Options {
        Options {
            security: Security::StartTls,
            auth: Some(("courier".into(), "p@ss word".into())),
            tempfail: 0,
            reject: Vec::new(),
            port: None,
            stall_first: false,
        }
    }
}

/// One message as the test server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The top-level content type.
    pub content_type: String,
    /// The decoded text/plain part.
    pub text: String,
    /// The decoded text/html part.
    pub html: String,
    /// Whether it arrived over TLS.
    pub tls: bool,
    /// Whether the client had authenticated.
    pub authenticated: bool,
}

impl Received {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The token of the first `?token=` link in the text part.
    pub fn token(&self) -> String {
        let start = self
            .text
            .find("?token=")
            .unwrap_or_else(|| panic!("no ?token= link in {:?}", self.text))
            + "?token=".len();
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The first `http(s)://` link in the text part.
    pub fn link(&self) -> String {
        let start = self
            .text
            .find("http")
            .unwrap_or_else(|| panic!("no link in {:?}", self.text));
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

/// A running test SMTP server; killed when dropped.
pub struct SmtpServer {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// The options it runs with.
    pub options: Options,
    /// The CA that signed its certificate.
    pub ca: TestCa,
    dir: PathBuf,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts a server with `options` and a certificate from a new CA.
    pub fn start(options: Options) -> SmtpServer {
        SmtpServer::start_with_ca(options, TestCa::new("auth-server test CA"))
    }

    /// Starts a server with `options` and a certificate from `ca`.
    pub fn start_with_ca(options: Options, ca: TestCa) -> SmtpServer {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "auth-smtp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("spool")).unwrap();
        let (cert, key) = ca.issue();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        let mut server = SmtpServer {
            port: 0,
            options,
            ca,
            dir,
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--spool")
            .arg(self.dir.join("spool"))
            .arg("--cert")
            .arg(self.dir.join("cert.pem"))
            .arg("--key")
            .arg(self.dir.join("key.pem"));
        let port = self.options.port.or((self.port != 0).then_some(self.port));
        if let Some(port) = port {
            command.arg("--port").arg(port.to_string());
        }
        match self.options.security {
            Security::StartTls => {}
            Security::Implicit => {
                command.arg("--implicit-tls");
            }
            Security::Plain => {
                command.arg("--no-starttls");
            }
        }
        if let Some((user, pass)) = &self.options.auth {
            command.arg("--auth").arg(format!("{user}:{pass}"));
        }
        command
            .arg("--tempfail")
            .arg(self.options.tempfail.to_string());
        for address in &self.options.reject {
            command.arg("--reject-rcpt").arg(address);
        }
        if self.options.stall_first {
            command.arg("--stall-first");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run python3 for the test SMTP server");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(port) = line.trim().strip_prefix("READY ") else {
            let mut err = String::new();
            if let Some(stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut err);
            }
            let _ = child.kill();
            panic!(
                "the test SMTP server did not start ({line:?}): {err}\n\
                 It needs Python's aiosmtpd: `python3 -m pip install aiosmtpd`."
            );
        };
        self.port = port.parse().unwrap();
        self.child = Some(child);
    }

    /// Stops the server (connections are refused until [`restart`]).
    ///
    /// [`restart`]: SmtpServer::restart
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The CA certificate's file, for `SMTP_CA_FILE`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The `SMTP_URL` that reaches this server as it is configured.
    pub fn url(&self) -> String {
        let auth = match &self.options.auth {
            Some((user, pass)) => format!("{}:{}@", encode(user), encode(pass)),
            None => String::new(),
        };
        match self.options.security {
            Security::StartTls => format!("smtp://{auth}127.0.0.1:{}", self.port),
            Security::Implicit => format!("smtps://{auth}127.0.0.1:{}", self.port),
            Security::Plain => format!("smtp://{auth}127.0.0.1:{}/?tls=none", self.port),
        }
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("spool"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| parse(p)).collect()
    }

    /// Waits up to `within` until at least `n` messages have arrived; returns
    /// them all.
    #[track_caller]
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server received {} messages, not {n}, within {within:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The newest message to `recipient` whose text contains `needle`
    /// (a link's path, say), waiting up to 10 s for one.
    #[track_caller]
    pub fn mail_with(&self, recipient: &str, needle: &str) -> Received {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self
                .received()
                .into_iter()
                .rev()
                .find(|m| m.rcpt_tos.iter().any(|r| r == recipient) && m.text.contains(needle))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {recipient} with {needle:?} reached the SMTP server within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The newest reset mail to `recipient`, waiting up to 10 s for one.
    #[track_caller]
    pub fn reset_mail(&self, recipient: &str) -> Received {
        self.mail_with(recipient, "/reset-password?token=")
    }

    /// The newest message to `recipient`, waiting up to 10 s for one.
    #[track_caller]
    pub fn mail_to(&self, recipient: &str) -> Received {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self
                .received()
                .into_iter()
                .rev()
                .find(|m| m.rcpt_tos.iter().any(|r| r == recipient))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {recipient} reached the SMTP server within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn parse(path: &Path) -> Received {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    Received {
        mail_from: v["mail_from"].as_str().unwrap_or("").to_string(),
        rcpt_tos: strings("rcpt_tos"),
        headers: v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        content_type: v["content_type"].as_str().unwrap().to_string(),
        text: v["text"].as_str().unwrap_or("").to_string(),
        html: v["html"].as_str().unwrap_or("").to_string(),
        tls: v["tls"].as_bool().unwrap(),
        authenticated: v["authenticated"].as_bool().unwrap(),
    }
}

/// Percent-encodes a URL user name or password.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Builder {
    /// Sends the server's mail to `smtp`, trusting its CA, from a test
    /// address; retries come after 1 s instead of 30.
    pub fn mail_to(self, smtp: &SmtpServer) -> Builder {
        self.env("SMTP_URL", &smtp.url())
            .env("SMTP_CA_FILE", smtp.ca_file().to_str().unwrap())
            .env("MAIL_FROM", "Auth Tests <no-reply@example.com>")
            .env("MAIL_RETRY_BASE_SECONDS", "1")
            .env("MAIL_TIMEOUT_MS", "3000")
    }
}
