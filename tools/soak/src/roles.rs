//! The soak's clients, each on its own thread with blocking sockets:
//! publishers, steady and reconnecting subscribers, slow subscribers and
//! garbage senders. Each returns a report when the load stops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed_testkit::id::EventId;
use ssed_testkit::json::json_scalar;
use ssed_testkit::rng::Rng;

use crate::http::{self, Got, Item, Stream};
use crate::Options;

/// How long subscribers get, after the last publish, to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// What every role shares: the options, the stop flag, what was published.
pub struct Shared {
    pub options: Options,
    stop: AtomicBool,
    /// Ids answered `200`, per topic (in arrival order; sorted at the end).
    published: Mutex<Vec<Vec<EventId>>>,
    /// Set once publishing is over: the last id per topic, and the time by
    /// which subscribers must have caught up.
    finish: Mutex<Option<(Vec<Option<EventId>>, Instant)>>,
    ready: Mutex<usize>,
    ready_cv: Condvar,
}

impl Shared {
    pub fn new(options: &Options) -> Shared {
        Shared {
            options: options.clone(),
            stop: AtomicBool::new(false),
            published: Mutex::new(vec![Vec::new(); options.topics]),
            finish: Mutex::new(None),
            ready: Mutex::new(0),
            ready_cv: Condvar::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stop_load(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn mark_ready(&self) {
        *self.ready.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.ready_cv.notify_all();
    }

    /// Waits until `n` subscribers have their `connected` event.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        while *ready < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "only {} of {n} subscribers connected in {timeout:?}",
                    *ready
                ));
            }
            ready = self
                .ready_cv
                .wait_timeout(ready, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    fn record(&self, topic: usize, id: EventId) {
        self.published.lock().unwrap_or_else(|e| e.into_inner())[topic].push(id);
    }

    pub fn published_by_topic(&self) -> Vec<Vec<EventId>> {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ids in &mut published {
            ids.sort_unstable();
        }
        published
    }

    pub fn finish_publishing(&self) {
        let last = self
            .published_by_topic()
            .iter()
            .map(|ids| ids.last().cloned())
            .collect();
        *self.finish.lock().unwrap_or_else(|e| e.into_inner()) = Some((last, Instant::now() + CATCH_UP));
    }

    /// `None` while publishing; then whether a subscriber of `topics` that
    /// has seen up to `last` is done, or out of time.
    fn finished(&self, topics: &[usize], last: Option<&EventId>) -> Option<Result<bool, ()>> {
        let finish = self.finish.lock().unwrap_or_else(|e| e.into_inner());
        let (last_ids, deadline) = finish.as_ref()?;
        let target = topics.iter().filter_map(|&t| last_ids.get(t)?.as_ref()).max();
        let done = match target {
            None => true,
            Some(target) => last.is_some_and(|l| l >= target),
        };
        if !done && Instant::now() > *deadline {
            return Some(Err(()));
        }
        Some(Ok(done))
    }
}

/// Every published id on any of `topics`, in order.
pub fn owed(published: &[Vec<EventId>], topics: &[usize]) -> Vec<EventId> {
    let mut ids: Vec<EventId> = topics
        .iter()
        .flat_map(|&t| published[t].iter().cloned())
        .collect();
    ids.sort_unstable();
    ids
}

// ----- publishers ----------------------------------------------------------------

pub struct PublisherReport {
    pub errors: u64,
}

pub fn spawn_publisher(shared: Arc<Shared>, addr: SocketAddr, index: usize) -> JoinHandle<PublisherReport> {
    thread::spawn(move || {
        let mut rng = Rng::new(shared.options.seed ^ (index as u64 + 1) << 8);
        let period = Duration::from_secs(1) / shared.options.rate;
        let mut conn = None;
        let mut errors = 0;
        let started = Instant::now();
        let mut sent: u32 = 0;
        while !shared.stopping() {
            let topic = rng.range(0, shared.options.topics as u64) as usize;
            let len = rng.range(16, 2048) as usize;
            let body: String = (0..len)
                .map(|_| (b'a' + rng.range(0, 26) as u8) as char)
                .collect();
            let name = if rng.range(0, 4) == 0 { "&event=soak" } else { "" };
            let raw = format!(
                "POST /publish?topic=t{topic}{name} HTTP/1.1\r\nHost: soak\r\nContent-Length: {len}\r\n\r\n{body}"
            );
            if conn.is_none() {
                conn = http::Conn::open(addr).ok();
            }
            match conn.as_mut().map(|c| c.request(raw.as_bytes())) {
                Some(Ok((200, answer))) => match json_scalar(&answer, "id").and_then(EventId::parse) {
                    Some(id) => shared.record(topic, id),
                    None => errors += 1,
                },
                Some(Ok(_)) | Some(Err(_)) | None => {
                    errors += 1;
                    conn = None;
                    thread::sleep(Duration::from_millis(50));
                }
            }
            sent += 1;
            // Pace to the rate; a publisher that falls behind does not burst.
            let due = period * sent;
            let elapsed = started.elapsed();
            if due > elapsed {
                thread::sleep(due - elapsed);
            } else if elapsed - due > Duration::from_secs(1) {
                sent = (elapsed.as_nanos() / period.as_nanos().max(1)) as u32;
            }
        }
        PublisherReport { errors }
    })
}

// ----- steady and reconnecting subscribers -------------------------------------

pub struct SubscriberReport {
    pub index: usize,
    pub topics: Vec<usize>,
    /// Ids received, each larger than the one before.
    pub ids: Vec<EventId>,
    /// Ids received that were not larger than the last one (repeats).
    pub repeats: u64,
    pub gap_events: u64,
    pub reconnects: u64,
    pub error: Option<String>,
}

pub struct Check {
    pub missing: usize,
    pub extra: usize,
    pub duplicates: u64,
}

impl Check {
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.duplicates == 0
    }
}

