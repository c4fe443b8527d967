//! The command line, parsed by hand (a dozen flags do not need a parser
//! crate) and validated into [`Options`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const USAGE: &str = "\
ssed-load: many idle SSE subscribers, fan-out latency and bursts, against any SSE server

USAGE:
    ssed-load [OPTIONS]

TARGET
    --target HOST:PORT        where subscribers connect (default 127.0.0.1:8080)
    --subscribe-path PATH     stream location (default /events)
    --publish-url URL         where events are POSTed; the body is the event data
                              (default http://TARGET/publish?topic=load)
    --publish-header 'K: V'   extra header on publish requests (repeatable),
                              e.g. 'Authorization: Bearer TOKEN'
    --pid PID                 the server process (for nginx: the worker), to read
                              RSS and CPU time from /proc/PID
    --allow-remote            allow a target outside loopback (127.0.0.0/8, ::1)

LOAD
    --subscribers N           concurrent subscribers (default 1000)
    --sources K               spread subscribers over K source addresses 127.0.0.2..
                              (0: let the kernel choose; default: 0 below 1024
                              subscribers, else one address per 4096)
    --connect-window N        connects in flight at once (default 1024)
    --threads T               subscriber event loops (default 1)
    --event-size BYTES        event data size, 'seq=N ' then padding (default 64)
    --idle-secs S             idle window for server CPU and RSS (default 3)
    --singles K               single events, each waited for (default 20)
    --spacing-ms MS           pause between single events (default 250)
    --burst B                 pipelined burst: B publishes in one write (default 500; 0 skips)
    --seq-burst B             sequential burst: B publishes, each awaiting its answer
                              (default 100; 0 skips)

TIME
    --connect-timeout S       all response heads must arrive within S (default 30)
    --phase-timeout S         each burst / single event must be delivered within S
                              (default 60)
    --duration S              hard limit for the whole run; exits 3 past it (default 300)

OUTPUT
    --label TEXT              put in the JSON line (default: the target)
    --help
";

#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    pub subscribe_path: String,
    pub publish: PublishUrl,
    pub publish_headers: Vec<String>,
    pub pid: Option<u32>,
    pub subscribers: usize,
    pub sources: usize,
    pub connect_window: usize,
    pub threads: usize,
    pub event_size: usize,
    pub idle: Duration,
    pub singles: usize,
    pub spacing: Duration,
    pub burst: usize,
    pub seq_burst: usize,
    pub connect_timeout: Duration,
    pub phase_timeout: Duration,
    pub duration: Duration,
    pub label: String,
}

/// `http://host:port/path?query`, resolved.
#[derive(Debug, Clone)]
pub struct PublishUrl {
    pub addr: SocketAddr,
    /// What goes in the `Host` header.
    pub authority: String,
    /// Path and query, as sent in the request line.
    pub target: String,
}

impl PublishUrl {
    pub fn parse(url: &str) -> Result<PublishUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--publish-url {url:?}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let with_port = if authority.starts_with('[') {
            if authority.contains("]:") {
                authority.to_string()
            } else {
                format!("{authority}:80")
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = resolve(&with_port)?;
        Ok(PublishUrl {
            addr,
            authority: authority.to_string(),
            target: target.to_string(),
        })
    }
}

fn resolve(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text}: no address"))
}

