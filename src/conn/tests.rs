//! Unit tests of one connection: a stream's frames and log in one write,
//! its size, its phase transitions.

use super::*;
use std::net::{TcpListener, TcpStream as StdStream};

fn pair() -> (Conn, StdStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let conn = Conn::new(TcpStream::from_std(server), 1, 1024, Instant::now());
    (conn, client)
}

#[test]
fn a_stream_sends_its_frames_and_its_log_in_one_write() {
    let (mut conn, mut client) = pair();
    let mut log = Log::default();
    log.append(b"old;");
    let cursor = log.append(b"e1;");
    conn.start_stream(3, 0, cursor, cursor, true, Instant::now());
    assert_eq!(conn.view(), Some((3, 0)));
    conn.enqueue(Frame::raw(b"<head>".to_vec()));
    log.append(b"e2;");
    conn.enqueue_at(log.head(), Frame::raw(b"<ping>".to_vec()));
    assert_eq!(conn.unsent(log.head()), 6 + 6 + 6);
    let (outcome, written) = conn.flush(Some(&log), false);
    assert!(matches!(outcome, FlushOutcome::Done { .. }));
    assert_eq!(written, 18);
    assert_eq!(conn.cursor(), log.head());
    let mut got = [0; 18];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"<head>e1;e2;<ping>");
    // A closing stream sends what it was told was last, and no more.
    conn.enqueue_at(log.head(), Frame::raw(b"<bye>".to_vec()));
    conn.begin_closing();
    log.append(b"late;");
    assert_eq!(conn.unsent(log.head()), 5);
    conn.flush(Some(&log), false);
    let mut got = [0; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"<bye>");
}

/// Every idle subscriber is one of these in the slab: its size is most
/// of what ssed itself spends per subscriber (see BENCHMARKS.md). 96
/// bytes in a release build, where mio's socket is a bare 4-byte fd
/// (debug builds add a field to it for their own checks).
#[test]
fn a_connection_stays_small() {
    use std::mem::size_of;
    let budget = (96 - 4 + size_of::<TcpStream>()).next_multiple_of(8);
    assert!(size_of::<Conn>() <= budget, "{} bytes", size_of::<Conn>());
}

#[test]
fn phase_transitions() {
    let (mut conn, _client) = pair();
    assert!(conn.is_idle());
    assert_eq!(conn.peer_closed(), AfterEof::Close);
    let (mut conn, _client) = pair();
    conn.enqueue(Frame::raw(b"answer".to_vec()));
    assert_eq!(conn.peer_closed(), AfterEof::FinishAnswers);
    assert!(matches!(conn.phase, Phase::Closing { peer_gone: true }));
    assert!(!conn.wants_read());
    assert_eq!(conn.flushed(false), AfterFlush::Close);

    let (mut conn, _client) = pair();
    conn.start_stream(0, 0, 0, 0, true, Instant::now());
    conn.begin_closing();
    conn.begin_closing();
    assert!(
        matches!(conn.phase, Phase::Closing { peer_gone: false }),
        "closing twice is closing"
    );
    assert_eq!(conn.flushed(true), AfterFlush::Close);
    assert_eq!(conn.flushed(false), AfterFlush::Linger);
    assert!(matches!(conn.phase, Phase::Lingering));
    assert!(conn.wants_read());
}
