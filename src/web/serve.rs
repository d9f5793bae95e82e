//! A static file server for the site (`asna web --serve`): GET and HEAD of the files under one
//! directory and nothing outside it (no `..`, no link that leads out), each connection closed
//! after its reply. It is this small file rather than a server crate because the site needs no
//! more, and every limit below is in view here (each has a test with real sockets in
//! tests/serve.rs):
//!
//! - a fixed pool of `workers` threads takes connections from a queue of `queue`; a connection
//!   beyond both gets `503` at once and is closed: no thread per connection, no panic;
//! - the whole request head must arrive within `head_deadline` (`408` after it, however
//!   slowly it trickles), in at most 16 KiB (`431`; `414` when the request line alone is over
//!   8 KiB); a malformed request line gets `400`, a method other than GET and HEAD `405`;
//!   bare-LF line ends are read like CRLF;
//! - files are streamed in 64 KiB chunks, every write within `write_timeout`, so a client
//!   that does not read holds one worker for seconds and one chunk of memory;
//! - a file that is there but cannot be opened or read (out of descriptors, say) is `503`,
//!   never a `404`; accept errors back off from 10 ms to 1 s instead of spinning a core.

use anyhow::{anyhow, Result};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 << 10;
/// Longest request line.
const MAX_REQUEST_LINE: usize = 8 << 10;
/// Bytes of a file sent per write.
const CHUNK: usize = 64 << 10;
/// How long, and how many bytes, an error reply waits for the rest of a request.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;
/// The first and the longest wait after a failed accept.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The server's limits.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections served at once.
    pub workers: usize,
    /// Accepted connections waiting for a worker; more get 503.
    pub queue: usize,
    /// Time from a worker's first read to the end of the request head.
    pub head_deadline: Duration,
    /// Longest wait for the client to take one write.
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: 16,
            queue: 64,
            head_deadline: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Listens on `addr` (checked before anything else is done, so a bad address costs nothing).
pub fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| anyhow!("--serve {addr}: cannot listen ({e})"))
}

/// Serves `root` on `listener` until the process ends; `ready` gets the bound address once the
/// workers run.
pub fn serve(
    listener: TcpListener,
    root: &Path,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let root = root
        .canonicalize()
        .map_err(|e| anyhow!("{}: {e}", root.display()))?;
    let (queue, waiting) = sync_channel::<TcpStream>(options.queue);
    let waiting = Arc::new(Mutex::new(waiting));
    for i in 0..options.workers.max(1) {
        let (root, waiting, options) = (root.clone(), waiting.clone(), options.clone());
        std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || work(&root, &waiting, &options))
            .map_err(|e| anyhow!("cannot start the server's threads ({e})"))?;
    }
    ready(listener.local_addr()?);
    let mut backoff = Duration::ZERO;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                match queue.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(stream)) => refuse_busy(stream),
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(anyhow!("the server's threads ended"))
                    }
                }
            }
            // Out of descriptors, buffers, or a connection reset before it was taken: wait
            // (longer each time) rather than retrying at once.
            Err(_) => {
                backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                std::thread::sleep(backoff);
            }
        }
    }
}

/// One worker: connections from the queue, one at a time.
fn work(root: &Path, waiting: &Mutex<Receiver<TcpStream>>, options: &ServeOptions) {
    loop {
        let next = match waiting.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match next {
            Ok(stream) => {
                let _ = respond(stream, root, options);
            }
            Err(_) => return,
        }
    }
}

