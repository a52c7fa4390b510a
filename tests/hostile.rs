//! Hostile and broken input on the wire: every case gets an ERROR with its
//! own code and a closed connection, nothing stored is touched, and the
//! server goes on serving everyone else. Also the connection limit and the
//! checked-in corpus of nasty frames (`tests/corpus/`).

mod support;

use lottery::bet::Bet;
use lottery::message::{Batch, BatchEncoder, ErrorCode, Message, PROTOCOL_VERSION, kind};
use std::time::{Duration, Instant};
use support::*;

fn batch(agency: u32, first_seq: u64, n: u16) -> Message {
    Message::Batch(Batch { agency, first_seq, bets: (0..n).map(|i| bet(agency, i)).collect() })
}

fn expect_error(raw: &mut Raw, want: ErrorCode) {
    match raw.recv() {
        Message::Error { code, message } => {
            assert_eq!(code, want, "message: {message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected ERROR {want:?}, got {other:?}"),
    }
    assert!(raw.closed(), "connection closed after ERROR {want:?}");
}

/// A server with 3 bets of agency 1 stored; returns it and the stored rows.
fn server_with_data(dir: &TempDir) -> (Server, Vec<Bet>) {
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "3")]);
    let mut raw = Raw::connect(server.addr);
    raw.hello(1);
    raw.send(&batch(1, 0, 3));
    assert_eq!(raw.recv(), Message::Ack { next_seq: 3 });
    let stored = stored_bets(&server.storage);
    assert_eq!(stored.len(), 3);
    (server, stored)
}

/// One kind of hostile input: what it is, the code it must get, and how it
/// is sent on a fresh connection.
struct Case {
    name: &'static str,
    code: ErrorCode,
    inject: fn(&mut Raw),
}

/// A handshake that must succeed.
fn hello_ok(raw: &mut Raw, agency: u32) {
    assert!(matches!(raw.hello(agency), Message::HelloOk { .. }));
}

/// A valid one-bet BATCH payload of `agency`, to break.
fn one_bet_payload(agency: u32) -> Vec<u8> {
    let mut enc = BatchEncoder::new(agency, 0);
    enc.push(&bet(agency, 1)).unwrap();
    enc.into_payload()
}

const CASES: &[Case] = &[
    Case {
        name: "frame over the limit",
        code: ErrorCode::FrameTooLarge,
        inject: |r| r.send_bytes(&[kind::BATCH, 0xFF, 0xFF]),
    },
    Case {
        name: "unknown type",
        code: ErrorCode::UnknownType,
        inject: |r| r.send_frame(0x7F, b"??"),
    },
    Case {
        name: "truncated payload",
        code: ErrorCode::Truncated,
        inject: |r| r.send_frame(kind::HELLO, &[1, 0, 0]),
    },
    Case {
        name: "invalid UTF-8",
        code: ErrorCode::InvalidUtf8,
        inject: |r| {
            hello_ok(r, 2);
            let mut payload = one_bet_payload(2);
            payload[15] = 0xFF; // first byte of the first name
            r.send_frame(kind::BATCH, &payload);
        },
    },
    Case {
        name: "wrong field count (extra bytes)",
        code: ErrorCode::TrailingBytes,
        inject: |r| r.send_frame(kind::BYE, &[0]),
    },
    Case {
        name: "wrong field count (count says more bets than sent)",
        code: ErrorCode::Truncated,
        inject: |r| {
            hello_ok(r, 2);
            let mut payload = one_bet_payload(2);
            payload[13] = 2;
            r.send_frame(kind::BATCH, &payload);
        },
    },
    Case {
        name: "batch for another agency",
        code: ErrorCode::AgencyMismatch,
        inject: |r| {
            hello_ok(r, 2);
            r.send(&batch(1, 3, 1));
        },
    },
    Case {
        name: "second HELLO",
        code: ErrorCode::DuplicateHello,
        inject: |r| {
            hello_ok(r, 2);
            r.send(&Message::Hello { version: 1, agency: 3 });
        },
    },
    Case {
        name: "data before HELLO",
        code: ErrorCode::HelloRequired,
        inject: |r| r.send(&batch(1, 3, 1)),
    },
    Case {
        name: "DONE before HELLO",
        code: ErrorCode::HelloRequired,
        inject: |r| r.send(&Message::Done { total: 0 }),
    },
    Case {
        name: "agency 0",
        code: ErrorCode::UnknownAgency,
        inject: |r| r.send(&Message::Hello { version: 1, agency: 0 }),
    },
    Case {
        name: "agency above SERVER_AGENCIES",
        code: ErrorCode::UnknownAgency,
        inject: |r| r.send(&Message::Hello { version: 1, agency: 4 }),
    },
    Case {
        name: "unsupported version",
        code: ErrorCode::UnsupportedVersion,
        inject: |r| r.send(&Message::Hello { version: 9, agency: 1 }),
    },
    Case {
        name: "DONE twice on one connection",
        code: ErrorCode::DoneTwice,
        inject: |r| {
            hello_ok(r, 3);
            r.send(&Message::Done { total: 0 });
            assert_eq!(r.recv(), Message::Ack { next_seq: 0 });
            r.send(&Message::Done { total: 0 });
        },
    },
    Case {
        name: "DONE with the wrong total",
        code: ErrorCode::DoneMismatch,
        inject: |r| {
            hello_ok(r, 1);
            r.send(&Message::Done { total: 99 });
        },
    },
    Case {
        name: "a gap in the sequence",
        code: ErrorCode::Sequence,
        inject: |r| {
            hello_ok(r, 1);
            r.send(&batch(1, 10, 1));
        },
    },
    Case {
        name: "a server-only message",
        code: ErrorCode::UnexpectedMessage,
        inject: |r| r.send(&Message::Ack { next_seq: 1 }),
    },
    Case {
        name: "an impossible birthdate",
        code: ErrorCode::InvalidBet,
        inject: |r| {
            hello_ok(r, 2);
            let mut payload = one_bet_payload(2);
            let day = payload.len() - 3;
            payload[day] = 31;
            payload[day - 1] = 2; // February 31st
            r.send_frame(kind::BATCH, &payload);
        },
    },
];

