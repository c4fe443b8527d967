use super::decoder::State;
use super::*;

mod limits;
use proptest::prelude::*;

fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(bytes.to_vec())
}

fn simple(text: &str) -> Reply {
    Reply::Simple(text.to_string())
}

fn error(text: &str) -> Reply {
    Reply::Error(text.to_string())
}

fn array(items: Vec<Reply>) -> Reply {
    Reply::Array(items)
}

/// Feeds `pieces` one read at a time, as a connection does, and
/// collects the replies; stops at the first error. Checks the contract
/// on the way: a call that completes nothing used all it was given.
fn decode_pieces(decoder: &mut Decoder, pieces: &[&[u8]]) -> (Vec<Reply>, Option<RespError>) {
    let mut replies = Vec::new();
    for piece in pieces {
        let mut input: &[u8] = piece;
        loop {
            match decoder.decode(input) {
                Ok((used, Some(reply))) => {
                    assert!(used > 0 && used <= input.len());
                    replies.push(reply);
                    input = &input[used..];
                }
                Ok((used, None)) => {
                    assert_eq!(used, input.len(), "need-more uses everything");
                    break;
                }
                Err(error) => return (replies, Some(error)),
            }
        }
    }
    (replies, None)
}

/// Decodes `input` whole, cut in two at every position, and a byte at
/// a time, and checks all of them give what the whole does.
fn decode_every_way(input: &[u8], limits: Limits) -> (Vec<Reply>, Option<RespError>) {
    let whole = decode_pieces(&mut Decoder::with_limits(limits), &[input]);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let split = decode_pieces(&mut Decoder::with_limits(limits), &[a, b]);
        assert_eq!(split, whole, "{:?} cut at {cut}", String::from_utf8_lossy(input));
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let one_by_one = decode_pieces(&mut Decoder::with_limits(limits), &bytes);
    assert_eq!(
        one_by_one,
        whole,
        "{:?} a byte at a time",
        String::from_utf8_lossy(input)
    );
    whole
}