/// 503 to a connection no worker can take, without waiting for the client: the reply fits in
/// the socket's buffer, and whatever does not is dropped.
fn refuse_busy(stream: TcpStream) {
    let mut stream = stream;
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write_all(&head_bytes("503 Service Unavailable", "text/plain", 5));
        let _ = stream.write_all(b"busy\n");
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        // ES modules load only with a JavaScript type.
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "wgsl" => "text/wgsl; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "bmp" => "image/bmp",
        "webp" => "image/webp",
        "tif" | "tiff" => "image/tiff",
        "txt" | "csv" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file under `root` that a request target names, if it is one.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = percent_decode(target.split(['?', '#']).next()?)?;
    let mut rel = PathBuf::new();
    for part in Path::new(path.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let mut file = root.join(rel);
    if file.is_dir() {
        file.push("index.html");
    }
    // Symbolic links may not lead outside the root.
    let real = file.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// Why a request head was not read.
enum HeadError {
    /// Not complete by the deadline.
    Late,
    /// Over `MAX_HEAD`, or a request line over `MAX_REQUEST_LINE`.
    TooLarge { request_line: bool },
    /// The client closed or reset the connection: nothing to answer.
    Gone,
}

/// Reads up to the blank line that ends the head (CRLF or bare LF), by `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Late);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Gone)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HeadError::Late)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Gone),
        };
        // Search from a little before the new bytes: the terminator may straddle two reads.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        let tail = &head[from..];
        let end = tail
            .windows(2)
            .position(|w| w == b"\n\n")
            .or_else(|| tail.windows(4).position(|w| w == b"\r\n\r\n"));
        if let Some(end) = end {
            head.truncate(from + end);
        }
        let line = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        if line > MAX_REQUEST_LINE {
            return Err(HeadError::TooLarge { request_line: true });
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::TooLarge {
                request_line: false,
            });
        }
        if end.is_some() {
            return Ok(head);
        }
    }
}

fn head_bytes(status: &str, kind: &str, length: u64) -> Vec<u8> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {length}\r\n{allow}Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A short text reply (the body left out for HEAD).
fn reply_text(stream: &mut TcpStream, status: &str, body: &str, send: bool) -> std::io::Result<()> {
    stream.write_all(&head_bytes(status, "text/plain", body.len() as u64))?;
    if send {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// An error reply to a request whose head was not read whole: closing with unread bytes
/// pending would reset the connection and lose the reply, so the rest is read and dropped
/// first, for at most `LINGER` and `LINGER_BYTES`.
fn reply_error(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    reply_text(stream, status, body, true)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let until = Instant::now() + LINGER;
    let (mut buf, mut drained) = ([0u8; 4096], 0);
    while drained < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

fn respond(mut stream: TcpStream, root: &Path, options: &ServeOptions) -> std::io::Result<()> {
    stream.set_write_timeout(Some(options.write_timeout))?;
    let head = match read_head(&mut stream, Instant::now() + options.head_deadline) {
        Ok(head) => head,
        Err(HeadError::Late) => {
            return reply_error(
                &mut stream,
                "408 Request Timeout",
                "request head too slow\n",
            )
        }
        Err(HeadError::TooLarge { request_line: true }) => {
            return reply_error(&mut stream, "414 URI Too Long", "request line too long\n")
        }
        Err(HeadError::TooLarge { .. }) => {
            return reply_error(
                &mut stream,
                "431 Request Header Fields Too Large",
                "request head over 16 KiB\n",
            )
        }
        Err(HeadError::Gone) => return Ok(()),
    };
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    let words: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = words[..] else {
        return reply_error(&mut stream, "400 Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return reply_error(&mut stream, "400 Bad Request", "bad request line\n");
    }
    let send = method == "GET";
    if !send && method != "HEAD" {
        return reply_error(&mut stream, "405 Method Not Allowed", "GET or HEAD only\n");
    }
    let Some(path) = resolve(root, target) else {
        return reply_text(&mut stream, "404 Not Found", "not found\n", send);
    };
    let opened = File::open(&path).and_then(|f| Ok((f.metadata()?.len(), f)));
    let Ok((length, mut file)) = opened else {
        return reply_text(
            &mut stream,
            "503 Service Unavailable",
            "cannot read the file now\n",
            send,
        );
    };
    stream.write_all(&head_bytes("200 OK", content_type(&path), length))?;
    if send {
        let mut chunk = vec![0u8; CHUNK];
        let mut left = length;
        while left > 0 {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                // The file shrank while being sent: the length promised cannot be kept.
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let n = n.min(left as usize);
            stream.write_all(&chunk[..n])?;
            left -= n as u64;
        }
    }
    stream.flush()
}
