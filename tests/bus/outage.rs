//! Redis killed with `SIGKILL` and started again, three times, while
//! publishers publish through every process and subscribers read, some
//! steadily, some hopping from process to process with `Last-Event-ID`.
//!
//! ```text
//!  load ─────────────────────────────────────────────────────────────────▶
//!  redis  up ──── ✕ down 1.2 s ─ up ──── ✕ down ─ up ──── ✕ down ─ up ────
//!  publish  200s     503s            200s   503s      200s   503s    200s
//!  /healthz 200      503             200    503       200    503     200
//! ```
//!
//! With persistence (AOF, `appendfsync always`) nothing acknowledged is
//! lost: every publish answered `200` reaches every subscriber once, and
//! no `gap` is ever sent. Without it, each restart comes back empty:
//! every stream that was open is told so with `event: gap`, and any
//! event that was acknowledged but not yet read by a process is missing
//! exactly where a gap stands.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ssed_testkit::redis::Persistence;

use crate::check::Ledger;
use crate::clients::{get, Control, Outcome, Plan, Publisher, Reader, ReaderReport};
use crate::cluster::{Cluster, Port};

/// Healthy load before each kill, and after the last restart.
const UP: Duration = Duration::from_millis(2500);
/// How long Redis stays down each time.
const DOWN: Duration = Duration::from_millis(1200);
const OUTAGES: usize = 3;
/// After a kill, a process has surely seen its connections break.
const NOTICED: Duration = Duration::from_millis(300);

/// One outage: when Redis was killed, and when it answered again.
struct Outage {
    killed: Instant,
    back: Instant,
}

/// One look at `/healthz`: which process, when, the status (`None`:
/// unreachable), and whether the body said `bus down`.
type Health = (usize, Instant, Option<u16>, bool);

/// `/healthz` of every process, every 25 ms.
struct HealthLog {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Health>>,
}

impl HealthLog {
    fn start(addrs: Vec<SocketAddr>) -> HealthLog {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut log = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                for (i, addr) in addrs.iter().enumerate() {
                    let answer = get(*addr, "/healthz").ok();
                    let bus_down = answer.as_ref().is_some_and(|a| a.body.contains("bus down"));
                    log.push((i, Instant::now(), answer.map(|a| a.status), bus_down));
                }
                thread::sleep(Duration::from_millis(25));
            }
            log
        });
        HealthLog { stop, thread }
    }

    fn stop(self) -> Vec<Health> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("health thread panicked")
    }
}

/// What a run left to check.
struct Run {
    cluster: Cluster,
    ledger: Ledger,
    reports: Vec<ReaderReport>,
    outages: Vec<Outage>,
    health: Vec<Health>,
}

fn run(persistence: Persistence) -> Run {
    let mut cluster = Cluster::redis(persistence);
    cluster.add("a", Port::Share, &[]);
    let shared = cluster.nodes[0].shared.expect("a shares a port");
    cluster.add("b", Port::Join(shared), &[]);
    cluster.add("c", Port::Own, &[]);
    let addrs = cluster.addrs();

    let control = Arc::new(Control::default());
    let mut readers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let name = format!("steady-{}", cluster.nodes[i].name);
        readers.push(Reader::spawn(
            &name,
            Plan::Steady(*addr),
            None,
            control.clone(),
            i as u64,
        ));
    }
    readers.push(Reader::spawn(
        "steady-b/x",
        Plan::Steady(addrs[1]),
        Some(&["x"]),
        control.clone(),
        9,
    ));
    let mut everywhere = addrs.clone();
    everywhere.push(shared);
    for i in 0..3 {
        let plan = Plan::Hopping(everywhere[i..].iter().chain(&everywhere[..i]).copied().collect());
        let topics: Option<&[&str]> = if i == 2 { Some(&["y"]) } else { None };
        readers.push(Reader::spawn(
            &format!("hopping-{i}"),
            plan,
            topics,
            control.clone(),
            20 + i as u64,
        ));
    }
    control.wait_ready(readers.len(), Duration::from_secs(10));

    let publishers = Publisher::one_each(&addrs, &["x", "y"], Duration::from_millis(20));
    let health = HealthLog::start(addrs.clone());
    let mut outages = Vec::new();
    for _ in 0..OUTAGES {
        thread::sleep(UP);
        let killed = Instant::now();
        cluster.kill_redis();
        thread::sleep(DOWN);
        cluster.restart_redis();
        let back = Instant::now();
        cluster.wait_health(200, Duration::from_secs(15));
        outages.push(Outage { killed, back });
    }
    thread::sleep(UP);
    let publishes: Vec<_> = publishers.into_iter().flat_map(Publisher::stop).collect();
    let health = health.stop();
    let ledger = Ledger::new(publishes);
    control.finish(ledger.newest(), Duration::from_secs(30));
    let reports = readers.into_iter().map(Reader::join).collect();
    Run {
        cluster,
        ledger,
        reports,
        outages,
        health,
    }
}

