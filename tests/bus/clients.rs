//! The bus tests' clients, each on blocking sockets with deadlines:
//!
//! - [`get`] and [`publish`]: one request on a fresh connection
//!   (`Connection: close`), so that a broken connection always means the
//!   request in flight, never a stale keep-alive socket;
//! - [`Publisher`]: a thread that publishes unique tokens at a pace, to
//!   one process after another, and records every outcome with its time;
//! - [`Reader`]: a thread that holds an event stream and records what it
//!   saw, in order: events (id, data), `gap`s, and its own reconnects.
//!
//! Every publish's data is a token, `<topic>/<publisher>/<n>`, unique in
//! the test: the checker ([`crate::check`]) maps what a subscriber got
//! back to the publish that sent it, and so tells a lost event from a
//! duplicate, and a "bus down" refusal that leaked from an acknowledged
//! publish.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed_testkit::http::parse_head;
use ssed_testkit::id::EventId;
use ssed_testkit::json::json_scalar;
use ssed_testkit::net;
use ssed_testkit::rng::Rng;
use ssed_testkit::sse::{Events, Item, Parser, StreamError};

/// A request/answer's read timeout.
const ANSWER: Duration = Duration::from_secs(10);

/// An answer read to the server's close.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a fresh connection and reads the answer to its close.
pub fn exchange(addr: SocketAddr, raw: &str) -> io::Result<Answer> {
    let mut stream = net::connect(addr, ANSWER)?;
    stream.write_all(raw.as_bytes())?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset after the whole answer came: the answer stands.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !bytes.is_empty() => break,
            Err(e) => return Err(e),
        }
        if bytes.len() > 1 << 20 {
            return Err(io::Error::other("answer over 1 MiB"));
        }
    }
    let (head, used) = parse_head(&bytes)
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?
        .ok_or_else(|| io::Error::new(ErrorKind::UnexpectedEof, "closed before a whole head"))?;
    let body = &bytes[used..];
    let body = &body[..head.content_length.unwrap_or(body.len()).min(body.len())];
    Ok(Answer {
        status: head.status,
        headers: head.headers,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

pub fn get(addr: SocketAddr, target: &str) -> io::Result<Answer> {
    exchange(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

/// What came of one publish.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `200`, with the id the stream gave it.
    Published(EventId),
    /// Refused, known not published (`503 bus down`): status, whether
    /// `Retry-After` was there, body.
    Refused(u16, bool, String),
    /// Maybe published, maybe not: `503 outcome unknown`, or the
    /// connection broke before an answer.
    Unknown(String),
}

/// One publish, as the checker sees it.
#[derive(Debug, Clone)]
pub struct Publish {
    pub token: String,
    pub topic: String,
    pub to: SocketAddr,
    pub sent: Instant,
    pub outcome: Outcome,
}

impl Publish {
    /// The id the publish was answered with; it must have been.
    pub fn id(&self) -> &EventId {
        match &self.outcome {
            Outcome::Published(id) => id,
            other => panic!("{}: {other:?}", self.token),
        }
    }
}

/// Publishes `count` tokens `t/<tag>/<n>` on topic `t`, round-robin over
/// `addrs`, one at a time; each must be answered `200`.
pub fn publish_n(addrs: &[SocketAddr], tag: &str, count: usize) -> Vec<Publish> {
    (0..count)
        .map(|n| {
            let to = addrs[n % addrs.len()];
            let token = format!("t/{tag}/{n}");
            let sent = Instant::now();
            let outcome = publish(to, "t", &token);
            assert!(
                matches!(outcome, Outcome::Published(_)),
                "{token} to {to}: {outcome:?}"
            );
            Publish {
                token,
                topic: "t".into(),
                to,
                sent,
                outcome,
            }
        })
        .collect()
}

/// `POST /publish?topic=T` with `data` as the body.
pub fn publish(addr: SocketAddr, topic: &str, data: &str) -> Outcome {
    let raw = format!(
        "POST /publish?topic={topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{data}",
        data.len()
    );
    match exchange(addr, &raw) {
        Ok(answer) if answer.status == 200 => {
            match json_scalar(&answer.body, "id").and_then(EventId::parse) {
                Some(id) => Outcome::Published(id),
                None => Outcome::Unknown(format!("200 without an id: {}", answer.body)),
            }
        }
        Ok(answer) if answer.body.contains("outcome unknown") => Outcome::Unknown(answer.body),
        Ok(answer) => Outcome::Refused(answer.status, answer.header("retry-after").is_some(), answer.body),
        Err(e) => Outcome::Unknown(format!("no answer: {e}")),
    }
}

/// Publishes until told to stop. See the module doc.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Publish>>,
}

impl Publisher {
    /// One publisher per address, `p0`, `p1`, ..., each on `topics`, one
    /// publish every `period`.
    pub fn one_each(addrs: &[SocketAddr], topics: &[&str], period: Duration) -> Vec<Publisher> {
        let each = addrs.iter().enumerate();
        each.map(|(i, addr)| Publisher::spawn(&format!("p{i}"), vec![*addr], topics, period, i as u64))
            .collect()
    }

    /// Publisher `name` sends to `addrs` in turn, on `topics` at random,
    /// one publish every `period`.
    pub fn spawn(
        name: &str,
        addrs: Vec<SocketAddr>,
        topics: &[&str],
        period: Duration,
        seed: u64,
    ) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_string();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let thread = thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut done = Vec::new();
            let mut n = 0usize;
            let started = Instant::now();
            while !flag.load(Ordering::SeqCst) {
                let topic = &topics[rng.range(0, topics.len() as u64) as usize];
                let to = addrs[n % addrs.len()];
                let token = format!("{topic}/{name}/{n}");
                let sent = Instant::now();
                let outcome = publish(to, topic, &token);
                done.push(Publish {
                    token,
                    topic: topic.clone(),
                    to,
                    sent,
                    outcome,
                });
                n += 1;
                // Paced from the start, so a slow answer is not a burst after.
                let due = period * n as u32;
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    thread::sleep(wait);
                }
            }
            done
        });
        Publisher { stop, thread }
    }

    pub fn stop(self) -> Vec<Publish> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("publisher thread panicked")
    }
}

