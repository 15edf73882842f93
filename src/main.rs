//! The `auth-server` binary: reads the configuration, prepares the database
//! and serves. Wiring only; the behaviour lives in the library's modules.

#![forbid(unsafe_code)]

use auth_server::config::Config;
use auth_server::db::Db;
use auth_server::handlers::{self, Context};
use auth_server::mail::{self, Courier};
use auth_server::{http, log, router};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
usage: auth-server [COMMAND]

Commands:
  serve              apply pending migrations, then serve HTTP (the default)
  migrate            apply pending migrations and exit
  healthcheck        GET /healthz on this machine's server (port from BIND_ADDR);
                     exit 0 if it answers 200, 1 otherwise (for HEALTHCHECK)
  init-secret PATH   create PATH with a new random token secret, mode 0600,
                     unless it already exists
  import-users FILE  import accounts from JSON Lines (FILE, or - for stdin);
                     see README.md
  create-admin EMAIL promote the account with this address to admin, or
                     create it as an admin with the password read from stdin
  set-role EMAIL user|admin
                     change the account's role (never the last admin's)

Configuration comes from environment variables; see README.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => serve(),
        ["migrate"] => migrate(),
        ["healthcheck"] => healthcheck(),
        ["init-secret", path] => init_secret(path),
        ["import-users", file] => import_users(file),
        ["create-admin", email] => create_admin(email),
        ["set-role", email, role] => set_role(email, role),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        ["-V" | "--version"] => {
            println!("auth-server {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Logs `msg` as a start-up failure and returns exit status 1.
fn fail(msg: &str) -> ExitCode {
    log::error(msg, &[]);
    ExitCode::FAILURE
}

fn load() -> Result<(Config, Db), ExitCode> {
    let config = Config::from_env().map_err(|e| fail(&e.to_string()))?;
    log::set_level(config.log_level);
    log::install_panic_hook();
    let db = Db::new(
        &config.database_url,
        config.db_pool_max,
        config.db_timeout,
        config.db_causal_reads,
    )
    .map_err(|e| fail(&e.to_string()))?;
    Ok((config, db))
}

fn migrate() -> ExitCode {
    let (config, db) = match load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match db.prepare(config.db_connect_retry) {
        Ok(applied) => {
            log::info("migrations applied", &[("applied", applied.into())]);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn serve() -> ExitCode {
    let (config, db) = match load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match db.prepare(config.db_connect_retry) {
        Ok(applied) if !applied.is_empty() => {
            log::info("migrations applied", &[("applied", applied.into())]);
        }
        Ok(_) => {}
        Err(e) => return fail(&e.to_string()),
    }
    if let Err(e) = auth_server::admin::bootstrap(&config, &db) {
        return fail(&e);
    }
    let listener = match http::bind(&config.bind_addr) {
        Ok(listener) => listener,
        Err(e) => {
            return fail(&format!(
                "cannot listen on BIND_ADDR {}: {e}",
                config.bind_addr
            ));
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.bind_addr.clone());
    let limits = config.limits.clone();
    let transport = match transport(&config) {
        Ok(transport) => transport,
        Err(e) => return fail(&format!("invalid configuration: {e}")),
    };
    let shutdown = Arc::new(http::Shutdown::new(config.shutdown_grace));
    if let Err(e) = stop_on_signals(Arc::clone(&shutdown)) {
        return fail(&format!("cannot install signal handlers: {e}"));
    }
    if let Err(e) = reload_on_sighup(transport.tls.clone()) {
        return fail(&format!("cannot install signal handlers: {e}"));
    }
    let metrics_addr = config.metrics_bind_addr.clone();
    let admin_addr = config.admin_bind_addr.clone();
    let courier = match Courier::new(&config.mail, db.holder()) {
        Ok(courier) => courier,
        Err(e) => return fail(&format!("invalid configuration: SMTP_URL: {e}")),
    };
    if courier.is_none() {
        log::warn(
            "SMTP_URL is not set: mail stays in the mail_outbox table for an external mailer",
            &[],
        );
    }
    let ctx = match Context::new(config, db) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => return fail(&format!("cannot start the hashing threads: {e}")),
    };
    if let Some(metrics_addr) = metrics_addr {
        if let Err(code) = serve_metrics(&metrics_addr, &limits, Arc::clone(&ctx)) {
            return code;
        }
    }
    if let Some(admin_addr) = admin_addr {
        if let Err(code) = serve_admin(&admin_addr, &limits, Arc::clone(&ctx)) {
            return code;
        }
    }
    // Logged once every socket is bound: tools wait for this line.
    log::info("listening", &[("addr", addr.into())]);
    spawn_session_purge(Arc::clone(&ctx));
    if let Err(e) = spawn_mail_threads(Arc::clone(&ctx), courier) {
        return fail(&format!("cannot start the mail threads: {e}"));
    }
    http::serve(
        listener,
        limits,
        transport,
        Arc::new(move |request| router::handle(&ctx, request)),
        shutdown,
    );
    ExitCode::SUCCESS
}

/// How `BIND_ADDR` speaks: HTTPS if `TLS_CERT_FILE` and `TLS_KEY_FILE` are
/// set (and can be used: the error names the file at fault), else plain.
fn transport(config: &Config) -> Result<http::Transport, http::TlsError> {
    let Some(files) = &config.tls else {
        return Ok(http::Transport::default());
    };
    let certificates = http::Certificates::load(files.cert.clone(), files.key.clone())?;
    log::info("serving HTTPS", &[]);
    Ok(http::Transport {
        tls: Some(Arc::new(certificates)),
        hsts: (config.hsts_max_age > 0).then(|| format!("max-age={}", config.hsts_max_age)),
    })
}

/// SIGHUP reads the TLS certificate and key again (how ACME clients rotate
/// them): new connections use the new pair; a bad one keeps the old.
/// Without TLS there is nothing to reload, and SIGHUP is only logged.
fn reload_on_sighup(tls: Option<Arc<http::Certificates>>) -> std::io::Result<()> {
    use signal_hook::consts::SIGHUP;
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP])?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                match &tls {
                    None => log::info("SIGHUP: no TLS certificates to reload", &[]),
                    Some(certificates) => match certificates.reload() {
                        Ok(()) => log::info("TLS certificates reloaded", &[]),
                        Err(e) => log::error(
                            "TLS certificates not reloaded; the old ones stay in use",
                            &[("error", e.to_string().into())],
                        ),
                    },
                }
            }
        })?;
    Ok(())
}

