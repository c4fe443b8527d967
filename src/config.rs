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

use crate::hub;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Everything the server needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    /// Ticker period; `None` disables it.
    pub tick: Option<Duration>,
    /// Heartbeat after this much silence; `None` disables it.
    pub heartbeat: Option<Duration>,
    pub retry_ms: u64,
    pub history: usize,
    /// `None`: derived from the open-file limit at start.
    pub max_conns: Option<usize>,
    pub max_queue: usize,
    pub max_body: usize,
    pub header_timeout: Duration,
    pub publish_token: Option<String>,
    /// `Access-Control-Allow-Origin`; `None` sends no CORS headers.
    pub cors_origin: Option<String>,
    /// `--stdin`: publish each line of standard input to this topic.
    pub stdin_topic: Option<String>,
    pub trace: bool,
}

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
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
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

pub const HELP: &str = "\
ssed - a small Server-Sent Events daemon

USAGE:
    ssed [OPTIONS]

OPTIONS:
    --listen ADDR          address to serve on; repeat for several   [default: 127.0.0.1:8080]
    --tick SECS            ticker period, 0 disables                 [default: 1]
    --heartbeat SECS       ': ping' to streams silent this long, 0 disables  [default: 15]
    --retry MS             reconnection hint sent on connect         [default: 3000]
    --history N            events kept for Last-Event-ID replay      [default: 1024]
    --max-conns N          most open connections                     [default: open-file limit - 128]
    --max-queue BYTES      unsent bytes per subscriber before eviction  [default: 1048576]
    --max-body BYTES       largest publish body                      [default: 65536]
    --header-timeout SECS  time to receive a whole request           [default: 10]
    --publish-token TOKEN  require 'Authorization: Bearer TOKEN' to publish
                           (also env SSED_PUBLISH_TOKEN)             [default: none]
    --cors-origin ORIGIN   Access-Control-Allow-Origin; '' sends none  [default: *]
    --stdin [TOPIC]        publish each line of standard input       [default topic: default]
    --trace                log every byte in and out, escaped
    -h, --help             print this help
    -V, --version          print the version

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
            "--tick" => config.tick = parse_secs("--tick", &value("--tick")?)?,
            "--heartbeat" => config.heartbeat = parse_secs("--heartbeat", &value("--heartbeat")?)?,
            "--retry" => config.retry_ms = parse_number("--retry", &value("--retry")?)?,
            "--history" => config.history = parse_number("--history", &value("--history")?)?,
            "--max-conns" => {
                let n: usize = parse_number("--max-conns", &value("--max-conns")?)?;
                if n == 0 {
                    return Err(ConfigError("--max-conns must be at least 1".into()));
                }
                config.max_conns = Some(n);
            }
            "--max-queue" => config.max_queue = parse_number("--max-queue", &value("--max-queue")?)?,
            "--max-body" => config.max_body = parse_number("--max-body", &value("--max-body")?)?,
            "--header-timeout" => {
                config.header_timeout = parse_secs("--header-timeout", &value("--header-timeout")?)?
                    .ok_or_else(|| ConfigError("--header-timeout must be more than 0".into()))?;
            }
            "--publish-token" => {
                let token = value("--publish-token")?;
                config.publish_token = (!token.is_empty()).then_some(token);
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
                    None => hub::DEFAULT_TOPIC.to_string(),
                };
                hub::validate_topic(&topic).map_err(|e| ConfigError(format!("--stdin: {e}")))?;
                config.stdin_topic = Some(topic);
            }
            "--trace" => config.trace = true,
            other => return Err(ConfigError(format!("unknown option '{other}' (see --help)"))),
        }
    }
    if !listen.is_empty() {
        config.listen = listen;
    }
    if config.max_queue < 1024 {
        return Err(ConfigError("--max-queue must be at least 1024 bytes".into()));
    }
    Ok(Command::Run(config))
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

fn parse_number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError(format!("{name}: '{text}' is not a whole number")))
}

/// Seconds, fractions allowed (`0.5`); `0` means off.
fn parse_secs(name: &str, text: &str) -> Result<Option<Duration>, ConfigError> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| ConfigError(format!("{name}: '{text}' is not a number of seconds")))?;
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(ConfigError(format!("{name}: '{text}' is out of range")));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
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
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
    }
}
