//! A winner's record as the committer hands it in and the log holds it
//! (agency, then the document as `str8`), and the tally of each agency's
//! winners that the regrouping lays the winners file out from.

use std::collections::BTreeMap;

/// Bytes of a record's head in the log: agency (u32 LE), document length.
pub(super) const RECORD_HEAD: usize = 5;

/// Appends the record of one winning bet (agency, document) to `out`, the
/// form the committer hands in and the log holds. A document is at most
/// [`MAX_DOCUMENT_DIGITS`](crate::bet::MAX_DOCUMENT_DIGITS) digits (validated before it gets here).
pub fn push_record(out: &mut Vec<u8>, agency: u32, document: &str) {
    let doc = &document.as_bytes()[..document.len().min(usize::from(u8::MAX))];
    out.extend_from_slice(&agency.to_le_bytes());
    out.push(doc.len() as u8);
    out.extend_from_slice(doc);
}

/// The records of `bytes` (as [`push_record`] wrote them): (agency, document).
fn records(mut bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        let (head, rest) = bytes.split_first_chunk::<RECORD_HEAD>()?;
        let agency = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (doc, rest) = rest.split_at_checked(usize::from(head[4]))?;
        bytes = rest;
        Some((agency, doc))
    })
}

/// How many winners an agency has, and the bytes their documents take as
/// `str8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) bytes: u64,
}

/// Adds the records of `bytes` to `tallies`, one map update per run of
/// one agency's records (a batch's winners come together).
pub(super) fn tally(tallies: &mut BTreeMap<u32, Tally>, bytes: &[u8]) {
    let mut run: Option<(u32, Tally)> = None;
    for (agency, doc) in records(bytes) {
        let add = 1 + doc.len() as u64;
        match &mut run {
            Some((a, t)) if *a == agency => {
                t.count += 1;
                t.bytes += add;
            }
            _ => {
                if let Some((a, t)) = run.take() {
                    let entry = tallies.entry(a).or_default();
                    entry.count += t.count;
                    entry.bytes += t.bytes;
                }
                run = Some((agency, Tally { count: 1, bytes: add }));
            }
        }
    }
    if let Some((a, t)) = run {
        let entry = tallies.entry(a).or_default();
        entry.count += t.count;
        entry.bytes += t.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        push_record(&mut out, 7, "0123");
        push_record(&mut out, 70_000, "9");
        let back: Vec<(u32, &[u8])> = records(&out).collect();
        assert_eq!(back, vec![(7, &b"0123"[..]), (70_000, &b"9"[..])]);
        let mut t = BTreeMap::new();
        tally(&mut t, &out);
        assert_eq!(t[&7], Tally { count: 1, bytes: 5 });
    }
}
