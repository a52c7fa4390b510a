//! Round trips, hostile payloads and the worked examples of
//! `docs/PROTOCOL.md`.

use super::*;
use crate::auth::{self, Nonce};
use crate::bet::Bet;
use crate::framing::{self, MAX_PAYLOAD_LEN};
use chrono::NaiveDate;

fn bet(first: &str, last: &str, doc: &str, number: u16) -> Bet {
    Bet {
        agency: 3,
        first_name: first.into(),
        last_name: last.into(),
        document: doc.into(),
        birthdate: NaiveDate::from_ymd_opt(1999, 3, 17).unwrap(),
        number,
    }
}

fn round_trip(msg: Message) {
    let bytes = msg.to_bytes().unwrap();
    let found = framing::decode(&bytes, framing::MAX_FRAME_LEN).unwrap().unwrap();
    assert_eq!(found.len, bytes.len());
    assert_eq!(Message::decode(found.kind, found.payload).unwrap(), msg);
}

#[test]
fn every_message_round_trips() {
    let all = vec![
        Message::Hello { version: PROTOCOL_VERSION, agency: 7 },
        Message::HelloOk { next_seq: 1 << 40, done: true },
        Message::Batch(Batch {
            agency: 3,
            first_seq: 12,
            bets: vec![
                bet("José, \"Pepe\"", "Núñez|O'Brien", "0012", 7574),
                bet("Ana\nMaría", "Li\r\n", "9999999999", 0),
            ],
        }),
        Message::Batch(Batch { agency: 3, first_seq: 0, bets: vec![] }),
        Message::Ack { next_seq: 99 },
        Message::Error { code: ErrorCode::InvalidBet, message: "bet 3: número inválido".into() },
        Message::Done { total: 26936 },
        Message::WinnersQuery { offset: 5 },
        Message::Winners { total: 3, offset: 1, documents: vec!["30904465".into(), "1".into()] },
        Message::NotReady { finished: 2, expected: 5 },
        Message::Echo(b"\x00\xffhola".to_vec()),
        Message::Echo(vec![]),
        Message::Bye,
        Message::Challenge { nonce: std::array::from_fn(|i| i as u8) },
        Message::Auth { tag: [0xAB; 32] },
    ];
    for msg in all {
        round_trip(msg);
    }
}

#[test]
fn every_error_code_round_trips() {
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        round_trip(Message::Error { code, message: code.name().into() });
    }
    assert_eq!(ErrorCode::from_u16(0), None);
}

#[test]
fn hostile_payloads_are_decode_errors() {
    use DecodeError as D;
    assert_eq!(Message::decode(0x7F, &[]), Err(D::UnknownType(0x7F)));
    assert!(matches!(
        Message::decode(kind::HELLO, &[1, 0, 0]),
        Err(D::Truncated { field: "agency" })
    ));
    assert_eq!(Message::decode(kind::BYE, &[0]), Err(D::TrailingBytes { extra: 1 }));
    // A nonce or a tag is exactly 32 bytes.
    assert_eq!(Message::decode(kind::CHALLENGE, &[0; 31]), Err(D::Truncated { field: "nonce" }));
    assert_eq!(Message::decode(kind::AUTH, &[0; 33]), Err(D::TrailingBytes { extra: 1 }));
    assert_eq!(Message::decode(kind::AUTH, &[]), Err(D::Truncated { field: "tag" }));
    // A batch announcing 2 bets but carrying 1.
    let mut p = BatchEncoder::new(1, 0);
    p.push(&bet("A", "B", "1", 1)).unwrap();
    let mut payload = p.into_payload();
    payload[13] = 2;
    assert!(matches!(Message::decode(kind::BATCH, &payload), Err(D::Truncated { .. })));
    // Invalid UTF-8 in a name.
    let mut p = BatchEncoder::new(1, 0);
    p.push(&bet("AB", "C", "1", 1)).unwrap();
    let mut payload = p.into_payload();
    payload[BATCH_HEADER_LEN + 1] = 0xFF;
    assert_eq!(Message::decode(kind::BATCH, &payload), Err(D::InvalidUtf8 { field: "first_name" }));
    // February 30th.
    let mut p = BatchEncoder::new(1, 0);
    p.push(&bet("A", "B", "1", 1)).unwrap();
    let mut payload = p.into_payload();
    let at = payload.len() - 4; // day byte sits before the u16 number
    payload[at - 1] = 2;
    payload[at] = 30;
    assert!(matches!(Message::decode(kind::BATCH, &payload), Err(D::InvalidBet(_))));
    // A huge count with no bytes behind it allocates nothing and fails.
    let mut payload = BatchEncoder::new(1, 0).into_payload();
    payload[12] = 0xFF;
    payload[13] = 0xFF;
    assert!(matches!(Message::decode(kind::BATCH, &payload), Err(D::Truncated { .. })));
}

