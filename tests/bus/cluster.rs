//! The processes of a bus test: one `redis-server` and N `ssed --bus`,
//! each a child of the test, each killed when the test ends (passed,
//! failed or panicked), each with its log kept for the failure report.
//!
//! ```text
//!                    ┌──────────── redis-server (temp dir, Unix socket) ───────────┐
//!                    │                                                             │
//!   ssed "a" ──── --bus redis+unix:///…/redis.sock ──── ssed "b" ──── ssed "c" ────┘
//!    │   └── 127.0.0.1:P  (--reuseport) ──┘   │                       │
//!    own port                              own port                own port
//! ```
//!
//! Every process listens on a port of its own, so a test can talk to one
//! process in particular (its stats, its health, a subscriber that must
//! land there). Two of them may also share a port with `--reuseport`:
//! the first binds `127.0.0.1:0` with `SO_REUSEPORT` and the second binds
//! the port the first one got. No port is guessed: the kernel never hands
//! a bound port to another `bind(0)` (not even one with `SO_REUSEPORT`),
//! so parallel tests cannot end up sharing one.
//!
//! A process is ready when `/healthz` answers `200` (both Redis
//! connections up); [`Node::spawn`] polls for that with a deadline.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ssed_testkit::net;
use ssed_testkit::redis::{Persistence, RedisServer};

use crate::clients::{get, Answer};

/// How long a process may take to listen, or to get healthy.
pub const START: Duration = Duration::from_secs(15);

/// Log lines kept per process for the failure report.
const LOG_TAIL: usize = 60;

/// Which ports a process listens on besides its own.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    /// Only its own.
    Own,
    /// Opens a shared port (`--reuseport` on `127.0.0.1:0`).
    Share,
    /// Joins the shared port another process opened.
    Join(SocketAddr),
}

/// One `ssed --bus` process.
pub struct Node {
    pub name: String,
    /// Its own port: requests here reach this process and no other.
    pub addr: SocketAddr,
    /// The port it shares with others (`--reuseport`), if any.
    pub shared: Option<SocketAddr>,
    /// `None` once killed. In a mutex so that `&self` can ask whether it
    /// exited (`try_wait` needs `&mut`).
    child: Mutex<Option<Child>>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Node {
    /// Starts `ssed --bus URL --tick 0 --heartbeat 1` plus `extra`, and
    /// waits until it listens and `/healthz` answers `200`.
    pub fn spawn(name: &str, bus: &str, port: Port, extra: &[&str]) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
        command.args(["--bus", bus, "--tick", "0", "--heartbeat", "1"]);
        let shared = match port {
            Port::Own => false,
            Port::Share => {
                command.args(["--reuseport", "--listen", "127.0.0.1:0"]);
                true
            }
            Port::Join(addr) => {
                command.args(["--reuseport", "--listen", &addr.to_string()]);
                true
            }
        };
        // Listeners are bound, and logged, in the order given: the shared
        // one first, then the process's own.
        command.args(["--listen", "127.0.0.1:0"]).args(extra);
        command
            .env("RUST_LOG", "info")
            .env_remove("SSED_PUBLISH_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn ssed");
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let addrs = keep_log(&mut child, name, log.clone());
        let mut node = Node {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared: None,
            child: Mutex::new(Some(child)),
            log,
        };
        let wanted = if shared { 2 } else { 1 };
        let mut got = Vec::new();
        let deadline = Instant::now() + START;
        while got.len() < wanted {
            match addrs.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => got.push(addr),
                Err(_) => {
                    if let Some(status) = node.exited() {
                        node.fail(&format!("exited before listening: {status}"));
                    }
                    if Instant::now() > deadline {
                        node.fail("did not log 'listening on' in time");
                    }
                }
            }
        }
        node.addr = got[wanted - 1];
        node.shared = shared.then(|| got[0]);
        node.wait_health(200, START);
        node
    }

    /// A short `GET`; `None` when the process cannot be reached.
    pub fn get(&self, target: &str) -> Option<Answer> {
        get(self.addr, target).ok()
    }

    /// The `/healthz` status, `None` when unreachable.
    pub fn health(&self) -> Option<u16> {
        self.get("/healthz").map(|answer| answer.status)
    }

    /// Polls `/healthz` until it answers `status`.
    pub fn wait_health(&self, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.health();
            if last == Some(status) {
                return;
            }
            if let Some(exit) = self.exited() {
                self.fail(&format!("exited while waiting for /healthz {status}: {exit}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.fail(&format!(
            "/healthz still {last:?} after {within:?}, wanted {status}"
        ));
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let answer = self
            .get("/stats")
            .unwrap_or_else(|| self.fail("/stats: no answer"));
        serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| self.fail(&format!("/stats: {e}: {}", answer.body)))
    }

    /// Streams open on this process (`/stats` `subscribers`).
    pub fn subscribers(&self) -> u64 {
        self.stats()["subscribers"].as_u64().unwrap_or(0)
    }

    /// `SIGKILL`, and waits for the process to be gone.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`SIGSTOP`, `SIGCONT`, ...) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(child) = self.child().as_ref() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped (the
            // guard holds it).
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// How it ended, if it did by itself.
    pub fn exited(&self) -> Option<String> {
        let mut child = self.child();
        let status = child.as_mut()?.try_wait().ok()??;
        Some(status.to_string())
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last lines it logged.
    pub fn log_tail(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Fails the test with this process's log.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "ssed {}: {why}\n--- its log ---\n{}",
            self.name,
            self.log_tail().join("\n")
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- ssed {} ({}), last log lines ---", self.name, self.addr);
            for line in self.log_tail() {
                eprintln!("{line}");
            }
        }
        self.kill();
    }
}

