//! umbra: an anonymous document store.
//!
//! Document keys live on a Chord ring, requests travel hop by hop toward the
//! key Freenet-style, and every request leaves its requester through an
//! onion circuit. This crate is built bottom up; see `docs/protocol.md` for
//! the wire format and `docs/threat-model.md` for what it protects.

#![forbid(unsafe_code)]

pub mod circuit;
pub mod cli;
pub mod client;
pub mod crypto;
pub mod daemon;
pub mod gateway;
pub mod keys;
pub mod link;
pub mod node;
pub mod observe;
pub mod ring;
pub mod route;
pub mod sim;
pub mod socks;
pub mod store;
pub mod testnet;
pub mod token;
pub mod wire;