/// SIGTERM (`docker stop`) and SIGINT (Ctrl-C) start a graceful shutdown; a
/// second one exits at once, with status 1.
fn stop_on_signals(shutdown: Arc<http::Shutdown>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = signals.forever();
            if let Some(signal) = received.next() {
                log::info(
                    "signal received; shutting down",
                    &[("signal", signal.into())],
                );
                shutdown.trigger();
            }
            // A second signal means "now": skip the rest of the grace period.
            if let Some(signal) = received.next() {
                log::warn(
                    "second signal; exiting at once",
                    &[("signal", signal.into())],
                );
                std::process::exit(1);
            }
        })?;
    Ok(())
}

/// Serves `/metrics` alone on `addr` (`METRICS_BIND_ADDR`), on a thread of
/// its own, so the metrics need not be public.
fn serve_metrics(addr: &str, limits: &http::Limits, ctx: Arc<Context>) -> Result<(), ExitCode> {
    let listener = http::bind(addr)
        .map_err(|e| fail(&format!("cannot listen on METRICS_BIND_ADDR {addr}: {e}")))?;
    log::info("metrics listening", &[("addr", addr.into())]);
    let limits = http::Limits {
        max_connections: 16,
        ..limits.clone()
    };
    let app = Arc::new(move |request: &http::Request| {
        let answer = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/metrics") => handlers::metrics(&ctx, request),
            _ => Err(auth_server::error::ApiError::NotFound),
        };
        answer.unwrap_or_else(|e| e.to_response(&request.request_id))
    });
    let never = Arc::new(http::Shutdown::new(std::time::Duration::ZERO));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || http::serve(listener, limits, http::Transport::default(), app, never))
        .map_err(|e| fail(&format!("cannot start the metrics server: {e}")))?;
    Ok(())
}

/// Serves the admin API alone on `addr` (`ADMIN_BIND_ADDR`), on a thread of
/// its own, so it can be kept off the public network. Like the metrics
/// listener it is not drained on shutdown: the process ends when the main
/// listener has drained.
fn serve_admin(addr: &str, limits: &http::Limits, ctx: Arc<Context>) -> Result<(), ExitCode> {
    let listener = http::bind(addr)
        .map_err(|e| fail(&format!("cannot listen on ADMIN_BIND_ADDR {addr}: {e}")))?;
    log::info("admin API listening", &[("addr", addr.into())]);
    let limits = http::Limits {
        max_connections: 64,
        ..limits.clone()
    };
    let app = Arc::new(move |request: &http::Request| router::handle_admin(&ctx, request));
    let never = Arc::new(http::Shutdown::new(Duration::ZERO));
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || http::serve(listener, limits, http::Transport::default(), app, never))
        .map_err(|e| fail(&format!("cannot start the admin listener: {e}")))?;
    Ok(())
}

