//! `--bus URL` and `--bus-key NAME`: where the Redis bus is, and the name
//! its keys start with.
//!
//! # Format
//!
//! ```text
//! redis://HOST[:PORT][/DB]        TCP; PORT defaults to 6379, DB to 0
//! redis://[::1]:6379/2            an IPv6 address goes in brackets
//! redis+unix:///PATH[?db=DB]      a Unix socket; PATH is absolute
//! ```
//!
//! DB is 0 to 15, the databases a Redis server has unless configured
//! otherwise. Anything else (`rediss://`, a user or password, another
//! query) is refused rather than ignored: a URL that says more than ssed
//! understands would otherwise connect somewhere the operator did not mean.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use super::ConfigError;

/// Redis's own port, when the URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// The highest database number: Redis has 16 (`databases 16`) by default.
pub const MAX_REDIS_DB: u8 = 15;
/// Most bytes in `--bus-key`: the keys are `<key>:log` and the like, and
/// a key that long is already a typo.
pub const MAX_BUS_KEY: usize = 64;

/// Where the Redis bus is: `--bus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddr {
    /// `redis://HOST:PORT/DB`. The host is kept as written (an IPv6
    /// address without its brackets) and resolved when connecting, so a
    /// name that moves is followed on every reconnect.
    Tcp {
        /// A name, an IPv4 address or an IPv6 address.
        host: String,
        /// The port, 1 to 65535.
        port: u16,
        /// The database, 0 to [`MAX_REDIS_DB`].
        db: u8,
    },
    /// `redis+unix:///PATH?db=DB`.
    Unix {
        /// The socket's absolute path.
        path: PathBuf,
        /// The database, 0 to [`MAX_REDIS_DB`].
        db: u8,
    },
}

impl BusAddr {
    /// Parses a `--bus` URL; the error says what is wrong, without the
    /// flag's name.
    pub fn parse(url: &str) -> Result<BusAddr, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "'{url}' is not a URL like redis://127.0.0.1:6379 or redis+unix:///run/redis.sock"
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" => tcp(rest),
            "redis+unix" => unix(rest),
            "rediss" => Err("TLS (rediss://) is not supported; use redis:// on a trusted network".into()),
            "unix" => Err(format!("write a Unix socket as redis+unix://{rest}")),
            _ => Err(format!("'{scheme}://' is not redis:// or redis+unix://")),
        }
    }
}

fn tcp(rest: &str) -> Result<BusAddr, String> {
    if rest.contains('@') {
        return Err("a user or password in the URL is not supported".into());
    }
    if let Some(at) = rest.find(['?', '#']) {
        return Err(format!("'{}' is not understood in a redis:// URL", &rest[at..]));
    }
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path),
        None => (rest, ""),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("'{authority}' opens a [ it does not close"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'[{host}]' is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("'{after}' after '[{host}]'"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host (redis://HOST:PORT)".into());
    }
    if !host.contains(':')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
    {
        return Err(format!("'{host}' is not a host name or address"));
    }
    let port = match port {
        None => DEFAULT_REDIS_PORT,
        // Digits only: `u16::from_str` would take "+80" too.
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(format!("port '{text}' is not a number from 1 to 65535")),
        },
    };
    let db = match path {
        "" => 0,
        path => db(path)?,
    };
    Ok(BusAddr::Tcp {
        host: host.to_string(),
        port,
        db,
    })
}

fn unix(rest: &str) -> Result<BusAddr, String> {
    if !rest.starts_with('/') {
        return Err(format!(
            "'{rest}' is not an absolute path: a socket is redis+unix:///PATH, three slashes"
        ));
    }
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path == "/" || path.contains('#') {
        return Err(format!("'{path}' is not a socket's path"));
    }
    let db = match query {
        None => 0,
        Some(query) => db(query
            .strip_prefix("db=")
            .ok_or_else(|| format!("'?{query}' is not understood; only ?db=N is"))?)?,
    };
    Ok(BusAddr::Unix {
        path: PathBuf::from(path),
        db,
    })
}

/// A database number, 0 to [`MAX_REDIS_DB`].
fn db(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(db) if db <= MAX_REDIS_DB && text.bytes().all(|b| b.is_ascii_digit()) => Ok(db),
        _ => Err(format!(
            "database '{text}' is not a number from 0 to {MAX_REDIS_DB}"
        )),
    }
}

impl fmt::Display for BusAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddr::Tcp { host, port, db } if host.contains(':') => {
                write!(f, "redis://[{host}]:{port}/{db}")
            }
            BusAddr::Tcp { host, port, db } => write!(f, "redis://{host}:{port}/{db}"),
            BusAddr::Unix { path, db } => write!(f, "redis+unix://{}?db={db}", path.display()),
        }
    }
}