/// Forwards the child's stderr into `log` (the last [`LOG_TAIL`] lines),
/// and the addresses of its `listening on` lines into the channel.
fn keep_log(child: &mut Child, name: &str, log: Arc<Mutex<VecDeque<String>>>) -> mpsc::Receiver<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    let Some(stderr) = child.stderr.take() else {
        return rx;
    };
    let name = name.to_string();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = net::listening_addr(&line) {
                let _ = tx.send(addr);
            }
            if std::env::var_os("BUS_TEST_LOGS").is_some() {
                eprintln!("[{name}] {line}");
            }
            let mut tail = log.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    rx
}

/// A Redis and the ssed processes on it.
pub struct Cluster {
    pub redis: RedisServer,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Redis on a Unix socket in a temp dir. Fails, never skips, when
    /// `redis-server` is missing.
    pub fn redis(persistence: Persistence) -> Cluster {
        let redis = RedisServer::start_unix(persistence).unwrap_or_else(|e| panic!("redis-server: {e}"));
        Cluster {
            redis,
            nodes: Vec::new(),
        }
    }

    /// Redis on a loopback port (`redis://127.0.0.1:PORT`).
    pub fn redis_tcp(persistence: Persistence) -> Cluster {
        let redis = RedisServer::start_tcp(persistence).unwrap_or_else(|e| panic!("redis-server: {e}"));
        Cluster {
            redis,
            nodes: Vec::new(),
        }
    }

    /// Starts one more process; returns its index.
    pub fn add(&mut self, name: &str, port: Port, extra: &[&str]) -> usize {
        let node = Node::spawn(name, &self.redis.url(), port, extra);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Every process's own address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Kills Redis with `SIGKILL` (nothing is flushed that was not).
    pub fn kill_redis(&mut self) {
        self.redis.kill();
    }

    /// Starts Redis again on the same socket and files.
    pub fn restart_redis(&mut self) {
        self.redis
            .restart()
            .unwrap_or_else(|e| panic!("redis-server restart: {e}"));
    }

    /// Waits until every live process answers `/healthz` with `status`.
    pub fn wait_health(&self, status: u16, within: Duration) {
        for node in self.nodes.iter().filter(|n| n.child().is_some()) {
            node.wait_health(status, within);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- redis-server, last log lines ---");
            for line in self.redis.log_tail(30) {
                eprintln!("{line}");
            }
        }
    }
}
