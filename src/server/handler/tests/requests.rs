//! An agency's requests once it is known: BATCH (positions and resends),
//! DONE, WINNERS? (paging), and every refusal on the way.

use super::*;

#[test]
fn batches_are_acked_at_their_end_and_resends_are_not_stored_again() {
    let fx = Fixture::with_keys("sequence", 1);
    let mut session = fx.session(1);
    // Two batches of one read: two ACKs, in order, after one commit.
    let said = fx.send(&mut session, &[batch(1, 0, 3), batch(1, 3, 2)]);
    assert_eq!((said.answers, said.close), (vec![ack(3), ack(5)], false));
    assert_eq!(fx.stored(), 5);
    // A resend (its ACK was lost) is acknowledged at its own end, and not
    // stored again; so is one that arrives on a new connection.
    let said = fx.send(&mut session, &[batch(1, 0, 3)]);
    assert_eq!((said.answers, said.close), (vec![ack(3)], false));
    let said = fx.send(&mut fx.session(1), &[batch(1, 3, 2)]);
    assert_eq!(said.answers, [ack(5)]);
    assert_eq!(fx.stored(), 5);
    // A new connection resumes where the agency is.
    let said = fx.handshake(&mut Session::default(), 1);
    let want = Message::HelloOk { next_seq: 5, done: false };
    assert_eq!(said.answers, [want]);
}

#[test]
fn a_gap_or_an_overlap_is_refused_sequence() {
    let fx = Fixture::with_keys("gap", 1);
    let mut session = fx.session(1);
    assert_eq!(fx.send(&mut session, &[batch(1, 0, 2)]).answers, [ack(2)]);
    // A gap, and a batch reaching past the agency's position from before it.
    for wrong in [batch(1, 3, 1), batch(1, 1, 2)] {
        let said = fx.send(&mut fx.session(1), &[wrong]);
        assert_refused(&said, ErrorCode::Sequence);
    }
    // An empty batch where the agency is: nothing to store, ACKed.
    let said = fx.send(&mut session, &[batch(1, 2, 0)]);
    assert_eq!(said.answers, [ack(2)]);
    assert_eq!(fx.stored(), 2);
}

#[test]
fn done_is_acked_with_the_total_once_per_connection() {
    let fx = Fixture::with_keys("done", 2);
    let mut session = fx.session(1);
    fx.send(&mut session, &[batch(1, 0, 3)]);
    let said = fx.send(&mut fx.session(1), &[Message::Done { total: 4 }]);
    assert_refused(&said, ErrorCode::DoneMismatch);
    let said = fx.send(&mut session, &[Message::Done { total: 3 }]);
    assert_eq!((said.answers, said.close), (vec![ack(3)], false));
    assert!(session.done_sent);
    // On the same connection: DONE again, or a batch after it.
    let said = fx.send(&mut session, &[Message::Done { total: 3 }]);
    assert_refused(&said, ErrorCode::DoneTwice);
    let said = fx.send(&mut session, &[batch(1, 3, 1)]);
    assert_refused(&said, ErrorCode::AlreadyDone);
    // On a new one: the agency is done; a resend is still acknowledged, a
    // repeated DONE is harmless, a new bet is refused.
    let mut again = Session::default();
    let said = fx.handshake(&mut again, 1);
    let want = Message::HelloOk { next_seq: 3, done: true };
    assert_eq!(said.answers, [want]);
    let said = fx.send(&mut again, &[batch(1, 0, 3), Message::Done { total: 3 }]);
    assert_eq!((said.answers, said.close), (vec![ack(3), ack(3)], false));
    let said = fx.send(&mut fx.session(1), &[batch(1, 3, 1)]);
    assert_refused(&said, ErrorCode::AlreadyDone);
    assert_eq!(fx.stored(), 3);
}

#[test]
fn winners_before_the_draw_are_not_ready_and_the_connection_closes() {
    let fx = Fixture::with_keys("not-ready", 2);
    let mut session = fx.session(1);
    fx.send(&mut session, &[Message::Done { total: 0 }]);
    let said = fx.send(&mut session, &[Message::WinnersQuery { offset: 0 }, hello(2)]);
    let want = Message::NotReady { finished: 1, expected: 2 };
    // Nothing after it is handled: the agency asks again later.
    assert_eq!((said.answers, said.close), (vec![want], true));
}

