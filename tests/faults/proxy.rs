//! A loopback proxy between the agencies and the server that cuts
//! connections mid-frame, for `connections_cut_mid_batch…`.

use lottery::dataset::Rng;
use socket2::SockRef;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A loopback TCP proxy that cuts connections at random points, with a FIN
/// or a reset, in either direction, until `max_cuts` cuts were made.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    pub cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    pub fn start(upstream: SocketAddr, seed: u64, max_cuts: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&cuts), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let cut_now = c.load(Ordering::SeqCst) < max_cuts && rng.below(10) != 0;
                // Budget in bytes before the cut, per direction: requests
                // are cut inside a batch, answers inside an ACK.
                let up = if cut_now && rng.below(2) == 0 {
                    Some(rng.below(20_000) as usize)
                } else {
                    None
                };
                let down =
                    if cut_now && up.is_none() { Some(rng.below(120) as usize) } else { None };
                let reset = rng.below(2) == 0;
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    up,
                    reset,
                    Arc::clone(&c),
                );
                pipe(server, client, down, reset, Arc::clone(&c));
            }
        });
        CuttingProxy { addr, cuts, stop }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` → `to`; after `budget` bytes, cuts both sockets.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Option<usize>,
    reset: bool,
    cuts: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut left = budget;
        loop {
            let want = left.map_or(buf.len(), |l| l.min(buf.len()));
            if want == 0 {
                if reset {
                    let _ = SockRef::from(&from).set_linger(Some(Duration::ZERO));
                    let _ = SockRef::from(&to).set_linger(Some(Duration::ZERO));
                }
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            match from.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                    left = left.map(|l| l - n);
                }
            }
        }
    });
}
