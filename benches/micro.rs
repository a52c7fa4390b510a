//! Micro-benchmarks of the per-bet hot paths, so regressions show:
//!
//! ```text
//! cargo bench --bench micro            # every benchmark (about 12 s)
//! cargo bench --bench micro -- frame   # those whose name contains "frame"
//! ```
//!
//! A plain `fn main` harness (no extra crates): each benchmark is calibrated
//! to about `BUDGET` of work, split in `SAMPLES` samples; the table shows the
//! median and best sample per operation, per item (bet or row) and the
//! throughput in MB/s (10^6 bytes) of the bytes the operation produces or
//! consumes. `key=value` lines follow (`micro.<name>.ns_per_op=...`).
//!
//! Data: the project's generator (`lottery::dataset`), read back through the
//! client's CSV reader, so names, quoting and sizes are the course's.

use lottery::bet::Bet;
use lottery::client::source::{BetsFile, Row};
use lottery::framing::{self, MAX_FRAME_LEN};
use lottery::message::{self, Batch, BatchEncoder, BatchView, Message};
use lottery::storage::{self, Storage, SyncMode};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SAMPLES: u32 = 5;
const BUDGET: Duration = Duration::from_millis(800);

/// One line of the results table.
struct Result {
    name: &'static str,
    median_ns: f64,
    best_ns: f64,
    items: u64,
    item: &'static str,
    bytes: u64,
}

struct Harness {
    filters: Vec<String>,
    results: Vec<Result>,
}

