use super::*;
use crate::bus::resp::{encode, Decoder};
use std::ops::Bound::{Excluded, Included, Unbounded};

mod commands;

/// Decodes one whole reply from real bytes, cut at every byte on the
/// way to make sure the cut changes nothing.
fn reply(bytes: &[u8]) -> Reply {
    let whole = Decoder::new().decode(bytes);
    for cut in 0..bytes.len() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(&bytes[..cut]), Ok((cut, None)), "cut at {cut}");
        let rest = decoder
            .decode(&bytes[cut..])
            .map(|(used, reply)| (cut + used, reply));
        assert_eq!(rest, whole, "cut at {cut}");
    }
    match whole {
        Ok((used, Some(reply))) if used == bytes.len() => reply,
        other => panic!("not one whole reply: {other:?}"),
    }
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(name, value)| (name.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

/// Appends a command to a buffer.
type Build = Box<dyn Fn(&mut Vec<u8>)>;

/// An entry's fields, as names and values.
type Pairs<'a> = &'a [(&'a str, &'a [u8])];

/// A command, as `resp::encode` writes its words.
fn command(words: &[&str]) -> Vec<u8> {
    let words: Vec<&[u8]> = words.iter().map(|word| word.as_bytes()).collect();
    let mut out = Vec::new();
    encode(&words, &mut out);
    out
}

#[test]
fn parses_ids_as_redis_writes_them() {
    let good: &[(&str, StreamId)] = &[
        ("0-0", StreamId::ZERO),
        ("0-1", id(0, 1)),
        ("1526919030474-0", id(1_526_919_030_474, 0)),
        ("1526919030474-55", id(1_526_919_030_474, 55)),
        (
            "18446744073709551615-18446744073709551615",
            id(u64::MAX, u64::MAX),
        ),
    ];
    for (text, want) in good {
        assert_eq!(StreamId::parse(text.as_bytes()), Ok(*want), "{text}");
        assert_eq!(text.parse::<StreamId>(), Ok(*want), "{text}");
        assert_eq!(StreamId::from_last_event_id(text), Ok(*want), "{text}");
        assert_eq!(want.to_string(), *text, "one spelling");
    }
    let bad: &[(&str, IdError)] = &[
        ("", IdError::NoDash),
        ("1732190400000001", IdError::NoDash),
        ("1_0", IdError::NoDash),
        ("-", IdError::NotDecimal),
        ("1-", IdError::NotDecimal),
        ("-1", IdError::NotDecimal),
        ("-1-0", IdError::NotDecimal),
        ("1--1", IdError::NotDecimal),
        ("1-0-0", IdError::NotDecimal),
        ("+1-0", IdError::NotDecimal),
        ("1-+0", IdError::NotDecimal),
        (" 1-0", IdError::NotDecimal),
        ("1-0 ", IdError::NotDecimal),
        ("1 -0", IdError::NotDecimal),
        ("1-0\n", IdError::NotDecimal),
        ("1-0\0", IdError::NotDecimal),
        ("01-0", IdError::NotDecimal),
        ("1-00", IdError::NotDecimal),
        ("1-01", IdError::NotDecimal),
        ("1.5-0", IdError::NotDecimal),
        ("0x1-0", IdError::NotDecimal),
        ("a-0", IdError::NotDecimal),
        ("\u{ff11}-0", IdError::NotDecimal),
        ("$", IdError::NoDash),
        ("*", IdError::NoDash),
        ("18446744073709551616-0", IdError::TooLarge),
        ("1-18446744073709551616", IdError::TooLarge),
        ("99999999999999999999999999-0", IdError::TooLarge),
    ];
    for (text, want) in bad {
        assert_eq!(StreamId::parse(text.as_bytes()), Err(*want), "{text:?}");
        assert_eq!(StreamId::from_last_event_id(text), Err(*want), "{text:?}");
    }
    assert_eq!(
        IdError::NoDash.to_string(),
        "not a stream id: no '-' between <ms> and <seq>"
    );
}

#[test]
fn ids_order_by_their_numbers_not_their_text() {
    let mut ids: Vec<StreamId> = [
        "10-0",
        "9-0",
        "1-10",
        "1-9",
        "1-18446744073709551615",
        "2-0",
        "0-0",
    ]
    .iter()
    .map(|text| text.parse().expect("an id"))
    .collect();
    ids.sort();
    let texts: Vec<String> = ids.iter().map(StreamId::to_string).collect();
    assert_eq!(
        texts,
        [
            "0-0",
            "1-9",
            "1-10",
            "1-18446744073709551615",
            "2-0",
            "9-0",
            "10-0"
        ]
    );
    assert!(id(1, 0) > id(0, u64::MAX));
}

#[test]
fn reads_xadd_replies() {
    assert_eq!(
        parse_xadd(reply(b"$15\r\n1526919030474-0\r\n")),
        Ok(id(1_526_919_030_474, 0))
    );
    let too_small = b"-ERR The ID specified in XADD is equal or smaller than the target stream top item\r\n";
    assert_eq!(
        parse_xadd(reply(too_small)),
        Err(ReplyError::Redis(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item".into()
        ))
    );
    let wrong_type = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert!(
        matches!(parse_xadd(reply(wrong_type)), Err(ReplyError::Redis(text)) if text.starts_with("WRONGTYPE"))
    );
    let readonly = b"-READONLY You can't write against a read only replica.\r\n";
    assert!(matches!(parse_xadd(reply(readonly)), Err(ReplyError::Redis(_))));
    // NOMKSTREAM's nil, which ssed never asks for, and other shapes.
    for other in [&b"$-1\r\n"[..], b":1\r\n", b"+OK\r\n", b"*1\r\n$3\r\n1-0\r\n"] {
        assert_eq!(
            parse_xadd(reply(other)),
            Err(ReplyError::Shape("XADD answers a bulk string"))
        );
    }
    assert_eq!(
        parse_xadd(reply(b"$3\r\n1-x\r\n")),
        Err(ReplyError::Id(IdError::NotDecimal))
    );
}

/// `XRANGE writers - + COUNT 2`, from the Redis documentation.
const XRANGE_WRITERS: &[u8] = b"*2\r\n\
    *2\r\n$15\r\n1526985054069-0\r\n\
    *4\r\n$4\r\nname\r\n$8\r\nVirginia\r\n$7\r\nsurname\r\n$5\r\nWoolf\r\n\
    *2\r\n$15\r\n1526985054079-0\r\n\
    *4\r\n$4\r\nname\r\n$4\r\nJane\r\n$7\r\nsurname\r\n$6\r\nAusten\r\n";

#[test]
fn reads_xrange_replies() {
    assert_eq!(
        parse_xrange(reply(XRANGE_WRITERS)),
        Ok(vec![
            Entry {
                id: id(1_526_985_054_069, 0),
                fields: fields(&[("name", "Virginia"), ("surname", "Woolf")]),
            },
            Entry {
                id: id(1_526_985_054_079, 0),
                fields: fields(&[("name", "Jane"), ("surname", "Austen")]),
            },
        ])
    );
    assert_eq!(parse_xrange(reply(b"*0\r\n")), Ok(vec![]));
    // Binary values and an empty one pass as they are.
    let binary = b"*1\r\n*2\r\n$3\r\n7-1\r\n*2\r\n$1\r\nk\r\n$0\r\n\r\n";
    assert_eq!(
        parse_xrange(reply(binary)).map(|e| e[0].fields.clone()),
        Ok(vec![(b"k".to_vec(), Vec::new())])
    );
    let invalid = b"-ERR Invalid stream ID specified as stream command argument\r\n";
    assert!(matches!(parse_xrange(reply(invalid)), Err(ReplyError::Redis(_))));
    let shapes: &[(&[u8], ReplyError)] = &[
        (b"$-1\r\n", ReplyError::Shape("entries are not an array")),
        (b"*-1\r\n", ReplyError::Shape("entries are not an array")),
        (
            b"*1\r\n$3\r\n1-0\r\n",
            ReplyError::Shape("an entry is not an id and fields"),
        ),
        (
            b"*1\r\n*1\r\n$3\r\n1-0\r\n",
            ReplyError::Shape("an entry is not an id and fields"),
        ),
        (
            b"*1\r\n*3\r\n$3\r\n1-0\r\n*0\r\n*0\r\n",
            ReplyError::Shape("an entry is not an id and fields"),
        ),
        (
            b"*1\r\n*2\r\n:1\r\n*0\r\n",
            ReplyError::Shape("an entry id is not a bulk string"),
        ),
        (b"*1\r\n*2\r\n$1\r\n1\r\n*0\r\n", ReplyError::Id(IdError::NoDash)),
        // A deleted entry as XREADGROUP shows one from its history: no fields.
        (
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n",
            ReplyError::Shape("an entry's fields are not an array"),
        ),
        (
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\nk\r\n",
            ReplyError::Shape("an entry's fields are not name, value pairs"),
        ),
        (
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n:1\r\n",
            ReplyError::Shape("a field name or value is not a bulk string"),
        ),
    ];
    for (bytes, want) in shapes {
        assert_eq!(
            parse_xrange(reply(bytes)).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// `XREAD COUNT 100 BLOCK 5000 STREAMS ssed:log 1700000000000-0`, two
/// events published by ssed.
const XREAD_SSED: &[u8] = b"*1\r\n*2\r\n$8\r\nssed:log\r\n*2\r\n\
    *2\r\n$15\r\n1700000000001-0\r\n\
    *6\r\n$5\r\ntopic\r\n$4\r\nnews\r\n$5\r\nevent\r\n$6\r\nupdate\r\n$4\r\ndata\r\n$7\r\n{\"n\":1}\r\n\
    *2\r\n$15\r\n1700000000001-1\r\n\
    *4\r\n$5\r\ntopic\r\n$7\r\ndefault\r\n$4\r\ndata\r\n$4\r\nl1\nl\r\n";

#[test]
fn reads_xread_replies() {
    let entries = parse_xread(reply(XREAD_SSED), b"ssed:log").expect("entries");
    assert_eq!(
        entries,
        vec![
            Entry {
                id: id(1_700_000_000_001, 0),
                fields: fields(&[("topic", "news"), ("event", "update"), ("data", "{\"n\":1}")]),
            },
            Entry {
                id: id(1_700_000_000_001, 1),
                fields: fields(&[("topic", "default"), ("data", "l1\nl")]),
            },
        ]
    );
    // BLOCK ran out: a null array, no entries. (`$-1` is the same
    // `Reply::Nil` once decoded; Redis writes `*-1` here.)
    assert_eq!(parse_xread(reply(b"*-1\r\n"), b"ssed:log"), Ok(vec![]));
    assert_eq!(parse_xread(reply(b"*0\r\n"), b"ssed:log"), Ok(vec![]));
    assert_eq!(
        parse_xread(reply(XREAD_SSED), b"other"),
        Err(ReplyError::Shape("XREAD answered for another key"))
    );
    // `XREAD COUNT 2 STREAMS mystream writers 0-0 0-0`, shortened from
    // the Redis documentation: two streams, where ssed reads one.
    let two_streams = b"*2\r\n\
        *2\r\n$8\r\nmystream\r\n*1\r\n*2\r\n$15\r\n1526984818136-0\r\n*2\r\n$8\r\nduration\r\n$4\r\n1532\r\n\
        *2\r\n$7\r\nwriters\r\n*1\r\n*2\r\n$15\r\n1526985676425-0\r\n*2\r\n$4\r\nname\r\n$8\r\nVirginia\r\n";
    assert_eq!(
        parse_xread(reply(two_streams), b"mystream"),
        Err(ReplyError::Shape("XREAD of one stream answered for several"))
    );
    let shapes: &[(&[u8], ReplyError)] = &[
        (b":0\r\n", ReplyError::Shape("XREAD answers an array or nil")),
        (b"+OK\r\n", ReplyError::Shape("XREAD answers an array or nil")),
        (
            b"*1\r\n$8\r\nssed:log\r\n",
            ReplyError::Shape("XREAD's stream is not a key and entries"),
        ),
        (
            b"*1\r\n*1\r\n$8\r\nssed:log\r\n",
            ReplyError::Shape("XREAD's stream is not a key and entries"),
        ),
        (
            b"*1\r\n*2\r\n:8\r\n*0\r\n",
            ReplyError::Shape("XREAD answered for another key"),
        ),
        (
            b"*1\r\n*2\r\n$8\r\nssed:log\r\n$0\r\n\r\n",
            ReplyError::Shape("entries are not an array"),
        ),
    ];
    for (bytes, want) in shapes {
        assert_eq!(
            parse_xread(reply(bytes), b"ssed:log").as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let wrong_type = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert!(matches!(
        parse_xread(reply(wrong_type), b"ssed:log"),
        Err(ReplyError::Redis(_))
    ));
}

#[test]
fn reads_status_lines() {
    assert_eq!(parse_status(reply(b"+PONG\r\n"), "PONG"), Ok(()));
    assert_eq!(parse_status(reply(b"+OK\r\n"), "OK"), Ok(()));
    assert_eq!(
        parse_status(reply(b"-ERR DB index is out of range\r\n"), "OK"),
        Err(ReplyError::Redis("ERR DB index is out of range".into()))
    );
    assert_eq!(
        parse_status(
            reply(b"-LOADING Redis is loading the dataset in memory\r\n"),
            "PONG"
        ),
        Err(ReplyError::Redis(
            "LOADING Redis is loading the dataset in memory".into()
        ))
    );
    assert_eq!(
        parse_status(reply(b"$4\r\nPONG\r\n"), "PONG"),
        Err(ReplyError::Shape("not the status line expected"))
    );
    assert_eq!(
        parse_status(reply(b"+OK\r\n"), "PONG"),
        Err(ReplyError::Shape("not the status line expected"))
    );
}

fn entry_of(pairs: Pairs<'_>) -> Entry {
    Entry {
        id: id(7, 0),
        fields: pairs
            .iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value.to_vec()))
            .collect(),
    }
}

#[test]
fn reads_entries_as_events() {
    let event = |topic, name, data| Event {
        id: id(7, 0),
        topic,
        name,
        data,
    };
    let good: &[(Pairs<'_>, Event<'_>)] = &[
        (
            &[("topic", b"news"), ("event", b"update"), ("data", b"hi")],
            event("news", Some("update"), "hi"),
        ),
        (&[("data", b"hi"), ("topic", b"news")], event("news", None, "hi")),
        (
            &[("topic", b"news"), ("event", b""), ("data", b"")],
            event("news", None, ""),
        ),
        (
            &[
                ("origin", b"\xff"),
                ("topic", b"a/b"),
                ("data", b"x\r\ny"),
                ("topic2", b"*"),
            ],
            event("a/b", None, "x\r\ny"),
        ),
    ];
    for (pairs, want) in good {
        assert_eq!(entry_of(pairs).to_event(), Ok(*want), "{pairs:?}");
    }
    let bad: &[(Pairs<'_>, EventError)] = &[
        (&[("topic", b"news")], EventError::Missing("data")),
        (&[("data", b"hi")], EventError::Missing("topic")),
        (&[], EventError::Missing("topic")),
        (
            &[("topic", b"a"), ("data", b"1"), ("data", b"2")],
            EventError::Repeated("data"),
        ),
        (
            &[("topic", b"a"), ("topic", b"a"), ("data", b"")],
            EventError::Repeated("topic"),
        ),
        (
            &[("event", b"x"), ("event", b"x"), ("data", b"")],
            EventError::Repeated("event"),
        ),
        (&[("topic", b"a"), ("data", b"\xff")], EventError::NotUtf8("data")),
        (&[("topic", b"\xc3"), ("data", b"")], EventError::NotUtf8("topic")),
        (
            &[("topic", b"news/*"), ("data", b"")],
            EventError::Topic(TopicError::Wildcard),
        ),
        (
            &[("topic", b""), ("data", b"")],
            EventError::Topic(TopicError::Empty),
        ),
        (
            &[("topic", b"a"), ("event", b"x\ndata: injected"), ("data", b"")],
            EventError::Name(EncodeError::NameHasLineBreak),
        ),
    ];
    for (pairs, want) in bad {
        assert_eq!(entry_of(pairs).to_event().as_ref(), Err(want), "{pairs:?}");
    }
    assert_eq!(
        EventError::Missing("data").to_string(),
        "stream entry has no 'data' field"
    );
    assert_eq!(entry_of(&[("k", b"1"), ("k", b"2")]).field(b"k"), Some(&b"1"[..]));
    assert_eq!(entry_of(&[]).field(b"k"), None);
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(ReplyError::Redis("ERR no".into()).to_string(), "Redis: ERR no");
    assert_eq!(
        ReplyError::Shape("XADD answers a bulk string").to_string(),
        "unexpected reply: XADD answers a bulk string"
    );
    assert_eq!(
        ReplyError::from(IdError::TooLarge).to_string(),
        "unexpected reply: not a stream id: a part past 64 bits"
    );
    assert_eq!(
        EventError::Topic(TopicError::Wildcard).to_string(),
        "stream entry's topic: '*' only as a whole pattern or a last '/*'"
    );
}
