//! A loopback TCP proxy between a server and a throwaway cluster that cuts
//! the connection at a COMMIT ([`CommitCutter`]): the COMMIT never reaches
//! the database, or its answer never reaches the server. It reads the
//! client's side of the PostgreSQL protocol message by message to tell
//! which transaction a COMMIT ends; everything else passes as it is.

use super::pg::Postgres;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// Where a [`CommitCutter`] cuts a COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Closes both sides instead of passing the COMMIT on: the database
    /// rolls the transaction back, and the server never hears why.
    Before,
    /// Passes the COMMIT on and drops the database's answer: the
    /// transaction commits, and the server never hears it.
    Answer,
}

/// A rule of a [`CommitCutter`]: the COMMIT of the first transaction that
/// sent a statement containing `sql` is cut as `cut` says (once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutRule {
    pub sql: &'static str,
    pub cut: Cut,
}

/// A loopback TCP proxy in front of a cluster that reads the client's
/// side of the PostgreSQL protocol and cuts the connection at a COMMIT
/// (`Query` message `COMMIT`, as rust-postgres sends `commit()`), per its
/// rules; everything else passes as it is. [`CommitCutter::url`] is the
/// cluster's URL through the proxy. Its threads end with its connections
/// (and the accept loop with the test process).
pub struct CommitCutter {
    pub url: String,
    fired: mpsc::Receiver<CutRule>,
}

/// The codes of the startup-phase requests for TLS or GSSAPI encryption:
/// the server answers one byte, and another startup message follows.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

impl CommitCutter {
    /// Starts the proxy in front of `pg` with `rules`, each applied once,
    /// in order of the COMMITs that match them.
    pub fn start(pg: &Postgres, rules: &[CutRule]) -> CommitCutter {
        let upstream: SocketAddr = pg
            .url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .expect("the cluster's address in its URL");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let url = pg.url.replace(&upstream.to_string(), &addr.to_string());
        let rules = Arc::new(Mutex::new(rules.to_vec()));
        let (tx, fired) = mpsc::channel();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (rules, tx) = (Arc::clone(&rules), tx.clone());
                let cut = Arc::new(AtomicBool::new(false));
                let (c2, s2, cut2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    Arc::clone(&cut),
                );
                std::thread::spawn(move || answers(s2, c2, &cut2));
                std::thread::spawn(move || requests(client, server, &cut, &rules, &tx));
            }
        });
        CommitCutter { url, fired }
    }

    /// Waits up to `timeout` for the next cut; the rule that made it.
    pub fn next_cut(&self, timeout: std::time::Duration) -> Option<CutRule> {
        self.fired.recv_timeout(timeout).ok()
    }
}

/// The database's side to the client, unless the connection was cut:
/// then the answer that comes is dropped and the database's side closed.
fn answers(mut server: TcpStream, mut client: TcpStream, cut: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// The client's side of the protocol, cut into whole messages.
#[derive(Default)]
struct Messages {
    buf: Vec<u8>,
    /// Past the startup phase, whose messages have no type byte.
    started: bool,
}

impl Messages {
    /// The next whole message in the buffer, with its type byte (`None`
    /// for a startup-phase message).
    fn next(&mut self) -> Option<(Option<u8>, Vec<u8>)> {
        let (start, tag) = if self.started { (1, self.buf.first().copied()) } else { (0, None) };
        let len = self.buf.get(start..start + 4)?;
        let total = start + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if self.buf.len() < total {
            return None;
        }
        let message: Vec<u8> = self.buf.drain(..total).collect();
        if tag.is_none() {
            let code =
                message.get(4..8).map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
            self.started = !ENCRYPTION_REQUESTS.contains(&code);
        }
        Some((tag, message))
    }
}

/// The statements of the transaction under way, and the rules that cut
/// a COMMIT.
struct Watch<'a> {
    statements: Vec<String>,
    rules: &'a Mutex<Vec<CutRule>>,
}

impl Watch<'_> {
    /// Notes a message of the client's; the rule to apply if it is a
    /// COMMIT of a transaction that a rule names (taken: it applies once).
    fn see(&mut self, tag: Option<u8>, message: &[u8]) -> Option<CutRule> {
        match tag {
            Some(b'P') => {
                self.statements.push(String::from_utf8_lossy(&message[5..]).into_owned());
                None
            }
            Some(b'Q') => {
                let text = String::from_utf8_lossy(&message[5..]);
                self.query(text.trim_end_matches('\0').trim())
            }
            _ => None,
        }
    }

    /// A simple query: a COMMIT may be cut; one inside a transaction
    /// (`SET LOCAL`) belongs to it; a new transaction starts afresh.
    fn query(&mut self, text: &str) -> Option<CutRule> {
        if text.eq_ignore_ascii_case("COMMIT") {
            let mut rules = self.rules.lock().expect("rules");
            let i = rules.iter().position(|r| self.statements.iter().any(|s| s.contains(r.sql)));
            if let Some(i) = i {
                return Some(rules.remove(i));
            }
        }
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("BEGIN")
            || upper.starts_with("START")
            || upper.starts_with("ROLLBACK")
            || upper == "COMMIT"
        {
            self.statements.clear();
        }
        self.statements.push(text.to_owned());
        None
    }
}

/// The client's side to the database, message by message, watching each
/// transaction's statements and cutting at a COMMIT that a rule names.
fn requests(
    mut client: TcpStream,
    mut server: TcpStream,
    cut: &AtomicBool,
    rules: &Mutex<Vec<CutRule>>,
    fired: &mpsc::Sender<CutRule>,
) {
    let mut messages = Messages::default();
    let mut watch = Watch { statements: Vec::new(), rules };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((tag, message)) = messages.next() {
            if let Some(rule) = watch.see(tag, &message) {
                // Cut before anything can answer: the client side is
                // closed first.
                cut.store(true, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                if rule.cut == Cut::Answer {
                    let _ = server.write_all(&message);
                } else {
                    let _ = server.shutdown(Shutdown::Both);
                }
                let _ = fired.send(rule);
                return;
            }
            if server.write_all(&message).is_err() {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => messages.buf.extend_from_slice(&chunk[..n]),
        }
    }
}