#[test]
fn decodes_every_type_split_at_every_byte() {
    let cases: Vec<(&[u8], Reply)> = vec![
        (b"+OK\r\n", simple("OK")),
        (b"+PONG\r\n", simple("PONG")),
        (b"+\r\n", simple("")),
        (
            b"-ERR unknown command 'FOO', with args beginning with: \r\n",
            error("ERR unknown command 'FOO', with args beginning with: "),
        ),
        (
            b"-LOADING Redis is loading the dataset in memory\r\n",
            error("LOADING Redis is loading the dataset in memory"),
        ),
        (
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            error("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (b"+caf\xc3\xa9 \xff\r\n", simple("caf\u{e9} \u{fffd}")),
        (b":0\r\n", Reply::Integer(0)),
        (b":1000\r\n", Reply::Integer(1000)),
        (b":-1\r\n", Reply::Integer(-1)),
        (b":9223372036854775807\r\n", Reply::Integer(i64::MAX)),
        (b":-9223372036854775808\r\n", Reply::Integer(i64::MIN)),
        (b"$5\r\nhello\r\n", bulk(b"hello")),
        (b"$0\r\n\r\n", bulk(b"")),
        (b"$-1\r\n", Reply::Nil),
        (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
        (b"$5\r\n\0\xff\r\n\n\r\n", bulk(b"\0\xff\r\n\n")),
        (b"*0\r\n", array(vec![])),
        (b"*-1\r\n", Reply::Nil),
        (
            b"*3\r\n:1\r\n:2\r\n:3\r\n",
            array(vec![Reply::Integer(1), Reply::Integer(2), Reply::Integer(3)]),
        ),
        (
            b"*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n$5\r\nhello\r\n",
            array(vec![
                Reply::Integer(1),
                Reply::Integer(2),
                Reply::Integer(3),
                Reply::Integer(4),
                bulk(b"hello"),
            ]),
        ),
        (
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
            array(vec![
                array(vec![Reply::Integer(1), Reply::Integer(2), Reply::Integer(3)]),
                array(vec![simple("Hello"), error("World")]),
            ]),
        ),
        (
            b"*3\r\n$3\r\nfoo\r\n$-1\r\n$3\r\nbar\r\n",
            array(vec![bulk(b"foo"), Reply::Nil, bulk(b"bar")]),
        ),
        (
            b"*3\r\n*0\r\n*-1\r\n*1\r\n*1\r\n$0\r\n\r\n",
            array(vec![
                array(vec![]),
                Reply::Nil,
                array(vec![array(vec![bulk(b"")])]),
            ]),
        ),
    ];
    for (input, want) in cases {
        let (replies, error) = decode_every_way(input, Limits::default());
        assert_eq!(
            (replies, error),
            (vec![want.clone()], None),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(input), Ok((input.len(), Some(want))));
        assert!(decoder.is_idle());
    }
}

#[test]
fn refuses_malformed_replies_split_at_every_byte() {
    use RespError::*;
    let cases: &[(&[u8], RespError)] = &[
        (b"?", UnknownType(b'?')),
        (b"\r\n", UnknownType(b'\r')),
        (b" +OK\r\n", UnknownType(b' ')),
        (b"OK\r\n", UnknownType(b'O')),
        (b"%1\r\n", UnknownType(b'%')),
        (b"+OK\n", Malformed("a line ended by LF without CR")),
        (b"-ERR\n", Malformed("a line ended by LF without CR")),
        (b"+OK\rX", Malformed("a CR in a status or error line")),
        (b"+OK\r\r\n", Malformed("a CR in a status or error line")),
        (b":\r\n", Malformed("a number with no digits")),
        (b":-\r\n", Malformed("a number with no digits")),
        (b":+1\r\n", Malformed("a number with a byte that is not a digit")),
        (b": 1\r\n", Malformed("a number with a byte that is not a digit")),
        (b":1 \r\n", Malformed("a number with a byte that is not a digit")),
        (b":1.5\r\n", Malformed("a number with a byte that is not a digit")),
        (
            b":0x10\r\n",
            Malformed("a number with a byte that is not a digit"),
        ),
        (b":--1\r\n", Malformed("a number with a byte that is not a digit")),
        (b":1-\r\n", Malformed("a number with a byte that is not a digit")),
        (b":1\n", Malformed("a number with a byte that is not a digit")),
        (b":01\r\n", Malformed("a number with a leading zero")),
        (b":00\r\n", Malformed("a number with a leading zero")),
        (b":-01\r\n", Malformed("a number with a leading zero")),
        (b":-0\r\n", Malformed("-0 is not a number Redis writes")),
        (b":1\r\r", Malformed("a number not ended by CRLF")),
        (b":9223372036854775808\r\n", Malformed("an integer past 64 bits")),
        (b":-9223372036854775809\r\n", Malformed("an integer past 64 bits")),
        (
            b":99999999999999999999999\r\n",
            Malformed("an integer past 64 bits"),
        ),
        (b"$\r\n", Malformed("a number with no digits")),
        (b"$-2\r\n", Malformed("a negative length other than -1")),
        (b"$-10\r\n", Malformed("a negative length other than -1")),
        (b"$-0\r\n", Malformed("-0 is not a number Redis writes")),
        (b"$01\r\nx\r\n", Malformed("a number with a leading zero")),
        (b"$1\r\nab\r\n", Malformed("a bulk string longer than its length")),
        (
            b"$2\r\na\r\n\r\n",
            Malformed("a bulk string longer than its length"),
        ),
        (b"$1\r\na\n", Malformed("a bulk string longer than its length")),
        (b"$1\r\na\rb", Malformed("a bulk string not ended by CRLF")),
        (b"*-2\r\n", Malformed("a negative length other than -1")),
        (b"*1\r\n?", UnknownType(b'?')),
        (
            b"*2\r\n+OK\r\n:x\r\n",
            Malformed("a number with a byte that is not a digit"),
        ),
        (
            b"*1\r\n*1\r\n$1\r\nab",
            Malformed("a bulk string longer than its length"),
        ),
    ];
    for (input, want) in cases {
        let (replies, error) = decode_every_way(input, Limits::default());
        assert_eq!(error.as_ref(), Some(want), "{:?}", String::from_utf8_lossy(input));
        assert!(replies.is_empty());
    }
}

#[test]
fn an_error_is_final() {
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(b"+OK\r\n:x"), Ok((5, Some(simple("OK")))));
    let refused = Err(RespError::Malformed("a number with a byte that is not a digit"));
    assert_eq!(decoder.decode(b":x"), refused);
    assert_eq!(decoder.decode(b"+OK\r\n"), refused, "what follows is not read");
    assert!(!decoder.is_idle());
}

#[test]
fn pipelined_replies_come_one_call_each() {
    let input: &[u8] =
        b"+OK\r\n$15\r\n1526919030474-0\r\n*-1\r\n:3\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n-ERR no\r\n";
    let want = vec![
        simple("OK"),
        bulk(b"1526919030474-0"),
        Reply::Nil,
        Reply::Integer(3),
        array(vec![bulk(b"a"), bulk(b"b")]),
        error("ERR no"),
    ];
    assert_eq!(decode_every_way(input, Limits::default()), (want, None));
    // One call, one reply: the rest is left for the next call.
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(input), Ok((5, Some(simple("OK")))));
    assert_eq!(
        decoder.decode(&input[5..]),
        Ok((22, Some(bulk(b"1526919030474-0"))))
    );
    assert_eq!(decoder.decode(&[]), Ok((0, None)));
    assert!(decoder.is_idle());
    // A reply that ends where a read does is whole, the next one not begun.
    assert_eq!(
        decoder.decode(b"*1\r\n:1\r\n"),
        Ok((8, Some(array(vec![Reply::Integer(1)]))))
    );
    assert!(decoder.is_idle());
    assert_eq!(decoder.decode(b"*1\r\n"), Ok((4, None)));
    assert!(!decoder.is_idle(), "a reply cut short shows");
}

#[test]
fn encodes_commands() {
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"PING"], b"*1\r\n$4\r\nPING\r\n"),
        (&[b"SELECT", b"2"], b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"),
        (
            &[b"XADD", b"ssed:log", b"*", b"data", b"hi"],
            b"*5\r\n$4\r\nXADD\r\n$8\r\nssed:log\r\n$1\r\n*\r\n$4\r\ndata\r\n$2\r\nhi\r\n",
        ),
        (&[b"SET", b"k", b""], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"),
        (
            &[b"SET", b"k", b"a\r\nb"],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n",
        ),
        (&[], b"*0\r\n"),
    ];
    for (args, want) in cases {
        let mut out = b"before".to_vec();
        encode(args, &mut out);
        assert_eq!(&out[6..], *want, "{args:?}");
        assert_eq!(&out[..6], b"before", "appends");
        // A command has the shape of a reply: an array of bulk strings.
        let want_reply = array(args.iter().map(|arg| bulk(arg)).collect());
        assert_eq!(Decoder::new().decode(want), Ok((want.len(), Some(want_reply))));
    }
    assert_eq!(Decimal::new(0).as_bytes(), b"0");
    assert_eq!(Decimal::new(u64::MAX).as_bytes(), b"18446744073709551615");
}

