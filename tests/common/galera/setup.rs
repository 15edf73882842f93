//! Getting a cluster's processes ready to start: the programs it needs,
//! ports, the watchdog, the `mysql` user, and the first node's system
//! tables.

use super::{NODES, Ports};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};

/// The Galera provider Debian's `galera-4` installs.
pub(super) const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
const INSTALL: &str = "apt-get install galera-4 mariadb-server rsync iproute2";

pub(super) fn mariadbd() -> &'static str {
    if Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    }
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn check_prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    if !Path::new(PROVIDER).exists() {
        missing.push(PROVIDER.to_string());
    }
    if !Path::new("/usr/sbin/mariadbd").exists() && !on_path("mariadbd") {
        missing.push("mariadbd".to_string());
    }
    for program in ["mariadb-install-db", "wsrep_sst_rsync", "rsync", "ss"] {
        if !on_path(program) {
            missing.push(program.to_string());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the cluster tests need {}, which are missing. Install them: `{INSTALL}`",
            missing.join(", ")
        ))
    }
}

/// Starts the watchdog described in the module docs; returns the write end
/// of its pipe.
pub(super) fn start_watchdog(dir: &Path) -> Result<ChildStdin, String> {
    // Ignores the signals a terminal sends, waits for EOF, then kills every
    // node whose PID file is there and removes the directory.
    let script = r#"trap '' INT TERM HUP
cat >/dev/null
for f in "$0"/node*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
sleep 1
rm -rf "$0""#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("the watchdog has no stdin")?;
    // Nothing is ever written; an empty write only checks the pipe is open.
    stdin.write_all(b"").map_err(|e| e.to_string())?;
    Ok(stdin)
}

/// Four free ports per node on 127.0.0.1, below the ephemeral range (which
/// starts at 32768 by default), starting at a point that differs between
/// runs so concurrent test runs rarely probe the same ports.
pub(super) fn free_ports() -> Result<Vec<Ports>, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) as usize;
    let (low, span) = (20_000, 12_700);
    let mut held = Vec::new();
    for n in 0..span {
        if held.len() == 4 * NODES {
            break;
        }
        let port = (low + (seed + n) % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    if held.len() < 4 * NODES {
        return Err(format!(
            "fewer than {} free ports in 20000-32699",
            4 * NODES
        ));
    }
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    Ok(ports
        .chunks(4)
        .map(|p| Ports {
            sql: p[0],
            gcomm: p[1],
            ist: p[2],
            sst: p[3],
        })
        .collect())
}

/// `Some((uid, gid))` of `mysql` when this process runs as root.
pub(super) fn mysql_user_if_root() -> Result<Option<(u32, u32)>, String> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map_err(|e| e.to_string())?;
    if me.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"mysql") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| format!("running as root needs the user mysql, which `{INSTALL}` creates"))
}

pub(super) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Creates the system tables in `dir/data`, with a passwordless root for
/// 127.0.0.1 (what `--auth-root-authentication-method=normal` makes).
pub(super) fn install(dir: &Path) -> Result<(), String> {
    let out = Command::new("mariadb-install-db")
        .arg(format!("--defaults-file={}", dir.join("my.cnf").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mariadb-install-db: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
