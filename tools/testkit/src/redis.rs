//! A throwaway `redis-server` for the bus's tests and the soak: started in
//! a temporary directory, on a Unix socket (or a loopback port), killed and
//! started again on the same socket and files, removed on drop.
//!
//! No system service is touched: every [`RedisServer`] is a child process
//! of the caller with its own directory, so tests can run side by side and
//! kill their Redis with `SIGKILL` at will.
//!
//! ```text
//! redis-server --port 0 --unixsocket DIR/redis.sock --dir DIR --save ''
//!              --appendonly yes --appendfsync always      Persistence::Aof
//!              --appendonly no                            Persistence::None
//! ```
//!
//! - [`Persistence::Aof`]: every write is in the append-only file before
//!   Redis answers it (`appendfsync always`), so a `SIGKILL` loses nothing
//!   that was acknowledged, and a restart reads it all back (answering
//!   `-LOADING` meanwhile).
//! - [`Persistence::None`]: no file at all (`--save ''` turns the RDB
//!   snapshots off too); a restart comes back empty. That is how the
//!   bus's "losing data is never silent" is shown.
//!
//! The binary is `redis-server` on the `PATH`, or `$REDIS_SERVER`. A
//! missing one is an error that says how to install it, never a skip: a
//! test that needs Redis and does not find it fails.
//!
//! Readiness is polled, with a deadline: connect, send `PING`, expect
//! `+PONG` (`-LOADING` means not yet).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a start (or a restart that loads the AOF) may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether Redis keeps what it was told across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly yes`, `appendfsync always`: nothing acknowledged is lost.
    Aof,
    /// No AOF, no snapshots: a restart starts empty.
    None,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    /// As ssed's `--bus` takes it.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("redis+unix://{}", path.display()),
            Endpoint::Tcp(addr) => format!("redis://{addr}"),
        }
    }
}

/// One `redis-server` child in its own temporary directory. See the
/// module doc.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    endpoint: Endpoint,
    persistence: Persistence,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a Unix socket in a new temporary directory.
    pub fn start_unix(persistence: Persistence) -> io::Result<RedisServer> {
        let dir = temp_dir()?;
        let endpoint = Endpoint::Unix(dir.join("redis.sock"));
        Self::start_at(dir, endpoint, persistence)
    }

    /// Starts one on a free loopback port. The port is found by binding
    /// `127.0.0.1:0` and letting it go, so another process may take it in
    /// between: then Redis fails to bind, and another port is tried.
    pub fn start_tcp(persistence: Persistence) -> io::Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let endpoint = Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
            match Self::start_at(temp_dir()?, endpoint, persistence) {
                Ok(server) => return Ok(server),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn start_at(dir: PathBuf, endpoint: Endpoint, persistence: Persistence) -> io::Result<RedisServer> {
        let mut server = RedisServer {
            dir,
            endpoint,
            persistence,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// The `--bus` URL of this server.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The temporary directory: the socket, the AOF, `redis.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `SIGKILL`, and waits for the process to be gone: no shutdown, no
    /// last write, as when a machine loses power (but the kernel keeps
    /// what was written to files).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same socket and directory, and
    /// waits until it answers `PING` (after loading its AOF, if any).
    /// A server still running is killed first.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        if let Endpoint::Unix(path) = &self.endpoint {
            // A killed server leaves its socket file behind; Redis would
            // unlink it itself, but a stale one must not answer our PING.
            let _ = std::fs::remove_file(path);
        }
        let binary = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let mut command = Command::new(&binary);
        command.arg("--dir").arg(&self.dir);
        match &self.endpoint {
            Endpoint::Unix(path) => {
                command.args(["--port", "0", "--unixsocketperm", "700", "--unixsocket"]);
                command.arg(path);
            }
            Endpoint::Tcp(addr) => {
                command.args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()]);
            }
        }
        command.args(["--save", "", "--daemonize", "no", "--logfile", "redis.log"]);
        match self.persistence {
            Persistence::Aof => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
            Persistence::None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let hint = if e.kind() == io::ErrorKind::NotFound {
                    " (install the Debian package redis-server, as ./test.sh does, or set REDIS_SERVER)"
                } else {
                    ""
                };
                io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}{hint}", binary.to_string_lossy()),
                )
            })?;
        self.child = Some(child);
        self.wait_ready(START_TIMEOUT)
    }

    /// Polls with `PING` until `+PONG`, the child dies, or `timeout`.
    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "redis-server exited at start ({status}); its log:\n{}",
                        self.log_tail(20).join("\n")
                    )));
                }
            }
            match self.ping() {
                Ok(answer) if answer == "+PONG" => return Ok(()),
                Ok(answer) => last = answer,
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "redis-server not ready in {timeout:?} (last: {last}); its log:\n{}",
                self.log_tail(20).join("\n")
            ),
        ))
    }

    /// One `PING` on a fresh connection: the first line of the answer.
    pub fn ping(&self) -> io::Result<String> {
        let timeout = Some(Duration::from_secs(2));
        let answer = match &self.endpoint {
            Endpoint::Unix(path) => {
                let mut stream = UnixStream::connect(path)?;
                stream.set_read_timeout(timeout)?;
                stream.set_write_timeout(timeout)?;
                first_line(&mut stream)?
            }
            Endpoint::Tcp(addr) => {
                let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(2))?;
                stream.set_read_timeout(timeout)?;
                stream.set_write_timeout(timeout)?;
                first_line(&mut stream)?
            }
        };
        Ok(answer)
    }

    /// The last `n` lines of `redis.log`, for a failing test's report.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let Ok(file) = std::fs::File::open(self.dir.join("redis.log")) else {
            return Vec::new();
        };
        let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends an inline `PING` and reads one line.
fn first_line(stream: &mut (impl Read + Write)) -> io::Result<String> {
    stream.write_all(b"PING\r\n")?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 1024 {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// A new, empty directory under the system's temporary directory, named
/// for this process and a counter (so parallel tests never share one).
/// Short, because a Unix socket's path must fit in 108 bytes.
pub fn temp_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ssed-redis-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let unix = Endpoint::Unix(PathBuf::from("/tmp/x/redis.sock"));
        assert_eq!(unix.url(), "redis+unix:///tmp/x/redis.sock");
        let tcp = Endpoint::Tcp("127.0.0.1:6400".parse().unwrap());
        assert_eq!(tcp.url(), "redis://127.0.0.1:6400");
    }

    #[test]
    fn temp_dirs_are_distinct() {
        let (a, b) = (temp_dir().unwrap(), temp_dir().unwrap());
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        let _ = std::fs::remove_dir(a);
        let _ = std::fs::remove_dir(b);
    }
}
