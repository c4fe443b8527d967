//! The command line: raw arguments, then a validated [`Config`].
//!
//! Parsing is two steps, as in ripgrep: [`parse`] reads each flag and its
//! value as it stands and checks each alone (a number is a number), then
//! [`Config`] is the whole set with defaults filled in. `--help` text lives
//! here too, next to the flags it describes, so the two cannot drift.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::topics;

/// Where the daemon serves unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

// The range of every numeric flag. Each has a top, so that no number an
// operator can type overflows the arithmetic done with it later, and each
// top is generous: far above any value a working deployment has a reason
// to use. A value outside its range is a command-line error (exit 2) that
// names the flag, the value and the bound. `--help` and the README's flags
// table show the same numbers (a test checks `--help`).

/// Most `--tick` and `--heartbeat` period, in seconds: a day. A ticker
/// slower than that is better turned off (`0`), and proxies drop an idle
/// stream after minutes, so a heartbeat is only useful well below it.
pub const MAX_PERIOD_SECS: u64 = 24 * 60 * 60;
/// Most `--header-timeout`, in seconds: an hour. It is also how long an
/// idle keep-alive connection keeps its file descriptor.
pub const MAX_HEADER_TIMEOUT_SECS: u64 = 60 * 60;
/// Least period or timeout other than `0`: one millisecond, the step `poll`
/// sleeps in. A shorter one (`--tick 1e-12`) would spin the loop.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Most `--retry`, in milliseconds: an hour. Shutdown sends `--retry` plus
/// up to five times `--retry`, so the largest sum, six hours in
/// milliseconds, is nowhere near overflowing a `u64`.
pub const MAX_RETRY_MS: u64 = 60 * 60 * 1000;
/// Most `--history`: a million events. History is kept in memory, each
/// event encoded, so this is already gigabytes at a modest event size.
pub const MAX_HISTORY: u64 = 1_000_000;
/// Most `--max-conns`: ten million. Every connection is a file descriptor,
/// and Linux allows at most about a million per process by default
/// (`fs.nr_open`); the margin keeps `--max-conns` plus the overflow slots
/// far from overflowing.
pub const MAX_CONNS: u64 = 10_000_000;
/// Least `--max-queue`: 1 KiB, so that an ordinary event fits at all.
pub const MIN_QUEUE: u64 = 1024;
/// Most `--max-queue`: 1 GiB of unsent bytes for one subscriber; a client
/// that far behind is not coming back.
pub const MAX_QUEUE: u64 = 1 << 30;
/// Most `--max-body` (and `--stdin` line): 64 MiB. A body is held in memory
/// whole and encoded into one frame whose offsets are `u32`; even at the
/// worst expansion of the encoding (every byte a line of its own, seven
/// bytes each) 64 MiB stays well below 4 GiB.
pub const MAX_BODY: u64 = 64 << 20;

/// Everything the server needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `--listen`: every address served.
    pub listen: Vec<SocketAddr>,
    /// Ticker period; `None` disables it.
    pub tick: Option<Duration>,
    /// Heartbeat after this much silence; `None` disables it.
    pub heartbeat: Option<Duration>,
    /// `--retry`: the reconnection hint sent on connect, in ms.
    pub retry_ms: u64,
    /// `--history`: events kept for `Last-Event-ID` replay.
    pub history: usize,
    /// `None`: derived from the open-file limit at start.
    pub max_conns: Option<usize>,
    /// `--max-queue`: unsent bytes per subscriber before eviction.
    pub max_queue: usize,
    /// `--max-body`: the largest publish body.
    pub max_body: usize,
    /// `--header-timeout`: time to receive a whole request.
    pub header_timeout: Duration,
    /// `--publish-token`: publishing needs `Authorization: Bearer` it.
    pub publish_token: Option<String>,
    /// `Access-Control-Allow-Origin`; `None` sends no CORS headers.
    pub cors_origin: Option<String>,
    /// `--stdin`: publish each line of standard input to this topic.
    pub stdin_topic: Option<String>,
    /// `--trace`: log every byte in and out.
    pub trace: bool,
    /// `--jwt-secret` (or `--jwt-secret-file`, `SSED_JWT_SECRET`):
    /// subscribers need a token signed with it.
    pub jwt_secret: Option<Secret>,
}

