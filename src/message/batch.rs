//! A BATCH's bets, owned ([`Batch`], what a client builds) or borrowed
//! from the payload they were decoded from ([`BatchView`], the server's hot
//! path).

use crate::bet::{Bet, BetRef, InvalidBet};

/// Bytes of a BATCH payload before the first bet: agency (4), first
/// sequence number (8), count (2).
pub const BATCH_HEADER_LEN: usize = 14;

/// A batch of bets from one agency. `first_seq` is the position of the
/// first bet in the agency's stream (0-based), which makes a resent batch
/// recognisable: the server stores each position once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub agency: u32,
    pub first_seq: u64,
    pub bets: Vec<Bet>,
}

/// A BATCH payload decoded without copying: the bets borrow the payload.
/// The server's hot path (see [`BatchView::decode`]);
/// [`Message::decode`](super::Message::decode) builds an owned [`Batch`]
/// from the same decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView<'a> {
    pub agency: u32,
    pub first_seq: u64,
    pub bets: Vec<BetRef<'a>>,
}

impl BatchView<'_> {
    /// Checks every bet with the shared rules.
    ///
    /// # Errors
    /// The position in the batch and the reason of the first invalid bet.
    pub fn validate(&self) -> Result<(), (usize, InvalidBet)> {
        for (i, b) in self.bets.iter().enumerate() {
            b.validate().map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// An owned copy.
    pub fn to_batch(&self) -> Batch {
        Batch {
            agency: self.agency,
            first_seq: self.first_seq,
            bets: self.bets.iter().map(BetRef::to_bet).collect(),
        }
    }
}

impl Batch {
    /// A borrowed view of this batch.
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            agency: self.agency,
            first_seq: self.first_seq,
            bets: self.bets.iter().map(Bet::as_ref).collect(),
        }
    }
}
