//! The handshake's order and its keys.

use super::*;

#[test]
fn the_handshake_is_hello_challenge_auth_hello_ok() {
    let fx = Fixture::with_keys("handshake", 3);
    let mut session = Session::default();
    let said = fx.send(&mut session, &[hello(2)]);
    let [Message::Challenge { nonce }] = said.answers[..] else { panic!("{said:?}") };
    assert!(!said.close);
    // Challenged, not yet an agency.
    assert_eq!(session.challenge.map(|c| c.agency), Some(2));
    assert_eq!(session.agency, None);
    let said = fx.send(&mut session, &[answer(2, &nonce, &key(2))]);
    let want = Message::HelloOk { next_seq: 0, done: false };
    assert_eq!(said.answers, [want]);
    assert!(!said.close);
    assert_eq!(session.agency, Some(2));
    assert_eq!(session.challenge, None);
}

#[test]
fn echo_is_served_before_and_during_the_handshake() {
    let fx = Fixture::with_keys("echo", 1);
    let mut session = Session::default();
    let echo = Message::Echo(b"\x00hola".to_vec());
    let said = fx.send(&mut session, std::slice::from_ref(&echo));
    assert_eq!((said.answers, said.close), (vec![echo.clone()], false));
    assert_eq!(session, Session::default());
    // Between HELLO and AUTH too: a CHALLENGE, then the echo.
    let said = fx.send(&mut session, &[hello(1), echo.clone()]);
    assert!(matches!(said.answers[..], [Message::Challenge { .. }, Message::Echo(_)]));
    assert!(!said.close);
}

#[test]
fn requests_before_hello_need_hello_and_between_hello_and_auth_need_auth() {
    let fx = Fixture::with_keys("order", 1);
    let requests =
        [batch(1, 0, 1), Message::Done { total: 0 }, Message::WinnersQuery { offset: 0 }];
    for request in &requests {
        let said = fx.send(&mut Session::default(), std::slice::from_ref(request));
        assert_refused(&said, ErrorCode::HelloRequired);
        assert_eq!(said.answers.len(), 1);
        let mut challenged = Session::default();
        let said = fx.send(&mut challenged, &[hello(1), request.clone()]);
        assert!(matches!(said.answers[0], Message::Challenge { .. }));
        assert_refused(&said, ErrorCode::Unauthorized);
    }
    // AUTH before HELLO answers no CHALLENGE.
    let said = fx.send(&mut Session::default(), &[Message::Auth { tag: [0; 32] }]);
    assert_refused(&said, ErrorCode::HelloRequired);
    assert_eq!(fx.stored(), 0);
}

#[test]
fn a_connection_says_hello_once() {
    let fx = Fixture::with_keys("duplicate", 3);
    // After the handshake: a second HELLO, as any agency, or an AUTH.
    for again in [hello(1), hello(2), Message::Auth { tag: [0; 32] }] {
        let mut session = fx.session(1);
        let said = fx.send(&mut session, &[again]);
        assert_refused(&said, ErrorCode::DuplicateHello);
        assert_eq!(session.agency, Some(1));
    }
    // Between HELLO and AUTH.
    let mut session = Session::default();
    let said = fx.send(&mut session, &[hello(1), hello(2)]);
    assert!(matches!(said.answers[0], Message::Challenge { .. }));
    assert_refused(&said, ErrorCode::DuplicateHello);
}

#[test]
fn a_wrong_key_is_answered_unauthorized_and_late() {
    let fx = Fixture::with_keys("wrong-key", 2);
    let wrong_keys = [
        Secret::from_bytes([1; 32]).agency_key(1),
        // Agency 2's own key does not speak for agency 1.
        key(2),
    ];
    for wrong in wrong_keys {
        let mut session = Session::default();
        let said = fx.send(&mut session, &[hello(1)]);
        let [Message::Challenge { nonce }] = said.answers[..] else { panic!("{said:?}") };
        let said = fx.send(&mut session, &[answer(1, &nonce, &wrong)]);
        assert!(matches!(said.answers[..], [Message::Error { code: ErrorCode::Unauthorized, .. }]));
        assert!(said.close);
        // The answer is held back: the caller sends it only after this.
        assert_eq!(said.delay, Some(AUTH_FAIL_DELAY));
        assert_eq!(session.agency, None);
    }
    // The nonce answered is the one sent: a tag for another nonce fails.
    let mut session = Session::default();
    fx.send(&mut session, &[hello(1)]);
    let said = fx.send(&mut session, &[answer(1, &[9; 32], &key(1))]);
    assert_eq!(said.delay, Some(AUTH_FAIL_DELAY));
}

#[test]
fn with_auth_off_hello_is_answered_hello_ok() {
    let fx = Fixture::new("auth-off", 2, ServerAuth::Off);
    let mut session = Session::default();
    let said = fx.send(&mut session, &[hello(2)]);
    let want = Message::HelloOk { next_seq: 0, done: false };
    assert_eq!((said.answers, said.close), (vec![want], false));
    assert_eq!(session.agency, Some(2));
    let said = fx.send(&mut session, &[Message::Auth { tag: [0; 32] }]);
    assert_refused(&said, ErrorCode::DuplicateHello);
    let said = fx.send(&mut Session::default(), &[Message::Auth { tag: [0; 32] }]);
    assert_refused(&said, ErrorCode::HelloRequired);
    // A CHALLENGE is never sent without keys; a session claiming one
    // gets no welcome.
    let mut claimed =
        Session { challenge: Some(Challenge { agency: 1, nonce: [0; 32] }), ..Session::default() };
    let said = fx.send(&mut claimed, &[Message::Auth { tag: [0; 32] }]);
    assert_refused(&said, ErrorCode::UnexpectedMessage);
    assert_eq!(claimed.agency, None);
}

#[test]
fn hello_names_an_agency_of_this_lottery_in_this_version() {
    let fx = Fixture::with_keys("hello-refusals", 3);
    let cases = [
        (1, 0, ErrorCode::UnknownAgency),
        (1, 4, ErrorCode::UnknownAgency),
        (9, 1, ErrorCode::UnsupportedVersion),
        (0, 1, ErrorCode::UnsupportedVersion),
    ];
    for (version, agency, code) in cases {
        let mut session = Session::default();
        let said = fx.send(&mut session, &[Message::Hello { version, agency }]);
        assert_refused(&said, code);
        assert_eq!(session, Session::default());
    }
}
