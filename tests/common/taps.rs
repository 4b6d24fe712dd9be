//! Misbehaving nodes for tests: the honest node behind a tap that rewrites
//! what it sends. Nothing of this is in the node itself.

use std::collections::HashSet;

use umbra::node::Tap;
use umbra::wire::{Cell, CircId, Frame, NodeId, PeerMessage, ONION_LEN};

/// Flips a bit in every block the node serves (DATA answers).
pub struct CorruptBlocks;

impl Tap for CorruptBlocks {
    fn sending(&mut self, _: NodeId, mut frame: Frame) -> Option<Frame> {
        if let Frame::Message(PeerMessage::Data { block, .. }) = &mut frame {
            if let Some(b) = block.first_mut() {
                *b ^= 1;
            }
        }
        Some(frame)
    }
}

/// Keeps its place on the ring and stores what it is given, but never
/// answers a routed request: every answer it would send (data, not found,
/// stored, loop) is dropped.
pub struct SwallowAnswers;

impl Tap for SwallowAnswers {
    fn sending(&mut self, _: NodeId, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::Message(
                PeerMessage::Data { .. }
                | PeerMessage::DataNotFound { .. }
                | PeerMessage::RouteNotFound { .. }
                | PeerMessage::Loop { .. }
                | PeerMessage::Stored { .. }
                | PeerMessage::Rejected { .. },
            ) => None,
            f => Some(f),
        }
    }
}

/// Flips a bit in every relay cell the node forwards away from the client:
/// the circuits it extended for others are the ones it sent a CREATE on,
/// and cells going out on those are going away from the client.
#[derive(Default)]
pub struct FlipForwardCells {
    forward: HashSet<(NodeId, CircId)>,
}

impl Tap for FlipForwardCells {
    fn sending(&mut self, to: NodeId, mut frame: Frame) -> Option<Frame> {
        match &mut frame {
            Frame::Cell(Cell::Create { circ, .. }) => {
                self.forward.insert((to, *circ));
            }
            Frame::Cell(Cell::Relay { circ, onion } | Cell::RelayEarly { circ, onion })
                if self.forward.contains(&(to, *circ)) =>
            {
                onion[ONION_LEN / 2] ^= 0x01;
            }
            _ => {}
        }
        Some(frame)
    }
}
