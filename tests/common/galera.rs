//! A real 3-node MariaDB Galera cluster for the cluster tests (issue 14):
//! three `mariadbd` processes on 127.0.0.1, each with its own data
//! directory and its own SQL, Galera, IST and SST ports, replicating through
//! Debian's `galera-4` provider with rsync state transfers. Nothing is
//! simulated: nodes are killed with SIGKILL, cut off with Galera's own
//! `gmcast.isolate`, and rejoin through IST or SST as they would in
//! production.
//!
//! - One cluster per test binary, started lazily by the first test that asks
//!   ([`shared`] or [`exclusive`]) and shared by the rest; each test works
//!   in its own database ([`GaleraDb`]), which replicates to every node.
//! - Tests that only use the cluster hold a shared turn; tests that kill or
//!   isolate a node hold the exclusive turn, so no other test sees the
//!   disturbance, and the cluster is put back (every node running, joined
//!   and synced) before the turn is released. One cluster serialised this
//!   way costs one start-up per run; a cluster per disturbing test would
//!   cost a start-up each (seconds of SST on two cores).
//! - Rust tests have no global teardown, so a watchdog (`sh`) holds the read
//!   end of a pipe whose write end only this process has: when the test
//!   process ends, however it ends, the pipe closes, and the watchdog
//!   SIGKILLs every node and removes the cluster's directory.
//! - Ports come from below the kernel's ephemeral range, so a node restarted
//!   after a kill finds its ports free even after thousands of client
//!   connections.
//! - Run as root, the nodes run as `mysql` (the rsync daemon of an SST drops
//!   root for `nobody`, who could not write the joiner's data directory).
//!
//! Needs `mariadbd`, `mariadb-install-db`, `/usr/lib/galera/libgalera_smm.so`,
//! `rsync` and `ss` (iproute2), and fails saying how to install them.

use super::{Builder, TestDb};
use mysql::prelude::Queryable;
use std::io::Write;
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Nodes in the cluster.
pub const NODES: usize = 3;

const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
const INSTALL: &str = "apt-get install galera-4 mariadb-server rsync iproute2";

/// Longest wait for a node to reach `Synced` (an SST under load included).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The ports of one node.
#[derive(Clone, Copy, Debug)]
struct Ports {
    sql: u16,
    gcomm: u16,
    ist: u16,
    sst: u16,
}

/// What a node is doing now, as the harness left it.
struct NodeState {
    process: Option<Child>,
    isolated: bool,
}

/// The running cluster; see the module docs.
pub struct Cluster {
    dir: PathBuf,
    ports: Vec<Ports>,
    nodes: Vec<Mutex<NodeState>>,
    turns: RwLock<()>,
    /// Set when putting the cluster back failed: every later test fails
    /// with it instead of meeting a half-working cluster.
    broken: Mutex<Option<String>>,
    /// The write end of the watchdog's pipe; never written, only held.
    _watchdog: Mutex<ChildStdin>,
    /// How long the cluster took to start, for the tests to print.
    pub started_in: Duration,
}

/// A node's Galera status (`SHOW STATUS LIKE 'wsrep_%'`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `wsrep_local_state_comment`: `Synced`, `Joiner`, `Donor/Desynced`,
    /// `Initialized`...
    pub state: String,
    /// `wsrep_cluster_status`: `Primary` or `non-Primary`.
    pub component: String,
    /// `wsrep_ready`.
    pub ready: bool,
    /// `wsrep_cluster_size`: members of the component this node is in.
    pub size: u32,
}

impl Status {
    /// True for a node that serves queries: synced in the primary component.
    pub fn synced(&self) -> bool {
        self.state == "Synced" && self.component == "Primary" && self.ready
    }
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(cluster) => {
            if let Some(why) = cluster.broken.lock().unwrap().as_ref() {
                panic!("the Galera cluster is broken by an earlier test: {why}");
            }
            cluster
        }
        Err(why) => panic!("the Galera cluster did not start: {why}"),
    }
}

