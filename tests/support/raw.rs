//! Raw protocol for wire-level tests: frames sent and read by hand, the
//! handshake, and the winners asked page by page.

use super::setup::agency_key;
use lottery::auth::AgencyKey;
use lottery::framing::{FrameReader, write_frame};
use lottery::message::{Message, PROTOCOL_VERSION};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw protocol connection for wire-level tests.
pub struct Raw {
    pub stream: TcpStream,
    reader: FrameReader<TcpStream>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = FrameReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    pub fn send(&mut self, msg: &Message) {
        let bytes = msg.to_bytes().expect("encode");
        std::io::Write::write_all(&mut self.stream, &bytes).expect("send");
    }

    /// Sends ECHO with `bytes` and checks the server answers the same.
    pub fn echo(&mut self, bytes: &[u8]) {
        let echo = Message::Echo(bytes.to_vec());
        self.send(&echo);
        assert_eq!(self.recv(), echo);
    }

    /// Sends HELLO for `agency` (version 1) and nothing else.
    pub fn say_hello(&mut self, agency: u32) {
        self.send(&Message::Hello { version: PROTOCOL_VERSION, agency });
    }

    pub fn send_frame(&mut self, kind: u8, payload: &[u8]) {
        write_frame(&mut self.stream, kind, payload).expect("send frame");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.stream, bytes).expect("send bytes");
    }

    pub fn recv(&mut self) -> Message {
        let frame = self.reader.read_frame().expect("read").expect("a frame, not EOF");
        Message::from_frame(&frame).expect("decodable answer")
    }

    /// The next message, or `None` once the server has closed (EOF, reset
    /// or a 10 s silence).
    pub fn try_recv(&mut self) -> Option<Message> {
        match self.reader.read_frame() {
            Ok(Some(frame)) => Some(Message::from_frame(&frame).expect("decodable answer")),
            _ => None,
        }
    }

    /// True if the server closed the connection (EOF or reset) next.
    pub fn closed(&mut self) -> bool {
        match self.reader.read_frame() {
            Ok(None) => true,
            Ok(Some(_)) => false,
            Err(e) => {
                !matches!(e, lottery::framing::FrameError::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock || io.kind() == std::io::ErrorKind::TimedOut)
            }
        }
    }

    /// The handshake as `agency` with its key: HELLO, and AUTH if the
    /// server sends a CHALLENGE. Returns the server's last answer
    /// (HELLO_OK, or an ERROR).
    pub fn hello(&mut self, agency: u32) -> Message {
        self.hello_with(agency, &agency_key(agency))
    }

    /// The handshake claiming `agency`, answering with `key`.
    pub fn hello_with(&mut self, agency: u32, key: &AgencyKey) -> Message {
        self.send(&Message::Hello { version: PROTOCOL_VERSION, agency });
        match self.recv() {
            Message::Challenge { nonce } => {
                self.send(&Message::Auth { tag: key.tag(&nonce, agency, PROTOCOL_VERSION) });
                self.recv()
            }
            other => other,
        }
    }
}

/// Every winner of `agency` (which must be done), asked WINNERS? page by
/// page on one connection as an agency does, checking each page's offset
/// and that no page is empty before the end; also the number of pages.
pub fn winners_paged(addr: SocketAddr, agency: u32) -> (Vec<String>, usize) {
    let mut raw = Raw::connect(addr);
    assert!(
        matches!(raw.hello(agency), Message::HelloOk { done: true, .. }),
        "agency {agency} is not done"
    );
    let mut all: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let offset = all.len() as u32;
        raw.send(&Message::WinnersQuery { offset });
        match raw.recv() {
            Message::Winners { total, offset: got, documents } => {
                assert_eq!(got, offset);
                pages += 1;
                if documents.is_empty() {
                    assert_eq!(total as usize, all.len(), "an empty page before the end");
                    return (all, pages);
                }
                all.extend(documents);
                if all.len() == total as usize {
                    return (all, pages);
                }
            }
            other => panic!("agency {agency}: {other:?} at offset {offset}"),
        }
    }
}