impl Run {
    /// What happened, shown with `--nocapture` (and on failure).
    fn print_summary(&self) {
        let (published, refused, unknown) = self.ledger.counts();
        eprintln!("published {published}, refused {refused}, outcome unknown {unknown}");
        for report in &self.reports {
            eprintln!("  {}", self.ledger.summary(report));
        }
    }

    /// Publishes sent while Redis was surely down got `503` with
    /// `Retry-After`; none was answered `200`; every refusal is a `503`.
    fn assert_refused_while_down(&self) {
        for (n, outage) in self.outages.iter().enumerate() {
            let during: Vec<_> = self
                .ledger
                .all()
                .iter()
                .filter(|p| p.sent >= outage.killed + NOTICED && p.sent < outage.back)
                .collect();
            assert!(!during.is_empty(), "outage {n}: nothing was published");
            for p in &during {
                match &p.outcome {
                    Outcome::Refused(503, true, body) if body.contains("bus down") => {}
                    other => panic!("outage {n}: {} to {} got {other:?}", p.token, p.to),
                }
            }
        }
        for p in self.ledger.all() {
            if let Outcome::Refused(status, retry_after, body) = &p.outcome {
                assert!(*status == 503 && *retry_after, "{}: {status} {body}", p.token);
            }
        }
    }

    /// Every process said `503 bus down` on `/healthz` during every
    /// outage, and was never unreachable.
    fn assert_unhealthy_while_down(&self) {
        for (n, outage) in self.outages.iter().enumerate() {
            for (i, node) in self.cluster.nodes.iter().enumerate() {
                let said_503 = self.health.iter().any(|(at, when, status, bus_down)| {
                    *at == i
                        && *when >= outage.killed
                        && *when < outage.back
                        && *status == Some(503)
                        && *bus_down
                });
                assert!(
                    said_503,
                    "outage {n}: /healthz of {} never answered 503 bus down",
                    node.name
                );
            }
        }
        let unreachable = self.health.iter().filter(|h| h.2.is_none()).count();
        assert_eq!(unreachable, 0, "/healthz unreachable {unreachable} time(s)");
    }

    /// Every process counted its reconnects.
    fn assert_reconnects_counted(&self) {
        for node in &self.cluster.nodes {
            let stats = node.stats();
            let reconnects = stats["bus"]["reconnects"].as_u64().unwrap_or(0);
            assert!(reconnects >= OUTAGES as u64, "{}: {stats}", node.name);
            assert_eq!(stats["bus"]["connected"], true, "{}: {stats}", node.name);
        }
    }
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn redis_killed_three_times_with_persistence_loses_nothing_and_doubles_nothing() {
    let run = run(Persistence::Aof);
    run.print_summary();
    run.ledger.assert_all(&run.reports, false);
    run.assert_refused_while_down();
    run.assert_unhealthy_while_down();
    run.assert_reconnects_counted();
}

#[test]
#[ignore = "needs redis-server; run by test.sh"]
fn redis_killed_three_times_without_persistence_announces_every_loss() {
    let run = run(Persistence::None);
    run.print_summary();
    // Whatever is missing has a gap where it is missing.
    run.ledger.assert_all(&run.reports, true);
    // Each restart came back empty: every stream open across it heard.
    for report in run.reports.iter().filter(|r| r.name.starts_with("steady")) {
        assert!(
            report.gaps() >= OUTAGES,
            "{}: {} gap(s) for {OUTAGES} restarts without persistence",
            report.name,
            report.gaps()
        );
    }
    run.assert_refused_while_down();
    run.assert_unhealthy_while_down();
    run.assert_reconnects_counted();
}
