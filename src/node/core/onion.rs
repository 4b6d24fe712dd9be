//! Onion key rotation (`docs/protocol.md`, "Onion keys"). A relay makes
//! a new onion key every [`ONION_KEY_LIFETIME`], signs a descriptor naming
//! it at once, and answers handshakes to the key before for one more
//! lifetime. The keys persist in the data directory, so that a relay that
//! restarts still holds every key its current descriptors name.

use std::time::{Duration, Instant};

use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::Core;
use crate::crypto::ONION_KEY_LIFETIME;
use crate::wire::{Reader, Writer};

/// The persisted form's version byte.
const VERSION: u8 = 1;

/// Why a persisted onion key file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionKeysError {
    #[error("onion keys: {0}")]
    Malformed(#[from] crate::wire::Error),
    #[error("onion keys: unknown version {0}")]
    Version(u8),
}

/// A relay's onion keys as persisted: when the current one was made (Unix
/// time), the current one, and the one before.
pub struct OnionKeys {
    pub made: u64,
    pub current: StaticSecret,
    pub previous: Option<StaticSecret>,
}

impl OnionKeys {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(VERSION);
        w.u64(self.made);
        w.bytes(self.current.as_bytes());
        match &self.previous {
            Some(p) => {
                w.u8(1);
                w.bytes(p.as_bytes());
            }
            None => w.u8(0),
        }
        Zeroizing::new(w.into_vec())
    }

    pub fn decode(bytes: &[u8]) -> Result<OnionKeys, OnionKeysError> {
        let mut r = Reader::new(bytes, "onion keys");
        let version = r.u8()?;
        if version != VERSION {
            return Err(OnionKeysError::Version(version));
        }
        let made = r.u64()?;
        let current: Zeroizing<[u8; 32]> = Zeroizing::new(r.array()?);
        let previous = if r.bool("previous key flag")? {
            let p: Zeroizing<[u8; 32]> = Zeroizing::new(r.array()?);
            Some(StaticSecret::from(*p))
        } else {
            None
        };
        r.finish()?;
        Ok(OnionKeys {
            made,
            current: StaticSecret::from(*current),
            previous,
        })
    }
}

impl Core {
    /// Start from saved onion keys (a relay that restarts).
    pub fn set_onion_keys(&mut self, keys: OnionKeys, now: Instant) {
        self.onion_made = keys.made;
        self.signer.replace_onion(keys.current.clone());
        self.previous_onion = keys.previous.clone();
        self.circuits.set_onion_keys(keys.current, keys.previous);
        self.onion_changed = false;
        self.republish(now);
    }

    /// The onion keys changed since last taken: their persisted form.
    pub fn take_onion_changed(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        if !self.onion_changed {
            return None;
        }
        self.onion_changed = false;
        let keys = OnionKeys {
            made: self.onion_made,
            current: self.signer.onion_secret().clone(),
            previous: self.previous_onion.clone(),
        };
        Some(keys.encode())
    }

    /// When the onion key is next due for rotation.
    pub(super) fn next_rotation(&self) -> Instant {
        let due = self.onion_made.saturating_add(ONION_KEY_LIFETIME);
        let after = due.saturating_sub(self.unix_born);
        self.born + Duration::from_secs(after)
    }

    /// Make a new onion key if the current one is due, and show a
    /// descriptor that names it. Relays only: a client's handshakes are
    /// its own, and its identity lasts one run.
    pub(super) fn rotate_onion(&mut self, now: Instant) {
        if !self.settings.relay || now < self.next_rotation() {
            return;
        }
        let fresh = StaticSecret::random_from_rng(&mut self.rng);
        let old = self.signer.replace_onion(fresh.clone());
        self.circuits.set_onion_keys(fresh, Some(old.clone()));
        self.previous_onion = Some(old);
        self.onion_made = self.unix_at(now);
        self.onion_changed = true;
        tracing::debug!("made a new onion key");
        self.republish(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onion_keys_round_trip_and_bad_files_are_typed_errors() {
        let keys = OnionKeys {
            made: 77,
            current: StaticSecret::from([1; 32]),
            previous: Some(StaticSecret::from([2; 32])),
        };
        let bytes = keys.encode();
        let back = OnionKeys::decode(&bytes).expect("reads back");
        assert_eq!(back.made, 77);
        assert_eq!(back.current.as_bytes(), &[1; 32]);
        assert_eq!(back.previous.map(|p| *p.as_bytes()), Some([2; 32]));
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    OnionKeys::decode(&bytes[..cut]),
                    Err(OnionKeysError::Malformed(_)) | Err(OnionKeysError::Version(_))
                ),
                "cut at {cut}"
            );
        }
        let mut other = bytes.to_vec();
        other[0] = 9;
        assert!(matches!(
            OnionKeys::decode(&other),
            Err(OnionKeysError::Version(9))
        ));
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(OnionKeys::decode(&longer).is_err(), "trailing bytes");
    }
}
