//! The commands' bytes, and what `xadd_event` writes read back as an event.

use super::*;

#[test]
fn builds_commands() {
    let mut out = Vec::new();
    xread_block(b"ssed:log", id(1_700_000_000_000, 3), 5000, 100, &mut out);
    // Written out once by hand, byte for byte.
    assert_eq!(
        out,
        b"*8\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$3\r\n100\r\n$5\r\nBLOCK\r\n$4\r\n5000\r\n\
          $7\r\nSTREAMS\r\n$8\r\nssed:log\r\n$15\r\n1700000000000-3\r\n"
    );
    let cases: Vec<(Build, Vec<u8>)> = vec![
        (
            Box::new(|out| xadd(b"ssed:log", 100_000, &[(b"k", b"v"), (b"a b", b"")], out)),
            command(&[
                "XADD", "ssed:log", "MAXLEN", "~", "100000", "*", "k", "v", "a b", "",
            ]),
        ),
        (
            Box::new(|out| xadd_event(b"ssed:log", 1024, "news", Some("update"), "{\"n\":1}", out)),
            command(&[
                "XADD",
                "ssed:log",
                "MAXLEN",
                "~",
                "1024",
                "*",
                "topic",
                "news",
                "event",
                "update",
                "data",
                "{\"n\":1}",
            ]),
        ),
        (
            Box::new(|out| xadd_event(b"ssed:log", 1024, "default", None, "a\r\nb", out)),
            command(&[
                "XADD", "ssed:log", "MAXLEN", "~", "1024", "*", "topic", "default", "data", "a\r\nb",
            ]),
        ),
        (
            Box::new(|out| xread_block(b"k", StreamId::ZERO, 0, 1, out)),
            command(&["XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "k", "0-0"]),
        ),
        (
            Box::new(|out| xrange(b"k", Excluded(id(5, 1)), Unbounded, 500, out)),
            command(&["XRANGE", "k", "(5-1", "+", "COUNT", "500"]),
        ),
        (
            Box::new(|out| xrange(b"k", Included(id(5, 1)), Included(id(9, 0)), 10, out)),
            command(&["XRANGE", "k", "5-1", "9-0", "COUNT", "10"]),
        ),
        (
            Box::new(|out| xrange(b"k", Unbounded, Excluded(id(9, 0)), 10, out)),
            command(&["XRANGE", "k", "-", "(9-0", "COUNT", "10"]),
        ),
        (
            Box::new(|out| xrevrange(b"k", Unbounded, Unbounded, 1, out)),
            command(&["XREVRANGE", "k", "+", "-", "COUNT", "1"]),
        ),
        (
            Box::new(|out| xrevrange(b"k", Excluded(id(9, 0)), Included(id(5, 1)), 2, out)),
            command(&["XREVRANGE", "k", "(9-0", "5-1", "COUNT", "2"]),
        ),
        (Box::new(ping), command(&["PING"])),
        (Box::new(|out| select(15, out)), command(&["SELECT", "15"])),
    ];
    for (build, want) in cases {
        let mut out = b"queued".to_vec();
        build(&mut out);
        assert_eq!(&out[..6], b"queued", "appends");
        assert_eq!(String::from_utf8_lossy(&out[6..]), String::from_utf8_lossy(&want));
    }
}

#[test]
fn what_xadd_event_writes_to_event_reads() {
    for (topic, name, data) in [
        ("news", Some("update"), "{\"n\":1}"),
        ("default", None, ""),
        ("t", None, "a\nb"),
    ] {
        let mut out = Vec::new();
        xadd_event(b"ssed:log", 10, topic, name, data, &mut out);
        // A command is an array of bulk strings: decode it as a reply,
        // and take what follows the `*` as the entry's fields.
        let (_, Some(Reply::Array(words))) = Decoder::new().decode(&out).expect("RESP") else {
            panic!("not a command");
        };
        let mut flat = Vec::new();
        for word in &words[6..] {
            flat.push(word.clone());
        }
        let mut entry_reply = Vec::new();
        Reply::Array(vec![Reply::Bulk(b"1-2".to_vec()), Reply::Array(flat)]).encode(&mut entry_reply);
        let mut xrange_reply = b"*1\r\n".to_vec();
        xrange_reply.extend_from_slice(&entry_reply);
        let entries = parse_xrange(reply(&xrange_reply)).expect("entries");
        let event = entries[0].to_event().expect("an event");
        assert_eq!(
            (event.id, event.topic, event.name, event.data),
            (id(1, 2), topic, name, data)
        );
    }
}
