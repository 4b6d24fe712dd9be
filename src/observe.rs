//! A hook that sees what a node receives: every frame off every link, and
//! every relay message it reads as an exit or as a circuit's client.
//!
//! It exists for the anonymity tests, which must check what each node
//! could learn, and for debugging. It is set in code, never from a
//! configuration file, and costs one branch when unset.

use std::sync::Arc;

use crate::wire::{Frame, NodeId, RelayMessage};

/// One thing a node received.
#[derive(Debug)]
pub enum Observation<'a> {
    /// A frame arrived at `at` over its link with `from`; `len` bytes on
    /// the wire, framing included.
    Frame {
        at: NodeId,
        from: NodeId,
        len: usize,
        frame: &'a Frame,
    },
    /// The exit `at` read a relay message off a circuit.
    Exit { at: NodeId, msg: &'a RelayMessage },
    /// The node `at` read a relay message off one of its own circuits.
    Client { at: NodeId, msg: &'a RelayMessage },
}

/// A cloneable callback for [`Observation`]s. It runs on the node's task:
/// keep it quick.
#[derive(Clone)]
pub struct Observer(Arc<dyn Fn(&Observation<'_>) + Send + Sync>);

impl Observer {
    pub fn new(f: impl Fn(&Observation<'_>) + Send + Sync + 'static) -> Observer {
        Observer(Arc::new(f))
    }

    pub fn observe(&self, o: &Observation<'_>) {
        (self.0)(o)
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}
