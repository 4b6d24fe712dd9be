//! What travels back toward a request's origin, as a local outcome or as
//! a peer message.

use super::{Outcome, PeerMessage, RequestId};

/// An answer travelling back toward the origin.
pub(super) enum Answer {
    Data(Vec<u8>),
    DataNotFound,
    RouteNotFound,
    Stored,
    Rejected,
    Timeout,
}

impl Answer {
    pub(super) fn outcome(self) -> Outcome {
        match self {
            Answer::Data(b) => Outcome::Found(b),
            Answer::DataNotFound => Outcome::DataNotFound,
            Answer::RouteNotFound => Outcome::RouteNotFound,
            Answer::Stored => Outcome::Stored,
            Answer::Rejected => Outcome::Rejected,
            Answer::Timeout => Outcome::Timeout,
        }
    }

    pub(super) fn message(self, id: RequestId) -> PeerMessage {
        match self {
            Answer::Data(block) => PeerMessage::Data { id, block },
            Answer::DataNotFound => PeerMessage::DataNotFound { id },
            Answer::Stored => PeerMessage::Stored { id },
            Answer::Rejected => PeerMessage::Rejected { id },
            Answer::RouteNotFound | Answer::Timeout => PeerMessage::RouteNotFound { id },
        }
    }
}