/// A secret's bytes; its `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// RFC 7518 §3.2: an HS256 key "of the same size as the hash output (256
/// bits) or larger MUST be used".
pub const MIN_JWT_SECRET: usize = 32;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            tick: Some(Duration::from_secs(1)),
            heartbeat: Some(Duration::from_secs(15)),
            retry_ms: 3000,
            history: 1024,
            max_conns: None,
            max_queue: 1024 * 1024,
            max_body: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            publish_token: None,
            cors_origin: Some("*".to_string()),
            stdin_topic: None,
            trace: false,
            jwt_secret: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
// Made once, at start: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve with this configuration.
    Run(Config),
    /// Print `--help`.
    Help,
    /// Print the version.
    Version,
}

/// A command line we cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text.
pub const HELP: &str = "\
ssed - a small Server-Sent Events daemon

USAGE:
    ssed [OPTIONS]

OPTIONS:
    --listen ADDR          address to serve on; repeat for several   [default: 127.0.0.1:8080]
    --tick SECS            ticker period, 0 disables                 [default: 1, at most 86400]
    --heartbeat SECS       ': ping' to streams silent this long, 0 disables  [default: 15, at most 86400]
    --retry MS             reconnection hint sent on connect         [default: 3000, at most 3600000]
    --history N            events kept for Last-Event-ID replay      [default: 1024, at most 1000000]
    --max-conns N          most open connections                     [default: open-file limit - 128, at most 10000000]
    --max-queue BYTES      unsent bytes per subscriber before eviction  [default: 1048576, at least 1024, at most 1073741824]
    --max-body BYTES       largest publish body                      [default: 65536, at most 67108864]
    --header-timeout SECS  time to receive a whole request           [default: 10, at most 3600]
    --publish-token TOKEN  require 'Authorization: Bearer TOKEN' to publish
                           (also env SSED_PUBLISH_TOKEN)             [default: none]
    --jwt-secret SECRET    subscribers need a JWT signed with SECRET (HS256, at least
                           32 bytes); also --jwt-secret-file PATH, env SSED_JWT_SECRET
    --cors-origin ORIGIN   Access-Control-Allow-Origin; '' sends none  [default: *]
    --stdin [TOPIC]        publish each line of standard input       [default topic: default]
    --trace                log every byte in and out, escaped
    -h, --help             print this help
    -V, --version          print the version

Seconds may have a fraction (0.5); one that is not 0 is at least 0.001.
A number outside its range is refused.

Logging goes to standard error; set the level with RUST_LOG (default: info).
SIGINT or SIGTERM shuts down gracefully.
";

