//! Shared helpers for the integration tests: a fresh database per test on a
//! real MySQL-compatible server, the real `auth-server` binary started on a
//! free port against it, and a minimal HTTP client over raw TCP (raw, so tests
//! can send exactly the bytes a hostile client would).
//!
//! `TEST_DATABASE_URL` (default `mysql://root@127.0.0.1:3306`) names the
//! server; with none reachable, tests fail saying how to start one.

#![allow(dead_code)]

pub mod browser;
pub mod galera;
pub mod smtp;
pub mod totp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first admin of a server built with [`Builder::admin`].
pub const ADMIN: &str = "root@example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A 32-byte token secret for tests.
pub const TEST_SECRET: &str = "test-secret-0123456789-abcdefghij";

/// The MySQL server the tests use, without a database name.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
        .trim_end_matches('/')
        .to_string()
}

fn admin_conn() -> mysql::Conn {
    let url = admin_url();
    mysql::Conn::new(mysql::Opts::from_url(&url).expect("TEST_DATABASE_URL is not a mysql:// URL"))
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test database at {url}: {e}\n\
                 Start MariaDB or MySQL on 127.0.0.1:3306 with a passwordless root \
                 (Debian: `apt-get install mariadb-server` then \
                 `mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && \
                 start-stop-daemon --start --background --exec /usr/sbin/mariadbd -- --user=mysql`), \
                 or point TEST_DATABASE_URL at one."
            )
        })
}

/// A database created for one test and dropped when this value is dropped.
pub struct TestDb {
    /// The database's name.
    pub name: String,
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub fn new() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "auth_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            SystemNanos::now()
        );
        use mysql::prelude::Queryable;
        admin_conn()
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .expect("CREATE DATABASE failed");
        TestDb { name }
    }

    /// The URL a server uses to reach this database.
    pub fn url(&self) -> String {
        format!("{}/{}", admin_url(), self.name)
    }

    /// A direct connection to this database, for checking what the server
    /// stored.
    pub fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(mysql::Opts::from_url(&self.url()).unwrap()).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        use mysql::prelude::Queryable;
        let _ = admin_conn().query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

struct SystemNanos;
impl SystemNanos {
    fn now() -> u32 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    }
}

/// How to start a server.
pub struct Builder {
    env: Vec<(String, String)>,
    unset: Vec<String>,
    db: Option<Arc<TestDb>>,
    nofile: Option<u64>,
}

impl Builder {
    /// Sets an environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Builder {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Removes a variable the builder would otherwise set (test defaults
    /// included).
    pub fn unset(mut self, key: &str) -> Builder {
        self.env.retain(|(k, _)| k != key);
        self.unset.push(key.to_string());
        self
    }

    /// Makes [`ADMIN`] (with [`ADMIN_PASSWORD`]) the first admin at start.
    pub fn admin(self) -> Builder {
        self.env("ADMIN_EMAIL", ADMIN)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
    }

    /// Uses an existing database (to run several servers on one).
    pub fn db(mut self, db: &Arc<TestDb>) -> Builder {
        self.db = Some(Arc::clone(db));
        self
    }

    /// Reaches the database through `proxy`, so the test can cut or freeze
    /// it (on the builder's database, or a fresh one).
    pub fn through(mut self, proxy: &Proxy) -> Builder {
        let db = Arc::clone(self.db.get_or_insert_with(|| Arc::new(TestDb::new())));
        // These tests count the database connections the proxy holds; the
        // mail worker's polling would add its own, so it polls only when woken.
        self.env("DATABASE_URL", &proxy.url(&db))
            .env("MAIL_POLL_MS", "3600000")
    }

    /// Runs the server with this limit on open file descriptors.
    pub fn nofile(mut self, limit: u64) -> Builder {
        self.nofile = Some(limit);
        self
    }

