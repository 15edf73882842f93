//! A handler that panics answers 500 `internal_error` and takes down neither
//! the connection thread pool nor the process. The panicking application is
//! test code, so this drives the library's HTTP server directly over TCP.

mod common;

use auth_server::http::{Limits, Response, Shutdown, Transport, serve};
use common::Client;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_panicking_handler_answers_500_and_the_server_carries_on() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        keepalive_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
    };
    std::thread::spawn(move || {
        serve(
            listener,
            limits,
            Transport::default(),
            Arc::new(|request| {
                if request.path == "/panic" {
                    panic!("handler bug");
                }
                Response::empty(204)
            }),
            Arc::new(Shutdown::new(Duration::from_secs(1))),
        )
    });
    // More panics than there are connection slots: none may leak a slot.
    for _ in 0..20 {
        let mut client = Client::connect(addr);
        client
            .request("GET", "/panic", &[], "")
            .assert_problem(500, "internal_error");
        // The same connection goes on serving.
        assert_eq!(client.request("GET", "/ok", &[], "").status, 204);
    }
}
