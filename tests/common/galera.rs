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
//! - A server joins a test's database through the nodes in any order with
//!   `Server::builder().galera(&db, &[1, 0, 2])` (`DATABASE_URL` lists
//!   `127.0.0.1:P1,127.0.0.1:P0,127.0.0.1:P2`). Its `Server::db` is not that
//!   database, so `common::wait_for_mail` cannot read it: use
//!   [`GaleraDb::wait_for_mail`].
//! - A killed node is restarted as Debian's `galera_recovery` does it: its
//!   last position is recovered from InnoDB first (`--wsrep-recover`), so it
//!   rejoins by IST, not a full SST (which would also block the donor).
//! - Run as root, the nodes run as `mysql` (the rsync daemon of an SST drops
//!   root for `nobody`, who could not write the joiner's data directory).
//! - Durability is relaxed for speed (`innodb_flush_log_at_trx_commit=2`):
//!   a SIGKILLed `mariadbd` loses nothing the kernel already has, and no
//!   test crashes the machine.
//!
//! Needs `mariadbd`, `mariadb-install-db` and `wsrep_sst_rsync`
//! (mariadb-server), `/usr/lib/galera/libgalera_smm.so` (galera-4), `rsync`
//! and `ss` (iproute2), and fails saying how to install them.

mod database;
mod setup;

// Every test binary compiles `common`; only the cluster tests use this.
#[allow(unused_imports)]
pub use database::GaleraDb;

use mysql::prelude::Queryable;
use setup::{
    PROVIDER, check_prerequisites, chown_tree, free_ports, install, mariadbd, mysql_user_if_root,
    start_watchdog,
};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Nodes in the cluster.
pub const NODES: usize = 3;

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
            .and_then(|()| {
                self.wait_for(i, "to be synced", |s| s.synced() && s.size == NODES as u32)
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Cluster {
    /// The SQL port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i].sql
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
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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

/// A root connection to the node listening on `port`, with timeouts so a
/// stuck node fails the test instead of hanging it.
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
