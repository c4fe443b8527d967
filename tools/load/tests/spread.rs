//! `ssed-load` end to end, spread over several targets and worker
//! processes, against a stand-in for ssed processes sharing a bus.
//!
//! The stand-in is two listeners on loopback sharing one list of
//! subscribers: a publish to either one reaches every subscriber of both,
//! as a publish to any ssed process reaches every subscriber of every
//! process over the bus. So the load tool's spreading (subscribers per
//! target), its workers (status lines, reports, merging) and its
//! missed/duplicate check are all exercised, with no ssed and no Redis.
//!
//! Each run is bounded: `--duration` inside the tool, and a deadline here
//! past which the tool is killed. Its workers stop when it does (their
//! stdin closes).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every subscriber stream of every listener.
type Subscribers = Arc<Mutex<Vec<TcpStream>>>;

/// Starts `count` listeners sharing one set of subscribers; their addresses.
fn shared_bus_servers(count: usize) -> Vec<SocketAddr> {
    let subscribers: Subscribers = Arc::default();
    (0..count)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let subscribers = subscribers.clone();
            thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let subscribers = subscribers.clone();
                    thread::spawn(move || {
                        let _ = serve(conn, &subscribers);
                    });
                }
            });
            addr
        })
        .collect()
}

/// One connection: a GET becomes a subscriber (kept in the list, its
/// thread done); POSTs are published to every subscriber, one by one.
fn serve(conn: TcpStream, subscribers: &Subscribers) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            if header.trim_end().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if request_line.starts_with("GET ") {
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nretry: 1000\n\n")?;
            subscribers.lock().unwrap().push(writer);
            return Ok(());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let event = format!("data: {}\n\n", String::from_utf8_lossy(&body));
        subscribers
            .lock()
            .unwrap()
            .retain_mut(|sub| sub.write_all(event.as_bytes()).is_ok());
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
    }
}

/// Kills the tool if a test ends early.
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ssed-load` with `args`; its exit code and its JSON line.
fn load(args: &[String]) -> (Option<i32>, Value) {
    let child = Command::new(env!("CARGO_BIN_EXE_ssed-load"))
        .args(args)
        .args(["--duration", "60", "--idle-secs", "0", "--spacing-ms", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut run = Run(child);
    let mut stdout = run.0.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "ssed-load did not finish in time");
        thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap();
    let json = text.lines().last().unwrap_or_default();
    let value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status.code(), value)
}

fn targets(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    list.join(",")
}

/// Every subscriber connected, got every event once, and each target got
/// its share of `subscribers`.
fn assert_clean(json: &Value, subscribers: u64, addrs: &[SocketAddr], deliveries: u64) {
    assert_eq!(json["connected"], subscribers, "{json}");
    assert_eq!(json["missed"], 0, "{json}");
    assert_eq!(json["duplicated"], 0, "{json}");
    assert_eq!(json["lost_workers"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    let per_target = subscribers / addrs.len() as u64;
    for (i, addr) in addrs.iter().enumerate() {
        assert_eq!(json["targets"][i]["target"], addr.to_string(), "{json}");
        assert_eq!(json["targets"][i]["connected"], per_target, "{json}");
    }
    let delivered: u64 = ["single", "pipelined", "sequential"]
        .iter()
        .map(|phase| json[phase]["delivered"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(delivered, deliveries, "{json}");
    assert!(json["single"]["p99_ms"].as_f64().is_some(), "{json}");
}

#[test]
fn workers_spread_over_targets_and_count_every_delivery() {
    let addrs = shared_bus_servers(3);
    let args: Vec<String> = [
        "--target",
        &targets(&addrs),
        "--subscribers",
        "300",
        "--workers",
        "3",
        "--singles",
        "3",
        "--burst",
        "20",
        "--seq-burst",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let (code, json) = load(&args);
    assert_clean(&json, 300, &addrs, 300 * (3 + 20 + 5));
    assert_eq!(json["workers"], 3);
    assert_eq!(code, Some(0), "{json}");
}

#[test]
fn threads_spread_over_targets_the_same_way() {
    let addrs = shared_bus_servers(2);
    let args: Vec<String> = [
        "--target",
        &targets(&addrs),
        "--subscribers",
        "200",
        "--threads",
        "2",
        "--singles",
        "2",
        "--burst",
        "10",
        "--seq-burst",
        "0",
    ]
    .map(String::from)
    .to_vec();
    let (code, json) = load(&args);
    assert_clean(&json, 200, &addrs, 200 * (2 + 10));
    assert_eq!(json["workers"], 0);
    assert_eq!(code, Some(0), "{json}");
}
