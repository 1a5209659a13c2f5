//! The daemon's probe endpoint from a test: one plain HTTP/1.1 GET, and a
//! wait for `/readyz` to answer as wanted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET over plain TCP: (status code, body).
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap()
}

/// A loopback address nothing listens on (yet): for `--health-addr`.
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// `/readyz` until `want` says yes; panics with the last answer after `within`.
pub async fn wait_readyz(
    addr: SocketAddr,
    within: Duration,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        // blocking I/O off the runtime, which may serve the endpoint
        let got = tokio::task::spawn_blocking(move || try_http_get(addr, "/readyz"))
            .await
            .unwrap();
        if let Ok((status, body)) = &got {
            if want(*status, body) {
                return (*status, body.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered as expected; last: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
