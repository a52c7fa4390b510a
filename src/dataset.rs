//! Synthetic agency files in the course's format, generated
//! deterministically so that demos, tests and benchmarks need no data from
//! outside the repository.
//!
//! Like the course's data set: no header, CRLF, UTF-8 names in the same
//! proportions (5% of first names and 25% of last names with an accent),
//! `first_name,last_name,document,birthdate,number`. Unlike it, on purpose:
//! some names carry a comma or quotes (so quoting is exercised), and more
//! bets land on the winning number, so every agency of a realistic size has
//! winners to report.

use crate::bet::WINNING_NUMBER;
use crate::storage::push_csv_field;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Rows per agency in the course's data set (agencies 1 to 5).
pub const COURSE_ROWS: [u64; 5] = [26_936, 25_518, 16_014, 9_238, 991];

/// Rows for `agency` at `scale` times the course's shape (agencies past
/// the fifth repeat the shape).
pub fn course_rows(agency: u32, scale: f64) -> u64 {
    let base = COURSE_ROWS[(agency.max(1) as usize - 1) % COURSE_ROWS.len()];
    (base as f64 * scale).round() as u64
}

/// First names as the course's data has them: often two, and about one
/// in twenty with an accent (the course's: 5%).
const FIRST: [&str; 40] = [
    "Santiago Lionel",
    "Valentina Abril",
    "Agustin Emanuel",
    "Martina",
    "Joaquin Ignacio",
    "Sofia Belen",
    "Tomas Ezequiel",
    "Lucia Milagros",
    "Mateo Gabriel",
    "Camila Soledad",
    "Benjamin",
    "Julieta Aylen",
    "Juan Ignacio",
    "Maria Jose",
    "Thiago Nicolas",
    "Florencia",
    "Uriel Alejandro",
    "Victoria",
    "Tobias Nahuel",
    "Zoe",
    "Tiago",
    "Ana Paula",
    "Lautaro Martin",
    "Renata Guadalupe",
    "Bautista",
    "Micaela",
    "Facundo Ariel",
    "Abril Magali",
    "Ignacio",
    "Catalina",
    "Franco Leonel",
    "Jazmin",
    "Thomas Agustin",
    "Pilar",
    "Lisandro",
    "Guadalupe",
    "Emilia",
    "Gael Benjamin",
    "Valentín",
    "Tomás Alejandro",
];
/// Last names: about one in four with an accent (the course's: 25%).
const LAST: [&str; 24] = [
    "Lorca",
    "Zambrano",
    "Rivera",
    "Rotman",
    "Quispe",
    "Arredondo",
    "Salazar",
    "Huarte",
    "Arellano",
    "Rivas",
    "Gonzales",
    "Sosa",
    "Leiva",
    "Pereira",
    "Vargas",
    "Mamani",
    "Portillo",
    "Casares",
    "Fernández",
    "Martínez",
    "Álvarez",
    "Rodríguez",
    "Sánchez",
    "Giménez",
];
/// Names that need CSV quoting.
const TRICKY: [&str; 4] = ["Pérez, Juan", "Ana \"Anita\"", "O'Brien", "de la Peña, María"];

/// A small deterministic generator (SplitMix64): no dependency, same
/// output on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Writes `rows` bets for `agency` to `out`.
///
/// # Errors
/// Write failures.
pub fn write_bets<W: Write>(out: W, agency: u32, rows: u64, seed: u64) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut rng = Rng::new(seed ^ (u64::from(agency) << 32));
    let mut line = Vec::with_capacity(128);
    for _ in 0..rows {
        line.clear();
        let first = if rng.below(400) == 0 {
            TRICKY[rng.below(TRICKY.len() as u64) as usize]
        } else {
            FIRST[rng.below(FIRST.len() as u64) as usize]
        };
        let last = LAST[rng.below(LAST.len() as u64) as usize];
        push_csv_field(&mut line, first.as_bytes());
        line.push(b',');
        push_csv_field(&mut line, last.as_bytes());
        let document = 10_000_000 + rng.below(40_000_000);
        // 1940-01-01 plus up to ~66 years, always a real date.
        let year = 1940 + rng.below(66);
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(28);
        let number =
            if rng.below(2_000) == 0 { u64::from(WINNING_NUMBER) } else { rng.below(10_000) };
        write!(line, ",{document},{year:04}-{month:02}-{day:02},{number}\r\n")?;
        out.write_all(&line)?;
    }
    out.flush()
}

/// Writes `dir/agency-{agency}.csv`.
///
/// # Errors
/// The file cannot be created or written.
pub fn write_agency_file(dir: &Path, agency: u32, rows: u64, seed: u64) -> io::Result<()> {
    let file = File::create(dir.join(format!("agency-{agency}.csv")))?;
    write_bets(file, agency, rows, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::source::{BetsFile, Row};

    #[test]
    fn deterministic_valid_crlf_and_quoted() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_bets(&mut a, 3, 5_000, 7).unwrap();
        write_bets(&mut b, 3, 5_000, 7).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a.clone()).unwrap();
        assert_eq!(text.matches("\r\n").count(), 5_000);
        assert!(text.contains('"'), "some names are quoted");
        let dir = std::env::temp_dir().join(format!("lottery-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agency-3.csv"), &a).unwrap();
        let mut f = BetsFile::open(&dir.join("agency-3.csv"), 3).unwrap();
        let (mut valid, mut winners) = (0, 0);
        while let Some(row) = f.next_row().unwrap() {
            let Row::Bet(bet) = row else { panic!("invalid row {row:?}") };
            valid += 1;
            winners += u32::from(bet.has_won());
        }
        assert_eq!(valid, 5_000);
        assert!(winners > 0);
    }

    #[test]
    fn course_shape() {
        assert_eq!(course_rows(1, 1.0), 26_936);
        assert_eq!(course_rows(7, 10.0), 255_180);
        assert_eq!(COURSE_ROWS.iter().sum::<u64>(), 78_697);
    }
}