/// Parses the arguments after the program name. `env` looks up environment
/// variables (passed in so tests need not touch the real environment).
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let mut args: Vec<String> = args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| ConfigError(format!("argument is not UTF-8: {arg:?}")))
        })
        .collect::<Result<_, _>>()?;
    args.reverse();
    let mut config = Config {
        publish_token: env("SSED_PUBLISH_TOKEN").filter(|t| !t.is_empty()),
        jwt_secret: match env("SSED_JWT_SECRET").filter(|s| !s.is_empty()) {
            Some(secret) => Some(jwt_secret("SSED_JWT_SECRET", secret.into_bytes())?),
            None => None,
        },
        ..Config::default()
    };
    let mut listen = Vec::new();
    while let Some(arg) = args.pop() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, ConfigError> {
            inline
                .clone()
                .or_else(|| args.pop())
                .ok_or_else(|| ConfigError(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen" => listen.push(parse_addr(&value("--listen")?)?),
            "--tick" => config.tick = parse_period("--tick", &value("--tick")?, MAX_PERIOD_SECS, "1 day")?,
            "--heartbeat" => {
                config.heartbeat =
                    parse_period("--heartbeat", &value("--heartbeat")?, MAX_PERIOD_SECS, "1 day")?;
            }
            "--retry" => {
                config.retry_ms = parse_number("--retry", &value("--retry")?, 0, MAX_RETRY_MS, "1 hour")?
            }
            "--history" => {
                config.history = parse_count("--history", &value("--history")?, 0, MAX_HISTORY, "a million")?
            }
            "--max-conns" => {
                let text = value("--max-conns")?;
                config.max_conns = Some(parse_count("--max-conns", &text, 1, MAX_CONNS, "ten million")?);
            }
            "--max-queue" => {
                let text = value("--max-queue")?;
                config.max_queue = parse_count("--max-queue", &text, MIN_QUEUE, MAX_QUEUE, "1 GiB")?;
            }
            "--max-body" => {
                config.max_body = parse_count("--max-body", &value("--max-body")?, 0, MAX_BODY, "64 MiB")?
            }
            "--header-timeout" => {
                let text = value("--header-timeout")?;
                config.header_timeout =
                    parse_period("--header-timeout", &text, MAX_HEADER_TIMEOUT_SECS, "1 hour")?.ok_or_else(
                        || ConfigError(format!("--header-timeout: {} must be more than 0", text.trim())),
                    )?;
            }
            "--publish-token" => {
                let token = value("--publish-token")?;
                config.publish_token = (!token.is_empty()).then_some(token);
            }
            "--jwt-secret" => {
                config.jwt_secret = Some(jwt_secret("--jwt-secret", value("--jwt-secret")?.into_bytes())?);
            }
            "--jwt-secret-file" => {
                let path = value("--jwt-secret-file")?;
                let mut bytes = std::fs::read(&path)
                    .map_err(|e| ConfigError(format!("--jwt-secret-file: {path}: {e}")))?;
                // A file written by `echo` ends with a line break that is
                // not part of the secret.
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                config.jwt_secret = Some(jwt_secret("--jwt-secret-file", bytes)?);
            }
            "--cors-origin" => {
                let origin = value("--cors-origin")?;
                if origin.contains(['\r', '\n']) {
                    return Err(ConfigError("--cors-origin must be one line".into()));
                }
                config.cors_origin = (!origin.is_empty()).then_some(origin);
            }
            "--stdin" => {
                // The topic is optional: take the next word unless it is a flag.
                let topic = match inline {
                    Some(topic) => topic,
                    None if args.last().is_some_and(|next| !next.starts_with('-')) => {
                        args.pop().unwrap_or_default()
                    }
                    None => topics::DEFAULT_TOPIC.to_string(),
                };
                topics::validate_topic(&topic).map_err(|e| ConfigError(format!("--stdin: {e}")))?;
                config.stdin_topic = Some(topic);
            }
            "--trace" => config.trace = true,
            other => return Err(ConfigError(format!("unknown option '{other}' (see --help)"))),
        }
    }
    if !listen.is_empty() {
        config.listen = listen;
    }
    Ok(Command::Run(config))
}

/// A JWT secret, checked: long enough, and usable by this build.
fn jwt_secret(flag: &str, bytes: Vec<u8>) -> Result<Secret, ConfigError> {
    if !cfg!(feature = "jwt") {
        return Err(ConfigError(format!(
            "{flag}: this ssed was built without the jwt feature (cargo build --features jwt)"
        )));
    }
    if bytes.len() < MIN_JWT_SECRET {
        return Err(ConfigError(format!(
            "{flag}: the secret must be at least {MIN_JWT_SECRET} bytes (RFC 7518 §3.2), not {}",
            bytes.len()
        )));
    }
    Ok(Secret(bytes))
}

fn parse_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            ConfigError(format!(
                "--listen: '{text}' is not an address like 127.0.0.1:8080"
            ))
        })
}

/// A whole number from `least` to `most`; `words` says `most` for people.
fn parse_number(name: &str, text: &str, least: u64, most: u64, words: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let too_many = || {
        ConfigError(format!(
            "{name}: {text} is more than the most allowed, {most} ({words})"
        ))
    };
    let n: u64 = match text.parse() {
        Ok(n) => n,
        // All digits, yet not a u64: a number past even u64::MAX.
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => return Err(too_many()),
        Err(_) => return Err(ConfigError(format!("{name}: '{text}' is not a whole number"))),
    };
    if n > most {
        return Err(too_many());
    }
    if n < least {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, {least}"
        )));
    }
    Ok(n)
}

