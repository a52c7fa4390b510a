//! A bounded, deterministic fuzz of the frame and message decoders: random
//! bytes and mutations of valid frames must never panic, and whatever
//! decodes must encode back to something that decodes to the same message.
//!
//! No extra crate: the generator is the project's SplitMix64. The seed is
//! printed, and `FUZZ_ITERATIONS` / `FUZZ_SEED` change the run. By default
//! a release build (`make test`, CI) checks 1,000,000 inputs in a few
//! seconds, and a debug build (plain `cargo test`) 50,000: unoptimised, the
//! one-byte-at-a-time reader costs about half a millisecond per input, and
//! a million would take over seven minutes.

use chrono::NaiveDate;
use lottery::bet::Bet;
use lottery::dataset::Rng;
use lottery::framing::{self, FrameReader, MAX_FRAME_LEN};
use lottery::message::{Batch, ErrorCode, Message};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seeds() -> Vec<Vec<u8>> {
    let bet = |first: &str, number| Bet {
        agency: 2,
        first_name: first.into(),
        last_name: "Núñez, \"X\"".into(),
        document: "30904465".into(),
        birthdate: NaiveDate::from_ymd_opt(1999, 3, 17).unwrap(),
        number,
    };
    [
        Message::Hello { version: 1, agency: 2 },
        Message::HelloOk { next_seq: 7, done: false },
        Message::Batch(Batch {
            agency: 2,
            first_seq: 5,
            bets: vec![bet("Ana", 7574), bet("José María", 1), bet("Ñ", 9999)],
        }),
        Message::Ack { next_seq: 8 },
        Message::Error { code: ErrorCode::Sequence, message: "expected 5".into() },
        Message::Done { total: 8 },
        Message::WinnersQuery { offset: 0 },
        Message::Winners { total: 2, offset: 0, documents: vec!["1".into(), "22".into()] },
        Message::NotReady { finished: 1, expected: 5 },
        Message::Echo(b"hola".to_vec()),
        Message::Bye,
    ]
    .iter()
    .map(|m| m.to_bytes().unwrap())
    .collect()
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let len = bytes.len().max(1) as u64;
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(len) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(len) as usize;
                bytes[i] = [0, 0xFF, 0x7F, 0x80, 0xC3][rng.below(5) as usize];
            }
            2 => bytes.truncate(rng.below(len + 1) as usize),
            3 => {
                for _ in 0..rng.below(16) {
                    bytes.push(rng.next_u64() as u8);
                }
            }
            4 if bytes.len() >= 3 => {
                // Lie about the payload length.
                let n = rng.below(u64::from(u16::MAX) + 1) as u16;
                bytes[1..3].copy_from_slice(&n.to_be_bytes());
            }
            _ if !bytes.is_empty() => {
                let i = rng.below(len) as usize;
                let chunk = bytes[i..].to_vec();
                bytes.extend_from_slice(&chunk[..chunk.len().min(32)]);
            }
            _ => {}
        }
    }
    bytes
}

/// Decodes every frame in `bytes`; checks the round trip of what decodes.
fn check(bytes: &[u8], stats: &mut [u64; 3]) {
    let mut rest = bytes;
    loop {
        match framing::decode(rest, MAX_FRAME_LEN) {
            Ok(Some(frame)) => {
                match Message::decode(frame.kind, frame.payload) {
                    Ok(msg) => {
                        stats[0] += 1;
                        let again = msg.to_bytes().expect("a decoded message encodes");
                        let f = framing::decode(&again, MAX_FRAME_LEN).unwrap().unwrap();
                        assert_eq!(Message::decode(f.kind, f.payload).as_ref(), Ok(&msg));
                    }
                    Err(e) => {
                        stats[1] += 1;
                        let _ = e.code(); // every decode error maps to a code
                    }
                }
                rest = &rest[frame.len..];
            }
            Ok(None) => break,
            Err(_) => {
                stats[2] += 1;
                break;
            }
        }
    }
    // The blocking reader over a one-byte-at-a-time stream ends too.
    let mut reader = FrameReader::new(OneByte(bytes));
    while let Ok(Some(_)) = reader.read_frame() {}
}

struct OneByte<'a>(&'a [u8]);

impl std::io::Read for OneByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[0];
        self.0 = &self.0[1..];
        Ok(1)
    }
}

#[test]
fn random_and_mutated_frames_never_panic_and_round_trip() {
    let seed = env_u64("FUZZ_SEED", 0x5EED_2026);
    let (default, build) = if cfg!(debug_assertions) {
        (50_000, "debug build: 50000 by default, 1000000 with --release")
    } else {
        (1_000_000, "release build: 1000000 by default")
    };
    let iterations = env_u64("FUZZ_ITERATIONS", default);
    let mut rng = Rng::new(seed);
    let seeds = seeds();
    let mut stats = [0u64; 3];
    for i in 0..iterations {
        let bytes = if i % 4 == 0 {
            let n = rng.below(64) as usize;
            let mut b: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            if !b.is_empty() {
                b[0] = (rng.below(14)) as u8; // mostly known types
            }
            b
        } else {
            let base = seeds[rng.below(seeds.len() as u64) as usize].clone();
            mutate(&mut rng, base)
        };
        check(&bytes, &mut stats);
    }
    println!(
        "fuzz seed {seed:#x}, {iterations} inputs ({build}): {} messages decoded and round-tripped, {} payloads rejected, {} oversize headers",
        stats[0], stats[1], stats[2]
    );
    assert!(stats[0] > 0 && stats[1] > 0 && stats[2] > 0, "every outcome was exercised: {stats:?}");
}
