//! Refresh tokens on the cluster (issue 16): parallel refreshes of one token
//! sent to instances on different Galera nodes, where row locks are local
//! and only certification orders the writes.

use super::{GOOD, instances, outcome, send, tally, wait_applied};
use crate::common::galera::{self, GaleraDb, NODES};
use crate::common::{login_reply, register};
use mysql::prelude::Queryable;
use serde_json::json;
use std::sync::Barrier;
use std::thread;

#[test]
fn parallel_refreshes_of_one_token_over_three_nodes_agree_on_one_new_token() {
    let cluster = galera::shared();
    let db = GaleraDb::new(&cluster);
    let servers = instances(&db);
    let mut rounds = Vec::new();
    for round in 0..20 {
        let email = format!("refresh{round}@example.com");
        register(&servers[round % NODES], &email, GOOD);
        wait_applied(&cluster, &db, &email);
        let login = login_reply(&servers[round % NODES], &email, GOOD).json();
        let token = login["refresh_token"].as_str().unwrap().to_string();
        let gate = Barrier::new(12);
        let replies: Vec<(String, Option<String>)> = thread::scope(|s| {
            let threads: Vec<_> = (0..12)
                .map(|n| {
                    let (server, token, gate) = (&servers[n % NODES], &token, &gate);
                    s.spawn(move || {
                        gate.wait();
                        let reply = send(
                            server,
                            "POST",
                            "/auth/refresh",
                            None,
                            Some(&json!({"refresh_token": token})),
                        );
                        let next = reply
                            .as_ref()
                            .filter(|r| r.status == 200)
                            .and_then(|r| r.json()["refresh_token"].as_str().map(str::to_string));
                        (outcome(&reply), next)
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut next: Vec<String> = replies.iter().filter_map(|(_, t)| t.clone()).collect();
        next.sort();
        next.dedup();
        let counts = tally(replies.into_iter().map(|(o, _)| o));
        let generation: Option<u32> = db
            .conn(0)
            .exec_first(
                "SELECT refresh_generation FROM sessions WHERE user_id = ?",
                (login["user"]["id"].as_u64().unwrap(),),
            )
            .unwrap();
        let ok = counts.get("200") == Some(&12) && next.len() == 1 && generation == Some(2);
        rounds.push((
            ok,
            format!(
                "round {round}: {counts:?}, {} new tokens, generation {generation:?}",
                next.len()
            ),
        ));
    }
    let report: Vec<&str> = rounds.iter().map(|(_, line)| line.as_str()).collect();
    println!("{}", report.join("\n"));
    assert!(
        rounds.iter().all(|(ok, _)| *ok),
        "every round: 12 times 200, one new refresh token, generation 2:\n{}",
        report.join("\n")
    );
}