/// [`parse_number`] for a count or size kept as `usize`.
fn parse_count(name: &str, text: &str, least: u64, most: u64, words: &str) -> Result<usize, ConfigError> {
    let n = parse_number(name, text, least, most, words)?;
    // Every bound above fits in 32 bits and ssed runs only where `usize`
    // has at least 32, so this cannot fail; checked rather than cast all
    // the same.
    usize::try_from(n).map_err(|_| ConfigError(format!("{name}: {n} does not fit in memory here")))
}

/// Seconds, fractions allowed (`0.5`), at most `most`; `0` means off
/// (`None`), and anything else is at least [`MIN_DURATION`].
fn parse_period(name: &str, text: &str, most: u64, words: &str) -> Result<Option<Duration>, ConfigError> {
    let text = text.trim();
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|secs: &f64| !secs.is_nan())
        .ok_or_else(|| ConfigError(format!("{name}: '{text}' is not a number of seconds")))?;
    // Compared as f64 before any conversion: `Duration::from_secs_f64`
    // panics on a negative or huge value.
    if secs > most as f64 {
        return Err(ConfigError(format!(
            "{name}: {text} is more than the most allowed, {most} ({words})"
        )));
    }
    if secs < 0.0 {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, 0"
        )));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    let least = MIN_DURATION.as_secs_f64();
    if secs < least {
        return Err(ConfigError(format!(
            "{name}: {text} is less than the least allowed, {least} (1 ms)"
        )));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, ConfigError> {
        match parse(args.iter().map(OsString::from), |_| None)? {
            Command::Run(config) => Ok(config),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = run(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert_eq!(config.tick, Some(Duration::from_secs(1)));
        assert_eq!(config.heartbeat, Some(Duration::from_secs(15)));
        assert_eq!(config.retry_ms, 3000);
        assert_eq!(config.history, 1024);
        assert_eq!(config.max_queue, 1 << 20);
        assert_eq!(config.max_body, 64 << 10);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.cors_origin.as_deref(), Some("*"));
    }

    #[test]
    fn reads_every_flag() {
        let config = run(&[
            "--listen",
            "127.0.0.1:0",
            "--listen=[::1]:9000",
            "--tick",
            "0",
            "--heartbeat",
            "0.5",
            "--retry",
            "100",
            "--history",
            "7",
            "--max-conns",
            "50",
            "--max-queue",
            "4096",
            "--max-body",
            "10",
            "--header-timeout",
            "2",
            "--publish-token",
            "s3",
            "--cors-origin",
            "https://example.com",
            "--stdin",
            "news",
            "--trace",
        ])
        .unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.tick, None);
        assert_eq!(config.heartbeat, Some(Duration::from_millis(500)));
        assert_eq!(config.retry_ms, 100);
        assert_eq!(config.history, 7);
        assert_eq!(config.max_conns, Some(50));
        assert_eq!(config.max_queue, 4096);
        assert_eq!(config.max_body, 10);
        assert_eq!(config.header_timeout, Duration::from_secs(2));
        assert_eq!(config.publish_token.as_deref(), Some("s3"));
        assert_eq!(config.cors_origin.as_deref(), Some("https://example.com"));
        assert_eq!(config.stdin_topic.as_deref(), Some("news"));
        assert!(config.trace);
    }

    #[test]
    fn stdin_topic_is_optional() {
        assert_eq!(run(&["--stdin"]).unwrap().stdin_topic.as_deref(), Some("default"));
        let config = run(&["--stdin", "--trace"]).unwrap();
        assert_eq!(config.stdin_topic.as_deref(), Some("default"));
        assert!(config.trace);
    }

    #[test]
    fn token_from_env_and_empty_cors() {
        let command = parse([], |name| {
            (name == "SSED_PUBLISH_TOKEN").then(|| "env".to_string())
        })
        .unwrap();
        assert!(matches!(command, Command::Run(c) if c.publish_token.as_deref() == Some("env")));
        assert_eq!(run(&["--cors-origin", ""]).unwrap().cors_origin, None);
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse([OsString::from("--help")], |_| None), Ok(Command::Help));
        assert_eq!(parse([OsString::from("-V")], |_| None), Ok(Command::Version));
        for flag in [
            "--listen",
            "--tick",
            "--heartbeat",
            "--retry",
            "--history",
            "--max-conns",
            "--max-queue",
            "--max-body",
            "--header-timeout",
            "--publish-token",
            "--cors-origin",
            "--stdin",
            "--trace",
        ] {
            assert!(HELP.contains(flag), "{flag} in --help");
        }
    }

    #[test]
    fn refuses_bad_values() {
        for args in [
            &["--tick", "soon"][..],
            &["--tick", "-1"],
            &["--tick", "NaN"],
            &["--retry", "1.5"],
            &["--max-conns", "0"],
            &["--header-timeout", "0"],
            &["--listen", "nowhere"],
            &["--listen"],
            &["--bogus"],
            &["--max-queue", "10"],
            &["--cors-origin", "a\nb"],
            &["--retry", "-1"],
            &["--retry", ""],
            &["--heartbeat", "inf"],
            &["--heartbeat", "-inf"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }

    /// Each numeric flag at the ends of its range, and one step past them.
    #[test]
    fn numbers_are_bounded() {
        let huge = "18446744073709551615"; // u64::MAX
        let huger = "18446744073709551616"; // u64::MAX + 1
        for (flag, least, most, under, over) in [
            ("--tick", "0.001", "86400", "0.0009", "86400.001"),
            ("--heartbeat", "0.001", "86400", "0.0009", "86401"),
            ("--header-timeout", "0.001", "3600", "0", "3601"),
            ("--retry", "0", "3600000", "-1", "3600001"),
            ("--history", "0", "1000000", "-1", "1000001"),
            ("--max-conns", "1", "10000000", "0", "10000001"),
            ("--max-queue", "1024", "1073741824", "1023", "1073741825"),
            ("--max-body", "0", "67108864", "-1", "67108865"),
        ] {
            for ok in [least, most] {
                assert!(run(&[flag, ok]).is_ok(), "{flag} {ok}");
            }
            for bad in [under, over, huge, huger] {
                let error = run(&[flag, bad]).expect_err(&format!("{flag} {bad}")).0;
                assert!(error.starts_with(&format!("{flag}: ")), "{error}");
            }
            let error = run(&[flag, over]).unwrap_err().0;
            assert!(
                error.contains(&format!("{over} is more than the most allowed, {most} (")),
                "{error}"
            );
        }
    }

    #[test]
    fn bounds_hold_what_they_promise() {
        // Shutdown adds up to five times --retry to --retry.
        assert!(MAX_RETRY_MS.checked_mul(6).is_some());
        // Frame offsets are u32; an event encodes to at most 7 bytes per
        // body byte ("data: \n" for each empty line), plus a little.
        assert!(MAX_BODY * 8 < u64::from(u32::MAX));
        // The --stdin reader reads a line of --max-body plus one byte.
        assert!(MAX_BODY.checked_add(1).is_some());
        // --max-conns plus the overflow slots, on a 32-bit usize too.
        assert!(MAX_CONNS + 1024 < u64::from(u32::MAX));
        assert!(MAX_QUEUE < u64::from(u32::MAX) && MAX_HISTORY < u64::from(u32::MAX));
    }

    #[test]
    fn help_shows_every_bound() {
        for bound in [
            MAX_PERIOD_SECS,
            MAX_HEADER_TIMEOUT_SECS,
            MAX_RETRY_MS,
            MAX_HISTORY,
            MAX_CONNS,
            MAX_QUEUE,
            MAX_BODY,
        ] {
            assert!(HELP.contains(&format!("at most {bound}]")), "{bound} in --help");
        }
        assert!(HELP.contains(&format!("at least {MIN_QUEUE},")));
        assert!(HELP.contains(&format!("at least {}.", MIN_DURATION.as_secs_f64())));
    }
}
