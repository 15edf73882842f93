//! Faults on the cluster, each test holding the cluster alone
//! (`galera::exclusive`), which is whole again once the test ends:
//!
//! - a node SIGKILLed under a steady load of logins, `/auth/me` and
//!   registrations on every instance, then restarted;
//! - a node cut off from the other two (`gmcast.isolate`), then let back.
//!
//! The load is bounded (each thread sends its next request when the last
//! one answered, with a short pause) and every answer is recorded with its
//! time, so the test can say when instances paused and what they answered.

use super::{
    GOOD, instances, login_outcome, me, outcome, register_outcome, send, tally, wait_applied,
};
use crate::common::Server;
use crate::common::galera::{self, GaleraDb, NODES};
use mysql::prelude::Queryable;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// One answer under load.
#[derive(Clone, Debug)]
struct Event {
    instance: usize,
    at: Duration,
    request: &'static str,
    outcome: String,
}

/// Stops the load when dropped, so a failing assertion in the middle of a
/// test ends the load threads instead of leaving the scope waiting on them.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the load threads saw.
struct Load {
    started: Instant,
    events: Mutex<Vec<Event>>,
    registered: Mutex<Vec<String>>,
    /// Registrations that answered 503: the outcome of their commit is
    /// unknown to the client, so they may or may not exist.
    unsure: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn new() -> Load {
        Load {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
            registered: Mutex::new(Vec::new()),
            unsure: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn record(&self, instance: usize, request: &'static str, outcome: String) {
        let at = self.now();
        self.events.lock().unwrap().push(Event {
            instance,
            at,
            request,
            outcome,
        });
    }

    /// Logs in as `owner{i}` and asks `/auth/me` with the token, again and
    /// again, on instance `i`, until stopped.
    fn sessions(&self, i: usize, server: &Server) {
        let email = format!("owner{i}@example.com");
        let mut token = None;
        while !self.stop.load(Ordering::Relaxed) {
            match &token {
                None => {
                    let (out, t) = login_outcome(server, &email, GOOD);
                    self.record(i, "login", out);
                    token = t;
                }
                Some(t) => {
                    let out = me(server, t);
                    // A token whose session a failure swallowed is dropped;
                    // the next round logs in again.
                    if out != "200" {
                        token = None;
                    }
                    self.record(i, "me", out);
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Registers new accounts on instance `i` until stopped; remembers the
    /// ones that answered 201.
    fn registrations(&self, i: usize, server: &Server) {
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let email = format!("load{i}-{n}@example.com");
            n += 1;
            let out = register_outcome(server, &email);
            if out == "201" {
                self.registered.lock().unwrap().push(email);
            } else if out.starts_with("503") {
                self.unsure.lock().unwrap().push(email);
            }
            self.record(i, "register", out);
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Answers that are not 2xx or 4xx: 500s above all, and requests that
    /// got no reply at all. 503 is allowed (it is what a lost node means).
    fn failures(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                (e.outcome.starts_with('5') && !e.outcome.starts_with("503"))
                    || e.outcome == "no reply"
            })
            .cloned()
            .collect()
    }

    /// The longest time instance `i` went without a 2xx answer to
    /// `request` (any request for `None`) between `from` and `to`.
    fn longest_gap(
        &self,
        i: usize,
        request: Option<&str>,
        from: Duration,
        to: Duration,
    ) -> Duration {
        let mut times: Vec<Duration> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.instance == i && request.is_none_or(|r| r == e.request))
            .filter(|e| e.outcome.starts_with('2') && e.at > from && e.at < to)
            .map(|e| e.at)
            .collect();
        times.insert(0, from);
        times.push(to);
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    fn tally_of(&self, i: usize, from: Duration, to: Duration) -> String {
        let events = self.events.lock().unwrap();
        let outcomes = events
            .iter()
            .filter(|e| e.instance == i && e.at >= from && e.at < to)
            .map(|e| format!("{} {}", e.request, e.outcome));
        format!("{:?}", tally(outcomes))
    }
}

/// Registers `owner{i}` for every instance and waits until every node has
/// them.
fn owners(cluster: &galera::Cluster, db: &GaleraDb, servers: &[Server]) {
    for i in 0..servers.len() {
        let email = format!("owner{i}@example.com");
        assert_eq!(register_outcome(&servers[0], &email), "201");
        wait_applied(cluster, db, &email);
    }
}

/// Polls `GET /healthz` on `server` until it answers `status`; how long
/// that took, or `None` after `within`.
fn wait_health(server: &Server, status: u16, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if send(server, "GET", "/healthz", None, None).is_some_and(|r| r.status == status) {
            return Some(started.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_node_killed_under_load_costs_a_pause_and_no_error_and_rejoins() {
    const VICTIM: usize = 1;
    let cluster = galera::exclusive();
    let db = GaleraDb::new(&cluster);
    // Instance i prefers node i and knows the other two.
    let mut servers: Vec<Server> = (0..NODES)
        .map(|i| {
            let order: Vec<usize> = (0..NODES).map(|d| (i + d) % NODES).collect();
            Server::builder().galera(&db, &order).start()
        })
        .collect();
    owners(&cluster, &db, &servers);
    let load = Load::new();
    let (killed, detected, moved, rejoined) = thread::scope(|s| {
        let _stop = StopOnDrop(&load.stop);
        for (i, server) in servers.iter().enumerate() {
            let load = &load;
            s.spawn(move || load.sessions(i, server));
            s.spawn(move || load.registrations(i, server));
        }
        thread::sleep(Duration::from_secs(3));
        cluster.kill_node(VICTIM);
        let killed = load.now();
        // Galera's failure detection: the survivors form a component of two.
        while cluster.status(0).map(|s| s.size).unwrap_or(0) != 2 {
            thread::sleep(Duration::from_millis(20));
        }
        let detected = load.now();
        // The instance that preferred the dead node answers again.
        let deadline = Instant::now() + Duration::from_secs(30);
        let moved = loop {
            let answered = load.events.lock().unwrap().iter().any(|e| {
                e.instance == VICTIM && e.request == "me" && e.outcome == "200" && e.at > detected
            });
            if answered || Instant::now() > deadline {
                break answered.then(|| load.now());
            }
            thread::sleep(Duration::from_millis(50));
        };
        thread::sleep(Duration::from_secs(2));
        cluster.start_node(VICTIM);
        let rejoined = load.now();
        thread::sleep(Duration::from_secs(5));
        load.stop.store(true, Ordering::Relaxed);
        (killed, detected, moved, rejoined)
    });
    let end = load.now();
    // Whether the instances went back to the hosts they prefer: the
    // server's connections to the test's database on each node now.
    let connections: Vec<u64> = (0..NODES)
        .map(|i| {
            cluster
                .conn(i)
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?",
                    (&db.name,),
                )
                .unwrap()
                .unwrap()
        })
        .collect();
    println!("connections to the test's database per node 5 s after the rejoin: {connections:?}");
    println!(
        "killed node {VICTIM} at {killed:?}; the survivors saw a cluster of 2 after {:?}; \
         node {VICTIM} rejoined (synced) {:?} after the kill",
        detected - killed,
        rejoined - killed
    );
    for i in 0..NODES {
        println!(
            "instance {i}: longest time without a 2xx after the kill {:?} (/auth/me {:?}, \
             register {:?}); during the loss {}; after the rejoin {}",
            load.longest_gap(i, None, killed, rejoined),
            load.longest_gap(i, Some("me"), killed, rejoined),
            load.longest_gap(i, Some("register"), killed, rejoined),
            load.tally_of(i, killed, rejoined),
            load.tally_of(i, rejoined, end)
        );
    }

    // Every finding is collected and asserted at the end, so one run says
    // everything that went wrong.
    let mut problems = Vec::new();
    let failures = load.failures();
    if !failures.is_empty() {
        problems.push(format!("answers that must never happen: {failures:#?}"));
    }
    for i in (0..NODES).filter(|&i| i != VICTIM) {
        for request in ["me", "register"] {
            let gap = load.longest_gap(i, Some(request), killed, rejoined);
            if gap > Duration::from_secs(20) {
                problems.push(format!(
                    "instance {i} on a surviving node paused {request} for {gap:?}"
                ));
            }
        }
    }
    match moved {
        Some(at) => println!(
            "instance {VICTIM} answered /auth/me again {:?} after the kill",
            at - killed
        ),
        None => problems.push(format!(
            "instance {VICTIM}, whose first host died, never answered /auth/me while it was down"
        )),
    }
    for (i, server) in servers.iter_mut().enumerate() {
        if !server.alive() {
            problems.push(format!("instance {i} exited"));
        } else if wait_health(server, 200, Duration::from_secs(10)).is_none() {
            problems.push(format!("instance {i} unhealthy 10 s after the rejoin"));
        }
        let recent = load.tally_of(i, end.saturating_sub(Duration::from_secs(2)), end);
        if recent.contains("503") {
            problems.push(format!(
                "instance {i} still answers 503 after the rejoin: {recent}"
            ));
        }
    }
    let registered = load.registered.lock().unwrap().clone();
    for i in 0..NODES {
        let mut conn = db.conn(i);
        let missing: Vec<&String> = registered
            .iter()
            .filter(|email| {
                conn.exec_first::<u64, _, _>("SELECT COUNT(*) FROM users WHERE email = ?", (email,))
                    .unwrap()
                    != Some(1)
            })
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "registrations that answered 201 but are not on node {i}: {missing:?}"
            ));
        }
    }
    let unsure = load.unsure.lock().unwrap().clone();
    let mut conn = db.conn(0);
    let committed = unsure
        .iter()
        .filter(|email| {
            conn.exec_first::<u64, _, _>("SELECT COUNT(*) FROM users WHERE email = ?", (email,))
                .unwrap()
                == Some(1)
        })
        .count();
    println!(
        "{} registrations answered 201; of the {} that answered 503, {committed} were committed",
        registered.len(),
        unsure.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_isolated_node_makes_its_instance_unhealthy_and_nothing_answers_500() {
    const CUT: usize = 2;
    let cluster = galera::exclusive();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    owners(&cluster, &db, &servers);
    let load = Load::new();
    // Every finding is collected and asserted at the end, so one run says
    // everything that went wrong.
    let mut problems = Vec::new();
    let (isolated, late) = thread::scope(|s| {
        let _stop = StopOnDrop(&load.stop);
        for (i, server) in servers.iter().enumerate() {
            let load = &load;
            s.spawn(move || load.sessions(i, server));
        }
        thread::sleep(Duration::from_secs(2));
        let took = cluster.isolate_node(CUT);
        let isolated = load.now();
        println!("node {CUT} left the primary component {took:?} after gmcast.isolate=1");
        match wait_health(&servers[CUT], 503, Duration::from_secs(5)) {
            Some(after) => println!("/healthz on instance {CUT} answered 503 {after:?} later"),
            None => problems.push(format!(
                "/healthz on instance {CUT} never answered 503 while its node was cut off"
            )),
        }
        // An instance started now against the isolated node must wait for
        // it (as for an unreachable one), not exit.
        let late = s.spawn(|| {
            Server::builder()
                .galera(&db, &[CUT])
                .env("DB_CONNECT_RETRY_SECONDS", "60")
                .start()
        });
        let health = tally((0..20).map(|_| {
            thread::sleep(Duration::from_millis(100));
            outcome(&send(&servers[CUT], "GET", "/healthz", None, None))
        }));
        println!("/healthz on instance {CUT} while its node is cut off: {health:?}");
        if health.keys().any(|k| k != "503 database_unavailable") {
            problems.push(format!(
                "/healthz on instance {CUT} while cut off: {health:?}"
            ));
        }
        cluster.reconnect_node(CUT);
        if wait_health(&servers[CUT], 200, Duration::from_secs(15)).is_none() {
            problems.push(format!(
                "instance {CUT} not healthy 15 s after its node rejoined"
            ));
        }
        thread::sleep(Duration::from_secs(2));
        load.stop.store(true, Ordering::Relaxed);
        (isolated, late.join())
    });
    let end = load.now();
    for i in 0..NODES {
        println!(
            "instance {i}: while cut off and after: {}",
            load.tally_of(i, isolated, end)
        );
    }
    let failures = load.failures();
    if !failures.is_empty() {
        problems.push(format!("answers that must never happen: {failures:#?}"));
    }
    match late {
        Ok(late) => {
            if late.get("/healthz").status != 200 {
                problems
                    .push("the instance started against the isolated node is not healthy".into());
            }
        }
        Err(e) => problems.push(format!(
            "the instance started against the isolated node did not come up: {}",
            super::payload(e)
        )),
    }
    let rows: u64 = db
        .conn(CUT)
        .query_first("SELECT COUNT(*) FROM users")
        .unwrap()
        .unwrap();
    if rows != NODES as u64 {
        problems.push(format!(
            "node {CUT} has {rows} accounts after rejoining, not {NODES}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