    /// Starts the server and waits until it listens.
    pub fn start(self) -> Server {
        let db = self.db.unwrap_or_else(|| Arc::new(TestDb::new()));
        let mut env = vec![
            ("DATABASE_URL".to_string(), db.url()),
            ("BIND_ADDR".to_string(), "127.0.0.1:0".to_string()),
            ("TOKEN_SECRET".to_string(), TEST_SECRET.to_string()),
            // Cheap hashing keeps the suite fast; the cost is not under test.
            ("ARGON2_MEMORY_KIB".to_string(), "256".to_string()),
            ("ARGON2_ITERATIONS".to_string(), "1".to_string()),
            ("DB_CONNECT_RETRY_SECONDS".to_string(), "5".to_string()),
            ("LOG_LEVEL".to_string(), "debug".to_string()),
            // Tests send many requests from one address; the limiter has its own tests.
            ("RATE_LIMIT_BURST".to_string(), "0".to_string()),
        ];
        env.retain(|(key, _)| !self.unset.contains(key));
        for (k, v) in self.env {
            env.retain(|(key, _)| *key != k);
            env.push((k, v));
        }
        let (process, log) = spawn(&env, &[], self.nofile);
        let addr = wait_for_listening(&log, &process);
        Server {
            process,
            addr,
            db,
            log,
        }
    }
}

/// Starts the binary with `env` and `args`; stderr is collected into the
/// returned log.
pub fn spawn(
    env: &[(String, String)],
    args: &[&str],
    nofile: Option<u64>,
) -> (Child, Arc<Mutex<String>>) {
    let binary = env!("CARGO_BIN_EXE_auth-server");
    let mut command = match nofile {
        // The limit must be set in the child before exec; a shell does it.
        Some(limit) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                .arg(binary);
            c
        }
        None => Command::new(binary),
    };
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .expect("cannot start the auth-server binary");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (child, log)
}

fn wait_for_listening(log: &Arc<Mutex<String>>, process: &Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for line in log.lock().unwrap().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["msg"] == "listening" {
                return v["addr"].as_str().unwrap().parse().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "server (pid {}) did not start listening within 30 s; its log:\n{}",
        process.id(),
        log.lock().unwrap()
    );
}

/// Everything a spawned process wrote to stderr, once it has exited: waits
/// (up to 5 s) until the reader thread has reached EOF, which it signals by
/// dropping its handle on the log. Without this wait, the last lines of a
/// process that just exited may not have been read yet.
pub fn final_log(log: &Arc<Mutex<String>>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(log) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    log.lock().unwrap().clone()
}

/// Waits for a spawned process to exit and returns its exit code.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// A running `auth-server` process; killed when dropped.
pub struct Server {
    /// The child process.
    pub process: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database.
    pub db: Arc<TestDb>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// A builder with test defaults: fresh database, free port, cheap hashing.
    pub fn builder() -> Builder {
        Builder {
            env: Vec::new(),
            unset: Vec::new(),
            db: None,
            nofile: None,
        }
    }

