//! The command line, parsed by hand (a dozen flags do not need a parser
//! crate) and validated into [`Options`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub const USAGE: &str = "\
ssed-load: many idle SSE subscribers, fan-out latency and bursts, against any SSE server

USAGE:
    ssed-load [OPTIONS]

TARGET
    --target HOST:PORT[,...]  where subscribers connect (default 127.0.0.1:8080);
                              several: subscriber i goes to the (i mod count)-th
    --subscribe-path PATH     stream location (default /events)
    --publish-url URL         where events are POSTed; the body is the event data
                              (default http://FIRST-TARGET/publish?topic=load)
    --publish-header 'K: V'   extra header on publish requests (repeatable),
                              e.g. 'Authorization: Bearer TOKEN'
    --pid PID[,...]           the server process(es) (for nginx: the worker), to
                              read RSS and CPU time from /proc/PID; several are
                              summed, and each is in the JSON line too
    --allow-remote            allow a target outside loopback (127.0.0.0/8, ::1)

LOAD
    --subscribers N           concurrent subscribers (default 1000)
    --sources K               spread subscribers over K source addresses 127.0.0.2..
                              (0: let the kernel choose; default: 0 below 1024
                              subscribers, else one address per 4096)
    --connect-window N        connects in flight at once (default 1024)
    --threads T               subscriber event loops (per worker; default 1)
    --workers W               hold the subscribers in W child processes, each
                              with its own open-file limit (default 0: in this
                              process); needed past one process's limit
    --event-size BYTES        event data size, 'seq=N t=SENT ' then padding
                              (default 64, at least 32)
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

INTERNAL
    --worker FIRST:COUNT      run as one of --workers: hold subscribers FIRST..
                              FIRST+COUNT-1 of --subscribers, talk to the parent
                              over stdin and stdout (see src/worker.rs)
";

/// Ephemeral ports per (source address, destination) pair when
/// `/proc/sys/net/ipv4/ip_local_port_range` cannot be read: Linux's default
/// range, 32768 to 60999.
const DEFAULT_PORT_RANGE: usize = 28_232;

#[derive(Debug, Clone)]
pub struct Options {
    /// At least one.
    pub targets: Vec<SocketAddr>,
    pub subscribe_path: String,
    pub publish: PublishUrl,
    pub publish_headers: Vec<String>,
    pub pids: Vec<u32>,
    pub allow_remote: bool,
    pub subscribers: usize,
    pub sources: usize,
    pub connect_window: usize,
    pub threads: usize,
    /// `--workers`: 0 holds the subscribers in this process.
    pub workers: usize,
    /// `--worker FIRST:COUNT`: this process is one of the workers.
    pub worker: Option<(usize, usize)>,
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

/// `A,B,C`, each parsed by `item`.
fn list<T>(flag: &str, value: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    let items = value
        .split(',')
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(item)
        .collect::<Result<Vec<T>, String>>()?;
    if items.is_empty() {
        return Err(format!("{flag}: empty list"));
    }
    Ok(items)
}

/// How many ephemeral ports one (source, destination) pair has.
fn port_range() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|n| n.parse::<usize>().ok());
            let (low, high) = (bounds.next()??, bounds.next()??);
            (high >= low).then(|| high - low + 1)
        })
        .unwrap_or(DEFAULT_PORT_RANGE)
}

/// Refuses a spread that needs more ephemeral ports of one (source,
/// target) pair than the kernel has: `N` subscribers over `T` targets and
/// `K` source addresses put about `N / (T * K)` on each pair (see
/// `subscribers::Plan`); with `K` = 0 all of a target's come from one
/// address.
fn check_ports(subscribers: usize, targets: usize, sources: usize, ports: usize) -> Result<(), String> {
    let per_pair = subscribers.div_ceil(targets).div_ceil(sources.max(1));
    if per_pair > ports {
        return Err(format!(
            "{subscribers} subscribers over {targets} target(s) and {} source address(es) \
             put {per_pair} connections on one (source, target) pair, which has {ports} \
             ephemeral ports: raise --sources (at most 250)",
            sources.max(1)
        ));
    }
    Ok(())
}