/// Loopback: 127.0.0.0/8 or ::1 (or an IPv4-mapped 127.x).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value:?}"))
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = number(flag, value)?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{flag}: out of range: {value}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `Ok(None)` means `--help` was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut target = "127.0.0.1:8080".to_string();
    let mut subscribe_path = "/events".to_string();
    let mut publish_url = None;
    let mut publish_headers = Vec::new();
    let mut pid = None;
    let mut allow_remote = false;
    let mut subscribers = 1000usize;
    let mut sources = None;
    let mut connect_window = 1024usize;
    let mut threads = 1usize;
    let mut event_size = 64usize;
    let mut idle = Duration::from_secs(3);
    let mut singles = 20usize;
    let mut spacing = Duration::from_millis(250);
    let mut burst = 500usize;
    let mut seq_burst = 100usize;
    let mut connect_timeout = Duration::from_secs(30);
    let mut phase_timeout = Duration::from_secs(60);
    let mut duration = Duration::from_secs(300);
    let mut label = None;

    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if flag == "--allow-remote" {
            allow_remote = true;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: needs a value (see --help)"))?;
        match flag.as_str() {
            "--target" => target = value,
            "--subscribe-path" => subscribe_path = value,
            "--publish-url" => publish_url = Some(value),
            "--publish-header" => {
                if !value.contains(':') || value.contains(['\r', '\n']) {
                    return Err(format!("--publish-header {value:?}: want 'Name: value'"));
                }
                publish_headers.push(value);
            }
            "--pid" => pid = Some(number(&flag, &value)?),
            "--subscribers" => subscribers = number(&flag, &value)?,
            "--sources" => sources = Some(number(&flag, &value)?),
            "--connect-window" => connect_window = number(&flag, &value)?,
            "--threads" => threads = number(&flag, &value)?,
            "--event-size" => event_size = number(&flag, &value)?,
            "--idle-secs" => idle = seconds(&flag, &value)?,
            "--singles" => singles = number(&flag, &value)?,
            "--spacing-ms" => spacing = Duration::from_millis(number(&flag, &value)?),
            "--burst" => burst = number(&flag, &value)?,
            "--seq-burst" => seq_burst = number(&flag, &value)?,
            "--connect-timeout" => connect_timeout = seconds(&flag, &value)?,
            "--phase-timeout" => phase_timeout = seconds(&flag, &value)?,
            "--duration" => duration = seconds(&flag, &value)?,
            "--label" => label = Some(value),
            _ => return Err(format!("unknown flag {flag:?} (see --help)")),
        }
    }
    let target_addr = resolve(&target)?;
    let publish =
        PublishUrl::parse(&publish_url.unwrap_or_else(|| format!("http://{target}/publish?topic=load")))?;
    if !allow_remote {
        for (what, ip) in [
            ("--target", target_addr.ip()),
            ("--publish-url", publish.addr.ip()),
        ] {
            if !is_loopback(ip) {
                return Err(format!(
                    "{what} {ip} is not loopback; pass --allow-remote to load another machine"
                ));
            }
        }
    }
    if !subscribe_path.starts_with('/') || subscribe_path.contains(['\r', '\n', ' ']) {
        return Err(format!("--subscribe-path {subscribe_path:?}: want /path"));
    }
    if subscribers == 0 {
        return Err("--subscribers: at least 1".into());
    }
    if threads == 0 || threads > 64 {
        return Err("--threads: 1 to 64".into());
    }
    if connect_window == 0 {
        return Err("--connect-window: at least 1".into());
    }
    if event_size < 16 {
        return Err("--event-size: at least 16 bytes (room for 'seq=N ')".into());
    }
    let spread_ok = matches!(target_addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let sources = match sources {
        Some(k) if k > 0 && !spread_ok => {
            return Err("--sources: spreading source addresses needs an IPv4 loopback target".into())
        }
        Some(k) if k > 250 => return Err("--sources: at most 250".into()),
        Some(k) => k,
        None if spread_ok && subscribers >= 1024 => subscribers.div_ceil(4096),
        None => 0,
    };
    Ok(Some(Options {
        label: label.unwrap_or_else(|| target.clone()),
        target: target_addr,
        subscribe_path,
        publish,
        publish_headers,
        pid,
        subscribers,
        sources,
        connect_window,
        threads,
        event_size,
        idle,
        singles,
        spacing,
        burst,
        seq_burst,
        connect_timeout,
        phase_timeout,
        duration,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_publish_url() {
        let o = args(&[]).unwrap().unwrap();
        assert_eq!(o.target.to_string(), "127.0.0.1:8080");
        assert_eq!(o.publish.target, "/publish?topic=load");
        assert_eq!(o.publish.authority, "127.0.0.1:8080");
        assert_eq!(o.sources, 0);
        let o = args(&[
            "--subscribers",
            "19000",
            "--publish-url",
            "http://127.0.0.1:81/pub/x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.sources, 5);
        assert_eq!(o.publish.addr.port(), 81);
        assert_eq!(o.publish.target, "/pub/x");
    }

    #[test]
    fn refuses_remote_targets_unless_allowed() {
        assert!(args(&["--target", "10.0.0.1:80"]).is_err());
        assert!(args(&["--publish-url", "http://10.0.0.1/p"]).is_err());
        assert!(args(&["--target", "10.0.0.1:80", "--allow-remote"]).is_ok());
        assert!(args(&["--target", "127.3.4.5:80"]).is_ok());
    }
}