#[test]
fn winners_after_the_draw_come_in_pages() {
    let fx = Fixture::with_keys("winners", 2);
    // Agency 1: 2,000 winners, more than one page holds.
    let mut one = fx.session(1);
    let bets: Vec<Bet> = (0..2_000).map(|i| bet(1, i, i % 7 != 3)).collect();
    let winners: Vec<String> =
        bets.iter().filter(|b| b.number == WINNING_NUMBER).map(|b| b.document.clone()).collect();
    let mut first = 0;
    while first < bets.len() {
        // As many bets as one frame holds.
        let mut enc = BatchEncoder::new(1, first as u64);
        let n = bets[first..].iter().take_while(|b| enc.push(*b).unwrap()).count();
        let mut frame = Vec::new();
        framing::encode_into(&mut frame, kind::BATCH, &enc.into_payload()).unwrap();
        let said = fx.send_bytes(&mut one, &frame);
        first += n;
        assert_eq!(said.answers, [ack(first as u64)]);
    }
    fx.send(&mut one, &[Message::Done { total: 2_000 }]);
    fx.send(&mut fx.session(2), &[batch(2, 0, 1), Message::Done { total: 1 }]);
    // Page by page, each asked where the last one ended.
    let mut got: Vec<String> = Vec::new();
    let mut pages = 0;
    while got.len() < winners.len() {
        let offset = got.len() as u32;
        let said = fx.send(&mut one, &[Message::WinnersQuery { offset }]);
        let [Message::Winners { total, offset: at, ref documents }] = said.answers[..] else {
            panic!("{said:?}")
        };
        assert_eq!((total as usize, at, said.close), (winners.len(), offset, false));
        let room: usize = documents.iter().map(|d| 1 + d.len()).sum();
        assert!(!documents.is_empty() && room <= WINNERS_ROOM);
        got.extend(documents.iter().cloned());
        pages += 1;
    }
    assert_eq!(got, winners);
    assert!(pages >= 2, "{pages} pages");
    // Several queries in one read: one page each; the end is an empty page.
    let end = winners.len() as u32;
    let said = fx.send(
        &mut one,
        &[Message::WinnersQuery { offset: 0 }, Message::WinnersQuery { offset: end }],
    );
    assert!(
        matches!(&said.answers[..], [Message::Winners { offset: 0, .. }, Message::Winners { documents, .. }] if documents.is_empty())
    );
    let said = fx.send(&mut one, &[Message::WinnersQuery { offset: end + 1 }]);
    assert_refused(&said, ErrorCode::BadOffset);
    // Agency 2 won nothing.
    let said = fx.send(&mut fx.session(2), &[Message::WinnersQuery { offset: 0 }]);
    let want = Message::Winners { total: 0, offset: 0, documents: vec![] };
    assert_eq!(said.answers, [want]);
}

/// Every way a request can be refused that the tests above do not meet,
/// each with its own code; nothing is stored by any of them.
#[test]
fn each_refusal_has_its_own_code() {
    let fx = Fixture::with_keys("refusals", 2);
    // A one-bet BATCH payload of agency 1, to break.
    let payload = |bet: &Bet| {
        let mut enc = BatchEncoder::new(1, 0);
        assert!(enc.push(bet).unwrap());
        enc.into_payload()
    };
    let good = payload(&bet(1, 0, false));
    let mut bad_utf8 = good.clone();
    bad_utf8[15] = 0xFF; // the first name's first byte
    let mut february_31 = good.clone();
    let day = february_31.len() - 3;
    (february_31[day - 1], february_31[day]) = (2, 31);
    let empty_name = payload(&Bet { first_name: String::new(), ..bet(1, 0, false) });
    let mut unknown_code = Vec::new();
    framing::encode_into(&mut unknown_code, kind::ERROR, &[0xFF, 0xFF, 0, 0]).unwrap();
    let frame = |kind: u8, payload: &[u8]| {
        let mut out = Vec::new();
        framing::encode_into(&mut out, kind, payload).unwrap();
        out
    };
    let cases: [(&str, Vec<u8>, ErrorCode); 9] = [
        ("unknown type", frame(0x7F, b"??"), ErrorCode::UnknownType),
        ("HELLO cut short", frame(kind::HELLO, &[1, 0, 0]), ErrorCode::Truncated),
        ("BYE with a byte", frame(kind::BYE, &[0]), ErrorCode::TrailingBytes),
        (
            "batch with a byte more",
            frame(kind::BATCH, &[&good[..], &[0]].concat()),
            ErrorCode::TrailingBytes,
        ),
        ("a name not UTF-8", frame(kind::BATCH, &bad_utf8), ErrorCode::InvalidUtf8),
        ("February 31st", frame(kind::BATCH, &february_31), ErrorCode::InvalidBet),
        ("an empty first name", frame(kind::BATCH, &empty_name), ErrorCode::InvalidBet),
        ("an ERROR code nobody knows", unknown_code, ErrorCode::UnexpectedMessage),
        ("a message only servers send", ack(1).to_bytes().unwrap(), ErrorCode::UnexpectedMessage),
    ];
    // Agency 2 sending agency 1's bets.
    let said = fx.send(&mut fx.session(2), &[batch(1, 0, 1)]);
    assert_refused(&said, ErrorCode::AgencyMismatch);
    for (name, bytes, code) in cases {
        let mut session = fx.session(1);
        let said = fx.send_bytes(&mut session, &bytes);
        assert_refused(&said, code);
        assert_eq!(said.answers.len(), 1, "{name}");
    }
    assert_eq!(fx.stored(), 0);
}

#[test]
fn frames_after_a_close_or_not_yet_whole_are_not_handled() {
    let fx = Fixture::with_keys("frames", 1);
    let echo = |text: &[u8]| Message::Echo(text.to_vec());
    // BYE closes: the ECHO behind it is not answered.
    let said = fx.send(&mut Session::default(), &[echo(b"1"), Message::Bye, echo(b"2")]);
    assert_eq!((said.answers, said.close), (vec![echo(b"1")], true));
    // A frame not yet whole stays with the connection, which hands it in
    // once it is; so does what follows an oversize header (the connection
    // refuses that one itself).
    let whole = echo(b"hola").to_bytes().unwrap();
    for tail in [&whole[..4], &[kind::ECHO, 0xFF, 0xFF][..]] {
        let said = fx.send_bytes(&mut Session::default(), &[&whole[..], tail].concat());
        assert_eq!((said.answers, said.close), (vec![echo(b"hola")], false));
    }
}

#[test]
fn a_closed_store_answers_shutting_down() {
    let fx = Fixture::with_keys("closed", 1);
    let mut session = fx.session(1);
    fx.store.close();
    let said = fx.send(&mut session, &[batch(1, 0, 1)]);
    assert_refused(&said, ErrorCode::ShuttingDown);
    let said = fx.send(&mut session, &[Message::Done { total: 0 }]);
    assert_refused(&said, ErrorCode::ShuttingDown);
}
