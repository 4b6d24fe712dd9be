//! Entry guards (`docs/threat-model.md`, "Guards"): the first relay of
//! every circuit comes from a small, long-lived set, so that a user whose
//! guard is honest is safe from end-to-end timing for as long as it keeps
//! it, instead of drawing a fresh first relay (and a fresh chance of a
//! colluding one) for every circuit.
//!
//! As in Tor (proposal 271, simplified): one guard in use, chosen among
//! sampled relays known for a while, kept for a random 30 to 60 days, and
//! persisted in the data directory. A guard that cannot be reached is set
//! aside for a while and the next one is used; new guards are picked at
//! most [`PICKS_PER_DAY`] times a day, so an adversary that makes guards
//! fail cannot make a client cycle through first relays until it draws
//! one of its own. Each guard keeps path-bias counts (Tor's
//! `circpathbias`): circuits through it that were judged (their build
//! failed past the guard, or their first request succeeded or failed),
//! and how many succeeded. A guard under which fewer than
//! [`CUTOFF`] of at least [`JUDGE_AFTER`] circuits succeed is dropped: a
//! colluding guard that destroys every circuit whose exit it does not
//! also hold lets through only the circuits that end at a colluding exit.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::ring::Peer;
use crate::wire::{NodeDescriptor, NodeId, Reader, Writer};

/// Guards a client keeps, in order of preference; the first usable one
/// is used.
pub const KEPT: usize = 3;
/// A guard is kept for a uniform random time in this range, in days.
pub const LIFETIME_DAYS: (u64, u64) = (30, 60);
/// New guards picked in any 24 hours at most.
pub const PICKS_PER_DAY: usize = 4;
/// An unreachable guard is set aside this long before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);
/// A relay must have been in the sample this long to be picked.
pub const KNOWN_FOR: Duration = Duration::from_secs(300);
/// Circuits judged before a guard's success rate counts.
pub const JUDGE_AFTER: u32 = 20;
/// Success rate under which a guard is dropped (Tor's extreme threshold).
pub const CUTOFF: f64 = 0.3;
/// Counts are halved past this many, so that old history fades (Tor
/// scales its counts the same way).
pub const SCALE_AT: u32 = 300;

const DAY: u64 = 86_400;
/// The persisted form's version byte.
const VERSION: u8 = 1;
/// Guards in a persisted file at most.
const MAX_PERSISTED: usize = 16;

#[derive(Debug, Clone)]
pub struct Guard {
    pub peer: Peer,
    /// Unix time it was picked, and until when it is kept.
    pub picked: u64,
    pub until: u64,
    /// Circuits judged, and of those, succeeded.
    pub judged: u32,
    pub succeeded: u32,
    /// Dropped for its success rate; kept in the list so that it is not
    /// picked again.
    pub dropped: bool,
    /// Unreachable: not tried before this.
    down_until: Option<Instant>,
}

impl Guard {
    fn usable(&self, now: Instant, unix: u64) -> bool {
        !self.dropped && unix < self.until && self.down_until.is_none_or(|t| now >= t)
    }

    /// The success rate, once enough circuits were judged.
    pub fn rate(&self) -> Option<f64> {
        (self.judged >= JUDGE_AFTER).then(|| f64::from(self.succeeded) / f64::from(self.judged))
    }
}

/// Why a persisted guard list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardsError {
    #[error("guard list: {0}")]
    Malformed(#[from] crate::wire::Error),
    #[error("guard list: unknown version {0}")]
    Version(u8),
    #[error("guard list: a descriptor's signature does not verify")]
    BadSignature,
}

#[derive(Debug, Default)]
pub struct Guards {
    list: Vec<Guard>,
    /// Unix times of recent picks.
    picks: VecDeque<u64>,
    /// Changed since last saved.
    dirty: bool,
    /// Guards dropped for their success rate, since start.
    pub dropped: u64,
}

impl Guards {
    pub fn list(&self) -> &[Guard] {
        &self.list
    }

