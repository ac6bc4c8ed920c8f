//! A deliberately low-level HTTPS/1.1 client for the security and crash suites: it sends the
//! exact bytes a test writes (malformed heads, wrong lengths, trickled bodies) over one TLS
//! connection that pins the broker's CA, and reads back status, headers and body.
//!
//! Written here rather than taken from an HTTP client crate because every such crate refuses to
//! send malformed requests, which is what these tests need. It understands only what the broker
//! answers: a status line, headers, and a body delimited by `content-length`, by `chunked`
//! transfer coding, or by the end of the connection.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls_pki_types::ServerName;

/// Longest a test waits for one read before calling the broker hung (a hang guard).
const READ_GUARD: Duration = Duration::from_secs(60);

/// One reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every `set-cookie` value's `name=value` part.
    #[must_use]
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .filter_map(|(_, v)| v.split(';').next())
            .map(str::to_owned)
            .collect()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `type` of the broker's error body `{"type", "detail"}`, if the body is one.
    #[must_use]
    pub fn error_type(&self) -> Option<String> {
        let v = self.json();
        v.get("detail")?;
        v.get("type")?.as_str().map(str::to_owned)
    }

    /// The body as text, for messages.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One TLS connection to a broker.
#[derive(Debug)]
pub struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Conn {
    /// Connects to `addr` and completes the TLS handshake, trusting only `config`'s roots.
    pub fn open(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> anyhow::Result<Self> {
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(Arc::clone(config), name)?;
        let sock = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        sock.set_read_timeout(Some(READ_GUARD))?;
        sock.set_nodelay(true)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).context("TLS handshake")?;
        }
        Ok(Self { tls })
    }

    /// Writes `bytes` and flushes them to the socket.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Sets how long one read may block (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.tls.sock.set_read_timeout(timeout)
    }

    /// Reads one reply. Errors if the connection ends before a whole reply arrived.
    pub fn read_reply(&mut self) -> anyhow::Result<Reply> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            if self.fill(&mut buf)? == 0 {
                bail!("connection closed before a reply head ({} bytes read)", buf.len());
            }
        };
        let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or_default()).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut rest = buf.split_off(head_end + 4);
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let body = if let Some(len) = header("content-length") {
            let len: usize = len.parse().context("bad content-length")?;
            while rest.len() < len {
                if self.fill(&mut rest)? == 0 {
                    bail!("connection closed inside a {len}-byte body");
                }
            }
            rest.truncate(len);
            rest
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            self.read_chunked(rest)?
        } else {
            while self.fill(&mut rest)? != 0 {}
            rest
        };
        Ok(Reply { status, headers, body })
    }

    /// Sends `request` whole and reads the reply.
    pub fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Reply> {
        self.send(request).context("sending the request")?;
        self.read_reply()
    }

    /// Whether the broker closes the connection within `timeout`: reads (discarding anything
    /// it sends first, such as an error reply) until end-of-stream or a reset.
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        if self.set_read_timeout(Some(timeout)).is_err() {
            return true;
        }
        let mut sink = Vec::new();
        loop {
            match self.fill(&mut sink) {
                Ok(0) => return true,
                Ok(_) => sink.clear(),
                Err(e) => {
                    let timed_out = e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    });
                    return !timed_out;
                }
            }
        }
    }

    /// Reads more plaintext into `buf`; `Ok(0)` at the end of the stream. Drives rustls by
    /// hand rather than through `StreamOwned::read`, which first flushes pending TLS records
    /// (our close_notify answer) and so reports a broken pipe instead of the reply a server
    /// sent just before closing.
    fn fill(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let (conn, sock) = (&mut self.tls.conn, &mut self.tls.sock);
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // A peer that closes without close_notify ends the reply all the same.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e).context("reading the reply"),
            }
            if conn.wants_write() {
                // Best effort: the peer may be gone already.
                let _ = conn.write_tls(sock);
            }
            let read = match conn.read_tls(sock) {
                Ok(n) => n,
                Err(e)
                    if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) =>
                {
                    0
                }
                Err(e) => return Err(e).context("reading the reply"),
            };
            conn.process_new_packets().context("TLS records of the reply")?;
            if read == 0 {
                // End of the socket: whatever plaintext the last records held, then the end.
                return match conn.reader().read(&mut chunk) {
                    Ok(n) => {
                        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        Ok(n)
                    }
                    Err(_) => Ok(0),
                };
            }
        }
    }

    fn read_chunked(&mut self, mut rest: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = find(&rest, b"\r\n") {
                    break end;
                }
                if self.fill(&mut rest)? == 0 {
                    bail!("connection closed inside a chunk size");
                }
            };
            let size_text =
                String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default()).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            rest.drain(..line_end + 2);
            while rest.len() < size + 2 {
                if self.fill(&mut rest)? == 0 {
                    bail!("connection closed inside a chunk");
                }
            }
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(rest.get(..size).unwrap_or_default());
            rest.drain(..size + 2);
        }
    }
}

/// A request as bytes: `METHOD PATH HTTP/1.1`, `host`, `connection: close`, the `headers`, a
/// `content-length` when `body` is `Some`, and the body.
#[must_use]
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: keylatch\r\nconnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// A client for one broker: opens a connection per request.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

impl Client {
    /// Trusts only the PEM CA file `ca`.
    pub fn new(ca: &std::path::Path, addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self { config: crate::broker::client_config(ca)?, addr })
    }

    /// A fresh connection.
    pub fn connect(&self) -> anyhow::Result<Conn> {
        Conn::open(&self.config, self.addr)
    }

    /// Sends raw request bytes on a fresh connection and reads the reply.
    pub fn raw(&self, request: &[u8]) -> anyhow::Result<Reply> {
        self.connect()?.exchange(request)
    }

    /// `method path` with `headers` and an optional body, on a fresh connection.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> anyhow::Result<Reply> {
        self.raw(&request(method, path, headers, body))
    }

    /// `GET path` with `headers`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.send("GET", path, headers, None)
    }

    /// `POST path` with a JSON body and `headers`.
    pub fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Reply> {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, &all, Some(body))
    }

    /// `/healthz` and `/readyz` both answer 200: the broker is serving and its store and
    /// keystore work. Errors with what answered otherwise.
    pub fn healthy(&self) -> anyhow::Result<()> {
        for path in ["/healthz", "/readyz"] {
            let reply = self.get(path, &[])?;
            if reply.status != 200 {
                bail!("{path} answered {}: {}", reply.status, reply.text());
            }
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
