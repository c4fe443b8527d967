//! The command line and the environment, validated into a [`Config`].
//!
//! Every flag is one row of a table (`config/flags.rs`): its name, what it
//! takes, its `--help` line, and the function that checks a value and
//! sets it. Parsing is two steps, as in ripgrep (`lowargs.rs`, then
//! `hiargs.rs`): first collect the raw text of each flag, from the
//! command line and then from the environment for the flags the command
//! line left out; then check each text and build the [`Config`].
//!
//! ```text
//! argv ── read_args ──▶ raw: per flag, its texts and where they came
//!                        │   from ("--tick", or "SSED_TICK" below)
//! SSED_* ─ read_env ───▶ │   (only flags the command line did not give)
//!                        ▼
//!                  apply each row's check ──▶ Config, or an error that
//!                                             names the flag or variable
//! ```
//!
//! Because the variable's name is derived from the flag's, and `--help` is
//! printed from the same rows, the three cannot drift apart.

mod bus;
mod flags;
mod values;

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use bus::{BusAddr, DEFAULT_REDIS_PORT, MAX_BUS_KEY, MAX_REDIS_DB};
pub use flags::HelpText;
use flags::{Takes, FLAGS};

/// Where the daemon serves unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The bus's keys start with this unless `--bus-key` says otherwise.
pub const DEFAULT_BUS_KEY: &str = "ssed";

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
/// Most `--bus-retention`: a hundred million entries of the shared stream,
/// all held in Redis's memory; a thousand times the default.
pub const MAX_BUS_RETENTION: u64 = 100_000_000;

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
    /// `--bus`: the Redis (or Valkey) server whose stream this process
    /// shares with others; `None`, a process on its own.
    pub bus: Option<BusAddr>,
    /// `--bus-key`: what the bus's Redis keys start with (`<key>:log`).
    pub bus_key: String,
    /// `--bus-retention`: about how many entries the shared stream keeps
    /// (`XADD ... MAXLEN ~`).
    pub bus_retention: u64,
    /// `--reuseport`: `SO_REUSEPORT` on every listener, so that several
    /// processes can listen on one address and the kernel spreads new
    /// connections over them.
    pub reuseport: bool,
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
            bus: None,
            bus_key: DEFAULT_BUS_KEY.to_string(),
            bus_retention: 100_000,
            reuseport: false,
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

/// The `--help` text, printed from the table of flags.
pub const HELP: HelpText = HelpText;

/// What one flag was given: where from, and its texts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Given {
    /// The flag (`--tick`) or variable (`SSED_TICK`), for messages.
    name: String,
    /// Its values, in order; several only for a flag that repeats (or one
    /// given twice, where the last wins).
    texts: Vec<String>,
}

/// Per row of [`FLAGS`], what it was given, if anything.
type Raw = Vec<Option<Given>>;

/// Parses the arguments after the program name. `env` looks up environment
/// variables (passed in so tests need not touch the real environment).
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, ConfigError> {
    let args: Vec<String> = args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| ConfigError(format!("argument is not UTF-8: {arg:?}")))
        })
        .collect::<Result<_, _>>()?;
    let mut raw = match read_args(args)? {
        Read::Flags(raw) => raw,
        Read::Help => return Ok(Command::Help),
        Read::Version => return Ok(Command::Version),
    };
    read_env(&mut raw, env)?;
    refuse_both_of_a_pair(&raw)?;
    let config = apply(&raw)?;
    Ok(Command::Run(config))
}

/// The command line, read but not checked.
enum Read {
    /// The raw texts per flag; only the flags' names are checked.
    Flags(Raw),
    /// `--help`, which wins over anything else, checked or not.
    Help,
    /// `--version`, likewise.
    Version,
}

/// Reads the command line into raw texts per flag.
fn read_args(args: Vec<String>) -> Result<Read, ConfigError> {
    let mut raw: Raw = vec![None; FLAGS.len()];
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let (word, inline) = match arg.split_once('=') {
            Some((word, value)) if word.starts_with("--") => (word, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match word {
            "-h" | "--help" => return Ok(Read::Help),
            "-V" | "--version" => return Ok(Read::Version),
            _ => {}
        }
        let Some((index, flag)) = word.strip_prefix("--").and_then(flags::find) else {
            return Err(ConfigError(format!("unknown option '{word}' (see --help)")));
        };
        let text = match (&flag.takes, inline) {
            (_, Some(text)) => text,
            (Takes::Value(_), None) => args
                .next()
                .ok_or_else(|| ConfigError(format!("{word} needs a value")))?,
            (Takes::MaybeValue(_, bare), None) => args
                .next_if(|next| !next.starts_with('-'))
                .unwrap_or_else(|| bare.to_string()),
            (Takes::Switch, None) => "true".to_string(),
        };
        raw[index]
            .get_or_insert_with(|| Given {
                name: flag.long(),
                texts: Vec::new(),
            })
            .texts
            .push(text);
    }
    Ok(Read::Flags(raw))
}

/// Fills in, from `SSED_*`, each flag the command line did not give. An
/// empty variable counts as unset; a repeating flag's variable is a
/// comma-separated list.
fn read_env(raw: &mut Raw, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let on_command_line: Vec<bool> = raw.iter().map(Option::is_some).collect();
    for (index, flag) in FLAGS.iter().enumerate() {
        let pair_given = flag
            .same_as
            .and_then(flags::find)
            .is_some_and(|(other, _)| on_command_line[other]);
        if on_command_line[index] || pair_given {
            continue;
        }
        let name = flag.env();
        let Some(text) = env(&name).filter(|text| !text.is_empty()) else {
            continue;
        };
        let texts = if flag.repeats {
            let items: Vec<String> = text.split(',').map(|item| item.trim().to_string()).collect();
            if items.iter().any(String::is_empty) {
                return Err(ConfigError(format!("{name}: an empty item in the list '{text}'")));
            }
            items
        } else {
            vec![text]
        };
        raw[index] = Some(Given { name, texts });
    }
    Ok(())
}

/// Two flags that set one thing (`--jwt-secret`, `--jwt-secret-file`)
/// cannot both be given: which should win is anyone's guess.
fn refuse_both_of_a_pair(raw: &Raw) -> Result<(), ConfigError> {
    for (flag, given) in FLAGS.iter().zip(raw) {
        let (Some(given), Some((other, _))) = (given, flag.same_as.and_then(flags::find)) else {
            continue;
        };
        if let Some(other) = &raw[other] {
            return Err(ConfigError(format!(
                "{} and {} set the same thing: give one",
                given.name, other.name
            )));
        }
    }
    Ok(())
}

/// Checks every text and builds the [`Config`], defaults filling the rest.
fn apply(raw: &Raw) -> Result<Config, ConfigError> {
    // `--listen` adds to the list, so the list starts empty and gets its
    // default only if nothing was added.
    let mut config = Config {
        listen: Vec::new(),
        ..Config::default()
    };
    for (flag, given) in FLAGS.iter().zip(raw) {
        let Some(given) = given else { continue };
        for text in &given.texts {
            (flag.apply)(&mut config, &given.name, text)?;
        }
    }
    if config.listen.is_empty() {
        config.listen = Config::default().listen;
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
