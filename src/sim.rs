//! The simulator: many node cores in one process, on a virtual clock, over
//! an in-memory network with a latency model and message loss. Each node
//! is the real [`Core`](crate::node::core::Core) with a real datastore held
//! in memory; nothing of the ring, the router, the circuits, placement or
//! relay sampling is reimplemented here, only the world around them.
//!
//! Deterministic: a network built and driven the same way from the same
//! seed goes through the same events in the same order at the same virtual
//! times, which [`Net::trace`] (a hash of every event) shows. Documents are
//! inserted and fetched with the real document layer (`client`) through a
//! [`NodeClient`](crate::node::NodeClient) per node, run alongside the
//! simulation by [`Net::run_future`].

mod events;
pub mod experiments;
mod net;
mod settle;

pub use net::{Latency, Net, Settings, Trace};
