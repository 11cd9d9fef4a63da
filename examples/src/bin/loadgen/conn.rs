//! The client side: keep-alive HTTP/1.1 connections to a loopback target, the headers
//! loadgen sends, and the server's CPU time from `/proc`.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// The target: `host:port` on this machine's loopback, or an error.
pub(crate) fn loopback_target(base: &str) -> Result<(String, u16), String> {
    let uri: http::Uri = base.parse().map_err(|e| format!("--url: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("--url: only http:// is supported".to_owned());
    }
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(
            "--url: loadgen only targets loopback (127.0.0.0/8, localhost, [::1])".to_owned(),
        );
    }
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// The server's CPU time so far (user + system), from /proc.
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// One HTTP/1.1 keep-alive connection, driven by hyper's low-level client so that the
/// client's own cost per request stays small next to the server's.
pub(crate) struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub(crate) async fn open(target: &(String, u16)) -> Result<Self, String> {
        let stream = tokio::net::TcpStream::connect((target.0.as_str(), target.1))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", target.0, target.1))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake failed: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender })
    }

    /// GET `path`; the status, once the body is read.
    pub(crate) async fn get(
        &mut self,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<StatusCode, String> {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    /// POST `body` to `path`; the status, once the answer's body is read.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, String> {
        self.send(Method::POST, path, headers, body).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = headers.clone();
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        res.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }
}

/// The median of sorted values (0 for none).
pub(crate) fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `Host` header for `target`.
pub(crate) fn host_header(target: &(String, u16)) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("{}:{}", target.0, target.1)).map_err(|e| e.to_string())
}

/// `Host` and `Authorization: Bearer <key>` (marked sensitive); `None` when the key is not a
/// valid header value.
pub(crate) fn bearer_headers(host: &HeaderValue, key: &str) -> Option<HeaderMap> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(HOST, host.clone());
    headers.insert(AUTHORIZATION, auth);
    Some(headers)
}
