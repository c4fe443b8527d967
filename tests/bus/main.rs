//! The bus with real Redis and real ssed processes (issue 10).
//!
//! Each test starts its own `redis-server` in a temporary directory (on a
//! Unix socket, or a loopback port) and several `ssed --bus` processes,
//! some sharing a port with `--reuseport`; publishes through all of them;
//! and checks what every subscriber on every process got: every event
//! once, in one order, under the ids the publishers were given, or, where
//! Redis lost events, an `event: gap` exactly where they are missing.
//!
//! | test | file | what it shows |
//! |---|---|---|
//! | three processes, two on one port | [`fanout`] | every subscriber gets every event once, same order, same ids |
//! | replay on another process | [`replay`] | `Last-Event-ID` from the local history, from `XRANGE`, and `gap` when neither holds it |
//! | Redis killed 3 times, persistence on | [`outage`] | nothing answered `200` is lost or doubled; `503` and `/healthz` `503` meanwhile |
//! | Redis killed 3 times, persistence off | [`outage`] | what Redis lost is announced by `event: gap` where it is missing |
//! | a process that never read what Redis then forgot | [`loss`] | its subscribers, and a client resuming there, get a gap where the events are missing |
//! | one ssed killed | [`failover`] | its subscribers come back through the shared port and miss nothing |
//!
//! The harness: [`cluster`] (the processes), [`clients`] (publishers and
//! readers on threads), [`check`] (what a reader must have seen).
//!
//! These tests need `redis-server` (Debian package `redis-server`), so
//! they are `#[ignore]`d: `cargo test` passes without it, and `./test.sh`
//! installs it and runs them with `cargo test --test bus -- --ignored`.
//! Run that way without `redis-server`, they fail: they never skip.
//! `BUS_TEST_LOGS=1` prints every process's log as it comes.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod clients;
mod cluster;
mod failover;
mod fanout;
mod loss;
mod outage;
mod replay;
