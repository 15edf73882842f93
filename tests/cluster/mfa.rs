//! Two-factor login on the cluster (issue 18): one TOTP code, or one
//! recovery code, presented at once to instances on three Galera nodes,
//! each with its own login waiting for a code. Row locks are local to a
//! node, so only the conditioned write and certification stand between a
//! phished code and its replay: exactly one login may succeed.

use super::{GOOD, outcome, send, tally};
use crate::common::galera::{self, Cluster, GaleraDb, NODES};
use crate::common::totp::{base32_decode, code_at, fresh_step};
use crate::common::{Server, login, register};
use mysql::prelude::Queryable;
use serde_json::{Value, json};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// 32 bytes, base64: the same data key on every instance.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Three instances with the data key, instance `i` on node `i`; the
/// lockout is out of the way (its own cluster test is elsewhere).
fn instances(db: &GaleraDb) -> Vec<Server> {
    (0..NODES)
        .map(|i| {
            Server::builder()
                .galera(db, &[i])
                .env("DATA_ENCRYPTION_KEY", KEY)
                .env("LOCKOUT_THRESHOLD", "1000")
                .start()
        })
        .collect()
}

/// Enrols `email` on `server`, confirming with the code of the step before
/// now; its secret and recovery codes, once every node has the factor.
fn enrol(cluster: &Cluster, db: &GaleraDb, server: &Server, email: &str) -> (Vec<u8>, Vec<String>) {
    register(server, email, GOOD);
    let token = login(server, email, GOOD);
    let setup = send(
        server,
        "POST",
        "/auth/mfa/totp/setup",
        Some(&token),
        Some(&json!({"password": GOOD})),
    )
    .expect("setup answered");
    let secret = base32_decode(setup.json()["secret"].as_str().unwrap());
    let code = code_at(&secret, fresh_step() - 1);
    let confirm = send(
        server,
        "POST",
        "/auth/mfa/totp/confirm",
        Some(&token),
        Some(&json!({"code": code})),
    )
    .expect("confirm answered");
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    let recovery = confirm.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    wait_enabled(cluster, db, email);
    (secret, recovery)
}

/// Waits until every node has the account's factor on.
fn wait_enabled(cluster: &Cluster, db: &GaleraDb, email: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..NODES {
        let mut conn = cluster.conn(i);
        while conn
            .exec_first::<u64, _, _>(
                format!(
                    "SELECT COUNT(*) FROM `{}`.users WHERE email = ? AND mfa_enabled_at IS NOT NULL",
                    db.name
                ),
                (email,),
            )
            .unwrap()
            != Some(1)
        {
            assert!(
                Instant::now() < deadline,
                "node {i} did not apply the enrolment within 10 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A login's first step on each instance, then `member: code` sent to all
/// three at once; the tally of the answers.
fn race(servers: &[Server], email: &str, member: &str, code: &str) -> Vec<String> {
    let tokens: Vec<String> = servers
        .iter()
        .map(|server| {
            let reply = send(
                server,
                "POST",
                "/auth/login",
                None,
                Some(&json!({"email": email, "password": GOOD})),
            )
            .expect("login answered");
            let body: Value = reply.json();
            body["mfa_token"]
                .as_str()
                .expect("an mfa_token")
                .to_string()
        })
        .collect();
    let gate = Barrier::new(NODES);
    thread::scope(|s| {
        let threads: Vec<_> = servers
            .iter()
            .zip(&tokens)
            .map(|(server, token)| {
                let gate = &gate;
                s.spawn(move || {
                    gate.wait();
                    let body = json!({"mfa_token": token, member: code});
                    outcome(&send(server, "POST", "/auth/login/mfa", None, Some(&body)))
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn one_code_raced_over_three_nodes_logs_in_once() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    let mut rounds = Vec::new();
    for round in 0..6 {
        let email = format!("mfa{round}@example.com");
        let (secret, recovery) = enrol(&cluster, &db, &servers[round % NODES], &email);
        // The step after the confirmation's, still within the skew.
        let totp = tally(race(
            &servers,
            &email,
            "code",
            &code_at(&secret, fresh_step()),
        ));
        let spare = tally(race(&servers, &email, "recovery_code", &recovery[0]));
        let once = |counts: &std::collections::BTreeMap<String, usize>| {
            counts.get("200") == Some(&1) && counts.get("401 invalid_mfa_code") == Some(&2)
        };
        rounds.push((
            once(&totp) && once(&spare),
            format!("round {round}: code {totp:?}, recovery code {spare:?}"),
        ));
    }
    let report: Vec<&str> = rounds.iter().map(|(_, line)| line.as_str()).collect();
    println!("{}", report.join("\n"));
    assert!(
        rounds.iter().all(|(ok, _)| *ok),
        "every round: one 200 and two 401 invalid_mfa_code, for the code and the recovery code:\n{}",
        report.join("\n")
    );
}
