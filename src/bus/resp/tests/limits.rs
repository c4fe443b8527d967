//! The decoder's limits: what passes them is refused, and a header alone
//! allocates nothing it promises.

use super::*;

#[test]
fn refuses_what_passes_small_limits() {
    let limits = Limits {
        bulk: 5,
        array: 2,
        depth: 2,
        line: 4,
    };
    let fits: &[&[u8]] = &[
        b"$5\r\nhello\r\n",
        b"*2\r\n:1\r\n:2\r\n",
        b"*1\r\n*2\r\n:1\r\n$-1\r\n",
        b"+OKOK\r\n",
        b"-ERR\r\n",
    ];
    for input in fits {
        let (replies, error) = decode_every_way(input, limits);
        assert_eq!(
            (replies.len(), error),
            (1, None),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let refused: &[(&[u8], RespError)] = &[
        (b"$6\r\nhello!\r\n", RespError::BulkTooLong { limit: 5 }),
        (b"*3\r\n:1\r\n:2\r\n:3\r\n", RespError::ArrayTooLong { limit: 2 }),
        (b"*1\r\n*1\r\n*0\r\n", RespError::TooDeep { limit: 2 }),
        (b"*1\r\n*1\r\n*-1\r\n", RespError::TooDeep { limit: 2 }),
        (b"+OKOK!\r\n", RespError::LineTooLong { limit: 4 }),
        (b"-ERROR\r\n", RespError::LineTooLong { limit: 4 }),
    ];
    for (input, want) in refused {
        let (_, error) = decode_every_way(input, limits);
        assert_eq!(error.as_ref(), Some(want), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn a_header_alone_allocates_nothing_it_promises() {
    // Over the limit: refused at the digit that passes it, before its
    // CRLF, so nothing is reserved for it.
    let mut decoder = Decoder::new();
    assert_eq!(
        decoder.decode(b"$536870913"),
        Err(RespError::BulkTooLong { limit: MAX_BULK })
    );
    let mut decoder = Decoder::new();
    assert_eq!(
        decoder.decode(b"$99999999999999999999999"),
        Err(RespError::BulkTooLong { limit: MAX_BULK })
    );
    let mut decoder = Decoder::new();
    assert_eq!(
        decoder.decode(b"*1048577"),
        Err(RespError::ArrayTooLong { limit: MAX_ARRAY })
    );

    // At the limit: accepted, and only what arrived is held.
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(b"$536870912\r\nabc"), Ok((15, None)));
    match &decoder.state {
        State::Bulk { data, remaining } => {
            assert_eq!((data.as_slice(), *remaining), (&b"abc"[..], MAX_BULK - 3));
            assert!(data.capacity() <= 3, "reserved {}", data.capacity());
        }
        other => panic!("{other:?}"),
    }
    // A bulk string in many reads grows with them, never past its length.
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(b"$100\r\n"), Ok((6, None)));
    for _ in 0..99 {
        assert_eq!(decoder.decode(b"x"), Ok((1, None)));
    }
    match &decoder.state {
        State::Bulk { data, .. } => assert!(data.capacity() <= 100, "reserved {}", data.capacity()),
        other => panic!("{other:?}"),
    }

    // Arrays of a million, nested as deep as allowed: a few replies' room each.
    let mut decoder = Decoder::new();
    let deep = b"*1048576\r\n".repeat(MAX_DEPTH);
    assert_eq!(decoder.decode(&deep), Ok((deep.len(), None)));
    assert_eq!(decoder.open.len(), MAX_DEPTH);
    assert!(decoder
        .open
        .iter()
        .all(|open| open.items.capacity() <= RESERVE_ITEMS));
    assert_eq!(decoder.decode(b"*"), Err(RespError::TooDeep { limit: MAX_DEPTH }));
}

#[test]
fn nests_to_the_depth_limit_and_no_further() {
    let mut input = b"*1\r\n".repeat(MAX_DEPTH);
    input.extend_from_slice(b":7\r\n");
    let mut want = Reply::Integer(7);
    for _ in 0..MAX_DEPTH {
        want = array(vec![want]);
    }
    assert_eq!(Decoder::new().decode(&input), Ok((input.len(), Some(want))));
    // One deeper is refused at its `*`, however much follows.
    let mut input = b"*1\r\n".repeat(100_000);
    input.extend_from_slice(b":7\r\n");
    let mut decoder = Decoder::new();
    assert_eq!(
        decoder.decode(&input),
        Err(RespError::TooDeep { limit: MAX_DEPTH })
    );
    assert!(decoder.open.is_empty(), "nothing of it is kept");
}

#[test]
fn refuses_long_lines() {
    let mut line = b"+".to_vec();
    line.extend(std::iter::repeat_n(b'a', MAX_LINE));
    line.extend_from_slice(b"\r\n");
    assert_eq!(Decoder::new().decode(&line).map(|(used, _)| used), Ok(line.len()));
    line.insert(1, b'a');
    assert_eq!(
        Decoder::new().decode(&line),
        Err(RespError::LineTooLong { limit: MAX_LINE })
    );
    // In pieces too: the limit counts what was kept.
    let mut decoder = Decoder::new();
    let pieces: Vec<&[u8]> = line.chunks(1000).collect();
    assert_eq!(
        decode_pieces(&mut decoder, &pieces).1,
        Some(RespError::LineTooLong { limit: MAX_LINE })
    );
}
