//! A stand-in for Redis: just enough of its Streams commands, spoken in
//! RESP2 over a Unix socket, for the bus's wiring to be tested by plain
//! `cargo test` on a machine without Redis. (`tests/bus/` runs the real
//! thing; this checks that ssed's side of the conversation holds, and that
//! an outage or a loss is handled, in a few hundred milliseconds.)
//!
//! One thread accepts, one thread per connection answers: `PING`,
//! `SELECT`, `XADD ... MAXLEN ~ N * fields`, `XRANGE`, `XREVRANGE` and
//! `XREAD COUNT n BLOCK ms STREAMS key id`, the last waiting on a condition
//! variable for an entry, as Redis does. [`StandIn::kill`] drops every
//! connection and stops listening; [`StandIn::restart`] listens again on
//! the same path, with the stream kept or emptied.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Id = (u64, u64);
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Default)]
struct Stream {
    entries: Vec<(Id, Fields)>,
    last: Id,
}

struct Shared {
    stream: Mutex<Stream>,
    added: Condvar,
}

/// A running stand-in; killed on drop.
pub struct StandIn {
    dir: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    clients: Arc<Mutex<Vec<UnixStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Listens on `redis.sock` in a fresh temporary directory.
    pub fn start() -> StandIn {
        let dir = std::env::temp_dir().join(format!(
            "ssed-standin-{}-{}",
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let shared = Arc::new(Shared {
            stream: Mutex::new(Stream::default()),
            added: Condvar::new(),
        });
        let mut standin = StandIn {
            dir,
            shared,
            stop: Arc::new(AtomicBool::new(false)),
            clients: Arc::new(Mutex::new(Vec::new())),
            acceptor: None,
        };
        standin.listen();
        standin
    }

    /// The socket's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// Every connection dropped, nothing listening: Redis is gone.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        self.shared.added.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        let _ = std::fs::remove_file(self.path());
    }

    /// Listens again; `keep` false empties the stream (a Redis restarted
    /// without persistence).
    pub fn restart(&mut self, keep: bool) {
        if !keep {
            *self.shared.stream.lock().unwrap() = Stream::default();
        }
        self.stop = Arc::new(AtomicBool::new(false));
        self.listen();
    }

    fn listen(&mut self) {
        let listener = UnixListener::bind(self.path()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (shared, stop, clients) = (self.shared.clone(), self.stop.clone(), self.clients.clone());
        self.acceptor = Some(thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        clients.lock().unwrap().push(client.try_clone().unwrap());
                        let (shared, stop) = (shared.clone(), stop.clone());
                        thread::spawn(move || serve(client, &shared, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        }));
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Answers one connection's commands until it closes or the stand-in dies.
fn serve(client: UnixStream, shared: &Shared, stop: &AtomicBool) {
    let mut out = client.try_clone().unwrap();
    let mut input = BufReader::new(client);
    while let Some(args) = command(&mut input) {
        let word = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let reply = match word.as_str() {
            "PING" => b"+PONG\r\n".to_vec(),
            "SELECT" => b"+OK\r\n".to_vec(),
            "XADD" => xadd(&args, shared),
            "XRANGE" | "XREVRANGE" => {
                let stream = shared.stream.lock().unwrap();
                // XRANGE key start end, XREVRANGE key end start.
                let (low, high) = if word == "XREVRANGE" { (3, 2) } else { (2, 3) };
                let (start, end) = (bound(&args[low], true), bound(&args[high], false));
                let count = count(&args);
                let mut picked: Vec<_> = stream
                    .entries
                    .iter()
                    .filter(|(id, _)| start(*id) && end(*id))
                    .collect();
                if word == "XREVRANGE" {
                    picked.reverse();
                }
                picked.truncate(count);
                entries(&picked)
            }
            "XREAD" => xread(&args, shared, stop),
            _ => format!("-ERR unknown command '{word}'\r\n").into_bytes(),
        };
        if stop.load(Ordering::SeqCst) || out.write_all(&reply).is_err() {
            return;
        }
    }
}

fn xadd(args: &[Vec<u8>], shared: &Shared) -> Vec<u8> {
    // XADD key MAXLEN ~ N * field value ...
    let keep: usize = text(&args[4]).parse().unwrap();
    let fields = args[6..]
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let mut stream = shared.stream.lock().unwrap();
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let id = if ms > stream.last.0 {
        (ms, 0)
    } else {
        (stream.last.0, stream.last.1 + 1)
    };
    stream.last = id;
    stream.entries.push((id, fields));
    let over = stream.entries.len().saturating_sub(keep);
    stream.entries.drain(..over);
    shared.added.notify_all();
    bulk(format!("{}-{}", id.0, id.1).as_bytes())
}

fn xread(args: &[Vec<u8>], shared: &Shared, stop: &AtomicBool) -> Vec<u8> {
    // XREAD COUNT n BLOCK ms STREAMS key id
    let (count, block): (usize, u64) = (text(&args[2]).parse().unwrap(), text(&args[4]).parse().unwrap());
    let (key, after) = (args[6].clone(), parse_id(&args[7]));
    let deadline = Instant::now() + Duration::from_millis(block);
    let mut stream = shared.stream.lock().unwrap();
    loop {
        let new: Vec<_> = stream
            .entries
            .iter()
            .filter(|(id, _)| *id > after)
            .take(count)
            .collect();
        if !new.is_empty() {
            let mut reply = b"*1\r\n*2\r\n".to_vec();
            reply.extend(bulk(&key));
            reply.extend(entries(&new));
            return reply;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::SeqCst) {
            return b"*-1\r\n".to_vec();
        }
        stream = shared.added.wait_timeout(stream, left).unwrap().0;
    }
}

/// One command: an array of bulk strings; `None` at the end of input.
fn command(input: &mut BufReader<UnixStream>) -> Option<Vec<Vec<u8>>> {
    let n: usize = line(input)?.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        let len: usize = line(input)?.strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0; len + 2];
        input.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn line(input: &mut BufReader<UnixStream>) -> Option<String> {
    let mut text = String::new();
    match input.read_line(&mut text) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(text.trim_end().to_string()),
    }
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn parse_id(arg: &[u8]) -> Id {
    let text = text(arg);
    let (ms, seq) = text.split_once('-').unwrap_or((&text, "0"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// `-`/`+`, `id` or `(id` as a test on ids; `low` for a range's start.
fn bound(arg: &[u8], low: bool) -> Box<dyn Fn(Id) -> bool> {
    match (arg, low) {
        (b"-", _) | (b"+", _) => Box::new(|_| true),
        ([b'(', rest @ ..], true) => {
            let id = parse_id(rest);
            Box::new(move |x| x > id)
        }
        (_, true) => {
            let id = parse_id(arg);
            Box::new(move |x| x >= id)
        }
        (_, false) => {
            let id = parse_id(arg);
            Box::new(move |x| x <= id)
        }
    }
}

fn count(args: &[Vec<u8>]) -> usize {
    match args.get(4).map(|word| text(word).to_ascii_uppercase()).as_deref() {
        Some("COUNT") => text(&args[5]).parse().unwrap(),
        _ => usize::MAX,
    }
}

fn bulk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn entries(picked: &[&(Id, Fields)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", picked.len()).into_bytes();
    for ((ms, seq), fields) in picked {
        out.extend(b"*2\r\n");
        out.extend(bulk(format!("{ms}-{seq}").as_bytes()));
        out.extend(format!("*{}\r\n", fields.len() * 2).into_bytes());
        for (name, value) in fields {
            out.extend(bulk(name));
            out.extend(bulk(value));
        }
    }
    out
}