#[test]
fn batch_encoder_stops_at_the_frame_limit() {
    let long = "x".repeat(255);
    let b = bet(&long, &long, "1234567890", 1);
    let mut enc = BatchEncoder::new(1, 0);
    while enc.push(&b).unwrap() {}
    let n = enc.count();
    assert_eq!(n, (MAX_PAYLOAD_LEN - BATCH_HEADER_LEN) / bet_wire_len(&b));
    let frame =
        Message::Batch(Batch { agency: 1, first_seq: 0, bets: vec![b; n] }).to_bytes().unwrap();
    assert!(frame.len() <= framing::MAX_FRAME_LEN);
}

#[test]
fn an_oversize_field_is_refused_and_leaves_the_batch_intact() {
    let mut enc = BatchEncoder::new(1, 0);
    enc.push(&bet("A", "B", "1", 1)).unwrap();
    let before = enc.len();
    assert!(enc.push(&bet(&"x".repeat(256), "B", "1", 1)).is_err());
    assert_eq!(enc.len(), before);
    assert_eq!(enc.count(), 1);
}

#[test]
fn long_error_texts_are_cut_to_fit_on_a_char_boundary() {
    let msg = Message::Error { code: ErrorCode::Storage, message: "ñ".repeat(10_000) };
    let bytes = msg.to_bytes().unwrap();
    assert!(bytes.len() <= framing::MAX_FRAME_LEN);
    let found = framing::decode(&bytes, framing::MAX_FRAME_LEN).unwrap().unwrap();
    assert!(matches!(Message::decode(found.kind, found.payload), Ok(Message::Error { .. })));
}

#[test]
fn validate_batch_names_the_bad_bet() {
    let mut b =
        Batch { agency: 1, first_seq: 0, bets: vec![bet("A", "B", "1", 1), bet("", "B", "1", 1)] };
    let (i, e) = b.view().validate().unwrap_err();
    assert_eq!(i, 1);
    assert_eq!(e.to_string(), "first_name is empty");
    b.bets.pop();
    assert!(b.view().validate().is_ok());
}

#[test]
fn the_worked_example_of_docs_protocol_md() {
    let hello = Message::Hello { version: 1, agency: 3 };
    assert_eq!(hello.to_bytes().unwrap(), [1, 0, 5, 1, 0, 0, 0, 3]);
    let mut b = bet("Ana", "Paz", "123", 7574);
    b.birthdate = NaiveDate::from_ymd_opt(1990, 5, 6).unwrap();
    let batch = Message::Batch(Batch { agency: 3, first_seq: 0, bets: vec![b] });
    let want: Vec<u8> = [
        &[0x03, 0x00, 0x20][..],
        &[0, 0, 0, 3],
        &[0; 8],
        &[0, 1],
        b"\x03Ana\x03Paz\x03123",
        &[0x07, 0xC6, 0x05, 0x06, 0x1D, 0x96],
    ]
    .concat();
    assert_eq!(batch.to_bytes().unwrap(), want);
    assert_eq!(Message::Ack { next_seq: 1 }.to_bytes().unwrap(), [4, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(Message::Echo(b"hello".to_vec()).to_bytes().unwrap(), b"\x0a\x00\x05hello");
}

/// The handshake of docs/PROTOCOL.md: secret 00 01 .. 1f, agency 3,
/// nonce 20 21 .. 3f.
#[test]
fn the_worked_handshake_of_docs_protocol_md() {
    let secret =
        auth::Secret::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
            .unwrap();
    let key = secret.agency_key(3);
    assert_eq!(key.to_hex(), "63bcf7d7cb3fab3edcf35fc6bae7701d164a2f8e55e0ef44ea903541e04dc446");
    let nonce: Nonce = std::array::from_fn(|i| 0x20 + i as u8);
    let challenge = Message::Challenge { nonce }.to_bytes().unwrap();
    assert_eq!(challenge[..3], [0x0C, 0x00, 0x20]);
    assert_eq!(challenge[3..], nonce);
    // What the MAC covers: nonce, then agency 3 (u32), then version 1.
    let mut covered = nonce.to_vec();
    covered.extend_from_slice(&[0, 0, 0, 3, 1]);
    assert_eq!(covered.len(), 37);
    let tag = key.tag(&nonce, 3, PROTOCOL_VERSION);
    let auth = Message::Auth { tag }.to_bytes().unwrap();
    assert_eq!(auth[..3], [0x0D, 0x00, 0x20]);
    assert_eq!(
        auth::to_hex(&tag),
        "8a1ff715c769a6760201737c5ee0b9ba0b4d284789eb56518ae58e02055773dc"
    );
    assert_eq!(
        Message::Error { code: ErrorCode::Unauthorized, message: "no".into() }.to_bytes().unwrap(),
        [0x05, 0x00, 0x06, 0x00, 0x16, 0x00, 0x02, b'n', b'o']
    );
}
