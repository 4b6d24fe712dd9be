//! The relay sample: the relays a node builds its circuits from, at most
//! [`SAMPLE_SIZE`], a few per network, oldest out first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::{CircuitError, Networks, SAMPLE_NETWORKS, SAMPLE_PER_NETWORK, SAMPLE_SIZE};
use crate::ring::Peer;
use crate::wire::NodeId;

/// The relays a node chooses circuits from: descriptors found by lookups of
/// random ring points, newest kept.
#[derive(Default)]
pub struct Sample {
    relays: VecDeque<Peer>,
    /// When each relay entered the sample (guards are picked among those
    /// known for a while).
    since: HashMap<NodeId, Instant>,
}

impl Sample {
    /// Add or refresh a relay; the oldest entry goes when the sample is
    /// full. A relay new to the sample is refused (false) when
    /// [`SAMPLE_PER_NETWORK`] relays of one public /24 (IPv4) or /48
    /// (IPv6) are in it already: an adversary with a few subnets cannot
    /// fill it however many ids it makes there.
    pub fn insert(&mut self, peer: Peer, now: Instant) -> bool {
        let known = self.relays.iter().any(|p| p.id == peer.id);
        if !known {
            let nets = SAMPLE_NETWORKS.of(&peer);
            let crowded = nets.iter().any(|n| {
                self.relays
                    .iter()
                    .filter(|p| SAMPLE_NETWORKS.of(p).contains(n))
                    .count()
                    >= SAMPLE_PER_NETWORK
            });
            if crowded {
                return false;
            }
        }
        self.relays.retain(|p| p.id != peer.id);
        if self.relays.len() == SAMPLE_SIZE {
            if let Some(old) = self.relays.pop_front() {
                self.since.remove(&old.id);
            }
        }
        self.since.entry(peer.id).or_insert(now);
        self.relays.push_back(peer);
        true
    }

    pub fn remove(&mut self, id: NodeId) {
        self.relays.retain(|p| p.id != id);
        self.since.remove(&id);
    }

    /// Take a newer descriptor of a relay in the sample, in its place.
    pub(super) fn update(&mut self, peer: &Peer) {
        for p in &mut self.relays {
            if p.id == peer.id && p.desc.published < peer.desc.published {
                *p = peer.clone();
            }
        }
    }

    /// Drop the relays whose descriptors are stale at `unix`; how many.
    pub(super) fn expire(&mut self, unix: u64) -> usize {
        let before = self.relays.len();
        let stale: Vec<NodeId> = self
            .relays
            .iter()
            .filter(|p| !crate::crypto::descriptor_fresh(&p.desc, unix))
            .map(|p| p.id)
            .collect();
        for id in stale {
            self.remove(id);
        }
        before - self.relays.len()
    }

    /// The earliest Unix time at which a descriptor in the sample goes
    /// stale.
    pub(super) fn first_stale(&self) -> Option<u64> {
        self.relays
            .iter()
            .map(|p| {
                p.desc
                    .published
                    .saturating_add(crate::crypto::DESCRIPTOR_LIFETIME)
            })
            .min()
    }

    /// Each relay with when it entered the sample.
    pub fn with_since(&self) -> Vec<(Peer, Instant)> {
        self.relays
            .iter()
            .filter_map(|p| self.since.get(&p.id).map(|&t| (p.clone(), t)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.relays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.relays.iter().map(|p| p.id).collect()
    }

    pub fn peers(&self) -> Vec<Peer> {
        self.relays.iter().cloned().collect()
    }

    pub fn get(&self, id: NodeId) -> Option<&Peer> {
        self.relays.iter().find(|p| p.id == id)
    }

    /// `n` distinct relays, none of them in `exclude` and no two in one
    /// of `networks`, in random order; after `first` if given (a guard,
    /// which counts among the `n`).
    pub(super) fn choose(
        &self,
        rng: &mut StdRng,
        n: usize,
        exclude: &HashSet<NodeId>,
        networks: &Networks,
        first: Option<Peer>,
    ) -> Result<Vec<Peer>, CircuitError> {
        let mut pool: Vec<&Peer> = self
            .relays
            .iter()
            .filter(|p| !exclude.contains(&p.id) && first.as_ref().is_none_or(|f| f.id != p.id))
            .collect();
        let fixed = usize::from(first.is_some());
        if pool.len() + fixed < n {
            return Err(CircuitError::NotEnoughRelays {
                have: pool.len() + fixed,
                need: n,
            });
        }
        pool.shuffle(rng);
        // In the shuffled order, skip a relay that shares a network with
        // one already taken: one operator's subnet holds one hop at most.
        let mut taken: Vec<Peer> = Vec::with_capacity(n);
        let mut used: Vec<(bool, u128)> = Vec::new();
        if let Some(f) = first {
            used.extend(networks.of(&f));
            taken.push(f);
        }
        for p in pool {
            if taken.len() == n {
                break;
            }
            let nets = networks.of(p);
            if nets.iter().any(|x| used.contains(x)) {
                continue;
            }
            used.extend(nets);
            taken.push(p.clone());
        }
        if taken.len() < n {
            return Err(CircuitError::NotEnoughRelays {
                have: taken.len(),
                need: n,
            });
        }
        Ok(taken)
    }
}
