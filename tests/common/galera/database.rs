//! A test's own database on the cluster, and pointing a server at it.

use super::{Cluster, NODES, connect};
use crate::common::{Builder, TestDb};
use mysql::prelude::Queryable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A database of one test on the cluster, created on node 0 and there on
/// every node once [`GaleraDb::new`] returns; dropped when this value is
/// dropped.
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
        // The other nodes apply the DDL a moment later; a server connecting
        // to one of them before that would be refused (1049 unknown
        // database) and exit.
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 1..NODES {
            let mut conn = cluster.conn(i);
            while conn
                .exec_first::<String, _, _>(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                    (&name,),
                )
                .expect("cannot list databases")
                .is_none()
            {
                assert!(
                    Instant::now() < deadline,
                    "node {i} did not create {name} within 10 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
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

    /// The body of the newest reset mail to `recipient` in the outbox (read
    /// on node 0; registration queues a verification mail too), waiting up
    /// to 5 s for one: `common::wait_for_mail` for a server on the cluster,
    /// whose `Server::db` is not this database.
    #[track_caller]
    pub fn wait_for_mail(&self, recipient: &str) -> String {
        let mut conn = self.conn(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let body: Option<String> = conn
                .exec_first(
                    "SELECT body FROM mail_outbox WHERE recipient = ? AND kind = 'password_reset'
                     ORDER BY id DESC LIMIT 1",
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