/// A `--bus-key`: 1 to [`MAX_BUS_KEY`] bytes of `A-Z a-z 0-9 : _ . -`, so
/// that it never needs quoting, in a Redis key or in a log line.
pub(super) fn key(name: &str, text: &str) -> Result<String, ConfigError> {
    let rule = format!("a key is 1 to {MAX_BUS_KEY} of A-Z a-z 0-9 : _ . -");
    if text.is_empty() {
        return Err(ConfigError(format!("{name}: the key is empty; {rule}")));
    }
    if text.len() > MAX_BUS_KEY {
        return Err(ConfigError(format!(
            "{name}: the key is {} bytes, more than the most allowed, {MAX_BUS_KEY}",
            text.len()
        )));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-".contains(*c)))
    {
        return Err(ConfigError(format!("{name}: '{text}' has {bad:?}; {rule}")));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, db: u8) -> BusAddr {
        BusAddr::Tcp {
            host: host.to_string(),
            port,
            db,
        }
    }

    fn unix(path: &str, db: u8) -> BusAddr {
        BusAddr::Unix {
            path: PathBuf::from(path),
            db,
        }
    }

    #[test]
    fn good_urls() {
        for (url, want) in [
            ("redis://127.0.0.1:6379", tcp("127.0.0.1", 6379, 0)),
            ("redis://localhost", tcp("localhost", 6379, 0)),
            ("redis://redis.internal:7000/3", tcp("redis.internal", 7000, 3)),
            ("redis://my_redis:1/", tcp("my_redis", 1, 0)),
            ("REDIS://h:65535/15", tcp("h", 65535, 15)),
            ("redis://[::1]:6380/2", tcp("::1", 6380, 2)),
            ("redis://[fe80::1]", tcp("fe80::1", 6379, 0)),
            ("redis+unix:///run/redis.sock", unix("/run/redis.sock", 0)),
            ("redis+unix:///tmp/r.sock?db=15", unix("/tmp/r.sock", 15)),
        ] {
            assert_eq!(BusAddr::parse(url), Ok(want.clone()), "{url}");
            // What Display writes parses back to the same address.
            assert_eq!(BusAddr::parse(&want.to_string()), Ok(want), "{url}");
        }
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, says) in [
            ("127.0.0.1:6379", "is not a URL like"),
            ("http://h:1", "'http://' is not redis:// or redis+unix://"),
            ("rediss://h:1", "TLS (rediss://) is not supported"),
            ("unix:///run/r.sock", "redis+unix:///run/r.sock"),
            ("redis://", "names no host"),
            ("redis://:6379", "names no host"),
            ("redis://h:0", "port '0' is not a number from 1 to 65535"),
            ("redis://h:65536", "port '65536'"),
            ("redis://h:", "port ''"),
            ("redis://h:+80", "port '+80'"),
            ("redis://h:x", "port 'x'"),
            ("redis://h:1/16", "database '16' is not a number from 0 to 15"),
            ("redis://h:1/-1", "database '-1'"),
            ("redis://h:1/+1", "database '+1'"),
            ("redis://h:1/1/2", "database '1/2'"),
            ("redis://h:1/x", "database 'x'"),
            ("redis://user:pw@h:1", "a user or password"),
            ("redis://h:1?timeout=1", "'?timeout=1' is not understood"),
            ("redis://h:1#x", "'#x' is not understood"),
            ("redis://[::1", "opens a ["),
            ("redis://[nope]:1", "'[nope]' is not an IPv6 address"),
            ("redis://[::1]x", "'x' after '[::1]'"),
            ("redis://h h:1", "'h h' is not a host name"),
            ("redis+unix://host/run/r.sock", "is not an absolute path"),
            ("redis+unix://", "is not an absolute path"),
            ("redis+unix:///", "'/' is not a socket's path"),
            ("redis+unix:///r.sock?db=16", "database '16'"),
            ("redis+unix:///r.sock?timeout=1", "only ?db=N is"),
        ] {
            let error = BusAddr::parse(url).expect_err(url);
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn keys() {
        for good in ["ssed", "a", "app:events", "a.b-c_d:1", &"k".repeat(MAX_BUS_KEY)] {
            assert_eq!(key("--bus-key", good).as_deref(), Ok(good), "{good}");
        }
        for (bad, says) in [
            ("", "--bus-key: the key is empty"),
            (
                &"k".repeat(MAX_BUS_KEY + 1),
                "--bus-key: the key is 65 bytes, more than the most allowed, 64",
            ),
            ("a b", "--bus-key: 'a b' has ' '"),
            ("a*", "has '*'"),
            ("a{b}", "has '{'"),
            ("é", "has 'é'"),
            ("a\nb", "has '\\n'"),
        ] {
            let error = key("--bus-key", bad).unwrap_err().0;
            assert!(
                error.starts_with("--bus-key: ") && error.contains(says),
                "{bad:?}: {error}"
            );
        }
    }
}
