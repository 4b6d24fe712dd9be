//! When and where to look for relays: the pace of the lookups that fill
//! the relay sample (`docs/protocol.md`, "Relay sample").
//!
//! A lookup of a uniformly random ring point finds the relay that follows
//! it. While the sample is small and lookups keep finding relays it did
//! not have, one goes out every [`FAST`]; once [`PATIENCE`] lookups in a
//! row found only relays already known, or the sample is large, every
//! [`SLOW`], doubling with each further lookup that finds nothing new, up
//! to [`IDLE`]. While
//! the sample is small, every other lookup instead targets the point just
//! after a relay already known, which finds that relay's successor: a relay
//! with a short arc is seldom the successor of a random point.

use std::time::{Duration, Instant};

use rand::RngCore;

use crate::ring::add_pow2;
use crate::wire::NodeId;

pub const FAST: Duration = Duration::from_millis(200);
pub const SLOW: Duration = Duration::from_secs(10);
/// Once the sample is full, a walk every this long keeps it fresh: a
/// relay drawn uniformly replaces the oldest. Relays that fail leave the
/// sample at once (and the pace quickens), so this only turns it over.
pub const IDLE: Duration = Duration::from_secs(300);

/// How often sampling lookups go out: [`FAST`] and [`SLOW`] in a node; a
/// simulation that measures something else may quiet them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub fast: Duration,
    pub slow: Duration,
    /// The pace once the sample is full.
    pub idle: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            fast: FAST,
            slow: SLOW,
            idle: IDLE,
        }
    }
}
/// A sample this large is no longer "small".
pub const ENOUGH: usize = 24;
/// Sampling lookups in flight at once.
pub const IN_FLIGHT: usize = 4;
/// Fast lookups in a row that found only relays already known before the
/// pace slows: half a minute of them. A network with fewer relays than
/// [`ENOUGH`] is known whole by then, and a ring still forming (whose
/// answers are often stale) has formed.
pub const PATIENCE: u32 = 150;

/// A relay found past a random point is kept with probability
/// min(1, ACCEPT / (n · gap)), where gap is the arc before it and n the
/// ring's density: every relay whose arc is wider than ACCEPT / n is then
/// kept with the same probability, so a wide arc (an id chosen for it)
/// buys nothing. Honest arcs are exponential with mean 1 / n, so a
/// fraction 1 - e^-ACCEPT of them is narrower and kept less often; at
/// 0.2 that makes an adversary that always has the widest arcs 1.1 times
/// as likely to be drawn as its share of relays, and one walk in 5.5
/// keeps a relay.
pub const ACCEPT: f64 = 0.2;

/// How likely a relay found past a random point is to be kept, given the
/// arc `gap` before it (fraction of the ring) and the density `n`;
/// unknown density keeps everything.
pub fn keep_probability(gap: f64, n: f64) -> f64 {
    if n <= 0.0 || gap <= 0.0 {
        return 1.0;
    }
    (ACCEPT / (n * gap)).min(1.0)
}

/// A sampling walk to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub target: [u8; 32],
    /// Aimed just past a known relay: what it finds is that relay's
    /// successor, drawn with no regard to arcs, and kept as found.
    pub targeted: bool,
}

pub struct Sampler {
    pace: Pace,
    next: Instant,
    in_flight: usize,
    /// Lookups in a row that found no relay new to the sample.
    misses: u32,
    /// Walks in a row that added nothing to the sample, for whatever
    /// reason (a relay known already, one not kept, a failed walk).
    barren: u32,
}

impl Sampler {
    pub fn new(now: Instant, pace: Pace) -> Sampler {
        Sampler {
            pace,
            next: now,
            in_flight: 0,
            misses: 0,
            barren: 0,
        }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// Time for another lookup? Returns its target if one should go out.
    /// `known` are the relays to step from (the sample, and the node
    /// itself if it is one); `small` whether the sample is small; `joined`
    /// whether lookups can run.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        known: &[NodeId],
        small: bool,
        joined: bool,
        rng: &mut dyn RngCore,
    ) -> Option<Look> {
        if now < self.next {
            return None;
        }
        let fast = small && self.misses < PATIENCE;
        let full = known.len() >= crate::circuit::SAMPLE_SIZE;
        self.next = now
            + if fast {
                self.pace.fast
            } else if full {
                self.pace.idle
            } else {
                // A small network known whole, or a sample large enough
                // to build circuits from: each walk that adds nothing
                // doubles the wait, up to the idle pace.
                let extra = if small {
                    self.misses.saturating_sub(PATIENCE)
                } else {
                    self.barren
                }
                .min(16);
                let most = self.pace.idle.max(self.pace.slow);
                self.pace.slow.saturating_mul(1 << extra).min(most)
            };
        if !joined || self.in_flight >= IN_FLIGHT {
            return None;
        }
        // A random point, not a finger: which relays a node knows should
        // not be predictable from its id.
        let mut target = [0u8; 32];
        rng.fill_bytes(&mut target);
        let mut targeted = false;
        if small && !known.is_empty() && target[0] & 1 == 0 {
            let from = known[usize::from(target[1]) % known.len()];
            target = add_pow2(&from.0, 0);
            targeted = true;
        }
        self.in_flight += 1;
        Some(Look { target, targeted })
    }

