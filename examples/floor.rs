//! The floor for the throughput benchmark: the least work that moves the
//! agencies' bytes to durable storage on this machine.
//!
//! ```text
//! cargo run --release --example floor -- --out DIR/floor.bin FILE...
//! ```
//!
//! Binds one loopback TCP listener, sends the bytes of every `FILE`, one
//! after the other, over one connection, and a receiver thread writes what
//! it reads to `--out` and fsyncs it. No framing, no parsing, no
//! validation: what is left is the kernel's cost of loopback TCP, page
//! cache writes and one fsync. Plain `read`/`write` with 64 KiB buffers on
//! both sides (no `sendfile`/`splice`), like `nc host port <file >file`.
//!
//! Timing starts before `connect` and stops after the fsync; the files are
//! read from the page cache (the benchmark reads them once beforehand).
//! Prints `key=value` lines: `floor_s`, `fsync_s`, `bytes`, `mib_per_s`.
//! The output file is left in place (the caller owns its directory).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

const BUF: usize = 64 * 1024;

struct Args {
    out: PathBuf,
    files: Vec<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = None;
    let mut files = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a value")?)),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag:?}")),
            _ => files.push(PathBuf::from(arg)),
        }
    }
    let out = out.ok_or("--out is required")?;
    if files.is_empty() {
        return Err("no input files".into());
    }
    Ok(Args { out, files })
}

/// Copies `from` to `to` through `buf`, with plain `read`/`write` calls
/// (not `io::copy`, which std turns into `sendfile`/`splice` here).
fn pump(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Receives everything on one connection into `out`, then fsyncs it.
/// Returns (bytes, time spent in fsync).
fn receive(listener: &TcpListener, out: &Path) -> io::Result<(u64, Duration)> {
    let (mut conn, _) = listener.accept()?;
    let mut file = File::create(out)?;
    let total = pump(&mut conn, &mut file, &mut vec![0u8; BUF])?;
    let synced = Instant::now();
    file.sync_all()?;
    Ok((total, synced.elapsed()))
}

fn send(addr: std::net::SocketAddr, files: &[PathBuf]) -> io::Result<u64> {
    let mut conn = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    for path in files {
        total += pump(&mut File::open(path)?, &mut conn, &mut buf)?;
    }
    conn.shutdown(Shutdown::Write)?;
    Ok(total)
}

fn run(args: &Args) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let out = args.out.clone();
    let started = Instant::now();
    let receiver = thread::spawn(move || receive(&listener, &out));
    let sent = send(addr, &args.files)?;
    let (received, fsync) =
        receiver.join().map_err(|_| io::Error::other("receiver thread panicked"))??;
    let elapsed = started.elapsed().as_secs_f64();
    if sent != received {
        return Err(io::Error::other(format!("sent {sent} bytes but received {received}")));
    }
    println!("floor_s={elapsed:.6}");
    println!("fsync_s={:.6}", fsync.as_secs_f64());
    println!("bytes={received}");
    println!("mib_per_s={:.1}", received as f64 / (1024.0 * 1024.0) / elapsed.max(1e-9));
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor: {e}\nusage: floor --out FILE INPUT...");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}
