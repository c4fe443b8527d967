//! Every flag, once: its name, what it takes, its line in `--help`, and
//! the function that checks its value and sets it in the [`Config`].
//!
//! The command line, the environment and `--help` all read this one table
//! (ripgrep's `crates/core/flags/defs.rs` is the model), so a flag cannot
//! be parsed without being documented, nor come from one place and not the
//! other. Its variable is derived from its name, never written by hand:
//! `--max-conns` is `SSED_MAX_CONNS`.

use std::fmt;

use super::{bus, values, BusAddr};
use super::{Config, ConfigError};
use super::{MAX_BODY, MAX_BUS_RETENTION, MAX_CONNS, MAX_HEADER_TIMEOUT_SECS, MAX_HISTORY};
use super::{MAX_PERIOD_SECS, MAX_QUEUE, MAX_RETRY_MS, MIN_QUEUE};
use crate::topics;

/// One flag.
pub(super) struct Flag {
    /// The long name, without the dashes: `max-conns`.
    pub name: &'static str,
    /// What follows it.
    pub takes: Takes,
    /// May be given several times, each adding a value; from the
    /// environment, a comma-separated list.
    pub repeats: bool,
    /// Another flag that sets the same thing (`--jwt-secret` and
    /// `--jwt-secret-file`): giving both from one place is an error, and
    /// either on the command line hides both variables.
    pub same_as: Option<&'static str>,
    /// What it does, for `--help`.
    pub help: &'static str,
    /// Its default and range, for `--help`, as `[...]` shows them. The
    /// numbers are the constants in `config.rs`; a test holds them equal.
    pub range: &'static str,
    /// Checks one value and sets it. `name` is the flag or the variable as
    /// the user wrote it, for messages.
    pub apply: fn(&mut Config, &str, &str) -> Result<(), ConfigError>,
}

/// What follows a flag.
pub(super) enum Takes {
    /// A value, named in `--help`: `--tick 1`, `--tick=1`, `SSED_TICK=1`.
    Value(&'static str),
    /// A value that may be left out (`--stdin`, `--stdin news`); alone, the
    /// flag means the second field. The next argument is its value unless
    /// it starts with `-`.
    MaybeValue(&'static str, &'static str),
    /// Nothing: `--trace`. `--trace=false` and `SSED_TRACE=0` say no.
    Switch,
}

impl Flag {
    /// `--name`.
    pub fn long(&self) -> String {
        format!("--{}", self.name)
    }