impl SubscriberReport {
    /// Compares what arrived with what was owed (both in id order).
    pub fn check(&self, owed: &[EventId]) -> Check {
        let (mut i, mut j) = (0, 0);
        let (mut missing, mut extra) = (0, 0);
        while i < owed.len() || j < self.ids.len() {
            match (owed.get(i), self.ids.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    missing += 1;
                    i += 1;
                }
                (Some(_), None) => {
                    missing += 1;
                    i += 1;
                }
                _ => {
                    extra += 1;
                    j += 1;
                }
            }
        }
        Check {
            missing,
            extra,
            duplicates: self.repeats,
        }
    }
}

/// A subscriber that reads everything on its topics; a `reconnecting` one
/// also drops its stream every 0.5-2 s and resumes with `Last-Event-ID`.
/// Over several servers (the bus), subscriber `index` starts on server
/// `index`, and a reconnecting one resumes on the next server each time:
/// an id seen on one process is resumed on another.
pub fn spawn_subscriber(
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    index: usize,
    reconnecting: bool,
) -> JoinHandle<SubscriberReport> {
    let count = shared.options.topics;
    let topics: Vec<usize> = if index == 0 {
        (0..count).collect()
    } else {
        let mut topics = vec![index % count, (index + 1) % count];
        topics.dedup();
        topics
    };
    thread::spawn(move || {
        let target = if index == 0 {
            "/events".to_string()
        } else {
            let list: Vec<String> = topics.iter().map(|t| format!("t{t}")).collect();
            format!("/events?topic={}", list.join(","))
        };
        let mut report = SubscriberReport {
            index,
            topics: topics.clone(),
            ids: Vec::new(),
            repeats: 0,
            gap_events: 0,
            reconnects: 0,
            error: None,
        };
        let mut rng = Rng::new(shared.options.seed ^ (index as u64 + 101) << 16);
        let mut greeted = false;
        'session: loop {
            let addr = addrs[(index + report.reconnects as usize) % addrs.len()];
            let resume = report.ids.last();
            let mut stream = match Stream::open(addr, &target, resume, Duration::from_millis(100)) {
                Ok(stream) => stream,
                Err(e) => {
                    report.error = Some(format!("connect: {e}"));
                    break;
                }
            };
            let session_end = Instant::now() + Duration::from_millis(rng.range(500, 2000));
            loop {
                match stream.read(64 * 1024) {
                    Err(e) => {
                        report.error = Some(format!("read: {e}"));
                        break 'session;
                    }
                    Ok(Got::Closed) => {
                        report.error = Some("the server closed the stream".into());
                        break 'session;
                    }
                    Ok(Got::Idle) => {}
                    Ok(Got::Items(items)) => {
                        for item in items {
                            match item {
                                Item::Connected if !greeted => {
                                    greeted = true;
                                    shared.mark_ready();
                                }
                                Item::Event(id) => {
                                    if report.ids.last().is_some_and(|last| id <= *last) {
                                        report.repeats += 1;
                                    } else {
                                        report.ids.push(id);
                                    }
                                }
                                Item::Gap => report.gap_events += 1,
                                _ => {}
                            }
                        }
                    }
                }
                match shared.finished(&topics, report.ids.last()) {
                    Some(Ok(true)) => break 'session,
                    Some(Err(())) => {
                        report.error = Some(format!("did not catch up within {CATCH_UP:?}"));
                        break 'session;
                    }
                    _ => {}
                }
                if reconnecting && greeted && Instant::now() >= session_end && !shared.stopping() {
                    drop(stream);
                    thread::sleep(Duration::from_millis(rng.range(20, 200)));
                    report.reconnects += 1;
                    continue 'session;
                }
            }
        }
        if !greeted {
            shared.mark_ready();
        }
        report
    })
}

// ----- slow subscribers -----------------------------------------------------------

mod misbehaving;

pub use misbehaving::{spawn_garbage, spawn_slow, GarbageReport};
