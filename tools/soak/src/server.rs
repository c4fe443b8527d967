//! The servers under test: one started here on port 0, or attached to; or
//! (`--bus-processes N`) a `redis-server` of the soak's own and N ssed
//! processes sharing it with `--bus`. Their memory from `/proc/PID/status`
//! (`ssed_testkit::procfs`); their `/stats`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed_testkit::redis::{Persistence, RedisServer};
use ssed_testkit::{net, procfs};

use crate::http;
use crate::Options;

/// Log lines kept for a post-mortem.
const LOG_TAIL: usize = 40;
/// The queue limit the soak starts the server with: small, so slow
/// subscribers are evicted within a short run.
pub const MAX_QUEUE: usize = 256 * 1024;
/// History long enough that a reconnect pause never outruns it.
pub const HISTORY: usize = 8192;

/// Every server of the run, and the Redis they share, if any.
pub struct Fleet {
    /// Dropped before `redis` (fields drop in order): no process outlives
    /// its bus.
    pub targets: Vec<Target>,
    pub redis: Option<RedisServer>,
}

impl Fleet {
    /// One server (started or attached), or with `--bus-processes N` a
    /// Redis (AOF, on a Unix socket in a temp dir) and N servers on it,
    /// each healthy (`/healthz` `200`: its bus connected) before the load.
    pub fn start_or_attach(options: &Options) -> Result<Fleet, String> {
        if options.bus_processes == 0 {
            return Ok(Fleet {
                targets: vec![Target::start_or_attach(options)?],
                redis: None,
            });
        }
        let redis = RedisServer::start_unix(Persistence::Aof).map_err(|e| format!("redis-server: {e}"))?;
        let url = redis.url();
        let mut fleet = Fleet {
            targets: Vec::new(),
            redis: Some(redis),
        };
        for _ in 0..options.bus_processes {
            fleet.targets.push(Target::start(options, &["--bus", &url])?);
        }
        for target in &fleet.targets {
            target.wait_healthy(Duration::from_secs(15))?;
        }
        Ok(fleet)
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.targets.iter().map(|t| t.addr).collect()
    }
}

pub struct Target {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Target {
    pub fn start_or_attach(options: &Options) -> Result<Target, String> {
        match options.addr {
            Some(addr) => Ok(Target {
                addr,
                pid: options.pid,
                child: None,
                log: Arc::default(),
            }),
            None => Target::start(options, &[]),
        }
    }

    /// Starts the binary on `127.0.0.1:0` with the soak's flags and
    /// `extra`, and reads its address from its log.
    pub fn start(options: &Options, extra: &[&str]) -> Result<Target, String> {
        let bin = match &options.bin {
            Some(bin) => bin.clone(),
            None => ["target/release/ssed", "target/debug/ssed"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .ok_or(
                    "no ssed binary at target/release/ssed or target/debug/ssed: build one, or pass --bin",
                )?,
        };
        let timeout = format!("{}", options.header_timeout.as_secs_f64());
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0", "--tick", "1", "--heartbeat", "1"])
            .args([
                "--max-queue",
                &MAX_QUEUE.to_string(),
                "--history",
                &HISTORY.to_string(),
            ])
            .args(["--header-timeout", &timeout])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (addr_tx, addr_rx) = mpsc::channel();
        let keep = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = net::listening_addr(&line) {
                    let _ = addr_tx.send(addr);
                }
                let mut tail = keep.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let pid = child.id();
        let mut target = Target {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: Some(pid),
            child: Some(child),
            log,
        };
        match addr_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => {
                target.addr = addr;
                Ok(target)
            }
            Err(_) => {
                target.print_log_tail();
                Err(format!(
                    "{} did not log 'listening on http://ADDR' within 10 s",
                    bin.display()
                ))
            }
        }
    }

    /// Polls `/healthz` until `200`.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            match http::get(self.addr, "/healthz") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => last = format!("{status} {}", body.trim()),
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.print_log_tail();
        Err(format!(
            "{}: /healthz not 200 within {within:?} (last: {last})",
            self.addr
        ))
    }

    /// `Some(status)` once the server is gone.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            None => {
                let pid = self.pid?;
                (!PathBuf::from(format!("/proc/{pid}")).exists()).then(|| "process gone".to_string())
            }
        }
    }

    /// SIGTERM to a server we started, and its exit status (bounded wait).
    pub fn stop(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(format!("already exited: {status}"));
        }
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("SIGTERM: {status}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Some("SIGTERM: still running after 15 s, killed".into())
    }

    pub fn print_log_tail(&self) {
        let tail = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return;
        }
        println!("--- last {} line(s) of the server's log ---", tail.len());
        for line in tail.iter() {
            println!("{line}");
        }
        println!("---");
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `/stats` JSON.
pub fn stats(addr: SocketAddr) -> std::io::Result<String> {
    let (status, body) = http::get(addr, "/stats")?;
    if status != 200 {
        return Err(std::io::Error::other(format!("/stats answered {status}")));
    }
    Ok(body)
}

/// Samples the server's RSS every 250 ms, keeping the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: Option<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = pid.map(|pid| {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(bytes) = procfs::rss_bytes(pid) {
                        peak.fetch_max(bytes, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(250));
                }
            })
        });
        RssSampler { stop, peak, thread }
    }

    /// The peak in bytes, if any sample was taken.
    pub fn stop(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Some(self.peak.load(Ordering::Relaxed)).filter(|&k| k > 0)
    }
}
