//! The real `ssed` binary: flags, logs, signals, `--stdin`, `--trace`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::*;

fn ssed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ssed")
}

#[test]
fn help_lists_every_flag_with_defaults() {
    let out = ssed(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen ADDR",
        "--tick SECS",
        "--heartbeat SECS",
        "--retry MS",
        "--history N",
        "--max-conns N",
        "--max-queue BYTES",
        "--max-body BYTES",
        "--header-timeout SECS",
        "--publish-token TOKEN",
        "--cors-origin ORIGIN",
        "--stdin [TOPIC]",
        "--trace",
        "--bus URL",
        "--bus-key NAME",
        "--bus-retention N",
        "--reuseport",
        "--help",
        "--version",
    ] {
        assert!(text.contains(flag), "{flag} in --help");
    }
    assert!(text.contains("[default: 127.0.0.1:8080]"));
    assert!(
        text.contains("[default: 3000, at most 3600000]"),
        "--retry's range"
    );
    assert!(text.contains("SSED_LISTEN"), "the environment rule");
    assert!(text.contains("command line wins"), "the environment rule");
}

#[test]
fn version_and_bad_flags() {
    let out = ssed(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("ssed {}\n", env!("CARGO_PKG_VERSION"))
    );
    let bad = ssed(&["--tick", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tick"));
    assert_eq!(ssed(&["--no-such-flag"]).status.code(), Some(2));
}

/// `ssed args` with exactly the `SSED_*` variables in `env`: none leak in
/// from the environment the tests run in.
fn ssed_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSED_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs ssed with `args` (on a free port, no ticker) and waits, bounded, for
/// it to exit. A value ssed wrongly accepts leaves it serving: then it is
/// killed and the test fails instead of hanging.
fn ssed_exits(args: &[&str]) -> std::process::Output {
    let mut all = vec!["--listen", "127.0.0.1:0", "--tick", "0"];
    all.extend_from_slice(args);
    exits(ssed_command(&all, &[]))
}

/// Runs `command` and waits, bounded, for it to exit (see [`ssed_exits`]).
fn exits(mut command: Command) -> std::process::Output {
    let child = command.stdout(Stdio::piped()).spawn().expect("run ssed");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("wait for ssed"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped
            // (its waiting thread has not returned), so the pid is still its.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("{command:?} started instead of refusing the command line");
        }
    }
}

#[test]
fn huge_numbers_are_refused_with_exit_2() {
    // The values from issue 8: each used to start a server that later
    // panicked (at shutdown, on admitting, or reading standard input).
    for (args, flag) in [
        (&["--retry", "18446744073709551615"][..], "--retry"),
        (&["--retry", "99999999999999"], "--retry"),
        (&["--max-conns", "18446744073709551615"], "--max-conns"),
        (&["--max-body", "18446744073709551615", "--stdin"], "--max-body"),
        (&["--history", "18446744073709551616"], "--history"),
        (&["--max-queue", "18446744073709551615"], "--max-queue"),
        (&["--heartbeat", "1e300"], "--heartbeat"),
        (&["--header-timeout", "86401"], "--header-timeout"),
    ] {
        let out = ssed_exits(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("ssed: {flag}: ")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("most allowed"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_largest_values_allowed_run_and_shut_down() {
    let mut server = BinaryServer::spawn_with(
        &[
            "--tick",
            "86400",
            "--heartbeat",
            "86400",
            "--retry",
            "3600000",
            "--history",
            "1000000",
            "--max-conns",
            "10000000",
            "--max-queue",
            "1073741824",
            "--max-body",
            "67108864",
            "--header-timeout",
            "3600",
            "--stdin",
        ],
        Stdio::piped(),
    );
    let mut sub = Subscriber::open(server.addr, "/events", "");
    sub.connected();
    let status = server.signal(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    // --retry plus a spread of up to five times --retry.
    let retry = sub.next_block().retry.expect("retry on shutdown");
    assert!((3_600_000..=21_600_000).contains(&retry), "{retry}");
}

#[test]
fn logs_the_file_limit_and_serves() {
    let server = BinaryServer::spawn(&["--tick", "0"]);
    // The start-up line was printed before "listening"; ask for a fresh one.
    let health = request(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.text(), "ok\n");
}

#[test]
fn start_up_log_names_the_limits() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", "127.0.0.1:0", "--tick", "0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("open-file limit: soft"), "{first}");
    assert!(first.contains("--max-conns"), "{first}");
}

#[test]
fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut server = BinaryServer::spawn(&["--tick", "0", "--retry", "1000"]);
        let mut sub = Subscriber::open(server.addr, "/events", "");
        sub.connected();
        let status = server.signal(signal);
        assert_eq!(status.code(), Some(0), "exit status after signal {signal}");
        let retry = sub.next_block().retry.expect("jittered retry on shutdown");
        assert!((1000..=6000).contains(&retry), "{retry}");
        assert!(sub.ended());
    }
}

#[test]
fn stdin_lines_become_events() {
    let server = BinaryServer::spawn_with(&["--tick", "0", "--stdin", "feed"], Stdio::piped());
    let mut server = server;
    let mut sub = Subscriber::open(server.addr, "/events?topic=feed", "");
    sub.connected();
    let mut stdin = server.child.stdin.take().unwrap();
    stdin.write_all(b"first line\nsecond, with \xc3\xa9\r\n").unwrap();
    stdin.flush().unwrap();
    let first = sub.next_event();
    assert_eq!(first.data, "first line");
    assert!(first.id.is_some());
    assert_eq!(sub.next_event().data, "second, with é");
    drop(stdin);
    server.wait_log("end of input");
    // Still serving after standard input closed.
    let health = request(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.status, 200);
}

#[test]
fn trace_logs_bytes_in_and_out_escaped() {
    let server = BinaryServer::spawn(&["--tick", "0", "--trace"]);
    request(
        server.addr,
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let incoming = server.wait_log(" B \"GET /healthz HTTP/1.1\\r\\n");
    assert!(incoming.contains("ssed::trace"), "{incoming}");
    // Milliseconds since start, the connection, the direction, the length.
    let read = trace_fields(&incoming);
    assert_eq!(read.1, "<", "{incoming}");
    let outgoing = server.wait_log(" B \"HTTP/1.1 200 OK\\r\\n");
    assert_eq!(trace_fields(&outgoing).1, ">", "{outgoing}");
}

/// The `ms`, `#N` and arrow fields of a `--trace` line:
/// `   12.041 ms #7 < 78 B "..."`.
fn trace_fields(line: &str) -> (f64, &str) {
    let at = line.find(" ms #").expect("a millisecond field");
    let millis = line[..at]
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .parse()
        .expect("milliseconds");
    let rest = &line[at + " ms #".len()..];
    let arrow = rest.split(' ').nth(1).expect("an arrow");
    (millis, arrow)
}

/// A token is never written in clear to the log, `--trace` included.
#[test]
fn trace_redacts_tokens() {
    let server = BinaryServer::spawn(&["--tick", "0", "--trace"]);
    request(
        server.addr,
        "GET /healthz?token=eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl HTTP/1.1\r\nHost: t\r\n\
         Authorization: Bearer s3cret-publish-token\r\nConnection: close\r\n\r\n",
    );
    let line = server.wait_log(" B \"GET /healthz?token=");
    assert!(line.contains("token=[redacted] HTTP/1.1"), "{line}");
    assert!(line.contains("Bearer [redacted]"), "{line}");
    assert!(!line.contains("eyJ") && !line.contains("s3cret"), "{line}");
}

#[cfg(not(feature = "jwt"))]
#[test]
fn without_the_jwt_feature_a_jwt_secret_is_refused() {
    let out = ssed(&["--jwt-secret", "a-secret-of-at-least-32-bytes-long-here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without the jwt feature"));
}

#[cfg(feature = "jwt")]
#[test]
fn jwt_secrets_are_checked_at_start() {
    let short = ssed(&["--jwt-secret", "too-short"]);
    assert_eq!(short.status.code(), Some(2));
    let said = String::from_utf8_lossy(&short.stderr).into_owned();
    assert!(
        said.contains("--jwt-secret") && said.contains("32 bytes"),
        "{said}"
    );
    let missing = ssed(&["--jwt-secret-file", "/nonexistent/ssed-secret"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--jwt-secret-file"));
    // From a file, with the line break `echo` leaves: the server starts.
    let dir = std::env::temp_dir().join(format!("ssed-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "a-file-secret-of-at-least-32-bytes-long\n").unwrap();
    let server = BinaryServer::spawn(&["--tick", "0", "--jwt-secret-file", file.to_str().unwrap()]);
    let refused = request(
        server.addr,
        "GET /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn warns_when_open_beyond_loopback_without_a_token() {
    // A second --listen beyond loopback (port 0: any free port).
    let server = BinaryServer::spawn(&["--listen", "0.0.0.0:0", "--tick", "0"]);
    server.wait_log("no --publish-token");
}

#[test]
fn serves_configured_by_the_environment_alone() {
    let env = [
        ("SSED_TICK", "0"),
        ("SSED_LISTEN", "127.0.0.1:0"),
        ("SSED_RETRY", "1234"),
    ];
    let server = BinaryServer::start(ssed_command(&[], &env));
    let mut sub = Subscriber::open(server.addr, "/events", "");
    assert_eq!(sub.next_block().retry, Some(1234));
    sub.connected();
}

#[test]
fn a_flag_on_the_command_line_wins_over_the_environment() {
    // SSED_RETRY alone is refused; under --retry it is not even read.
    let env = [
        ("SSED_TICK", "0"),
        ("SSED_LISTEN", "127.0.0.1:0"),
        ("SSED_RETRY", "huge"),
    ];
    let server = BinaryServer::start(ssed_command(&["--retry", "4321"], &env));
    let mut sub = Subscriber::open(server.addr, "/events", "");
    assert_eq!(sub.next_block().retry, Some(4321));
}

#[test]
fn bad_variables_exit_2_naming_the_variable() {
    for (var, value, says) in [
        ("SSED_RETRY", "huge", "SSED_RETRY: 'huge' is not a whole number"),
        (
            "SSED_RETRY",
            "18446744073709551615",
            "SSED_RETRY: 18446744073709551615 is more than",
        ),
        (
            "SSED_TRACE",
            "yes",
            "SSED_TRACE: 'yes' is not one of 1, true, 0, false",
        ),
        (
            "SSED_LISTEN",
            "nowhere",
            "SSED_LISTEN: 'nowhere' is not an address",
        ),
    ] {
        let out = exits(ssed_command(&["--tick", "0"], &[(var, value)]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.starts_with(&format!("ssed: {says}")),
            "{var}={value}: {stderr}"
        );
    }
}

/// A bad `--bus` URL (flag or environment) stops ssed at the start with
/// its reason.
#[test]
fn a_bad_bus_url_is_refused() {
    for (args, env, says) in [
        (
            &["--bus", "redis://h:6379/16"][..],
            &[][..],
            "ssed: --bus: database '16'",
        ),
        (
            &[],
            &[("SSED_BUS", "unix:///run/redis.sock")],
            "ssed: SSED_BUS: write a Unix socket as",
        ),
    ] {
        let out = exits(ssed_command(
            &[&["--listen", "127.0.0.1:0", "--tick", "0"][..], args].concat(),
            env,
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with(says), "{args:?} {env:?}: {stderr}");
    }
}

/// With `--reuseport`, a second ssed listens on the first one's address,
/// and the kernel hands new connections to both.
#[test]
fn reuseport_lets_two_processes_share_a_port() {
    // Each process logs every connection it accepts (at debug level).
    let log = [("RUST_LOG", "info,ssed::server=debug")];
    let first = BinaryServer::start(ssed_command(
        &["--listen", "127.0.0.1:0", "--tick", "0", "--reuseport"],
        &log,
    ));
    let addr = first.addr.to_string();
    let second = BinaryServer::start(ssed_command(
        &["--listen", &addr, "--tick", "0", "--reuseport"],
        &log,
    ));
    assert_eq!(second.addr, first.addr);
    // Linux picks a listener by a hash of the connection's ports: with a
    // new source port each time, both are chosen within a few tries (the
    // chance that 200 all go to one is 2^-199).
    let mut accepted = [0; 2];
    for _ in 0..200 {
        let health = request(
            first.addr,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(health.status, 200);
        for (count, server) in accepted.iter_mut().zip([&first, &second]) {
            *count += server
                .log
                .try_iter()
                .filter(|line| line.contains(" accepted from "))
                .count();
        }
        if accepted.iter().all(|&n| n > 0) {
            return;
        }
    }
    // The logs may lag behind the answers: wait, bounded, for what is missing.
    for (count, server) in accepted.iter().zip([&first, &second]) {
        if *count == 0 {
            server.wait_log(" accepted from ");
        }
    }
}

/// Without `--reuseport`, the second process cannot bind, and says where.
#[test]
fn without_reuseport_a_second_process_cannot_bind() {
    for (first_args, second_args) in [
        (&["--tick", "0"][..], &["--tick", "0"][..]),
        // Both must ask: one that does not keeps the port to itself.
        (&["--tick", "0"], &["--tick", "0", "--reuseport"]),
        (&["--tick", "0", "--reuseport"], &["--tick", "0"]),
    ] {
        let first = BinaryServer::spawn(first_args);
        let addr = first.addr.to_string();
        let out = exits(ssed_command(
            &[&["--listen", &addr][..], second_args].concat(),
            &[],
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{second_args:?}: {stderr}");
        assert!(stderr.contains(&format!("cannot listen on {addr}: ")), "{stderr}");
        assert!(
            stderr.contains("--reuseport"),
            "the message names the way out: {stderr}"
        );
    }
}