    /// A sampling lookup ended: `Some(new)` if it found a relay, `new`
    /// saying whether the sample lacked it; `None` if it failed or found
    /// nothing usable, which says nothing of how much is left to find.
    pub fn handle_done(&mut self, found: Option<bool>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match found {
            Some(true) => self.misses = 0,
            Some(false) => self.misses = self.misses.saturating_add(1),
            None => {}
        }
        if found == Some(true) {
            self.barren = 0;
        } else {
            self.barren = self.barren.saturating_add(1);
        }
    }

    /// A relay left the sample (its link failed): look fast again.
    pub fn handle_lost(&mut self) {
        self.misses = 0;
        self.barren = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_pace_slows_once_lookups_stop_finding_new_relays() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = Sampler::new(Instant::now(), Pace::default());
        let mut now = s.poll_timeout();
        let known = vec![NodeId([1; 32]); 3];
        for _ in 0..PATIENCE {
            assert!(s
                .handle_timeout(now, &known, true, true, &mut rng)
                .is_some());
            s.handle_done(Some(false));
            assert_eq!(s.poll_timeout(), now + FAST);
            now = s.poll_timeout();
        }
        assert!(s
            .handle_timeout(now, &known, true, true, &mut rng)
            .is_some());
        s.handle_done(Some(false));
        assert_eq!(s.poll_timeout(), now + SLOW, "a small network known whole");
        now = s.poll_timeout();
        s.handle_timeout(now, &known, true, true, &mut rng);
        s.handle_done(Some(false));
        assert_eq!(s.poll_timeout(), now + 2 * SLOW, "and it backs off");
        for _ in 0..10 {
            now = s.poll_timeout();
            s.handle_timeout(now, &known, true, true, &mut rng);
            s.handle_done(Some(false));
        }
        assert_eq!(s.poll_timeout(), now + IDLE, "as far as the idle pace");
        now = s.poll_timeout();
        s.handle_lost();
        s.handle_timeout(now, &known, true, true, &mut rng);
        assert_eq!(s.poll_timeout(), now + FAST, "a relay lost: fast again");
    }

    #[test]
    fn a_sample_large_enough_fills_at_a_pace_that_backs_off() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut s = Sampler::new(Instant::now(), Pace::default());
        let known = vec![NodeId([1; 32]); ENOUGH];
        let mut now = s.poll_timeout();
        s.handle_timeout(now, &known, false, true, &mut rng);
        assert_eq!(s.poll_timeout(), now + SLOW);
        // Walks that keep nothing: each doubles the wait.
        s.handle_done(None);
        now = s.poll_timeout();
        s.handle_timeout(now, &known, false, true, &mut rng);
        assert_eq!(s.poll_timeout(), now + 2 * SLOW);
        s.handle_done(None);
        now = s.poll_timeout();
        s.handle_timeout(now, &known, false, true, &mut rng);
        assert_eq!(s.poll_timeout(), now + 4 * SLOW);
        // One that adds a relay: the slow pace again.
        s.handle_done(Some(true));
        now = s.poll_timeout();
        s.handle_timeout(now, &known, false, true, &mut rng);
        assert_eq!(s.poll_timeout(), now + SLOW);
    }

    #[test]
    fn no_lookup_before_joining_or_beyond_the_budget() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut s = Sampler::new(Instant::now(), Pace::default());
        let now = s.poll_timeout();
        assert!(s.handle_timeout(now, &[], true, false, &mut rng).is_none());
        let mut now = s.poll_timeout();
        for _ in 0..IN_FLIGHT {
            assert!(s.handle_timeout(now, &[], true, true, &mut rng).is_some());
            now = s.poll_timeout();
        }
        assert!(s.handle_timeout(now, &[], true, true, &mut rng).is_none());
    }
}