    /// Starts a server with the test defaults.
    pub fn start() -> Server {
        Server::builder().start()
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `within` for `needle` to appear in the log; false if it
    /// did not.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The number of open file descriptors of the server process, from /proc.
    pub fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.process.id()))
            .unwrap()
            .count()
    }

    /// The number of threads of the server process, from /proc.
    pub fn threads(&self) -> usize {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    /// Opens a connection to the server.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends one request on a new connection and reads the reply.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        self.connect().request(method, path, headers, body)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], "")
    }

    /// `GET path` with a bearer token.
    pub fn get_auth(&self, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.request("GET", path, &[("Authorization", &auth)], "")
    }

    /// `method path` with a JSON body.
    pub fn json(&self, method: &str, path: &str, body: &serde_json::Value) -> Reply {
        self.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            &body.to_string(),
        )
    }

    /// `method path` with a JSON body and a bearer token.
    pub fn json_auth(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        self.request(
            method,
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            &body.to_string(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One client connection with a read buffer, so replies to pipelined
/// requests can be read one by one.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr`, with a 10 s read timeout so a broken server fails
    /// the test instead of hanging it.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("cannot connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, raw: &[u8]) {
        self.stream
            .write_all(raw)
            .expect("write to the server failed");
    }

    /// Sends a request with `Host`, `Content-Length` and the given headers,
    /// and reads its reply.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.send_request(method, path, headers, body);
        self.read_reply().expect("no reply from the server")
    }

    /// Sends what [`Client::request`] sends, without waiting for a reply.
    pub fn send_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        self.send(raw.as_bytes());
    }

    /// Reads one reply; `None` if the connection closed first.
    pub fn read_reply(&mut self) -> Option<Reply> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&self.buf) {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                if status == 100 {
                    self.buf.drain(..head_len);
                    continue;
                }
                if self.buf.len() >= head_len + length {
                    let body = self.buf[head_len..head_len + length].to_vec();
                    self.buf.drain(..head_len + length);
                    return Some(Reply {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// True if the server closed the connection (EOF or reset) within
    /// `within`; bytes that arrive first are kept for `read_reply`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }
}

/// A TCP proxy in front of the test database that a test can cut, to see
/// how the server behaves when its database goes away and comes back.
pub struct Proxy {
    /// Where the server should connect instead of the database.
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProxyMode {
    /// Forward everything.
    Up,
    /// Close every connection at once, as a stopped database does.
    Down,
    /// Accept but never answer, as a firewalled or frozen database does.
    Blackhole,
}

struct ProxyState {
    mode: ProxyMode,
    open: Vec<TcpStream>,
}

impl Proxy {
    /// Starts a proxy to the test database server.
    pub fn start() -> Proxy {
        let opts = mysql::Opts::from_url(&admin_url()).unwrap();
        let target = format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            mode: ProxyMode::Up,
            open: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mode = shared.lock().unwrap().mode;
                match mode {
                    ProxyMode::Down => drop(client),
                    ProxyMode::Blackhole => shared.lock().unwrap().open.push(client),
                    ProxyMode::Up => {
                        let Ok(upstream) = TcpStream::connect(&target) else {
                            continue;
                        };
                        let mut st = shared.lock().unwrap();
                        st.open.push(client.try_clone().unwrap());
                        st.open.push(upstream.try_clone().unwrap());
                        drop(st);
                        pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        pipe(upstream, client);
                    }
                }
            }
        });
        Proxy { addr, state }
    }

    /// The database URL through this proxy for `db`.
    pub fn url(&self, db: &TestDb) -> String {
        let opts = mysql::Opts::from_url(&admin_url()).unwrap();
        let user = opts.get_user().unwrap_or("root");
        let auth = match opts.get_pass() {
            Some(pass) => format!("{user}:{pass}"),
            None => user.to_string(),
        };
        format!("mysql://{auth}@{}/{}", self.addr, db.name)
    }

    /// Connections the proxy holds open now (in `Blackhole` mode: the
    /// database connections the server is stuck on).
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().open.len()
    }

    /// Waits up to 10 s until the proxy holds at least `n` connections.
    pub fn wait_held(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.held() < n {
            assert!(
                Instant::now() < deadline,
                "the proxy holds {} connections, not {n}",
                self.held()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Switches mode; leaving `Up` cuts every proxied connection.
    pub fn set(&self, mode: ProxyMode) {
        let mut st = self.state.lock().unwrap();
        st.mode = mode;
        if mode != ProxyMode::Up {
            for s in st.open.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// Status and body, for assertion messages.
    pub fn text(&self) -> String {
        format!("{} {}", self.status, String::from_utf8_lossy(&self.body))
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.header("content-type")),
            (status, Some("application/problem+json")),
            "expected {status} {code}, got {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        assert_eq!(body["status"], status, "body: {body}");
        assert!(
            body["title"].is_string() && body["detail"].is_string() && body["type"].is_string()
        );
    }
}

/// The body of the newest reset mail to `recipient` in the outbox, waiting
/// up to 5 s for one to appear (the mail worker queues it shortly after the
/// request).
#[track_caller]
pub fn wait_for_mail(server: &Server, recipient: &str) -> String {
    wait_for_mail_of(server, recipient, "password_reset")
}

/// The body of the newest outbox message of `kind` to `recipient`, waiting
/// up to 5 s for one to appear.
#[track_caller]
pub fn wait_for_mail_of(server: &Server, recipient: &str, kind: &str) -> String {
    use mysql::prelude::Queryable;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body: Option<String> = server
            .db
            .conn()
            .exec_first(
                "SELECT body FROM mail_outbox WHERE recipient = ? AND kind = ?
                 ORDER BY id DESC LIMIT 1",
                (recipient, kind),
            )
            .unwrap();
        if let Some(body) = body {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} mail to {recipient} reached the outbox within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port that was free a moment ago, for a server whose address must
/// be known before it starts (its `PUBLIC_URL`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Waits (up to 5 s) until the mail worker has resolved every pending mail
/// request, so the outbox shows their outcome.
#[track_caller]
pub fn wait_for_mail_worker(server: &Server) {
    use mysql::prelude::Queryable;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: u64 = server
            .db
            .conn()
            .query_first("SELECT COUNT(*) FROM mail_requests")
            .unwrap()
            .unwrap();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mail worker left {pending} requests unresolved for 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `auth-server ARGS` against `db` with `stdin`; exit code, stdout
/// and stderr.
pub fn cli(db: &TestDb, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("TOKEN_SECRET", TEST_SECRET)
        .env("ARGON2_MEMORY_KIB", "256")
        .env("ARGON2_ITERATIONS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the auth-server binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("cannot write the command's standard input");
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The token in a mail body's link: what follows `{base}?token=`, which
/// must be exactly 43 base64url characters (32 bytes) ending the token.
#[track_caller]
pub fn token_in(body: &str, base: &str) -> String {
    use base64::Engine;
    let prefix = format!("{base}?token=");
    let start = body
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in the mail: {body:?}"))
        + prefix.len();
    let token: String = body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "token {token:?} in {body:?}");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&token)
        .unwrap_or_else(|e| panic!("token {token:?} is not base64url: {e}"));
    assert_eq!(raw.len(), 32);
    token
}

/// The types of the audit events about `user_id`, oldest first, straight
/// from the table.
pub fn audit_types(server: &Server, user_id: u64) -> Vec<String> {
    use mysql::prelude::Queryable;
    server
        .db
        .conn()
        .exec(
            "SELECT type FROM audit_events WHERE user_id = ? ORDER BY id",
            (user_id,),
        )
        .unwrap()
}

/// Starts the binary on `db` with the least it needs and `env`, which must
/// stop the start (exit 1); its log.
#[track_caller]
pub fn failed_start(db: &TestDb, env: &[(&str, &str)]) -> String {
    let mut vars = vec![
        ("DATABASE_URL".to_string(), db.url()),
        ("TOKEN_SECRET".to_string(), TEST_SECRET.to_string()),
        ("BIND_ADDR".to_string(), "127.0.0.1:0".to_string()),
    ];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (mut child, log) = spawn(&vars, &[], None);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)),
        Some(1),
        "{env:?}"
    );
    final_log(&log)
}

/// Registers `email` with `password`; returns the new user's id.
#[track_caller]
pub fn register(server: &Server, email: &str, password: &str) -> u64 {
    let reply = server.json(
        "POST",
        "/auth/register",
        &serde_json::json!({"email": email, "password": password}),
    );
    assert_eq!(reply.status, 201, "register {email}: {}", reply.text());
    reply.json()["user"]["id"]
        .as_u64()
        .expect("register answered no user id")
}

/// `POST /auth/login`, whatever it answers.
pub fn login_reply(server: &Server, email: &str, password: &str) -> Reply {
    server.json(
        "POST",
        "/auth/login",
        &serde_json::json!({"email": email, "password": password}),
    )
}

/// Logs in and returns the bearer token.
#[track_caller]
pub fn login(server: &Server, email: &str, password: &str) -> String {
    let reply = login_reply(server, email, password);
    assert_eq!(reply.status, 200, "login {email}: {}", reply.text());
    reply.json()["token"]
        .as_str()
        .expect("login answered no token")
        .to_string()
}