    /// Its environment variable: `SSED_` and the name in capitals, `_` for `-`.
    pub fn env(&self) -> String {
        format!("SSED_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    /// `--name VALUE`, as the usage column shows it.
    fn usage(&self) -> String {
        match self.takes {
            Takes::Value(value) => format!("--{} {value}", self.name),
            Takes::MaybeValue(value, _) => format!("--{} [{value}]", self.name),
            Takes::Switch => self.long(),
        }
    }
}

/// The flag called `name` (without dashes).
pub(super) fn find(name: &str) -> Option<(usize, &'static Flag)> {
    FLAGS.iter().enumerate().find(|(_, flag)| flag.name == name)
}

/// Every flag, in the order `--help` lists them.
pub(super) static FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        takes: Takes::Value("ADDR"),
        repeats: true,
        same_as: None,
        help: "address to serve on; repeat for several",
        range: "default: 127.0.0.1:8080",
        apply: |config, name, text| {
            config.listen.push(values::addr(name, text)?);
            Ok(())
        },
    },
    Flag {
        name: "tick",
        takes: Takes::Value("SECS"),
        repeats: false,
        same_as: None,
        help: "ticker period, 0 disables",
        range: "default: 1, at most 86400",
        apply: |config, name, text| {
            config.tick = values::period(name, text, MAX_PERIOD_SECS, "1 day")?;
            Ok(())
        },
    },
    Flag {
        name: "heartbeat",
        takes: Takes::Value("SECS"),
        repeats: false,
        same_as: None,
        help: "': ping' to streams silent this long, 0 disables",
        range: "default: 15, at most 86400",
        apply: |config, name, text| {
            config.heartbeat = values::period(name, text, MAX_PERIOD_SECS, "1 day")?;
            Ok(())
        },
    },
    Flag {
        name: "retry",
        takes: Takes::Value("MS"),
        repeats: false,
        same_as: None,
        help: "reconnection hint sent on connect",
        range: "default: 3000, at most 3600000",
        apply: |config, name, text| {
            config.retry_ms = values::number(name, text, 0, MAX_RETRY_MS, "1 hour")?;
            Ok(())
        },
    },
    Flag {
        name: "history",
        takes: Takes::Value("N"),
        repeats: false,
        same_as: None,
        help: "events kept for Last-Event-ID replay",
        range: "default: 1024, at most 1000000",
        apply: |config, name, text| {
            config.history = values::count(name, text, 0, MAX_HISTORY, "a million")?;
            Ok(())
        },
    },
    Flag {
        name: "max-conns",
        takes: Takes::Value("N"),
        repeats: false,
        same_as: None,
        help: "most open connections",
        range: "default: open-file limit - 128, at most 10000000",
        apply: |config, name, text| {
            config.max_conns = Some(values::count(name, text, 1, MAX_CONNS, "ten million")?);
            Ok(())
        },
    },
    Flag {
        name: "max-queue",
        takes: Takes::Value("BYTES"),
        repeats: false,
        same_as: None,
        help: "unsent bytes per subscriber before eviction",
        range: "default: 1048576, at least 1024, at most 1073741824",
        apply: |config, name, text| {
            config.max_queue = values::count(name, text, MIN_QUEUE, MAX_QUEUE, "1 GiB")?;
            Ok(())
        },
    },
    Flag {
        name: "max-body",
        takes: Takes::Value("BYTES"),
        repeats: false,
        same_as: None,
        help: "largest publish body",
        range: "default: 65536, at most 67108864",
        apply: |config, name, text| {
            config.max_body = values::count(name, text, 0, MAX_BODY, "64 MiB")?;
            Ok(())
        },
    },
    Flag {
        name: "header-timeout",
        takes: Takes::Value("SECS"),
        repeats: false,
        same_as: None,
        help: "time to receive a whole request",
        range: "default: 10, at most 3600",
        apply: |config, name, text| {
            config.header_timeout = values::period(name, text, MAX_HEADER_TIMEOUT_SECS, "1 hour")?
                .ok_or_else(|| ConfigError(format!("{name}: {} must be more than 0", text.trim())))?;
            Ok(())
        },
    },
    Flag {
        name: "publish-token",
        takes: Takes::Value("TOKEN"),
        repeats: false,
        same_as: None,
        help: "require 'Authorization: Bearer TOKEN' to publish",
        range: "default: none",
        apply: |config, _, token| {
            config.publish_token = (!token.is_empty()).then(|| token.to_string());
            Ok(())
        },
    },
    Flag {
        name: "jwt-secret",
        takes: Takes::Value("SECRET"),
        repeats: false,
        same_as: Some("jwt-secret-file"),
        help: "subscribers need a JWT signed with SECRET (HS256)",
        range: "at least 32 bytes",
        apply: |config, name, secret| {
            config.jwt_secret = Some(values::jwt_secret(name, secret.as_bytes().to_vec())?);
            Ok(())
        },
    },
    Flag {
        name: "jwt-secret-file",
        takes: Takes::Value("PATH"),
        repeats: false,
        same_as: Some("jwt-secret"),
        help: "the same, read from a file (trailing whitespace dropped)",
        range: "",
        apply: |config, name, path| {
            config.jwt_secret = Some(values::jwt_secret_file(name, path)?);
            Ok(())
        },
    },
    Flag {
        name: "cors-origin",
        takes: Takes::Value("ORIGIN"),
        repeats: false,
        same_as: None,
        help: "Access-Control-Allow-Origin; '' sends none",
        range: "default: *",
        apply: |config, name, origin| {
            if origin.contains(['\r', '\n']) {
                return Err(ConfigError(format!("{name} must be one line")));
            }
            config.cors_origin = (!origin.is_empty()).then(|| origin.to_string());
            Ok(())
        },
    },
    Flag {
        name: "stdin",
        takes: Takes::MaybeValue("TOPIC", topics::DEFAULT_TOPIC),
        repeats: false,
        same_as: None,
        help: "publish each line of standard input",
        range: "default topic: default",
        apply: |config, name, topic| {
            topics::validate_topic(topic).map_err(|e| ConfigError(format!("{name}: {e}")))?;
            config.stdin_topic = Some(topic.to_string());
            Ok(())
        },
    },
    Flag {
        name: "trace",
        takes: Takes::Switch,
        repeats: false,
        same_as: None,
        help: "log every byte in and out, escaped",
        range: "",
        apply: |config, name, text| {
            config.trace = values::switch(name, text)?;
            Ok(())
        },
    },
    Flag {
        name: "bus",
        takes: Takes::Value("URL"),
        repeats: false,
        same_as: None,
        help: "share one ordered stream with other processes through Redis",
        range: "redis://HOST[:PORT][/DB] or redis+unix:///PATH[?db=DB]",
        apply: |config, name, url| {
            let addr = BusAddr::parse(url).map_err(|e| ConfigError(format!("{name}: {e}")))?;
            config.bus = Some(addr);
            Ok(())
        },
    },
    Flag {
        name: "bus-key",
        takes: Takes::Value("NAME"),
        repeats: false,
        same_as: None,
        help: "what the bus's Redis keys start with",
        range: "default: ssed, 1 to 64 of A-Z a-z 0-9 : _ . -",
        apply: |config, name, key| {
            config.bus_key = bus::key(name, key)?;
            Ok(())
        },
    },
    Flag {
        name: "bus-retention",
        takes: Takes::Value("N"),
        repeats: false,
        same_as: None,
        help: "entries the shared stream keeps",
        range: "default: 100000, at least 1, at most 100000000",
        apply: |config, name, text| {
            config.bus_retention = values::number(name, text, 1, MAX_BUS_RETENTION, "a hundred million")?;
            Ok(())
        },
    },
    Flag {
        name: "reuseport",
        takes: Takes::Switch,
        repeats: false,
        same_as: None,
        help: "SO_REUSEPORT on every listener, so several processes share a port",
        range: "",
        apply: |config, name, text| {
            config.reuseport = values::switch(name, text)?;
            Ok(())
        },
    },
];

/// The `--help` text, made from the table of flags when printed.
#[derive(Debug, Clone, Copy)]
pub struct HelpText;

/// Past this, `[default ...]` goes on a line of its own.
const LINE_WIDTH: usize = 100;

impl fmt::Display for HelpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssed - a small Server-Sent Events daemon\n\nUSAGE:\n    ssed [OPTIONS]\n\nOPTIONS:\n")?;
        // The descriptions start two spaces after the longest usage.
        let width = FLAGS.iter().map(|flag| flag.usage().len()).max().unwrap_or(0) + 2;
        for flag in FLAGS {
            let (help, range) = (flag.help, flag.range);
            write!(f, "    {:<width$}{help}", flag.usage())?;
            if range.is_empty() {
                writeln!(f)?;
            } else if 4 + width + help.len() + 2 + range.len() + 2 <= LINE_WIDTH {
                writeln!(f, "  [{range}]")?;
            } else {
                writeln!(f, "\n    {:width$}[{range}]", "")?;
            }
        }
        writeln!(f, "    {:<width$}print this help", "-h, --help")?;
        writeln!(f, "    {:<width$}print the version", "-V, --version")?;
        f.write_str(FOOTER)
    }
}

