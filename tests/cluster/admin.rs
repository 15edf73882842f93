//! The last-admin rule on the cluster (issue 17): two admins, on instances
//! attached to different Galera nodes, demote each other at once. Row locks
//! are local to a node, and each demotion writes a different account's row,
//! so only the guard row both write (`src/db/admin.rs`) lets certification
//! order them; without it both would commit and leave no admin.

use super::{GOOD, outcome, send, tally, wait_applied};
use crate::common::galera::{self, GaleraDb};
use crate::common::{Server, login, register};
use mysql::prelude::Queryable;
use serde_json::json;
use std::sync::Barrier;
use std::thread;

const ROOT: &str = "root@example.com";
const DEPUTY: &str = "deputy@example.com";

fn set_role(server: &Server, token: &str, id: u64, role: &str) -> String {
    outcome(&send(
        server,
        "PATCH",
        &format!("/admin/users/{id}"),
        Some(token),
        Some(&json!({ "role": role })),
    ))
}

fn user_id(server: &Server, token: &str) -> u64 {
    let me = send(server, "GET", "/auth/me", Some(token), None).expect("GET /auth/me answered");
    me.json()["user"]["id"].as_u64().expect("a user id")
}

#[test]
fn two_admins_demoting_each_other_on_two_nodes_leave_one_admin() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers: Vec<Server> = (0..2)
        .map(|i| {
            Server::builder()
                .galera(&db, &[i])
                .env("ADMIN_EMAIL", ROOT)
                .env("ADMIN_PASSWORD", GOOD)
                .start()
        })
        .collect();
    register(&servers[1], DEPUTY, GOOD);
    wait_applied(&cluster, &db, DEPUTY);
    let root = login(&servers[0], ROOT, GOOD);
    let deputy = login(&servers[1], DEPUTY, GOOD);
    let (root_id, deputy_id) = (user_id(&servers[0], &root), user_id(&servers[1], &deputy));
    let mut rounds = Vec::new();
    for round in 0..20 {
        // Both admins again: whoever won the last round promotes the other
        // (causal reads make the next request on either node see it).
        let restored = [
            set_role(&servers[0], &root, deputy_id, "admin"),
            set_role(&servers[1], &deputy, root_id, "admin"),
        ];
        assert!(
            restored.contains(&"200".to_string()),
            "round {round}: neither could promote the other, so the last round left no \
             admin: {restored:?}\n{}",
            rounds
                .iter()
                .map(|(_, l): &(bool, String)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let gate = Barrier::new(2);
        let answers: Vec<String> = thread::scope(|s| {
            let a = s.spawn(|| {
                gate.wait();
                set_role(&servers[0], &root, deputy_id, "user")
            });
            let b = s.spawn(|| {
                gate.wait();
                set_role(&servers[1], &deputy, root_id, "user")
            });
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let admins: Vec<u64> = (0..2)
            .map(|node| {
                let mut conn = db.conn(node);
                // Wait for the node to apply what the cluster committed.
                conn.query_drop("SET SESSION wsrep_sync_wait = 1").unwrap();
                conn.query_first("SELECT COUNT(*) FROM users WHERE role = 'admin'")
                    .unwrap()
                    .unwrap()
            })
            .collect();
        let counts = tally(answers.clone());
        let ok = admins == [1, 1] && counts.get("200") == Some(&1);
        rounds.push((
            ok,
            format!("round {round}: {answers:?}, admins per node {admins:?}"),
        ));
    }
    let report: Vec<&str> = rounds.iter().map(|(_, line)| line.as_str()).collect();
    println!("{}", report.join("\n"));
    // What each instance says it changed, should a round go wrong.
    let changes: Vec<String> = servers
        .iter()
        .enumerate()
        .flat_map(|(i, server)| {
            server
                .log()
                .lines()
                .filter(|l| l.contains("admin changed an account"))
                .map(|l| format!("instance {i}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        rounds.iter().all(|(ok, _)| *ok),
        "every round: one demotion wins, one admin is left:\n{}\n{}",
        report.join("\n"),
        changes.join("\n")
    );
}
