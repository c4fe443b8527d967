//! The subscriber side: one `mio` loop per thread holding its share of the
//! subscribers, connecting them within a window, then reading every event
//! and timing it against the moment its publish request was sent.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::stream::StreamParser;

/// Phases whose events are timed. Sequence numbers are laid out in advance:
/// singles first, then the pipelined burst, then the sequential one.
pub const PHASES: usize = 3;
pub const PHASE_NAMES: [&str; PHASES] = ["single", "pipelined", "sequential"];

/// What the subscriber threads and the publisher share.
#[derive(Debug)]
pub struct Shared {
    pub base: Instant,
    /// When each seq's publish request was sent, in ns since `base` (0: not yet).
    pub sent_ns: Vec<AtomicU64>,
    /// First seq of each phase; `phase_start[PHASES]` is one past the last seq.
    pub phase_start: [u64; PHASES + 1],
    /// Events received (not counting duplicates), per phase.
    pub delivered: [AtomicU64; PHASES],
    /// Latest receive time per phase, ns since `base`.
    pub last_ns: [AtomicU64; PHASES],
    /// Subscribers whose response head arrived.
    pub heads: AtomicUsize,
    /// Subscribers that failed before or at the head.
    pub failed: AtomicUsize,
    /// Subscribers that lost their stream after the head.
    pub dropped: AtomicUsize,
    /// When the last head arrived, ns since `base`.
    pub last_head_ns: AtomicU64,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new(singles: usize, burst: usize, seq_burst: usize) -> Shared {
        let first = 1u64;
        let phase_start = [
            first,
            first + singles as u64,
            first + (singles + burst) as u64,
            first + (singles + burst + seq_burst) as u64,
        ];
        Shared {
            base: Instant::now(),
            sent_ns: (0..phase_start[PHASES]).map(|_| AtomicU64::new(0)).collect(),
            phase_start,
            delivered: Default::default(),
            last_ns: Default::default(),
            heads: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            last_head_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn phase_of(&self, seq: u64) -> Option<usize> {
        (0..PHASES).find(|&p| seq >= self.phase_start[p] && seq < self.phase_start[p + 1])
    }
}

/// How one thread's subscribers are to connect.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    pub request: Vec<u8>,
    pub count: usize,
    /// Index of this thread's first subscriber among all (for spreading).
    pub first_index: usize,
    pub sources: usize,
    pub window: usize,
}

/// What a thread hands back when stopped.
#[derive(Debug, Default)]
pub struct Report {
    /// Latency in µs of every first delivery, per phase.
    pub latencies_us: [Vec<u32>; PHASES],
    /// Per subscriber that got its head: highest seq seen, events missed
    /// inside the sequence (gaps), duplicates.
    pub last_seq: Vec<u64>,
    pub gaps: Vec<u64>,
    pub duplicates: Vec<u64>,
    /// Distinct reasons subscribers failed, with a count.
    pub errors: Vec<(String, usize)>,
}

struct Sub {
    stream: TcpStream,
    connected: bool,
    parser: StreamParser,
    alive: bool,
    last_seq: u64,
    gaps: u64,
    duplicates: u64,
}

/// Opens a non-blocking socket bound to `source` (port chosen at connect
/// time, so source ports are not reserved per address at bind) and starts
/// connecting.
fn start_connect(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let SocketAddr::V4(_) = target else {
        let std = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
        std.set_nonblocking(true)?;
        return Ok(TcpStream::from_std(std));
    };
    // SAFETY: plain socket calls on a descriptor we create and own; it is
    // handed to TcpStream (which closes it) before any early return after
    // creation, except the explicit close on error below.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        if let Some(ip) = source {
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let addr = sockaddr(SocketAddr::new(ip.into(), 0));
            if libc::bind(
                fd,
                &addr as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let addr = sockaddr(target);
        if libc::connect(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        unreachable!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The `k`-th source address: 127.0.0.2, 127.0.0.3, ...
fn source_for(index: usize, sources: usize) -> Option<Ipv4Addr> {
    (sources > 0).then(|| Ipv4Addr::new(127, 0, 0, 2 + (index % sources) as u8))
}

fn note(errors: &mut Vec<(String, usize)>, why: String) {
    match errors.iter_mut().find(|(w, _)| *w == why) {
        Some((_, n)) => *n += 1,
        None => errors.push((why, 1)),
    }
}

/// Runs one thread's subscribers until `shared.stop`.
pub fn run(plan: Plan, shared: Arc<Shared>) -> Report {
    let mut report = Report::default();
    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            note(&mut report.errors, format!("epoll: {e}"));
            shared.failed.fetch_add(plan.count, Ordering::SeqCst);
            return report;
        }
    };
    let mut events = Events::with_capacity(4096);
    let mut subs: Vec<Sub> = Vec::with_capacity(plan.count);
    let mut in_flight = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut local = Local::default();
    let mut planned = plan.count;

    while !shared.stop.load(Ordering::Relaxed) {
        // Start connects while the window has room.
        while subs.len() < planned && in_flight < plan.window {
            let index = plan.first_index + subs.len();
            let token = Token(subs.len());
            let result =
                start_connect(plan.target, source_for(index, plan.sources)).and_then(|mut stream| {
                    poll.registry()
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                    Ok(stream)
                });
            match result {
                Ok(stream) => {
                    subs.push(Sub {
                        stream,
                        connected: false,
                        parser: StreamParser::new(),
                        alive: true,
                        last_seq: 0,
                        gaps: 0,
                        duplicates: 0,
                    });
                    in_flight += 1;
                }
                Err(e) => {
                    // Out of descriptors or addresses: count the rest as
                    // failed and stop trying.
                    note(&mut report.errors, format!("connect: {e}"));
                    shared.failed.fetch_add(planned - subs.len(), Ordering::SeqCst);
                    planned = subs.len();
                    break;
                }
            }
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() != io::ErrorKind::Interrupted {
                note(&mut report.errors, format!("poll: {e}"));
                break;
            }
            continue;
        }
        for event in events.iter() {
            let index = event.token().0;
            let Some(sub) = subs.get_mut(index) else {
                continue;
            };
            if !sub.alive {
                continue;
            }
            let was_pending = !sub.parser.has_head();
            let outcome = service(sub, &plan, &shared, &mut buf, &mut local, &mut report.errors);
            match outcome {
                Outcome::Ok => {
                    if was_pending && sub.parser.has_head() {
                        in_flight -= 1;
                        shared.heads.fetch_add(1, Ordering::SeqCst);
                        shared.last_head_ns.fetch_max(shared.now_ns(), Ordering::SeqCst);
                    }
                }
                Outcome::Dead => {
                    sub.alive = false;
                    let _ = poll.registry().deregister(&mut sub.stream);
                    if was_pending {
                        in_flight -= 1;
                        shared.failed.fetch_add(1, Ordering::SeqCst);
                    } else {
                        shared.dropped.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            local.publish(&shared);
        }
    }
    local.publish(&shared);
    report.latencies_us = local.latencies_us;
    for sub in &subs {
        if sub.parser.has_head() {
            report.last_seq.push(sub.last_seq);
            report.gaps.push(sub.gaps);
            report.duplicates.push(sub.duplicates);
        }
    }
    report
}

/// Per-thread tallies, handed to the shared counters after each socket.
#[derive(Default)]
struct Local {
    latencies_us: [Vec<u32>; PHASES],
    delivered: [u64; PHASES],
    last_ns: [u64; PHASES],
}

impl Local {
    fn publish(&mut self, shared: &Shared) {
        for phase in 0..PHASES {
            if self.delivered[phase] > 0 {
                shared.delivered[phase].fetch_add(self.delivered[phase], Ordering::SeqCst);
                shared.last_ns[phase].fetch_max(self.last_ns[phase], Ordering::SeqCst);
                self.delivered[phase] = 0;
            }
        }
    }
}

enum Outcome {
    Ok,
    Dead,
}

fn service(
    sub: &mut Sub,
    plan: &Plan,
    shared: &Shared,
    buf: &mut [u8],
    local: &mut Local,
    errors: &mut Vec<(String, usize)>,
) -> Outcome {
    if !sub.connected {
        match sub.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                note(errors, format!("connect: {e}"));
                return Outcome::Dead;
            }
            Ok(None) => {}
        }
        match sub.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Ok,
            Err(e) => {
                note(errors, format!("connect: {e}"));
                return Outcome::Dead;
            }
        }
        // The request is small: one write takes it on a fresh socket.
        match sub.stream.write(&plan.request) {
            Ok(n) if n == plan.request.len() => sub.connected = true,
            Ok(_) => {
                note(errors, "request: short write".into());
                return Outcome::Dead;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Ok,
            Err(e) => {
                note(errors, format!("request: {e}"));
                return Outcome::Dead;
            }
        }
    }
    loop {
        match sub.stream.read(buf) {
            Ok(0) => {
                note(
                    errors,
                    if sub.parser.has_head() {
                        "stream closed by the server".into()
                    } else {
                        "closed before the response head".into()
                    },
                );
                return Outcome::Dead;
            }
            Ok(n) => {
                let now = shared.now_ns();
                let Sub {
                    parser,
                    last_seq,
                    gaps,
                    duplicates,
                    ..
                } = sub;
                let fed = parser.feed(&buf[..n], &mut |seq| {
                    if seq <= *last_seq {
                        *duplicates += 1;
                        return;
                    }
                    if seq > *last_seq + 1 {
                        *gaps += seq - *last_seq - 1;
                    }
                    *last_seq = seq;
                    let Some(phase) = shared.phase_of(seq) else {
                        return;
                    };
                    let sent = shared.sent_ns[seq as usize].load(Ordering::Acquire);
                    local.delivered[phase] += 1;
                    local.last_ns[phase] = local.last_ns[phase].max(now);
                    let micros = now.saturating_sub(sent) / 1000;
                    local.latencies_us[phase].push(micros.min(u32::MAX as u64) as u32);
                });
                if let Err(why) = fed {
                    let what = if why.is_refusal() { "refused" } else { "bad stream" };
                    note(errors, format!("{what}: {why}"));
                    return Outcome::Dead;
                }
                if parser.finished() {
                    note(errors, "stream ended by the server".into());
                    return Outcome::Dead;
                }
                if n < buf.len() {
                    // Edge-triggered: new data raises a new edge, so a short
                    // read means we have all there is for now.
                    parser.shrink();
                    return Outcome::Ok;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Ok,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                note(errors, format!("read: {e}"));
                return Outcome::Dead;
            }
        }
    }
}
