//! The status server against clients that hold it up (issue 12), over loopback TCP with small
//! limits: a slowloris client that dribbles its headers is cut at the header deadline while
//! normal requests answer; more connections than the cap wait (in the kernel's backlog) and are
//! served once slots free, and the page answers afterwards; an oversized request head gets 431
//! and a request with a large body 413; an operator who dribbles a mark's body gets 408 at the
//! request deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cems_gateway::live::Live;
use cems_gateway::web::{Context, Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: Limits = Limits {
    connections: 4,
    header_timeout: Duration::from_secs(1),
    max_header_bytes: 8 * 1024,
    max_body_bytes: 1024,
    request_timeout: Duration::from_secs(1),
};

const OPERATOR: &str = "operator-token-for-the-limits-test";

/// A server with `LIMITS` on an ephemeral loopback port, over a store with one closed hour.
fn server(dir: &std::path::Path) -> Server {
    let db = dir.join("web.db");
    drop(crate::support::store_with_hours(&db, 1));
    let config = crate::support::kiln_config(
        &db,
        "WEBLIMITS01",
        &format!("\n[web]\noperator_token = \"{OPERATOR}\"\n"),
    );
    let ctx = Context {
        config: Arc::new(config),
        live: Arc::new(Live::default()),
        progress: None,
        started: std::time::Instant::now(),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    Server::spawn_with(listener, ctx, LIMITS).unwrap()
}

/// Sends `head` (and `body`), returns the status code, or `None` when the connection was closed
/// without an answer.
async fn raw(address: SocketAddr, head: &str, body: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(address).await.unwrap();
    s.write_all(head.as_bytes()).await.ok()?;
    let _ = s.write_all(body).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
        .await
        .expect("an answer or a close");
    let text = String::from_utf8_lossy(&reply);
    text.split(' ').nth(1).and_then(|c| c.parse().ok())
}

async fn get(address: SocketAddr, path: &str) -> Option<u16> {
    raw(address, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), b"").await
}

/// Waits until the peer closes (true) or `within` passes (false).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_is_cut_at_the_header_deadline_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    // One header line every 300 ms: never a complete head.
    let cut = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(server.address, "/live").await, Some(200), "normal requests answer meanwhile");
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() || started.elapsed() > Duration::from_secs(8) {
            break closed_within(&mut slow, Duration::from_secs(2)).await;
        }
        if closed_within(&mut slow, Duration::from_millis(10)).await {
            break true;
        }
    };
    let after = started.elapsed();
    assert!(cut, "the slowloris connection was closed");
    assert!(after >= LIMITS.header_timeout, "not before the deadline ({after:?})");
    assert!(after < LIMITS.header_timeout * 4, "within the deadline and a little ({after:?})");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_and_the_page_answers_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    // Twice the cap of connections that send nothing: the first ones take every slot.
    let mut idle = Vec::new();
    for _ in 0..2 * LIMITS.connections {
        idle.push(TcpStream::connect(server.address).await.unwrap());
    }
    // A request now waits for a slot: not answered while the slots are held...
    let waiting = tokio::spawn({
        let address = server.address;
        async move {
            let started = Instant::now();
            (get(address, "/live").await, started.elapsed())
        }
    });
    tokio::time::sleep(LIMITS.header_timeout / 2).await;
    assert!(!waiting.is_finished(), "over the cap, a request waits");
    // ...and is answered once the header deadline has freed them.
    let (code, waited) = waiting.await.unwrap();
    assert_eq!(code, Some(200));
    assert!(waited >= LIMITS.header_timeout / 2, "{waited:?}");
    for s in &mut idle {
        assert!(closed_within(s, Duration::from_secs(10)).await, "idle connections are cut at the deadline");
    }
    assert_eq!(get(server.address, "/").await, Some(200), "the page answers afterwards");
    server.stop().await;
}

#[tokio::test]
async fn oversized_requests_get_431_or_413() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let big_header = format!("GET /live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(raw(server.address, &big_header, b"").await, Some(431));
    let body = vec![b'x'; 64 * 1024];
    let with_body = format!(
        "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert_eq!(raw(server.address, &with_body, &body).await, Some(413));
    assert_eq!(get(server.address, "/live").await, Some(200), "and the server goes on");
    server.stop().await;
}

#[tokio::test]
async fn a_body_dribbled_past_the_request_deadline_gets_408_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /api/v1/operator/marks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"kind\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the 500 bytes would take 100 s.
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(get(server.address, "/live").await, Some(200), "normal requests answer meanwhile");
        let _ = slow.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_millis(10), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let after = started.elapsed();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {after:?}");
    assert!(after >= LIMITS.request_timeout, "not before the deadline ({after:?})");
    assert!(after < LIMITS.request_timeout * 4, "within the deadline and a little ({after:?})");
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await, "and the connection is closed");
    server.stop().await;
}