/// The cluster, for a test that leaves every node alone: waits while a
/// disturbing test runs.
pub fn shared() -> Shared {
    let cluster = cluster();
    let turn = cluster.turns.read().unwrap_or_else(|e| e.into_inner());
    Shared {
        cluster,
        _turn: turn,
    }
}

/// The cluster, alone, for a test that kills or isolates nodes; every node
/// is running, joined and synced again when the returned value is dropped.
pub fn exclusive() -> Exclusive {
    let cluster = cluster();
    let turn = cluster.turns.write().unwrap_or_else(|e| e.into_inner());
    Exclusive {
        cluster,
        _turn: turn,
    }
}

/// A shared turn on the cluster; see [`shared`].
pub struct Shared {
    cluster: &'static Cluster,
    _turn: RwLockReadGuard<'static, ()>,
}

impl Deref for Shared {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.cluster
    }
}

/// The exclusive turn on the cluster; see [`exclusive`]. Only through it can
/// a test disturb nodes.
pub struct Exclusive {
    cluster: &'static Cluster,
    _turn: RwLockWriteGuard<'static, ()>,
}

impl Deref for Exclusive {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        self.cluster
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        if let Err(why) = self.cluster.restore() {
            *self.cluster.broken.lock().unwrap() = Some(why.clone());
            if !std::thread::panicking() {
                panic!("could not put the Galera cluster back: {why}");
            }
        }
    }
}

impl Exclusive {
    /// SIGKILLs node `i` (as a crash or a pulled plug would stop it) and
    /// returns when the process is gone.
    pub fn kill_node(&self, i: usize) -> Instant {
        let mut node = self.nodes[i].lock().unwrap();
        let mut process = node.process.take().expect("the node is not running");
        let killed = Instant::now();
        process.kill().expect("cannot SIGKILL the node");
        let _ = process.wait();
        let _ = std::fs::remove_file(self.pid_file(i));
        killed
    }

    /// Starts node `i` again after [`Exclusive::kill_node`], recovering its
    /// position first as Debian's `galera_recovery` does (so it can rejoin
    /// through IST); waits until it is synced.
    pub fn start_node(&self, i: usize) {
        if let Err(why) = self.cluster.rejoin(i) {
            panic!("node {i} did not rejoin: {why}");
        }
    }

