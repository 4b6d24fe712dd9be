//! The bytes on the wire: fixed-size circuit cells, the relay messages that
//! travel inside them, and the peer messages of the ring and of routed
//! requests. Pure (sans-IO): encode to bytes, parse from bytes.
//!
//! Every parser here is total: any byte string yields a value or a typed
//! [`Error`], never a panic, and no allocation is sized by the input beyond a
//! named bound (`MAX_*` below). Command codes are open newtypes, so an
//! unknown code is a value the caller can refuse, not a crash. The format is
//! specified byte by byte in `docs/protocol.md`; the style follows arti's
//! `tor-bytes` and `tor-cell`.

mod cell;
mod codec;
mod frame;
mod message;
mod relay;

pub use cell::{Cell, CellCommand, CircId, CreateBody, CreatedBody, DestroyReason, HandshakeType};
pub use codec::{Reader, Writer};
pub use frame::{decode_frame, encode_frame, Frame, FrameKind, MAX_FRAME_LEN};
pub use message::{
    KeyKind, MessageKind, NodeAddr, NodeDescriptor, PeerMessage, RequestId, ShownTable,
};
pub use relay::{EndStatus, RelayCommand, RelayMessage, StreamId};

/// Size in bytes of every cell on a link: see `docs/protocol.md` for the
/// measurements behind 4096.
pub const CELL_LEN: usize = 4096;
/// Circuit id (4) and command (1).
pub const CELL_HEADER_LEN: usize = 5;
/// The part of a relay cell that carries the onion layers.
pub const ONION_LEN: usize = CELL_LEN - CELL_HEADER_LEN;
/// Poly1305 tag, one per layer.
pub const TAG_LEN: usize = 16;
/// Longest circuit the cell format supports. Every relay cell reserves room
/// for this many layer tags, so that no hop can infer the circuit's length
/// from how much room is left.
pub const MAX_HOPS: usize = 8;
/// EXTENDs one circuit may carry: every relay counts the RELAY_EARLY cells
/// that cross it and destroys a circuit that sends more, so the first
/// relay alone holds any circuit to [`MAX_HOPS`] hops.
pub const MAX_EXTENDS: usize = MAX_HOPS - 1;
/// What the exit (forward) or the client (backward) gets once every layer is
/// off: the relay message and its padding.
pub const RELAY_PAYLOAD_LEN: usize = ONION_LEN - TAG_LEN * MAX_HOPS;
/// Relay message header: command (1), stream (2), length (2).
pub const RELAY_HEADER_LEN: usize = 5;
/// Largest relay message body.
pub const RELAY_BODY_MAX: usize = RELAY_PAYLOAD_LEN - RELAY_HEADER_LEN;

/// Bytes of document data in one block (see the `keys` module).
pub const BLOCK_DATA_LEN: usize = 32 * 1024;
/// Largest block on the wire: the data plus the largest header any key kind
/// uses (a signed block carries a public key, name hash, version, flags and a
/// signature).
pub const MAX_BLOCK_LEN: usize = BLOCK_DATA_LEN + 512;
/// Largest peer message (ring or routed request), excluding its frame prefix.
pub const MAX_MESSAGE_LEN: usize = MAX_BLOCK_LEN + 1024;
/// Addresses in a node descriptor.
pub const MAX_ADDRS: usize = 4;
/// Descriptors in a successor list reply.
pub const MAX_SUCCESSORS: usize = 32;
/// Distinct fingers in a routing table reply.
pub const MAX_FINGERS: usize = 64;
/// Handshake bytes in create, created, extend and extended.
pub const MAX_HANDSHAKE_LEN: usize = 512;

/// Why some bytes are not a valid value. `what` names the field or message
/// being parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{what}: truncated, {needed} more bytes needed")]
    Truncated { what: &'static str, needed: usize },
    #[error("{what}: {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: invalid value {value}")]
    BadValue { what: &'static str, value: u64 },
    #[error("{what}: padding is not zero")]
    NonZeroPadding { what: &'static str },
    #[error("{what}: unknown command {code:#04x}")]
    UnknownCommand { what: &'static str, code: u8 },
    #[error("{what}: wrong length {len}, expected {expected}")]
    WrongLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
}

/// A node's place on the ring: SHA-256 of its Ed25519 identity key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

/// A document block's place on the ring.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoutingKey(pub [u8; 32]);

macro_rules! short_hex_debug {
    ($t:ty, $name:literal) => {
        // Only a prefix: enough to tell values apart in a debug log, and
        // short enough that a full key never lands in one by accident.
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($name, "("))?;
                for b in &self.0[..4] {
                    write!(f, "{b:02x}")?;
                }
                write!(f, "…)")
            }
        }
    };
}
short_hex_debug!(NodeId, "NodeId");

impl NodeId {
    /// The full id as 64 hex digits, for status output and the command line.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Option<NodeId> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(NodeId(out))
    }
}
short_hex_debug!(RoutingKey, "RoutingKey");

/// An open command-code newtype with named constants, as in `tor-cell`:
/// unknown codes are values that the caller decides about.
macro_rules! open_code {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $c:ident = $v:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u8);
        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*
            /// The constant's name, or `None` for a code this version does
            /// not know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some(stringify!($c)),)*
                    _ => None,
                }
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, "{}({:#04x})", stringify!($name), self.0),
                }
            }
        }
    };
}
pub(crate) use open_code;