const FOOTER: &str = "
Every flag can also come from the environment: SSED_ and its name in
capitals with _ for - (SSED_LISTEN, SSED_JWT_SECRET, ...). A flag on the
command line wins over the environment. A repeated flag takes a
comma-separated list (SSED_LISTEN=127.0.0.1:8080,[::1]:8080), a switch
takes 1, true, 0 or false, and an empty variable counts as unset
(SSED_STDIN=default reads standard input into the default topic).

Seconds may have a fraction (0.5); one that is not 0 is at least 0.001.
A number outside its range is refused.

Logging goes to standard error; set the level with RUST_LOG (default: info).
SIGINT or SIGTERM shuts down gracefully.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_derived_from_names() {
        for (name, env) in [
            ("listen", "SSED_LISTEN"),
            ("max-conns", "SSED_MAX_CONNS"),
            ("jwt-secret-file", "SSED_JWT_SECRET_FILE"),
        ] {
            assert_eq!(find(name).map(|(_, flag)| flag.env()).as_deref(), Some(env));
        }
    }

    #[test]
    fn the_table_holds_together() {
        for (i, flag) in FLAGS.iter().enumerate() {
            assert_eq!(
                find(flag.name).map(|(at, _)| at),
                Some(i),
                "{} is named once",
                flag.name
            );
            assert!(
                flag.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                flag.name
            );
            if let Some(other) = flag.same_as {
                let (_, other) = find(other).expect("same_as names a flag");
                assert_eq!(other.same_as, Some(flag.name), "same_as goes both ways");
            }
            let help = HelpText.to_string();
            assert!(
                help.contains(&format!("    {} ", flag.usage())),
                "{} in --help",
                flag.name
            );
        }
    }

    #[test]
    fn help_lines_stay_narrow() {
        for line in HelpText.to_string().lines() {
            assert!(line.len() <= LINE_WIDTH, "{line}");
        }
    }
}