#[test]
fn each_kind_of_hostile_input_gets_its_own_error_code() {
    let dir = TempDir::new("hostile");
    let (server, stored) = server_with_data(&dir);
    for case in CASES {
        println!("injecting: {} (expect {})", case.name, case.code.name());
        let mut raw = Raw::connect(server.addr);
        (case.inject)(&mut raw);
        expect_error(&mut raw, case.code);
        // Everyone else is unaffected.
        let mut ok = Raw::connect(server.addr);
        ok.send(&Message::Echo(b"still there?".to_vec()));
        assert_eq!(ok.recv(), Message::Echo(b"still there?".to_vec()));
    }
    assert_eq!(stored_bets(&server.storage), stored, "stored rows untouched");
    println!("{} hostile inputs, each answered with its code and a close", CASES.len());
    // Agency 1 can still finish its work.
    let mut raw = Raw::connect(server.addr);
    assert_eq!(raw.hello(1), Message::HelloOk { next_seq: 3, done: false });
    raw.send(&batch(1, 3, 2));
    assert_eq!(raw.recv(), Message::Ack { next_seq: 5 });
}

#[test]
fn the_corpus_of_nasty_frames_never_hurts_the_server() {
    let dir = TempDir::new("corpus");
    let (server, stored) = server_with_data(&dir);
    let corpus = repo().join("tests/corpus");
    let mut entries: Vec<_> = std::fs::read_dir(&corpus)
        .expect("tests/corpus exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 10, "corpus has {} files", entries.len());
    for path in &entries {
        let bytes = std::fs::read(path).unwrap();
        let mut raw = Raw::connect(server.addr);
        raw.send_bytes(&bytes);
        // Half-close: the server sees the end of what we send.
        let _ = raw.stream.shutdown(std::net::Shutdown::Write);
        let mut answers = 0;
        while raw.try_recv().is_some() {
            answers += 1;
        }
        println!("{}: {} bytes, {answers} answers", path.display(), bytes.len());
        let mut ok = Raw::connect(server.addr);
        ok.send(&Message::Echo(vec![1, 2, 3]));
        assert_eq!(ok.recv(), Message::Echo(vec![1, 2, 3]), "after {}", path.display());
    }
    assert_eq!(stored_bets(&server.storage), stored, "stored rows untouched");
}

#[test]
fn connections_over_the_limit_are_refused_and_silent_ones_evicted() {
    let dir = TempDir::new("limit");
    let server =
        Server::start(dir.path(), &[("SERVER_AGENCIES", "10"), ("SERVER_MAX_CONNECTIONS", "4")]);
    // Four agencies say HELLO: none of them can be evicted.
    let mut agencies: Vec<Raw> = (1..=4).map(|_| Raw::connect(server.addr)).collect();
    for (i, raw) in agencies.iter_mut().enumerate() {
        assert!(matches!(raw.hello(i as u32 + 1), Message::HelloOk { .. }));
    }
    let mut refused = Raw::connect(server.addr);
    expect_error(&mut refused, ErrorCode::Busy);
    server.log.wait_for("too many connections", Duration::from_secs(10));
    // One agency leaves; a silent connection takes its place...
    let mut leaving = agencies.pop().unwrap();
    leaving.send(&Message::Bye);
    assert!(leaving.closed());
    let mut silent = Raw::connect(server.addr);
    silent.send(&Message::Echo(vec![])); // proves it is registered
    assert_eq!(silent.recv(), Message::Echo(vec![]));
    // ... and is evicted when an agency needs the room.
    let mut newcomer = Raw::connect(server.addr);
    expect_error(&mut silent, ErrorCode::Busy);
    assert!(matches!(newcomer.hello(5), Message::HelloOk { .. }));
}

#[test]
fn idle_and_slow_connections_time_out() {
    let dir = TempDir::new("timeouts");
    let server = Server::start(
        dir.path(),
        &[
            ("SERVER_AGENCIES", "1"),
            ("SERVER_IDLE_TIMEOUT", "300ms"),
            ("SERVER_FRAME_TIMEOUT", "300ms"),
        ],
    );
    let mut idle = Raw::connect(server.addr);
    let mut slow = Raw::connect(server.addr);
    slow.send_bytes(&[kind::ECHO, 0, 10, b'a']); // 1 of 10 payload bytes, then nothing
    expect_error(&mut idle, ErrorCode::Timeout);
    expect_error(&mut slow, ErrorCode::Timeout);
    server.log.wait_for("idle for", Duration::from_secs(5));
    server.log.wait_for("frame incomplete after", Duration::from_secs(5));
}

/// Peers without a key cannot keep the workers from the agencies: one that
/// sent an ECHO and one that said HELLO but never AUTH each hold a worker
/// for one first-frame timeout (1 s) at most, then get ERROR `timeout`.
#[test]
fn peers_without_a_key_hold_a_worker_for_one_first_frame_timeout_at_most() {
    let dir = TempDir::new("no-handshake");
    let server = Server::start(
        dir.path(),
        &[("SERVER_AGENCIES", "1"), ("SERVER_WORKERS", "2"), ("SERVER_IDLE_TIMEOUT", "30s")],
    );
    let mut echoer = Raw::connect(server.addr);
    echoer.echo(b"hola");
    let mut halfway = Raw::connect(server.addr);
    halfway.say_hello(1);
    assert!(matches!(halfway.recv(), Message::Challenge { .. }));
    // Both workers are taken; the agency waits for one of them.
    let started = Instant::now();
    let mut agency = Raw::connect(server.addr);
    assert!(matches!(agency.hello(1), Message::HelloOk { .. }));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the agency waited {took:?}");
    expect_error(&mut echoer, ErrorCode::Timeout);
    expect_error(&mut halfway, ErrorCode::Timeout);
    server.log.wait_for("no handshake within", Duration::from_secs(5));
}

/// An oversize frame header right behind a whole frame: the frame is
/// answered, then ERROR `frame_too_large` at once (not a frame timeout
/// later, waiting for a payload the server would never read).
#[test]
fn an_oversize_header_behind_a_whole_frame_is_refused_at_once() {
    let dir = TempDir::new("oversize-behind");
    let server = Server::start(dir.path(), &[("SERVER_AGENCIES", "1")]);
    let mut raw = Raw::connect(server.addr);
    let started = Instant::now();
    raw.send_bytes(&[kind::ECHO, 0, 4, b'h', b'o', b'l', b'a', kind::ECHO, 0xFF, 0xFF]);
    assert_eq!(raw.recv(), Message::Echo(b"hola".to_vec()));
    expect_error(&mut raw, ErrorCode::FrameTooLarge);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
}

/// A flood of failed AUTHs whose senders hang up at once: the connections
/// waiting for their late answers count against the connection cap, so
/// the server's open files stay bounded by the cap, not by the flood.
#[test]
fn a_flood_of_failed_auths_stays_within_the_connection_cap() {
    let dir = TempDir::new("auth-flood");
    let cap = 8;
    let server =
        Server::start(dir.path(), &[("SERVER_AGENCIES", "1"), ("SERVER_MAX_CONNECTIONS", "8")]);
    let fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let pid = server.child.id();
    let before = fds(pid);
    let addr = server.addr;
    let flood = Swarm::new().spawn(20, move |_, control| {
        let wrong = agency_key(999);
        while !control.stopped() {
            let Ok(stream) = std::net::TcpStream::connect(addr) else {
                continue;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut reader = lottery::framing::FrameReader::new(&stream);
            let mut writer = &stream;
            let hello = Message::Hello { version: PROTOCOL_VERSION, agency: 1 };
            if std::io::Write::write_all(&mut writer, &hello.to_bytes().unwrap()).is_err() {
                continue;
            }
            let Ok(Some(frame)) = reader.read_frame() else {
                continue;
            };
            if let Ok(Message::Challenge { nonce }) = Message::from_frame(&frame) {
                let auth = Message::Auth { tag: wrong.tag(&nonce, 1, PROTOCOL_VERSION) };
                let _ = std::io::Write::write_all(&mut writer, &auth.to_bytes().unwrap());
            }
            // Hang up without waiting for the answer.
        }
    });
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        most = most.max(fds(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    flood.stop();
    let fails = server.log.count("action: auth | result: fail");
    assert!(fails > 20, "the flood got going: {fails} failed AUTHs");
    // Each connection is one socket plus its registry clone; the cap may
    // be passed by the 4 connections being evicted, and a refused newcomer
    // holds one socket while it is answered.
    assert!(
        most <= before + 2 * (cap + 4) + 2,
        "open files: {before} before, {most} at most during a flood of {fails} failed AUTHs"
    );
    // And an agency gets in at once afterwards.
    let mut agency = Raw::connect(server.addr);
    assert!(matches!(agency.hello(1), Message::HelloOk { .. }));
}