/// What a reader saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A stream was opened on `addr`, resuming after this id if any.
    Opened(SocketAddr, Option<String>),
    Event(EventId, String),
    /// `event: gap` and its data.
    Gap(String),
    /// A stream was answered with this status instead of `200`.
    Refused(u16),
    /// The server ended the stream (EOF or reset).
    Closed,
}

/// How a reader holds its stream.
#[derive(Debug, Clone)]
pub enum Plan {
    /// One stream; the server ending it is a failure.
    Steady(SocketAddr),
    /// Drops its stream every 0.3-1 s and resumes on the next address,
    /// with `Last-Event-ID`.
    Hopping(Vec<SocketAddr>),
    /// Resumes on the same address (a shared port) whenever the server
    /// ends the stream.
    Resuming(SocketAddr),
}

/// The newest id published on each topic: (topic, id).
pub type Newest = Vec<(String, EventId)>;

/// What readers share with the test: readiness and when to finish.
#[derive(Default)]
pub struct Control {
    ready: AtomicUsize,
    /// Once publishing is over: the newest id published on each topic,
    /// and the time by which readers must have read up to it.
    until: Mutex<Option<(Newest, Instant)>>,
}

impl Control {
    /// Waits until `n` readers have their first `connected` event.
    pub fn wait_ready(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.ready.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} readers connected",
                self.ready.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Readers finish once they have read the newest id of their topics
    /// (`newest`: per topic), or fail at `within` from now.
    pub fn finish(&self, newest: Newest, within: Duration) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some((newest, Instant::now() + within));
    }

    /// `None`: go on; `Some(Ok)`: done; `Some(Err)`: out of time.
    fn finished(&self, topics: Option<&[String]>, seen: Option<&EventId>) -> Option<Result<(), String>> {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let (newest, deadline) = until.as_ref()?;
        let last = newest
            .iter()
            .filter(|(topic, _)| topics.is_none_or(|t| t.contains(topic)))
            .map(|(_, id)| id)
            .max();
        match last {
            None => Some(Ok(())),
            Some(last) if seen.is_some_and(|seen| seen >= last) => Some(Ok(())),
            Some(last) if Instant::now() > *deadline => Some(Err(format!(
                "did not read up to {last} in time (last read: {})",
                seen.map_or("none".into(), |s| s.to_string())
            ))),
            Some(_) => None,
        }
    }
}

/// What a reader hands back.
#[derive(Debug)]
pub struct ReaderReport {
    pub name: String,
    /// `None`: every topic.
    pub topics: Option<Vec<String>>,
    /// It opened its first stream with this `Last-Event-ID`: it is owed
    /// what came after.
    pub after: Option<EventId>,
    pub seen: Vec<Seen>,
    pub error: Option<String>,
}

impl ReaderReport {
    pub fn events(&self) -> impl Iterator<Item = (&EventId, &str)> {
        self.seen.iter().filter_map(|s| match s {
            Seen::Event(id, data) => Some((id, data.as_str())),
            _ => None,
        })
    }

    pub fn gaps(&self) -> usize {
        self.seen.iter().filter(|s| matches!(s, Seen::Gap(_))).count()
    }
}

/// A subscriber on its own thread. See the module doc.
pub struct Reader {
    thread: JoinHandle<ReaderReport>,
}

impl Reader {
    /// `topics`: `None` for every topic, else the `?topic=` list.
    pub fn spawn(
        name: &str,
        plan: Plan,
        topics: Option<&[&str]>,
        control: Arc<Control>,
        seed: u64,
    ) -> Reader {
        Self::spawn_after(name, plan, topics, control, seed, None)
    }

