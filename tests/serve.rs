//! `asna web --serve` (src/web/serve.rs) with real sockets on 127.0.0.1: what it serves and
//! refuses (containment, methods, malformed, oversized and bare-LF heads), and that it stays up
//! under the clients that used to take it down: a flood of idle connections (503 beyond the
//! pool and queue, then served again), a client trickling its head (cut at the head deadline),
//! a client that never reads a large reply (its worker freed by the write timeout), and a
//! process out of file descriptors (accept backs off instead of spinning). Each test bounds its
//! connections and its time; the servers run on threads of this process with small limits,
//! except the descriptor test's, a child `asna web --serve` under `prlimit`.

use asna::web::serve::{bind, serve, ServeOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("asna-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A site: index.html, sub/page.js, sub/index.html, and a 24 MiB file (more than the loopback
/// socket buffers hold); `secret.txt` beside the root, and links inside the root to it and to
/// a file inside.
fn site(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<p>index</p>").unwrap();
    std::fs::write(root.join("sub/page.js"), "export const x = 1;\n").unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>sub</p>").unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 24 << 20]).unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("sub/page.js"), root.join("link-in.js")).unwrap();
    root
}

/// Runs a server for `root` on a thread, on a free port.
fn start(root: &Path, options: ServeOptions) -> SocketAddr {
    let listener = bind("127.0.0.1:0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = root.to_path_buf();
    std::thread::spawn(move || serve(listener, &root, &options, |a| tx.send(a).unwrap()));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `request` and reads the whole reply: (status code, head, body).
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    read_reply(&mut s)
}

fn read_reply(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("a reply, then the end");
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    let code = head[9..12].parse().unwrap();
    (code, head, all[split + 4..].to_vec())
}

fn get(addr: SocketAddr, target: &str) -> (u16, String, Vec<u8>) {
    exchange(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn quick() -> ServeOptions {
    ServeOptions {
        workers: 4,
        queue: 4,
        head_deadline: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
    }
}

#[test]
fn files_under_the_root_and_nothing_else() {
    let root = site("contain");
    let addr = start(&root, quick());
    let (code, head, body) = get(addr, "/");
    assert_eq!((code, &body[..]), (200, &b"<p>index</p>"[..]));
    assert!(head.contains("Content-Type: text/html"), "{head}");
    let (code, head, body) = get(addr, "/sub/page.js?v=2");
    assert_eq!((code, &body[..]), (200, &b"export const x = 1;\n"[..]));
    assert!(
        head.contains("text/javascript") && head.contains("Content-Length: 20"),
        "{head}"
    );
    assert_eq!(get(addr, "/sub/").2, b"<p>sub</p>");
    assert_eq!(get(addr, "/link-in.js").0, 200, "a link inside the root");
    // HEAD: the length, no body.
    let (code, head, body) = exchange(addr, b"HEAD /sub/page.js HTTP/1.1\r\n\r\n");
    assert_eq!((code, body.len()), (200, 0));
    assert!(head.contains("Content-Length: 20"), "{head}");
    // Nothing outside the root, however it is spelt; the reply does not say what exists.
    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/%2E%2E/%2E%2E/secret.txt",
        "//etc/passwd",
        "/link-out.txt",
        "/missing.html",
        "/%zz",
    ] {
        let (code, _, body) = get(addr, target);
        assert_eq!((code, &body[..]), (404, &b"not found\n"[..]), "{target}");
    }
    // GET and HEAD only.
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let (code, head, _) = exchange(addr, format!("{method} / HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(code, 405, "{method}");
        assert!(head.contains("Allow: GET, HEAD"), "{head}");
    }
}

#[test]
fn bad_request_heads_get_their_status() {
    let root = site("heads");
    let addr = start(&root, quick());
    // Bare LF line ends are read like CRLF.
    assert_eq!(
        exchange(addr, b"GET /sub/page.js HTTP/1.1\nHost: x\n\n").0,
        200
    );
    assert_eq!(exchange(addr, b"GET / HTTP/1.0\r\n\r\n").0, 200);
    for bad in [
        &b"HELLO\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET index.html HTTP/1.1\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
    ] {
        assert_eq!(
            exchange(addr, bad).0,
            400,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A request line over 8 KiB, sent whole and in pieces without an end.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
    assert_eq!(exchange(addr, long.as_bytes()).0, 414);
    assert_eq!(exchange(addr, "a".repeat(9000).as_bytes()).0, 414);
    // Headers over 16 KiB in all.
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..400 {
        many.push_str(&format!("X-Header-{i}: {}\r\n", "v".repeat(40)));
    }
    many.push_str("\r\n");
    assert_eq!(exchange(addr, many.as_bytes()).0, 431);
}

#[test]
fn an_idle_flood_gets_503_beyond_the_pool_and_the_site_comes_back() {
    let root = site("flood");
    let options = ServeOptions {
        workers: 2,
        queue: 2,
        head_deadline: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
    };
    let addr = start(&root, options);
    // Two idle connections hold the workers, two wait in the queue (one at a time, so that
    // each is taken before the next comes).
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| {
            let s = connect(addr);
            std::thread::sleep(Duration::from_millis(150));
            s
        })
        .collect();
    let t = Instant::now();
    let mut extra = connect(addr);
    let (code, _, _) = read_reply(&mut extra);
    assert_eq!(code, 503, "a connection beyond the pool and the queue");
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once");
    // The idle ones are cut at the head deadline (408), and the site serves again.
    for mut s in idle {
        let (code, _, _) = read_reply(&mut s);
        assert_eq!(code, 408);
    }
    assert_eq!(get(addr, "/").0, 200);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

#[test]
fn a_trickling_head_is_cut_at_the_deadline() {
    let root = site("trickle");
    let addr = start(&root, quick());
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let t = Instant::now();
    // One byte every 100 ms for up to 6 s: each read is quick, the head never ends. Between
    // bytes, look for the server's answer.
    let mut reply = Vec::new();
    for b in b"GET / HTTP/1.1\r\nX: y\r\n".iter().cycle() {
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if t.elapsed() > Duration::from_secs(6) || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "the trickling client got {text:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "cut after {took:?} (deadline 2 s)"
    );
}

#[test]
fn a_client_that_never_reads_frees_its_worker() {
    let root = site("stall");
    let options = ServeOptions {
        workers: 1,
        queue: 4,
        head_deadline: Duration::from_secs(2),
        write_timeout: Duration::from_secs(1),
    };
    let addr = start(&root, options);
    // 24 MiB asked for and never read: the one worker's writes stall, then time out.
    let mut stalled = connect(addr);
    stalled.write_all(b"GET /big.bin HTTP/1.1\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let (code, _, body) = get(addr, "/sub/page.js");
    assert_eq!((code, body.len()), (200, 20));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "served after {:?}",
        t.elapsed()
    );
    // The stalled reply was cut, not completed.
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(got.len() < 24 << 20, "{} bytes", got.len());
    drop(stalled);
    // A reader gets the whole file, streamed.
    let (code, head, body) = get(addr, "/big.bin");
    assert_eq!((code, body.len()), (200, 24 << 20));
    assert!(
        head.contains(&format!("Content-Length: {}", 24 << 20)),
        "{head}"
    );
}

/// CPU time (user + system, in clock ticks) of a process so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_server_backs_off_and_recovers() {
    let dir = temp_dir("fds");
    let mut child = Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg(env!("CARGO_BIN_EXE_asna"))
        .args(["web", "--out", dir.join("site").to_str().unwrap()])
        .args(["--serve", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let child = Kill(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches("/ (Ctrl-C stops)").parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_eq!(get(addr, "/index.html").0, 200);
    // More idle connections than the server has descriptors: accept fails with EMFILE.
    let flood: Vec<TcpStream> = (0..120).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(child.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(child.0.id()) - before;
    // A loop retrying accept at once burns about 200 ticks in 2 s; backing off, almost none.
    assert!(spent < 40, "{spent} clock ticks of CPU in 2 s of EMFILE");
    drop(flood);
    let t = Instant::now();
    loop {
        let mut s = connect(addr);
        let _ = s.write_all(b"GET /index.html HTTP/1.1\r\n\r\n");
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        if reply.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not serving again: {:?}",
            String::from_utf8_lossy(&reply)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