#[test]
fn helpers_look_inside_a_reply() {
    let loading = error("LOADING Redis is loading the dataset in memory");
    assert!(loading.is_error());
    assert_eq!(
        loading.error(),
        Some("LOADING Redis is loading the dataset in memory")
    );
    assert_eq!(loading.error_code(), Some("LOADING"));
    assert_eq!(error("ERR").error_code(), Some("ERR"));
    assert_eq!(error("").error_code(), Some(""));
    assert_eq!(simple("OK").error_code(), None);
    assert_eq!(simple("OK").as_simple(), Some("OK"));
    assert_eq!(bulk(b"x").as_bulk(), Some(&b"x"[..]));
    assert_eq!(bulk(b"x").into_bulk(), Some(b"x".to_vec()));
    assert_eq!(simple("x").as_bulk(), None);
    assert_eq!(Reply::Integer(-3).as_integer(), Some(-3));
    let pair = array(vec![Reply::Nil, bulk(b"")]);
    assert_eq!(pair.as_array().map(<[Reply]>::len), Some(2));
    assert!(pair.as_array().is_some_and(|items| items[0].is_nil()));
    assert_eq!(pair.clone().into_array(), Some(vec![Reply::Nil, bulk(b"")]));
    assert_eq!(Reply::Nil.as_array(), None);
    assert!(!pair.is_error() && !pair.is_nil());
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(
        RespError::UnknownType(b'%').to_string(),
        "RESP: a reply cannot start with '%'"
    );
    assert_eq!(
        RespError::UnknownType(0xff).to_string(),
        r"RESP: a reply cannot start with '\xff'"
    );
    assert_eq!(
        RespError::BulkTooLong { limit: MAX_BULK }.to_string(),
        "RESP: a bulk string over 536870912 bytes"
    );
    assert_eq!(
        RespError::Malformed("a number with a leading zero").to_string(),
        "RESP: a number with a leading zero"
    );
}

/// Replies of every type, nested a few deep. Text has no CR or LF,
/// which RESP2 cannot carry in a simple string or error.
fn any_reply() -> impl Strategy<Value = Reply> {
    let text =
        proptest::collection::vec(0x20u8..0x7f, 0..12).prop_map(|b| String::from_utf8(b).unwrap_or_default());
    let leaf = prop_oneof![
        text.clone().prop_map(Reply::Simple),
        text.prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Reply::Bulk),
        Just(Reply::Nil),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Reply::Array)
    })
}

/// Bytes that are mostly RESP, so that cases get past the first byte.
fn near_resp() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"+".to_vec()),
        Just(b"-".to_vec()),
        Just(b":".to_vec()),
        Just(b"$".to_vec()),
        Just(b"*".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"0".to_vec()),
        Just(b"3".to_vec()),
        Just(b"abc".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replies_survive_encoding_and_any_cuts(
        replies in proptest::collection::vec(any_reply(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut bytes = Vec::new();
        for reply in &replies {
            reply.encode(&mut bytes);
        }
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for point in points {
            pieces.push(&bytes[from..point]);
            from = point;
        }
        pieces.push(&bytes[from..]);
        let mut decoder = Decoder::new();
        prop_assert_eq!(decode_pieces(&mut decoder, &pieces), (replies, None));
        prop_assert!(decoder.is_idle());
    }

    #[test]
    fn any_bytes_decode_the_same_however_cut(bytes in near_resp(), cut in any::<prop::sample::Index>()) {
        // Never panics (a panic fails the case), and the cut changes nothing.
        let cut = cut.index(bytes.len() + 1);
        let whole = decode_pieces(&mut Decoder::new(), &[&bytes]);
        let split = decode_pieces(&mut Decoder::new(), &[&bytes[..cut], &bytes[cut..]]);
        prop_assert_eq!(split, whole);
    }
}