    /// Cuts node `i` off from the other two (`gmcast.isolate=1`: Galera
    /// drops its connections and refuses new ones) and waits until it has
    /// left the primary component and the others have formed one of two.
    /// Returns how long that took.
    pub fn isolate_node(&self, i: usize) -> Duration {
        let started = Instant::now();
        self.set_isolated(i, true).unwrap_or_else(|e| panic!("{e}"));
        self.wait_for(i, "to leave the primary component", |s| {
            s.component != "Primary"
        })
        .unwrap_or_else(|e| panic!("{e}"));
        for other in (0..NODES).filter(|&n| n != i) {
            self.wait_for(other, "to see a cluster of 2", |s| {
                s.synced() && s.size == 2
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
        started.elapsed()
    }

    /// Lets node `i` back into the cluster after [`Exclusive::isolate_node`]
    /// and waits until it is synced.
    pub fn reconnect_node(&self, i: usize) {
        self.set_isolated(i, false)
            .and_then(|()| self.wait_for(i, "to be synced", |s| s.synced() && s.size == NODES as u32))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Cluster {
    /// The SQL port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i].sql
    }

    /// A `DATABASE_URL` for database `db` listing the nodes in `order`
    /// (`mysql://root@127.0.0.1:P2,127.0.0.1:P1/db` for `[1, 0]`).
    pub fn url(&self, db: &str, order: &[usize]) -> String {
        let hosts: Vec<String> = order
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.port(i)))
            .collect();
        format!("mysql://root@{}/{db}", hosts.join(","))
    }

    /// A connection to node `i` as root, with no database selected.
    pub fn conn(&self, i: usize) -> mysql::Conn {
        connect(self.port(i), None).unwrap_or_else(|e| panic!("cannot reach node {i}: {e}"))
    }

    /// Node `i`'s Galera status, or why it could not be read.
    pub fn status(&self, i: usize) -> Result<Status, String> {
        status(self.port(i))
    }

    /// Waits until node `i` is synced in the primary component.
    pub fn wait_synced(&self, i: usize) {
        self.wait_for(i, "to be synced", Status::synced)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The last `lines` lines of node `i`'s error log, for failure messages.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.node_dir(i).join("error.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}"))
    }

    fn pid_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.pid"))
    }

    fn start() -> Result<Cluster, String> {
        check_prerequisites()?;
        let started = Instant::now();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "auth-galera-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let watchdog = start_watchdog(&dir)?;
        let ports = free_ports()?;
        let owner = mysql_user_if_root()?;
        let cluster = Cluster {
            dir,
            nodes: (0..NODES)
                .map(|_| {
                    Mutex::new(NodeState {
                        process: None,
                        isolated: false,
                    })
                })
                .collect(),
            ports,
            turns: RwLock::new(()),
            broken: Mutex::new(None),
            _watchdog: Mutex::new(watchdog),
            started_in: Duration::ZERO,
        };
        for i in 0..NODES {
            let node_dir = cluster.node_dir(i);
            std::fs::create_dir_all(node_dir.join("data")).map_err(|e| e.to_string())?;
            std::fs::write(node_dir.join("my.cnf"), cluster.config(i, owner.is_some()))
                .map_err(|e| e.to_string())?;
        }
        if let Some((uid, gid)) = owner {
            chown_tree(&cluster.dir, uid, gid)?;
        }
        // Only the first node gets system tables; the others receive
        // everything by SST when they join, as a new node in production does.
        install(&cluster.node_dir(0))?;
        cluster.spawn(0, &["--wsrep-new-cluster"])?;
        cluster.wait_for(0, "to bootstrap", Status::synced)?;
        for i in 1..NODES {
            cluster.spawn(i, &[])?;
        }
        for i in 0..NODES {
            cluster.wait_for(i, "to join", |s| s.synced() && s.size == NODES as u32)?;
        }
        Ok(Cluster {
            started_in: started.elapsed(),
            ..cluster
        })
    }

    fn config(&self, i: usize, as_mysql: bool) -> String {
        let dir = self.node_dir(i);
        let p = self.ports[i];
        let peers: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.gcomm))
            .collect();
        format!(
            "[mysqld]\n\
             {user}\
             datadir={dir}/data\n\
             socket={dir}/mysqld.sock\n\
             pid-file={dir}/mysqld.pid\n\
             log-error={dir}/error.log\n\
             port={sql}\n\
             bind-address=127.0.0.1\n\
             skip-name-resolve\n\
             max_connections=1000\n\
             binlog_format=ROW\n\
             default_storage_engine=InnoDB\n\
             innodb_autoinc_lock_mode=2\n\
             innodb_buffer_pool_size=64M\n\
             innodb_log_file_size=16M\n\
             innodb_flush_log_at_trx_commit=2\n\
             wsrep_on=ON\n\
             wsrep_provider={PROVIDER}\n\
             wsrep_cluster_name=auth_tests_{pid}\n\
             wsrep_node_name=node{i}\n\
             wsrep_node_address=127.0.0.1:{gcomm}\n\
             wsrep_cluster_address=gcomm://{peers}\n\
             wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};gcache.size=64M\"\n\
             wsrep_sst_method=rsync\n\
             wsrep_sst_receive_address=127.0.0.1:{sst}\n",
            user = if as_mysql { "user=mysql\n" } else { "" },
            dir = dir.display(),
            sql = p.sql,
            gcomm = p.gcomm,
            ist = p.ist,
            sst = p.sst,
            pid = std::process::id(),
            peers = peers.join(","),
        )
    }

    /// Starts node `i`'s `mariadbd` with `extra` arguments; records its PID
    /// for the watchdog.
    fn spawn(&self, i: usize, extra: &[&str]) -> Result<(), String> {
        let cnf = self.node_dir(i).join("my.cnf");
        let child = Command::new(mariadbd())
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for the tests reaches
            // the watchdog's cleanup instead of half the cluster.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run mariadbd: {e}"))?;
        std::fs::write(self.pid_file(i), child.id().to_string()).map_err(|e| e.to_string())?;
        self.nodes[i].lock().unwrap().process = Some(child);
        Ok(())
    }

    /// Polls node `i` until `done` holds for its status; fails if the node
    /// exits or [`SYNC_TIMEOUT`] passes, with the end of its log.
    fn wait_for(&self, i: usize, what: &str, done: impl Fn(&Status) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            if let Some(process) = self.nodes[i].lock().unwrap().process.as_mut()
                && let Ok(Some(exit)) = process.try_wait()
            {
                return Err(format!(
                    "node {i} exited ({exit}) waiting {what}; its log ends:\n{}",
                    self.log_tail(i, 40)
                ));
            }
            let last = self.status(i);
            if last.as_ref().is_ok_and(&done) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {i} did not get {what} within {SYNC_TIMEOUT:?} (last status: {last:?}); \
                     its log ends:\n{}",
                    self.log_tail(i, 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn set_isolated(&self, i: usize, isolated: bool) -> Result<(), String> {
        let value = if isolated { 1 } else { 0 };
        connect(self.port(i), None)
            .and_then(|mut c| {
                c.query_drop(format!(
                    "SET GLOBAL wsrep_provider_options = 'gmcast.isolate={value}'"
                ))
                .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot set gmcast.isolate={value} on node {i}: {e}"))?;
        self.nodes[i].lock().unwrap().isolated = isolated;
        Ok(())
    }

    /// Recovers node `i`'s last committed position from InnoDB (a node that
    /// was killed left `seqno: -1` in `grastate.dat`; without the position
    /// it would need a full SST) and starts it from there.
    fn rejoin(&self, i: usize) -> Result<(), String> {
        let cnf = self.node_dir(i).join("my.cnf");
        let recovery = Command::new(mariadbd())
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["--wsrep-recover", "--disable-log-error"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mariadbd --wsrep-recover: {e}"))?;
        let log = String::from_utf8_lossy(&recovery.stderr);
        let position = log
            .lines()
            .find_map(|l| l.split("WSREP: Recovered position:").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|p| format!("--wsrep-start-position={p}"));
        let extra: Vec<&str> = position.iter().map(String::as_str).collect();
        self.spawn(i, &extra)?;
        self.wait_for(i, "to rejoin", |s| s.synced() && s.size == NODES as u32)
    }

    /// Puts every node back: running, not isolated, synced in one
    /// component of three.
    fn restore(&self) -> Result<(), String> {
        for i in 0..NODES {
            let (running, isolated) = {
                let mut node = self.nodes[i].lock().unwrap();
                let running = node
                    .process
                    .as_mut()
                    .is_some_and(|p| matches!(p.try_wait(), Ok(None)));
                (running, node.isolated)
            };
            if !running {
                self.nodes[i].lock().unwrap().process = None;
                self.rejoin(i)?;
            } else if isolated {
                self.set_isolated(i, false)?;
            }
        }
        for i in 0..NODES {
            self.wait_for(i, "to be synced again", |s| {
                s.synced() && s.size == NODES as u32
            })?;
        }
        Ok(())
    }
}

/// A database of one test on the cluster, created on node 0 (and so on
/// every node), dropped when this value is dropped.
pub struct GaleraDb {
    /// The database's name.
    pub name: String,
    ports: Vec<u16>,
}

impl GaleraDb {
    /// Creates an empty database with a unique name.
    pub fn new(cluster: &Cluster) -> GaleraDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "auth_galera_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        cluster
            .conn(0)
            .query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .expect("CREATE DATABASE failed on node 0");
        GaleraDb {
            name,
            ports: (0..NODES).map(|i| cluster.port(i)).collect(),
        }
    }

    /// The `DATABASE_URL` of this database through the nodes in `order`.
    pub fn url(&self, order: &[usize]) -> String {
        let hosts: Vec<String> = order
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.ports[i]))
            .collect();
        format!("mysql://root@{}/{}", hosts.join(","), self.name)
    }

    /// A connection to this database on node `i` whose reads wait until
    /// the node has applied everything committed anywhere before them
    /// (`wsrep_sync_wait = 1`): what a test checks is the cluster's state,
    /// not one node's lag.
    pub fn conn(&self, i: usize) -> mysql::Conn {
        let mut conn = connect(self.ports[i], Some(&self.name))
            .unwrap_or_else(|e| panic!("cannot reach node {i}: {e}"));
        conn.query_drop("SET SESSION wsrep_sync_wait = 1")
            .expect("cannot set wsrep_sync_wait");
        conn
    }

    /// The body of the newest outbox message to `recipient` (read on node
    /// 0), waiting up to 5 s for one: `common::wait_for_mail` for a server
    /// on the cluster, whose `Server::db` is not this database.
    #[track_caller]
    pub fn wait_for_mail(&self, recipient: &str) -> String {
        let mut conn = self.conn(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let body: Option<String> = conn
                .exec_first(
                    "SELECT body FROM mail_outbox WHERE recipient = ? ORDER BY id DESC LIMIT 1",
                    (recipient,),
                )
                .unwrap();
            if let Some(body) = body {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {recipient} reached the outbox within 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for GaleraDb {
    fn drop(&mut self) {
        // Any node that answers will do: the drop replicates.
        for &port in &self.ports {
            if let Ok(mut conn) = connect(port, None)
                && conn
                    .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                    .is_ok()
            {
                return;
            }
        }
    }
}

impl Builder {
    /// Points the server at `db` on the cluster through the nodes in
    /// `order`. Its `Server::db` is then a placeholder naming no database
    /// on the plain test server (so `common::wait_for_mail` and the like
    /// fail loudly): use [`GaleraDb`]'s methods instead.
    pub fn galera(mut self, db: &GaleraDb, order: &[usize]) -> Builder {
        static PLACEHOLDER: OnceLock<Arc<TestDb>> = OnceLock::new();
        let placeholder = PLACEHOLDER.get_or_init(|| {
            // A static is never dropped, so this TestDb never drops a
            // database on the plain server.
            Arc::new(TestDb {
                name: "see_GaleraDb_this_server_is_on_the_cluster".to_string(),
            })
        });
        self.db = Some(Arc::clone(placeholder));
        self.env("DATABASE_URL", &db.url(order))
    }
}

fn connect(port: u16, db: Option<&str>) -> Result<mysql::Conn, String> {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .db_name(db)
        .tcp_connect_timeout(Some(Duration::from_secs(2)))
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)));
    mysql::Conn::new(opts).map_err(|e| e.to_string())
}

fn status(port: u16) -> Result<Status, String> {
    let mut conn = connect(port, None)?;
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN \
             ('wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_ready', 'wsrep_cluster_size')",
        )
        .map_err(|e| e.to_string())?;
    let mut status = Status::default();
    for (name, value) in rows {
        match name.as_str() {
            "wsrep_local_state_comment" => status.state = value,
            "wsrep_cluster_status" => status.component = value,
            "wsrep_ready" => status.ready = value == "ON",
            "wsrep_cluster_size" => status.size = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(status)
}

fn mariadbd() -> &'static str {
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

fn check_prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    if !Path::new(PROVIDER).exists() {
        missing.push(PROVIDER.to_string());
    }
    if !Path::new("/usr/sbin/mariadbd").exists() && !on_path("mariadbd") {
        missing.push("mariadbd".to_string());
    }
    for program in ["mariadb-install-db", "rsync", "ss"] {
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
fn start_watchdog(dir: &Path) -> Result<ChildStdin, String> {
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
fn free_ports() -> Result<Vec<Ports>, String> {
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
        return Err(format!("fewer than {} free ports in 20000-32699", 4 * NODES));
    }
    let ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
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
fn mysql_user_if_root() -> Result<Option<(u32, u32)>, String> {
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

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), String> {
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
fn install(dir: &Path) -> Result<(), String> {
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