/// `Ok(None)` means `--help` was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut target = "127.0.0.1:8080".to_string();
    let mut subscribe_path = "/events".to_string();
    let mut publish_url = None;
    let mut publish_headers = Vec::new();
    let mut pids = Vec::new();
    let mut allow_remote = false;
    let mut subscribers = 1000usize;
    let mut sources = None;
    let mut connect_window = 1024usize;
    let mut threads = 1usize;
    let mut workers = 0usize;
    let mut worker: Option<(usize, usize)> = None;
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
            "--pid" => pids = list(&flag, &value, |pid| number(&flag, pid))?,
            "--subscribers" => subscribers = number(&flag, &value)?,
            "--sources" => sources = Some(number(&flag, &value)?),
            "--connect-window" => connect_window = number(&flag, &value)?,
            "--threads" => threads = number(&flag, &value)?,
            "--workers" => workers = number(&flag, &value)?,
            "--worker" => {
                let (first, count) = value
                    .split_once(':')
                    .ok_or_else(|| format!("--worker {value:?}: want FIRST:COUNT"))?;
                worker = Some((number(&flag, first)?, number(&flag, count)?));
            }
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
    let targets = list("--target", &target, resolve)?;
    let first_target = target
        .split(',')
        .map(str::trim)
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let publish = PublishUrl::parse(
        &publish_url.unwrap_or_else(|| format!("http://{first_target}/publish?topic=load")),
    )?;
    if !allow_remote {
        let ips = targets.iter().map(|t| ("--target", t.ip()));
        for (what, ip) in ips.chain([("--publish-url", publish.addr.ip())]) {
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
    if workers > 64 || workers > subscribers {
        return Err("--workers: 0 to 64, and no more than --subscribers".into());
    }
    if let Some((first, count)) = worker {
        if workers > 0 || count == 0 || first.checked_add(count).is_none_or(|end| end > subscribers) {
            return Err("--worker FIRST:COUNT: a part of --subscribers, without --workers".into());
        }
    }
    if event_size < 32 {
        return Err("--event-size: at least 32 bytes (room for 'seq=N t=SENT ')".into());
    }
    let spread_ok = targets
        .iter()
        .all(|t| matches!(t.ip(), IpAddr::V4(v4) if v4.is_loopback()));
    let sources = match sources {
        Some(k) if k > 0 && !spread_ok => {
            return Err("--sources: spreading source addresses needs an IPv4 loopback target".into())
        }
        Some(k) if k > 250 => return Err("--sources: at most 250".into()),
        Some(k) => k,
        None if spread_ok && subscribers >= 1024 => subscribers.div_ceil(4096),
        None => 0,
    };
    check_ports(subscribers, targets.len(), sources, port_range())?;
    Ok(Some(Options {
        label: label.unwrap_or_else(|| target.clone()),
        targets,
        subscribe_path,
        publish,
        publish_headers,
        pids,
        allow_remote,
        subscribers,
        sources,
        connect_window,
        threads,
        workers,
        worker,
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
        assert_eq!(o.targets[0].to_string(), "127.0.0.1:8080");
        assert_eq!((o.targets.len(), o.workers, o.worker), (1, 0, None));
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
        assert!(args(&["--target", "127.0.0.1:80,10.0.0.1:80"]).is_err());
    }

    #[test]
    fn several_targets_pids_and_workers() {
        let o = args(&[
            "--target",
            "127.0.0.1:8081, 127.0.0.1:8082,127.0.0.1:8083",
            "--pid",
            "10,11,12",
            "--subscribers",
            "100000",
            "--workers",
            "6",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.targets.len(), 3);
        assert_eq!(o.targets[1].port(), 8082);
        assert_eq!(o.pids, [10, 11, 12]);
        assert_eq!((o.workers, o.sources), (6, 25));
        assert_eq!(o.publish.authority, "127.0.0.1:8081");
        let o = args(&["--subscribers", "10", "--worker", "4:6"])
            .unwrap()
            .unwrap();
        assert_eq!(o.worker, Some((4, 6)));
        for bad in [
            &["--target", ","][..],
            &["--pid", "1,x"],
            &["--workers", "65"],
            &["--subscribers", "10", "--workers", "11"],
            &["--subscribers", "10", "--worker", "4:7"],
            &["--subscribers", "10", "--worker", "4"],
            &["--subscribers", "10", "--worker", "0:5", "--workers", "2"],
            &["--event-size", "31"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_per_source_and_target_pair() {
        // 100,000 over 6 targets and 25 sources: 667 per pair.
        assert!(check_ports(100_000, 6, 25, 28_232).is_ok());
        // One target, the kernel's one source address: 28,232 at most.
        assert!(check_ports(28_232, 1, 0, 28_232).is_ok());
        assert!(check_ports(28_233, 1, 0, 28_232).is_err());
        assert!(check_ports(100_000, 1, 3, 28_232).is_err());
        assert!(check_ports(100_000, 1, 4, 28_232).is_ok());
        // The flag refuses it too, before anything connects.
        assert!(args(&["--subscribers", "100000", "--sources", "1"]).is_err());
    }
}