    /// Whether the list changed since [`Guards::saved`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn saved(&mut self) {
        self.dirty = false;
    }

    /// The guard to use now, picking one from `candidates` (relays of the
    /// sample, each with when it entered it; asked for only when a pick is
    /// due) if none is usable and the daily budget allows. `None`: no
    /// guard can be had now.
    pub fn current(
        &mut self,
        now: Instant,
        unix: u64,
        candidates: impl FnOnce() -> Vec<(Peer, Instant)>,
        rng: &mut impl Rng,
    ) -> Option<Peer> {
        let before = self.list.len();
        // Expired guards leave; dropped ones stay listed, never picked again.
        self.list.retain(|g| g.dropped || unix < g.until);
        if self.list.len() != before {
            self.dirty = true;
        }
        if let Some(g) = self.list.iter().find(|g| g.usable(now, unix)) {
            return Some(g.peer.clone());
        }
        while self.picks.front().is_some_and(|&t| t + DAY <= unix) {
            self.picks.pop_front();
        }
        if self.picks.len() >= PICKS_PER_DAY {
            return None;
        }
        let candidates = candidates();
        let fresh: Vec<&(Peer, Instant)> = candidates
            .iter()
            .filter(|(p, _)| !self.list.iter().any(|g| g.peer.id == p.id))
            .collect();
        let seasoned: Vec<&(Peer, Instant)> = fresh
            .iter()
            .copied()
            .filter(|(_, since)| now.saturating_duration_since(*since) >= KNOWN_FOR)
            .collect();
        // A network younger than KNOWN_FOR (a test network just started)
        // has no seasoned relay: any will do there.
        let pool = if seasoned.is_empty() { fresh } else { seasoned };
        if pool.is_empty() {
            return None;
        }
        let (peer, _) = pool[rng.gen_range(0..pool.len())];
        let days = rng.gen_range(LIFETIME_DAYS.0..=LIFETIME_DAYS.1);
        self.picks.push_back(unix);
        // Set-aside guards stay listed (they come back); make room among
        // the rest, oldest dropped first.
        if self.list.len() >= KEPT {
            if let Some(k) = self.list.iter().position(|g| g.dropped) {
                self.list.remove(k);
            } else if self.list.len() >= MAX_PERSISTED {
                self.list.remove(0);
            }
        }
        self.list.push(Guard {
            peer: peer.clone(),
            picked: unix,
            until: unix + days * DAY,
            judged: 0,
            succeeded: 0,
            dropped: false,
            down_until: None,
        });
        self.dirty = true;
        Some(peer.clone())
    }

    /// The guard in use now, if one is, without picking one.
    pub fn in_use(&self, now: Instant, unix: u64) -> Option<&Peer> {
        self.list
            .iter()
            .find(|g| g.usable(now, unix))
            .map(|g| &g.peer)
    }

    /// Take a newer descriptor of a guard (saved with the list).
    pub fn update(&mut self, peer: &Peer) {
        for g in &mut self.list {
            if g.peer.id == peer.id && g.peer.desc.published < peer.desc.published {
                g.peer = peer.clone();
                self.dirty = true;
            }
        }
    }

    pub fn is_guard(&self, id: NodeId) -> bool {
        self.list.iter().any(|g| g.peer.id == id)
    }

    /// The guard `id` could not be reached: set it aside for a while.
    pub fn unreachable(&mut self, id: NodeId, now: Instant) {
        if let Some(g) = self.list.iter_mut().find(|g| g.peer.id == id) {
            g.down_until = Some(now + RETRY_AFTER);
        }
    }

    /// A circuit through guard `id` was judged. Returns true if this
    /// judgement dropped the guard.
    pub fn judge(&mut self, id: NodeId, ok: bool) -> bool {
        let Some(g) = self.list.iter_mut().find(|g| g.peer.id == id) else {
            return false;
        };
        if g.dropped {
            return false;
        }
        g.judged += 1;
        g.succeeded += u32::from(ok);
        if g.judged >= SCALE_AT {
            g.judged /= 2;
            g.succeeded /= 2;
        }
        self.dirty = true;
        if g.rate().is_some_and(|r| r < CUTOFF) {
            g.dropped = true;
            self.dropped += 1;
            return true;
        }
        false
    }

    /// The persisted form: version, picks, then each guard's signed
    /// descriptor and counts.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION);
        let picks: Vec<u64> = self.picks.iter().copied().take(PICKS_PER_DAY).collect();
        w.u8(picks.len() as u8);
        for t in picks {
            w.u64(t);
        }
        let list: Vec<&Guard> = self.list.iter().take(MAX_PERSISTED).collect();
        w.u8(list.len() as u8);
        for g in list {
            // A descriptor that no longer encodes was never valid.
            if g.peer.desc.write(&mut w).is_err() {
                continue;
            }
            w.u64(g.picked);
            w.u64(g.until);
            w.u32(g.judged);
            w.u32(g.succeeded);
            w.bool(g.dropped);
        }
        w.into_vec()
    }

    /// Read a persisted list; every descriptor's signature is checked
    /// again (the file is input like any other).
    pub fn decode(bytes: &[u8]) -> Result<Guards, GuardsError> {
        let mut r = Reader::new(bytes, "guard list");
        let v = r.u8()?;
        if v != VERSION {
            return Err(GuardsError::Version(v));
        }
        let n = usize::from(r.u8()?);
        let n = r.bounded_count(n, PICKS_PER_DAY, 8, "guard picks")?;
        let mut picks = VecDeque::new();
        for _ in 0..n {
            picks.push_back(r.u64()?);
        }
        let n = usize::from(r.u8()?);
        let n = r.bounded_count(n, MAX_PERSISTED, NodeDescriptor::MIN_LEN, "guards")?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            let desc = NodeDescriptor::read(&mut r)?;
            if crate::crypto::verify_descriptor(&desc).is_err() {
                return Err(GuardsError::BadSignature);
            }
            list.push(Guard {
                peer: Peer::new(desc),
                picked: r.u64()?,
                until: r.u64()?,
                judged: r.u32()?,
                succeeded: r.u32()?,
                dropped: r.bool("dropped flag")?,
                down_until: None,
            });
        }
        r.finish()?;
        Ok(Guards {
            list,
            picks,
            dirty: false,
            dropped: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identity;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn relays(rng: &mut StdRng, n: usize, since: Instant) -> Vec<(Peer, Instant)> {
        (0..n)
            .map(|_| {
                let who = Identity::generate(rng);
                let d = who
                    .sign_descriptor(Vec::new(), 1_000, NodeDescriptor::FLAG_RELAY)
                    .expect("signs");
                (Peer::new(d), since)
            })
            .collect()
    }

    /// A generator, `n` relays all in the sample since `t0`, and a time
    /// when they are seasoned.
    fn setup(seed: u64, n: usize) -> (StdRng, Vec<(Peer, Instant)>, Instant) {
        let mut rng = StdRng::seed_from_u64(seed);
        let t0 = Instant::now();
        let all = relays(&mut rng, n, t0);
        (rng, all, t0 + KNOWN_FOR)
    }

    #[test]
    fn a_guard_is_kept_until_it_expires_and_picked_among_seasoned_relays() {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let old = relays(&mut rng, 5, t0);
        let young = relays(&mut rng, 50, t0 + KNOWN_FOR);
        let mut all = old.clone();
        all.extend(young);
        let mut g = Guards::default();
        let now = t0 + KNOWN_FOR;
        let first = g
            .current(now, 0, || all.clone(), &mut rng)
            .expect("a guard");
        assert!(
            old.iter().any(|(p, _)| p.id == first.id),
            "seasoned relays only"
        );
        for day in 0..LIFETIME_DAYS.0 {
            let again = g
                .current(now, day * DAY, || all.clone(), &mut rng)
                .expect("kept");
            assert_eq!(again.id, first.id, "day {day}");
        }
        let at = (LIFETIME_DAYS.1 + 1) * DAY;
        let later = g
            .current(now, at, || all.clone(), &mut rng)
            .expect("a new guard");
        let listed: Vec<&Guard> = g.list().iter().filter(|x| !x.dropped).collect();
        assert_eq!(listed.len(), 1, "the expired guard left the list");
        assert_eq!(listed[0].peer.id, later.id);
        assert_eq!(listed[0].picked, at, "picked afresh");
    }

    #[test]
    fn unreachable_guards_are_set_aside_and_picks_are_bounded() {
        let (mut rng, all, now) = setup(2, 20);
        let mut g = Guards::default();
        let mut seen = Vec::new();
        for _ in 0..PICKS_PER_DAY {
            let p = g
                .current(now, 0, || all.clone(), &mut rng)
                .expect("a guard");
            assert!(!seen.contains(&p.id));
            seen.push(p.id);
            g.unreachable(p.id, now);
        }
        assert!(
            g.current(now, 0, || all.clone(), &mut rng).is_none(),
            "no more than {PICKS_PER_DAY} new guards a day"
        );
        // After a while the set-aside guards are tried again.
        let back = g
            .current(now + RETRY_AFTER, 0, || all.clone(), &mut rng)
            .expect("back");
        assert!(seen.contains(&back.id));
        // A day later, new picks are allowed again.
        for id in &seen {
            g.unreachable(*id, now + RETRY_AFTER);
        }
        assert!(g
            .current(now + RETRY_AFTER, DAY + 1, || all.clone(), &mut rng)
            .is_some());
    }

    #[test]
    fn path_bias_drops_a_guard_under_the_cutoff_only() {
        let (mut rng, all, now) = setup(3, 10);
        for (succeeded, dropped) in [(5u32, true), (7, false)] {
            let mut g = Guards::default();
            let p = g
                .current(now, 0, || all.clone(), &mut rng)
                .expect("a guard");
            let mut out = false;
            for k in 0..JUDGE_AFTER {
                out |= g.judge(p.id, k < succeeded);
            }
            assert_eq!(out, dropped, "{succeeded} of {JUDGE_AFTER}");
            let next = g
                .current(now, 0, || all.clone(), &mut rng)
                .expect("a guard");
            assert_eq!(next.id != p.id, dropped);
        }
    }

    #[test]
    fn the_list_persists_and_bad_files_are_typed_errors() {
        let (mut rng, all, now) = setup(4, 10);
        let mut g = Guards::default();
        let p = g
            .current(now, 77, || all.clone(), &mut rng)
            .expect("a guard");
        g.judge(p.id, true);
        let bytes = g.encode();
        let back = Guards::decode(&bytes).expect("decodes");
        assert_eq!(back.list().len(), 1);
        assert_eq!(back.list()[0].peer.id, p.id);
        assert_eq!(back.list()[0].picked, 77);
        assert_eq!((back.list()[0].judged, back.list()[0].succeeded), (1, 1));
        for cut in 0..bytes.len() {
            assert!(Guards::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(Guards::decode(&bad).err(), Some(GuardsError::Version(9)));
        // A flipped byte in the descriptor's signed part.
        let mut forged = bytes.clone();
        forged[1 + 1 + 8 + 1 + 40] ^= 1;
        assert_eq!(
            Guards::decode(&forged).err(),
            Some(GuardsError::BadSignature)
        );
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            Guards::decode(&long),
            Err(GuardsError::Malformed(_))
        ));
    }
}