/// Deletes expired sessions at start-up and every `PURGE_INTERVAL` after.
fn spawn_session_purge(ctx: Arc<Context>) {
    let spawned = std::thread::Builder::new()
        .name("purge".into())
        .spawn(move || {
            loop {
                match handlers::purge_expired_sessions(&ctx) {
                    // A run that found nothing is news only when debugging
                    // (and to tests, which wait for it).
                    Ok(n) => log::log(
                        if n == 0 {
                            log::Level::Debug
                        } else {
                            log::Level::Info
                        },
                        "expired sessions purged",
                        &[("sessions", n.into())],
                    ),
                    Err(e) => log::warn("session purge failed", &[("error", e.to_string().into())]),
                }
                std::thread::sleep(handlers::PURGE_INTERVAL);
            }
        });
    if let Err(e) = spawned {
        log::error(
            "cannot start the session purge thread",
            &[("error", e.to_string().into())],
        );
    }
}

/// The mail resolver and, with `SMTP_URL`, the courier, each on a thread of
/// its own for the life of the process. Without them no reset mail would be
/// queued or sent, so failing to start them stops start-up.
fn spawn_mail_threads(ctx: Arc<Context>, courier: Option<Courier>) -> std::io::Result<()> {
    let resolver_ctx = Arc::clone(&ctx);
    std::thread::Builder::new()
        .name("mail-resolver".into())
        .spawn(move || mail::run_resolver(&resolver_ctx))?;
    if let Some(courier) = courier {
        std::thread::Builder::new()
            .name("mail-courier".into())
            .spawn(move || mail::run_courier(&ctx, &courier))?;
    }
    Ok(())
}

/// Asks the local server for `/healthz`. Needs no shell or curl in the image,
/// and no configuration beyond `BIND_ADDR`'s port.
fn healthcheck() -> ExitCode {
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let port = bind.rsplit(':').next().unwrap_or("8080");
    let addr = format!("127.0.0.1:{port}");
    let timeout = Duration::from_secs(3);
    let answered_ok = (|| -> std::io::Result<bool> {
        let addr = addr
            .parse()
            .map_err(|_| std::io::Error::other("BIND_ADDR has no valid port"))?;
        let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        // With TLS on, over HTTPS, trusting exactly the server's own
        // certificate (it names the public host, not 127.0.0.1).
        match std::env::var_os("TLS_CERT_FILE").filter(|v| !v.is_empty()) {
            None => healthz_answers_200(stream),
            Some(cert) => {
                let config = http::pinned_client(std::path::Path::new(&cert))
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let name =
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let conn =
                    rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
                healthz_answers_200(rustls::StreamOwned::new(conn, stream))
            }
        }
    })();
    match answered_ok {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("healthcheck: {addr}/healthz did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `GET /healthz` on `stream`; true if the answer is 200.
fn healthz_answers_200(mut stream: impl Read + Write) -> std::io::Result<bool> {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(&head == b"HTTP/1.1 200")
}

/// Writes a new token secret (48 random bytes as base64url, 64 characters)
/// to `path` with mode 0600, unless the file exists: the first start of a
/// deployment makes the key and every later start keeps it.
fn init_secret(path: &str) -> ExitCode {
    use base64::Engine;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 48];
    if let Err(e) = getrandom::fill(&mut bytes) {
        eprintln!("init-secret: no OS randomness: {e}");
        return ExitCode::FAILURE;
    }
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            file.write_all(secret.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
    match created {
        Ok(()) => {
            eprintln!("init-secret: created {path}");
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("init-secret: {path} exists; keeping it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("init-secret: cannot create {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Configuration and a migrated database, for a command that changes
/// accounts.
fn load_migrated() -> Result<(Config, Db), ExitCode> {
    let (config, db) = load()?;
    db.prepare(config.db_connect_retry)
        .map_err(|e| fail(&e.to_string()))?;
    Ok((config, db))
}

/// Prints what an admin command did (exit 0) or why it could not (exit 1).
fn report(command: &str, outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(done) => {
            println!("{command}: {done}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{command}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn create_admin(email: &str) -> ExitCode {
    let (config, db) = match load_migrated() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut stdin = std::io::stdin().lock();
    let outcome = auth_server::admin::create_admin(&config, &db, email, &mut stdin);
    report("create-admin", outcome)
}

fn set_role(email: &str, role: &str) -> ExitCode {
    let (_, db) = match load_migrated() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    report("set-role", auth_server::admin::set_role(&db, email, role))
}

/// Imports accounts from JSON Lines; exit 0 if every line was imported or
/// already existed, 1 if any line was rejected or the import failed.
fn import_users(file: &str) -> ExitCode {
    let (config, db) = match load() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if let Err(e) = db.prepare(config.db_connect_retry) {
        return fail(&e.to_string());
    }
    let input: Box<dyn std::io::BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("import-users: cannot open {file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let workers = config.hash_concurrency;
    let now = auth_server::time::unix_now();
    match auth_server::import::run(&config, &db, input, now, workers) {
        Ok(summary) => {
            let _ = auth_server::import::report(&summary, &mut std::io::stdout().lock());
            if summary.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("import-users: {e}");
            ExitCode::FAILURE
        }
    }
}
