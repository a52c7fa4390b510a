//! The draw as the workers ask for it: whether it happened ([`DrawState`])
//! and a page of an agency's winners ([`WinnersPage`]), and the hook that
//! logs its `sorteo` line ([`AnnounceDraw`]).

/// One page of an agency's winners, as the WINNERS message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinnersPage {
    /// The agency's winners in all.
    pub total: u32,
    /// Documents from the offset asked, in storage order, as many as fit.
    pub documents: Vec<String>,
    /// Bytes the documents take on the wire (`str8` each).
    used: usize,
}

impl WinnersPage {
    /// An empty page of an agency with `total` winners.
    pub fn new(total: u32) -> WinnersPage {
        WinnersPage { total, documents: Vec::new(), used: 0 }
    }

    /// Whether one more document of `len` bytes fits in `room` bytes of
    /// documents (and in the message's `u16` count).
    pub fn fits(&self, len: usize, room: usize) -> bool {
        self.documents.len() < usize::from(u16::MAX) && self.used + 1 + len <= room
    }

    /// Adds a document (the caller checked [`WinnersPage::fits`]).
    pub fn push(&mut self, document: String) {
        self.used += 1 + document.len();
        self.documents.push(document);
    }
}

/// The draw as a [`Lookup`](super::Lookup) finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrawState {
    /// No draw yet: `finished` agencies have their DONE recorded.
    NotReady { finished: u32 },
    /// A page of the agency's winners.
    Ready(WinnersPage),
}

/// Logs the draw's line (`sorteo`) with its number of winners.
pub type AnnounceDraw<'a> = &'a dyn Fn(u64);
