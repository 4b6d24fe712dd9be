//! Document keys and block verification.
//!
//! Today: content-hash keys (CHK), whose routing key is the SHA-256 of the
//! block, so any node can check a block against its key. Signed-subspace
//! and keyword keys, block encryption, manifests and URIs come with the
//! routing layer; until then a block of any other kind is refused.

use sha2::{Digest, Sha256};

use crate::wire::{KeyKind, RoutingKey, MAX_BLOCK_LEN};

/// The routing key of a content-hash block.
pub fn chk_routing_key(block: &[u8]) -> RoutingKey {
    RoutingKey(Sha256::digest(block).into())
}

/// Whether `block` is a valid block for `key`. Every node calls this before
/// it stores, caches, forwards or returns a block.
pub fn verify_block(kind: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
    if block.len() > MAX_BLOCK_LEN {
        return false;
    }
    match kind {
        KeyKind::CHK => chk_routing_key(block) == *key,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chk_block_verifies_only_against_its_own_hash() {
        let block = b"some ciphertext".to_vec();
        let key = chk_routing_key(&block);
        assert!(verify_block(KeyKind::CHK, &key, &block));
        let mut other = block.clone();
        other[0] ^= 1;
        assert!(!verify_block(KeyKind::CHK, &key, &other));
        assert!(!verify_block(KeyKind::SSK, &key, &block));
        assert!(!verify_block(KeyKind(9), &key, &block));
    }
}