impl Harness {
    fn wanted(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// Times `op` (which does `items` items and moves `bytes` bytes per
    /// call); `budget` caps the total time spent.
    fn bench(
        &mut self,
        name: &'static str,
        items: u64,
        item: &'static str,
        bytes: u64,
        budget: Duration,
        mut op: impl FnMut(),
    ) {
        if !self.wanted(name) {
            return;
        }
        // Warm up and calibrate: how long does one call take?
        let t = Instant::now();
        op();
        let mut one = t.elapsed().max(Duration::from_nanos(20));
        let warm = Instant::now();
        let mut calls = 0u32;
        while warm.elapsed() < budget / 10 && calls < 1_000_000 {
            op();
            calls += 1;
        }
        if calls > 0 {
            one = (warm.elapsed() / calls).max(Duration::from_nanos(1));
        }
        let per_sample = budget / SAMPLES;
        let iters = (per_sample.as_nanos() / one.as_nanos()).clamp(1, 50_000_000) as u32;
        let mut samples: Vec<f64> = (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    op();
                }
                t.elapsed().as_nanos() as f64 / f64::from(iters)
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let r = Result {
            name,
            median_ns: samples[samples.len() / 2],
            best_ns: samples[0],
            items,
            item,
            bytes,
        };
        print_row(&r);
        self.results.push(r);
    }
}

fn print_header() {
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>10}",
        "benchmark", "median/op", "best/op", "per item", "MB/s"
    );
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn print_row(r: &Result) {
    let per_item = format!("{} /{}", human_ns(r.median_ns / r.items as f64), r.item);
    let mbs =
        if r.bytes > 0 { format!("{:.0}", r.bytes as f64 / r.median_ns * 1e3) } else { "-".into() };
    println!(
        "{:<28} {:>12} {:>12} {:>14} {:>10}",
        r.name,
        human_ns(r.median_ns),
        human_ns(r.best_ns),
        per_item,
        mbs
    );
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("lottery-micro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every bet of a generated agency file, through the client's reader.
fn read_bets(path: &Path, agency: u32) -> Vec<Bet> {
    let mut file = BetsFile::open(path, agency).expect("open generated file");
    let mut bets = Vec::new();
    while let Some(row) = file.next_row().expect("read generated file") {
        match row {
            Row::Bet(b) => bets.push(b.to_bet()),
            Row::Invalid(r) => panic!("generated row {} is invalid: {}", r.line, r.reason),
        }
    }
    bets
}

/// The first bets of `bets` that make one BATCH, cut like the client cuts
/// it: at `max` bets or when the next would overflow the frame.
fn one_batch(bets: &[Bet], max: usize) -> Vec<Bet> {
    let mut enc = BatchEncoder::new(1, 0);
    let mut out = Vec::new();
    for bet in bets {
        if out.len() == max || !enc.push(bet).expect("encodable bet") {
            break;
        }
        out.push(bet.clone());
    }
    out
}

/// What every benchmark works on: agency 1's file at the course's size,
/// one BATCH of it, and that batch as a frame and as CSV rows.
struct Data {
    rows: u64,
    source: PathBuf,
    source_bytes: u64,
    bets: Vec<Bet>,
    batch_bets: Vec<Bet>,
    n: u64,
    batch: Message,
    frame: Vec<u8>,
    frame_len: u64,
    rows_csv: Vec<u8>,
    rows_len: u64,
}

impl Data {
    fn generate(tmp: &TempDir) -> Data {
        let rows = lottery::dataset::course_rows(1, 1.0);
        lottery::dataset::write_agency_file(&tmp.0, 1, rows, 1).expect("generate data");
        let source = tmp.0.join("agency-1.csv");
        let source_bytes = std::fs::metadata(&source).expect("stat").len();
        let bets = read_bets(&source, 1);
        let batch_bets = one_batch(&bets, 200);
        let batch = Message::Batch(Batch { agency: 1, first_seq: 0, bets: batch_bets.clone() });
        let frame = batch.to_bytes().expect("encode batch");
        let mut rows_csv = Vec::new();
        for bet in &batch_bets {
            storage::encode_row(&mut rows_csv, bet);
        }
        Data {
            rows,
            source,
            source_bytes,
            n: batch_bets.len() as u64,
            frame_len: frame.len() as u64,
            rows_len: rows_csv.len() as u64,
            bets,
            batch_bets,
            batch,
            frame,
            rows_csv,
        }
    }
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mut h = Harness { filters, results: Vec::new() };
    let tmp = TempDir::new();
    let data = Data::generate(&tmp);
    println!(
        "lottery micro-benchmarks: a BATCH of {} bets = {} bytes on the wire, \
         {} bytes of CSV; source file {} rows, {} bytes",
        data.n, data.frame_len, data.rows_len, data.rows, data.source_bytes
    );
    print_header();
    bench_frames(&mut h, &data);
    bench_csv_append(&mut h, &data, &tmp);
    bench_reading(&mut h, &data, &tmp);
    print_results(&h);
}

/// Frames: the client encodes, the server decodes.
fn bench_frames(h: &mut Harness, data: &Data) {
    let Data { n, frame_len, batch, batch_bets, frame, .. } = data;
    let (n, frame_len) = (*n, *frame_len);
    let mut out = Vec::with_capacity(MAX_FRAME_LEN);
    h.bench("frame.encode_batch", n, "bet", frame_len, BUDGET, || {
        out.clear();
        black_box(batch).encode_into(&mut out).expect("encode");
        black_box(&out);
    });
    h.bench("frame.batch_encoder", n, "bet", frame_len, BUDGET, || {
        let mut enc = BatchEncoder::new(1, 0);
        for bet in black_box(batch_bets) {
            enc.push(bet).expect("encode");
        }
        out.clear();
        framing::encode_into(&mut out, message::kind::BATCH, &enc.into_payload()).expect("frame");
        black_box(&out);
    });
    h.bench("frame.decode_batch", n, "bet", frame_len, BUDGET, || {
        let f =
            framing::decode(black_box(frame), MAX_FRAME_LEN).expect("frame").expect("whole frame");
        let msg = Message::decode(f.kind, f.payload).expect("decode");
        black_box(msg);
    });
    h.bench("frame.decode_batch_view", n, "bet", frame_len, BUDGET, || {
        let f =
            framing::decode(black_box(frame), MAX_FRAME_LEN).expect("frame").expect("whole frame");
        black_box(BatchView::decode(f.payload).expect("decode"));
    });
    // What a server worker does with one BATCH: decode in place, validate,
    // encode the CSV rows.
    let mut rows_out = Vec::with_capacity(16 * 1024);
    h.bench("server.batch_path", n, "bet", frame_len, BUDGET, || {
        let f =
            framing::decode(black_box(frame), MAX_FRAME_LEN).expect("frame").expect("whole frame");
        let view = BatchView::decode(f.payload).expect("decode");
        view.validate().expect("valid");
        rows_out.clear();
        for bet in &view.bets {
            storage::encode_row(&mut rows_out, *bet);
        }
        black_box(&rows_out);
    });
    let Message::Batch(decoded) =
        Message::decode(frame[0], &frame[framing::HEADER_LEN..]).expect("decode")
    else {
        unreachable!("a BATCH decodes to a batch")
    };
    h.bench("batch.validate", n, "bet", 0, BUDGET, || {
        black_box(&decoded).view().validate().expect("valid");
    });
}

/// Appending CSV rows: the server's side of a commit.
fn bench_csv_append(h: &mut Harness, data: &Data, tmp: &TempDir) {
    let Data { n, rows_len, batch_bets, rows_csv, .. } = data;
    let (n, rows_len) = (*n, *rows_len);
    let mut csv = Vec::with_capacity(16 * 1024);
    h.bench("csv.encode_row", n, "row", rows_len, BUDGET, || {
        csv.clear();
        for bet in black_box(batch_bets) {
            storage::encode_row(&mut csv, bet);
        }
        black_box(&csv);
    });
    if h.wanted("storage.store_bets_none") {
        let path = tmp.0.join("store-none.csv");
        let (mut st, _) = Storage::open(&path, SyncMode::None).expect("open storage");
        h.bench("storage.store_bets_none", n, "bet", rows_len, BUDGET, || {
            st.store_bets(black_box(batch_bets)).expect("store");
        });
        drop(st);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(storage::journal_path(&path));
    }
    if h.wanted("storage.commit_always") {
        // One commit = append + fsync of bets.csv + append + fsync of the
        // journal: the durable path's latency floor per group commit.
        let path = tmp.0.join("store-always.csv");
        let (mut st, _) = Storage::open(&path, SyncMode::Always).expect("open storage");
        let added = [(1u32, n)];
        h.bench("storage.commit_always", n, "bet", rows_len, Duration::from_millis(1500), || {
            st.commit(black_box(rows_csv), &added, &[]).expect("commit");
        });
    }
}

/// Reading CSV: the agency's source file, and the winners found again in
/// `bets.csv` at a start after the draw.
fn bench_reading(h: &mut Harness, data: &Data, tmp: &TempDir) {
    let Data { rows, source, source_bytes, bets, .. } = data;
    let (rows, source_bytes) = (*rows, *source_bytes);
    h.bench("source.parse_file", rows, "row", source_bytes, Duration::from_millis(1500), || {
        let mut f = BetsFile::open(source, 1).expect("open");
        let mut count = 0u64;
        while let Some(row) = f.next_row().expect("read") {
            count += u64::from(matches!(row, Row::Bet(_)));
        }
        black_box(count);
    });
    if h.wanted("draw.winners_rebuild") {
        let path = tmp.0.join("draw.csv");
        let (mut st, _) = Storage::open(&path, SyncMode::None).expect("open storage");
        st.store_bets(bets).expect("store");
        drop(st);
        let stored = std::fs::metadata(&path).expect("stat").len();
        // What a start after the draw does: the winners found again in
        // bets.csv (one streaming pass) and regrouped by agency.
        h.bench("draw.winners_rebuild", rows, "row", stored, Duration::from_millis(1500), || {
            let mut log = storage::WinnersLog::rebuild(&path, stored).expect("rebuild");
            black_box(log.finish(stored).expect("regroup").total());
        });
    }
}

/// The key=value lines scripts read.
fn print_results(h: &Harness) {
    println!();
    for r in &h.results {
        println!("micro.{}.ns_per_op={:.1}", r.name, r.median_ns);
        println!("micro.{}.ns_per_{}={:.2}", r.name, r.item, r.median_ns / r.items as f64);
        if r.bytes > 0 {
            println!("micro.{}.mb_per_s={:.1}", r.name, r.bytes as f64 / r.median_ns * 1e3);
        }
    }
}
