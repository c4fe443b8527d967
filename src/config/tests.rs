//! The command line and `SSED_*`, table by table: each flag, its bounds,
//! the environment and which source wins.

use super::*;

fn run(args: &[&str]) -> Result<Config, ConfigError> {
    run_env(args, &[])
}

/// Parses `args` with `env` as the whole environment.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let lookup = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
    match parse(args.iter().map(OsString::from), lookup)? {
        Command::Run(config) => Ok(config),
        other => panic!("{other:?}"),
    }
}

/// `--flag` to `SSED_FLAG`, as the table derives it.
fn env_of(flag: &str) -> String {
    flags::find(flag.trim_start_matches('-')).expect("a flag").1.env()
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
    assert_eq!(config.bus, None);
    assert_eq!(config.bus_key, "ssed");
    assert_eq!(config.bus_retention, 100_000);
    assert!(!config.reuseport);
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
    let help = HELP.to_string();
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
        assert!(help.contains(flag), "{flag} in --help");
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
        ("--bus-retention", "1", "100000000", "0", "100000001"),
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
        // The same bounds and messages from the environment, naming it.
        let var = env_of(flag);
        for ok in [least, most] {
            assert!(run_env(&[], &[(&var, ok)]).is_ok(), "{var}={ok}");
        }
        for bad in [under, over, huge, huger] {
            let error = run_env(&[], &[(&var, bad)]).expect_err(&format!("{var}={bad}")).0;
            assert!(error.starts_with(&format!("{var}: ")), "{error}");
        }
        let from_env = run_env(&[], &[(&var, over)]).unwrap_err().0;
        assert_eq!(
            from_env.replacen(&var, flag, 1),
            error,
            "{var} says what {flag} says"
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
    let help = HELP.to_string();
    for bound in [
        MAX_PERIOD_SECS,
        MAX_HEADER_TIMEOUT_SECS,
        MAX_RETRY_MS,
        MAX_HISTORY,
        MAX_CONNS,
        MAX_QUEUE,
        MAX_BODY,
        MAX_BUS_RETENTION,
    ] {
        assert!(help.contains(&format!("at most {bound}]")), "{bound} in --help");
    }
    assert!(help.contains(&format!("at least {MIN_QUEUE},")));
    assert!(help.contains(&format!("at least {}.", MIN_DURATION.as_secs_f64())));
}

/// One value for every flag (but the JWT pair, below), as flags and as
/// variables: the same `Config` either way.
#[test]
fn every_flag_from_the_environment() {
    let values = [
        ("listen", "127.0.0.1:0,[::1]:9000"),
        ("tick", "0"),
        ("heartbeat", "0.5"),
        ("retry", "100"),
        ("history", "7"),
        ("max-conns", "50"),
        ("max-queue", "4096"),
        ("max-body", "10"),
        ("header-timeout", "2"),
        ("publish-token", "s3"),
        ("cors-origin", "https://example.com"),
        ("stdin", "news"),
        ("trace", "1"),
        ("bus-key", "app:events"),
        ("bus-retention", "5000"),
        ("reuseport", "true"),
    ];
    // The JWT pair and --bus have tests of their own.
    for flag in FLAGS
        .iter()
        .filter(|flag| !flag.name.starts_with("jwt-") && flag.name != "bus")
    {
        assert!(
            values.iter().any(|(name, _)| *name == flag.name),
            "--{} is tested",
            flag.name
        );
    }
    let mut args = Vec::new();
    let mut env = Vec::new();
    for (name, value) in values {
        // A repeated flag is given once per item; a switch as --trace=1.
        for item in value.split(',') {
            args.push(format!("--{name}={item}"));
        }
        env.push((
            format!("SSED_{}", name.to_uppercase().replace('-', "_")),
            value.to_string(),
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let from_args = run(&args).unwrap();
    assert_eq!(run_env(&[], &env).unwrap(), from_args);
    assert_ne!(from_args, Config::default());
    assert_eq!(from_args.listen.len(), 2);
    assert!(from_args.trace && from_args.reuseport);
    assert_eq!(
        (from_args.bus_key.as_str(), from_args.bus_retention),
        ("app:events", 5000)
    );
}

/// What the environment says, and what a flag on the command line does to it.
#[test]
fn the_command_line_wins_over_the_environment() {
    type Check = fn(&Config) -> bool;
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(&[&str], Env<'_>, Check)] = &[
        // Not even read, so not even checked.
        (&["--retry", "5"], &[("SSED_RETRY", "huge")], |c| c.retry_ms == 5),
        (&[], &[("SSED_RETRY", "5")], |c| c.retry_ms == 5),
        // A list is replaced, not added to.
        (
            &["--listen", "127.0.0.1:1"],
            &[("SSED_LISTEN", "127.0.0.1:2,127.0.0.1:3")],
            |c| c.listen == [SocketAddr::from(([127, 0, 0, 1], 1))],
        ),
        (&[], &[("SSED_LISTEN", "127.0.0.1:2, 127.0.0.1:3")], |c| {
            c.listen.len() == 2
        }),
        (&["--trace=false"], &[("SSED_TRACE", "1")], |c| !c.trace),
        (&[], &[("SSED_TRACE", "true")], |c| c.trace),
        (&[], &[("SSED_TRACE", "0")], |c| !c.trace),
        (
            &["--cors-origin", ""],
            &[("SSED_CORS_ORIGIN", "https://a.example")],
            |c| c.cors_origin.is_none(),
        ),
        (&["--stdin"], &[("SSED_STDIN", "news")], |c| {
            c.stdin_topic.as_deref() == Some("default")
        }),
        (&[], &[("SSED_STDIN", "news")], |c| {
            c.stdin_topic.as_deref() == Some("news")
        }),
        // An empty variable is an unset one.
        (&[], &[("SSED_STDIN", "")], |c| c.stdin_topic.is_none()),
        (&[], &[("SSED_TICK", ""), ("SSED_PUBLISH_TOKEN", "")], |c| {
            *c == Config::default()
        }),
        // Unrelated variables are no one's business.
        (&[], &[("SSED", "x"), ("SSED_", "x"), ("SSED_BOGUS", "x")], |c| {
            *c == Config::default()
        }),
    ];
    for (args, env, check) in cases {
        let config = run_env(args, env).unwrap_or_else(|e| panic!("{args:?} {env:?}: {e}"));
        assert!(check(&config), "{args:?} {env:?}: {config:?}");
    }
}

#[test]
fn bad_variables_are_refused_by_name() {
    for (var, value, says) in [
        ("SSED_RETRY", "huge", "SSED_RETRY: 'huge' is not a whole number"),
        (
            "SSED_RETRY",
            "3600001",
            "SSED_RETRY: 3600001 is more than the most allowed",
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
        ("SSED_LISTEN", "127.0.0.1:1,", "SSED_LISTEN: an empty item"),
        (
            "SSED_HEADER_TIMEOUT",
            "0",
            "SSED_HEADER_TIMEOUT: 0 must be more than 0",
        ),
        ("SSED_STDIN", "a*b", "SSED_STDIN: "),
        ("SSED_CORS_ORIGIN", "a\nb", "SSED_CORS_ORIGIN must be one line"),
        (
            "SSED_MAX_QUEUE",
            "10",
            "SSED_MAX_QUEUE: 10 is less than the least allowed, 1024",
        ),
    ] {
        let error = run_env(&[], &[(var, value)]).expect_err(var).0;
        assert!(error.starts_with(says), "{var}={value:?}: {error}");
    }
}

/// `--help` and `--version` answer before anything is checked.
#[test]
fn help_wins_over_everything() {
    let bad_env = |_: &str| Some("bad".to_string());
    for (args, want) in [
        (&["--tick", "soon", "--help"][..], Command::Help),
        (&["--listen=nowhere", "-V"], Command::Version),
        (&["-h"], Command::Help),
    ] {
        assert_eq!(
            parse(args.iter().map(OsString::from), bad_env),
            Ok(want),
            "{args:?}"
        );
    }
}

#[cfg(feature = "jwt")]
#[test]
fn the_jwt_secret_from_either_flag_or_variable() {
    let secret = "a-secret-of-at-least-32-bytes-long-here";
    let dir = std::env::temp_dir().join(format!("ssed-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let file = file.to_str().unwrap();
    let want = Some(values::jwt_secret("t", secret.as_bytes().to_vec()).unwrap());
    for (args, env) in [
        (&["--jwt-secret", secret][..], &[][..]),
        (&["--jwt-secret-file", file], &[]),
        (&[], &[("SSED_JWT_SECRET", secret)]),
        (&[], &[("SSED_JWT_SECRET_FILE", file)]),
        // Either flag hides both variables.
        (&["--jwt-secret-file", file], &[("SSED_JWT_SECRET", "short")]),
        (
            &["--jwt-secret", secret],
            &[("SSED_JWT_SECRET_FILE", "/nonexistent")],
        ),
    ] {
        assert_eq!(
            run_env(args, env).map(|c| c.jwt_secret),
            Ok(want.clone()),
            "{args:?} {env:?}"
        );
    }
    for (args, env) in [
        (&["--jwt-secret", secret, "--jwt-secret-file", file][..], &[][..]),
        (
            &[],
            &[("SSED_JWT_SECRET", secret), ("SSED_JWT_SECRET_FILE", file)],
        ),
    ] {
        let error = run_env(args, env).unwrap_err().0;
        assert!(error.ends_with("set the same thing: give one"), "{error}");
    }
    let short = run_env(&[], &[("SSED_JWT_SECRET", "short")]).unwrap_err().0;
    assert!(
        short.starts_with("SSED_JWT_SECRET: the secret must be at least 32 bytes"),
        "{short}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--bus` is parsed: a bad URL is refused with its reason, a good one
/// kept with its companions.
#[test]
fn the_bus_is_checked() {
    let config = run(&["--bus", "redis://127.0.0.1:6379/2"]).unwrap();
    assert_eq!(
        config.bus,
        Some(BusAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 6379,
            db: 2
        })
    );
    let config = run(&["--bus=redis+unix:///run/redis.sock", "--bus-key", "k"]).unwrap();
    assert!(
        matches!(config.bus, Some(BusAddr::Unix { .. })),
        "{:?}",
        config.bus
    );
    assert_eq!(config.bus_key, "k");
    for (args, says) in [
        (
            &["--bus", "redis://h:1/16"][..],
            "--bus: database '16' is not a number from 0 to 15",
        ),
        (&["--bus", "redis://h:99999"], "--bus: port '99999'"),
        (
            &["--bus", "rediss://h:1"],
            "--bus: TLS (rediss://) is not supported",
        ),
        (&["--bus-key", ""], "--bus-key: the key is empty"),
    ] {
        let error = run(args).expect_err(&format!("{args:?}")).0;
        assert!(error.starts_with(says), "{args:?}: {error}");
    }
    // Without --bus, its companions are checked and kept for later.
    let config = run(&["--bus-key", "k", "--bus-retention", "1"]).unwrap();
    assert_eq!((config.bus_key.as_str(), config.bus_retention), ("k", 1));
}