    /// As [`Reader::spawn`], its first stream resuming after `after`.
    pub fn spawn_after(
        name: &str,
        plan: Plan,
        topics: Option<&[&str]>,
        control: Arc<Control>,
        seed: u64,
        after: Option<EventId>,
    ) -> Reader {
        let report = ReaderReport {
            name: name.to_string(),
            topics: topics.map(|t| t.iter().map(|t| t.to_string()).collect()),
            after,
            seen: Vec::new(),
            error: None,
        };
        let thread = thread::spawn(move || read(report, plan, control, seed));
        Reader { thread }
    }

    pub fn join(self) -> ReaderReport {
        self.thread.join().expect("reader thread panicked")
    }
}

/// Attempts to (re)open a stream before the reader gives up.
const OPEN_ATTEMPTS: usize = 100;

fn read(mut report: ReaderReport, plan: Plan, control: Arc<Control>, seed: u64) -> ReaderReport {
    let mut greeted = false;
    if let Err(why) = read_streams(&mut report, &plan, &control, seed, &mut greeted) {
        report.error = Some(why);
    }
    if !greeted {
        // Let the test's wait_ready go on, to report this reader's error.
        control.ready.fetch_add(1, Ordering::SeqCst);
    }
    report
}

/// Opens streams as `plan` says until `control` says done; `Err` for a
/// failure of the server (or of the reader's patience).
fn read_streams(
    report: &mut ReaderReport,
    plan: &Plan,
    control: &Control,
    seed: u64,
    greeted: &mut bool,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let target = match &report.topics {
        None => "/events".to_string(),
        Some(topics) => format!("/events?topic={}", topics.join(",")),
    };
    let mut last: Option<EventId> = report.after.clone();
    let mut hop = 0;
    // Opens in a row that failed, or brought nothing before they ended.
    let mut failures = 0;
    'open: loop {
        if failures >= OPEN_ATTEMPTS {
            return Err(format!(
                "{OPEN_ATTEMPTS} streams in a row failed or ended at once"
            ));
        }
        if let Some(done) = control.finished(report.topics.as_deref(), last.as_ref()) {
            return done;
        }
        let addr = match plan {
            Plan::Steady(addr) | Plan::Resuming(addr) => *addr,
            Plan::Hopping(addrs) => addrs[hop % addrs.len()],
        };
        let resume = last.as_ref().map(|id| id.as_str().to_string());
        let mut stream = match open(addr, &target, resume.as_deref()) {
            Ok(stream) => stream,
            Err(_) => {
                failures += 1;
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        report.seen.push(Seen::Opened(addr, resume));
        failures += 1;
        let session_end = Instant::now() + Duration::from_millis(rng.range(300, 1000));
        let mut parser = Parser::new();
        let mut events = Events::default();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(n) => Some(n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
                Err(e) if e.kind() == ErrorKind::Interrupted => None,
                Err(_) => Some(0),
            };
            if n == Some(0) {
                report.seen.push(Seen::Closed);
                if matches!(plan, Plan::Steady(_)) {
                    return Err(format!("the server ended the stream on {addr}"));
                }
                thread::sleep(Duration::from_millis(20));
                continue 'open;
            }
            if let Some(n) = n {
                let mut blocks = Vec::new();
                let fed = parser.feed(&chunk[..n], &mut |item| {
                    if let Item::Line(line) = item {
                        blocks.extend(events.line(line));
                    }
                });
                match fed {
                    Ok(_) => {}
                    Err(StreamError::Status(status)) => {
                        report.seen.push(Seen::Refused(status));
                        thread::sleep(Duration::from_millis(100));
                        continue 'open;
                    }
                    Err(e) => return Err(format!("stream on {addr}: {e}")),
                }
                if !blocks.is_empty() {
                    failures = 0;
                }
                for block in blocks {
                    match (block.event.as_deref(), block.id) {
                        (Some("connected"), _) if !*greeted => {
                            *greeted = true;
                            control.ready.fetch_add(1, Ordering::SeqCst);
                        }
                        (Some("connected"), _) => {}
                        (Some("gap"), _) => report.seen.push(Seen::Gap(block.data)),
                        (_, Some(id)) => {
                            let id = EventId::parse(&id)
                                .ok_or(format!("an id that is not a stream id: {id:?}"))?;
                            last = Some(id.clone());
                            report.seen.push(Seen::Event(id, block.data));
                        }
                        _ => {}
                    }
                }
            }
            if let Some(done) = control.finished(report.topics.as_deref(), last.as_ref()) {
                return done;
            }
            // Hop only with an id to resume from: a stream opened without
            // Last-Event-ID is owed only what comes after it opened.
            if matches!(plan, Plan::Hopping(_)) && last.is_some() && Instant::now() >= session_end {
                hop += 1;
                thread::sleep(Duration::from_millis(rng.range(10, 100)));
                continue 'open;
            }
        }
    }
}

/// Opens `GET target`, with `Last-Event-ID` when resuming; reads time out
/// every 100 ms so the reader can look at the clock.
fn open(addr: SocketAddr, target: &str, resume: Option<&str>) -> io::Result<std::net::TcpStream> {
    let mut stream = net::connect(addr, Duration::from_millis(100))?;
    let resume = resume
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{resume}\r\n").as_bytes())?;
    Ok(stream)
}
