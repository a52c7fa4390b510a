//! Writes synthetic agency files in the course's format.
//!
//! ```text
//! cargo run --release --example gen-data -- --out .data --agencies 5 [--scale 1] [--total N] [--seed 1] [--keep-existing]
//! ```
//! `--scale S`: agency i gets S times the rows of the course's agency i
//! (agencies past the fifth repeat the shape). `--total N`: N rows split
//! evenly instead. `--keep-existing`: never overwrite a file that exists.

use lottery::dataset;
use std::path::PathBuf;
use std::process::ExitCode;

struct Args {
    out: PathBuf,
    agencies: u32,
    scale: f64,
    total: Option<u64>,
    seed: u64,
    keep_existing: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::from(".data"),
        agencies: 5,
        scale: 1.0,
        total: None,
        seed: 1,
        keep_existing: false,
    };
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--agencies" => {
                a.agencies =
                    value("--agencies")?.parse().map_err(|_| "--agencies takes a whole number")?
            }
            "--scale" => {
                a.scale = value("--scale")?.parse().map_err(|_| "--scale takes a number")?
            }
            "--total" => {
                a.total =
                    Some(value("--total")?.parse().map_err(|_| "--total takes a whole number")?)
            }
            "--seed" => {
                a.seed = value("--seed")?.parse().map_err(|_| "--seed takes a whole number")?
            }
            "--keep-existing" => a.keep_existing = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.agencies == 0 || a.scale.is_nan() || a.scale < 0.0 {
        return Err("--agencies must be at least 1 and --scale not negative".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "gen-data: {e}\nusage: gen-data --out DIR --agencies N [--scale S | --total N] [--seed X] [--keep-existing]"
            );
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("gen-data: cannot create {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    for agency in 1..=args.agencies {
        let path = args.out.join(format!("agency-{agency}.csv"));
        if args.keep_existing && path.exists() {
            println!("kept      {}", path.display());
            continue;
        }
        let rows = match args.total {
            Some(total) => {
                total / u64::from(args.agencies)
                    + u64::from(u64::from(agency) <= total % u64::from(args.agencies))
            }
            None => dataset::course_rows(agency, args.scale),
        };
        if let Err(e) = dataset::write_agency_file(&args.out, agency, rows, args.seed) {
            eprintln!("gen-data: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("generated {} ({rows} bets)", path.display());
    }
    ExitCode::SUCCESS
}
