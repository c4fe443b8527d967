//! What a subscriber must have seen, given what was published.
//!
//! Every publish is in the [`Ledger`] with its outcome. For one reader:
//!
//! ```text
//!   received, in order      e1 e2 e3 [gap] e7 e8 …
//!
//!   1. ids strictly increase                    (nothing twice, nothing out of order)
//!   2. each event is a publish of the ledger,   (nothing invented; same id on every
//!      with the id its publisher was given       process as the publisher was told)
//!   3. no token twice                           (a retried XADD would show here)
//!   4. nothing refused ("bus down") arrives     (a 503 means not published)
//!   5. every publish answered 200 on the        (nothing lost …)
//!      reader's topics arrived, or, where
//!      gaps are allowed, a gap was announced    (… or never silently: the gap stands
//!      exactly where it is missing               between the events around the hole)
//! ```
//!
//! Publishes whose outcome is unknown (`503 outcome unknown`, or no answer)
//! may or may not arrive, but at most once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ssed_testkit::id::EventId;

use crate::clients::{Control, Newest, Outcome, Publish, Reader, ReaderReport, Seen};

/// Every publish of a test, by token.
pub struct Ledger {
    publishes: Vec<Publish>,
    by_token: HashMap<String, usize>,
}

impl Ledger {
    pub fn new(publishes: Vec<Publish>) -> Ledger {
        let by_token = publishes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.token.clone(), i))
            .collect();
        Ledger { publishes, by_token }
    }

    pub fn all(&self) -> &[Publish] {
        &self.publishes
    }

    /// The publishes answered `200`, in id order.
    pub fn acked(&self) -> Vec<(&EventId, &Publish)> {
        let mut acked: Vec<_> = self
            .publishes
            .iter()
            .filter_map(|p| match &p.outcome {
                Outcome::Published(id) => Some((id, p)),
                _ => None,
            })
            .collect();
        acked.sort_by(|a, b| a.0.cmp(b.0));
        acked
    }

    /// The newest id published on each topic.
    pub fn newest(&self) -> Newest {
        let mut newest: HashMap<&str, &EventId> = HashMap::new();
        for (id, p) in self.acked() {
            newest.insert(&p.topic, id);
        }
        newest
            .into_iter()
            .map(|(t, id)| (t.to_string(), id.clone()))
            .collect()
    }

    /// How many of each kind: (published, refused, unknown).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for p in &self.publishes {
            match p.outcome {
                Outcome::Published(_) => counts.0 += 1,
                Outcome::Refused(..) => counts.1 += 1,
                Outcome::Unknown(_) => counts.2 += 1,
            }
        }
        counts
    }

    /// Checks one reader; returns what is wrong (empty: all is well).
    pub fn check(&self, report: &ReaderReport, gaps_allowed: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let name = &report.name;
        if let Some(error) = &report.error {
            problems.push(format!("{name}: {error}"));
        }
        let covers = |topic: &str| {
            report
                .topics
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == topic))
        };
        // 1-4, walking what arrived; gap positions are counted in events
        // received before them.
        let mut previous: Option<&EventId> = report.after.as_ref();
        let mut tokens = HashSet::new();
        let mut received = Vec::new();
        let mut gaps_at = HashSet::new();
        for seen in &report.seen {
            let (id, data) = match seen {
                Seen::Event(id, data) => (id, data),
                Seen::Gap(data) => {
                    if !gaps_allowed {
                        problems.push(format!("{name}: event: gap {data} after {}", show(previous)));
                    }
                    gaps_at.insert(received.len());
                    continue;
                }
                _ => continue,
            };
            if previous.is_some_and(|p| id <= p) {
                problems.push(format!("{name}: {id} ({data}) after {}", show(previous)));
            }
            previous = Some(id);
            if !tokens.insert(data.as_str()) {
                problems.push(format!("{name}: {data} twice (now as {id})"));
            }
            match self.by_token.get(data.as_str()).map(|&i| &self.publishes[i]) {
                None => problems.push(format!("{name}: {id} carries {data:?}, which nobody published")),
                Some(p) if !covers(&p.topic) => problems.push(format!("{name}: {data} is not on its topics")),
                Some(p) => match &p.outcome {
                    Outcome::Published(acked) if acked != id => problems.push(format!(
                        "{name}: {data} arrived as {id}, its publisher was told {acked}"
                    )),
                    Outcome::Refused(status, _, body) => problems.push(format!(
                        "{name}: {data} arrived, but its publish got {status} {body}"
                    )),
                    _ => {}
                },
            }
            received.push(id);
        }
        // 5: what is owed and missing; with gaps allowed, a gap must stand
        // exactly where the missing event would have been.
        let mut missing = Vec::new();
        for (id, p) in self.acked() {
            let owed = covers(&p.topic) && report.after.as_ref().is_none_or(|after| id > after);
            if !owed || tokens.contains(p.token.as_str()) {
                continue;
            }
            let at = received.partition_point(|r| *r < id);
            if !(gaps_allowed && gaps_at.contains(&at)) {
                missing.push(format!("{id} ({})", p.token));
            }
        }
        if !missing.is_empty() {
            let gaps = if gaps_allowed {
                " with no gap announced there"
            } else {
                ""
            };
            problems.push(format!(
                "{name}: {} publish(es) answered 200 never arrived{gaps}: {}",
                missing.len(),
                missing.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        problems
    }

    /// One line on what a reader went through, for the test's output:
    /// events read, gaps, streams opened, events owed that never came.
    pub fn summary(&self, report: &ReaderReport) -> String {
        let tokens: HashSet<&str> = report.events().map(|(_, data)| data).collect();
        let covers = |topic: &str| {
            report
                .topics
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| t == topic))
        };
        let missing = self
            .acked()
            .into_iter()
            .filter(|(id, p)| covers(&p.topic) && report.after.as_ref().is_none_or(|a| id > &a))
            .filter(|(_, p)| !tokens.contains(p.token.as_str()))
            .count();
        let streams = report
            .seen
            .iter()
            .filter(|s| matches!(s, Seen::Opened(..)))
            .count();
        format!(
            "{:<14} {:>5} events  {} gap(s)  {streams} stream(s)  {missing} owed and missing",
            report.name,
            tokens.len(),
            report.gaps()
        )
    }

    /// A run where Redis stayed up: more than 100 publishes, each answered
    /// `200` (else `why` fails the test); then, once the readers have
    /// caught up with the newest, every reader checked, no gap allowed.
    pub fn settle(
        publishes: Vec<Publish>,
        control: &Control,
        readers: Vec<Reader>,
        why: &str,
    ) -> (Ledger, Vec<ReaderReport>) {
        let ledger = Ledger::new(publishes);
        let (published, refused, unknown) = ledger.counts();
        assert!(published > 100, "only {published} published");
        assert_eq!((refused, unknown), (0, 0), "{why}");
        control.finish(ledger.newest(), Duration::from_secs(20));
        let reports: Vec<_> = readers.into_iter().map(Reader::join).collect();
        ledger.assert_all(&reports, false);
        (ledger, reports)
    }

    /// Checks every reader and fails the test with all that is wrong.
    pub fn assert_all(&self, reports: &[ReaderReport], gaps_allowed: bool) {
        let problems: Vec<String> = reports.iter().flat_map(|r| self.check(r, gaps_allowed)).collect();
        if !problems.is_empty() {
            let (ok, refused, unknown) = self.counts();
            let why: Vec<&str> = self
                .publishes
                .iter()
                .filter_map(|p| match &p.outcome {
                    Outcome::Unknown(why) => Some(why.as_str()),
                    _ => None,
                })
                .take(3)
                .collect();
            panic!(
                "{} problem(s) ({ok} published, {refused} refused, {unknown} unknown {why:?}):\n{}",
                problems.len(),
                problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn show(id: Option<&EventId>) -> String {
    id.map_or("the start".into(), |id| id.to_string())
}

/// The checker's own tests: they need no Redis, and show that each rule
/// catches what it is for.
#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;

    fn id(text: &str) -> EventId {
        EventId::parse(text).unwrap()
    }

    fn publish(token: &str, outcome: Outcome) -> Publish {
        Publish {
            token: token.into(),
            topic: token.split('/').next().unwrap().into(),
            to: SocketAddr::from(([127, 0, 0, 1], 1)),
            sent: Instant::now(),
            outcome,
        }
    }

    /// x/p/1..4 published as 1-0..4-0; y/p/5 as 5-0; y/p/6 refused;
    /// x/p/7 unknown.
    fn ledger() -> Ledger {
        let mut publishes: Vec<Publish> = (1..=4)
            .map(|n| publish(&format!("x/p/{n}"), Outcome::Published(id(&format!("{n}-0")))))
            .collect();
        publishes.push(publish("y/p/5", Outcome::Published(id("5-0"))));
        publishes.push(publish("y/p/6", Outcome::Refused(503, true, "bus down".into())));
        publishes.push(publish("x/p/7", Outcome::Unknown("outcome unknown".into())));
        Ledger::new(publishes)
    }

    fn event(n: &str, token: &str) -> Seen {
        Seen::Event(id(n), token.into())
    }

    fn report(topics: Option<&[&str]>, seen: Vec<Seen>) -> ReaderReport {
        ReaderReport {
            name: "r".into(),
            topics: topics.map(|t| t.iter().map(|t| t.to_string()).collect()),
            after: None,
            seen,
            error: None,
        }
    }

    fn all() -> Vec<Seen> {
        ["x/p/1", "x/p/2", "x/p/3", "x/p/4", "y/p/5"]
            .iter()
            .enumerate()
            .map(|(i, t)| event(&format!("{}-0", i + 1), t))
            .collect()
    }

    #[test]
    fn everything_once_in_order_is_clean() {
        assert_eq!(ledger().check(&report(None, all()), false), Vec::<String>::new());
        let x_only: Vec<Seen> = all().into_iter().take(4).collect();
        assert!(ledger().check(&report(Some(&["x"]), x_only), false).is_empty());
        // An unknown outcome may arrive, once.
        let mut seen = all();
        seen.push(event("7-0", "x/p/7"));
        assert!(ledger().check(&report(None, seen), false).is_empty());
        // Resumed after 2-0: owed 3-0 on.
        let mut resumed = report(None, all().split_off(2));
        resumed.after = Some(id("2-0"));
        assert!(ledger().check(&resumed, false).is_empty());
    }

    #[test]
    fn each_rule_catches_its_fault() {
        let faults: Vec<(&str, Vec<Seen>)> = vec![
            (
                "missing",
                all()
                    .into_iter()
                    .filter(|s| *s != event("3-0", "x/p/3"))
                    .collect(),
            ),
            ("twice", [all(), vec![event("2-0", "x/p/2")]].concat()),
            ("out of order", {
                let mut seen = all();
                seen.swap(1, 2);
                seen
            }),
            ("another id", {
                let mut seen = all();
                seen[0] = event("0-9", "x/p/1");
                seen
            }),
            ("refused arrived", [all(), vec![event("6-0", "y/p/6")]].concat()),
            ("invented", [all(), vec![event("9-0", "x/q/9")]].concat()),
            (
                "unknown twice",
                [all(), vec![event("7-0", "x/p/7"), event("8-0", "x/p/7")]].concat(),
            ),
            ("a gap", [vec![Seen::Gap("{}".into())], all()].concat()),
        ];
        for (fault, seen) in faults {
            let problems = ledger().check(&report(None, seen), false);
            assert!(!problems.is_empty(), "{fault} went unnoticed");
        }
        let wrong_topic = vec![event("5-0", "y/p/5")];
        assert!(
            ledger()
                .check(&report(Some(&["y"]), wrong_topic.clone()), false)
                .is_empty(),
            "y/p/5 is y's"
        );
        let problems = ledger().check(&report(Some(&["x"]), wrong_topic), false);
        assert!(
            problems.iter().any(|p| p.contains("not on its topics")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_loss_is_forgiven_only_where_a_gap_stands() {
        // 3-0 missing, with a gap right where it would have been.
        let mut seen: Vec<Seen> = all()
            .into_iter()
            .filter(|s| *s != event("3-0", "x/p/3"))
            .collect();
        seen.insert(2, Seen::Gap("{}".into()));
        assert!(ledger().check(&report(None, seen.clone()), true).is_empty());
        assert!(
            !ledger().check(&report(None, seen.clone()), false).is_empty(),
            "gaps not allowed"
        );
        // The same gap one event too late does not cover it.
        seen.swap(2, 3);
        assert!(!ledger().check(&report(None, seen), true).is_empty());
    }
}
