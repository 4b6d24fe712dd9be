//! `umbra sim` experiments: each builds networks of real node cores in the
//! simulator, measures, and returns a [`Table`] that states its parameters,
//! prints itself, writes itself as CSV, and draws a plot when asked. The
//! same seed gives the same table.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Net, Settings};
use crate::node::core::{Reply, Request};
use crate::node::Config;
use crate::token::Token;
use crate::wire::NodeId;

mod anonymity;
mod churn;
mod failures;
mod load;
mod paths;
mod plot;
mod survival;

pub use plot::plot;

/// The experiments, by name.
pub const NAMES: [&str; 6] = [
    "paths",
    "failures",
    "churn",
    "load",
    "survival",
    "anonymity",
];

/// What the command line chooses.
#[derive(Debug, Clone)]
pub struct Options {
    /// The experiment's network size (each says what it means by it).
    pub nodes: Option<usize>,
    pub seed: u64,
    /// A quick run with small sizes (tests).
    pub small: bool,
    /// Virtual seconds to run, for the experiments that run for a while
    /// (each says its default).
    pub duration: Option<u64>,
    /// Users, for the experiments that have them (anonymity).
    pub users: Option<usize>,
    /// Only the rows these select (anonymity): `ADVERSARY`, `@F` or
    /// `ADVERSARY@F`, comma-separated. A row's result does not depend on
    /// which other rows run, so a long run can be split.
    pub only: Option<String>,
}

/// A series to plot: a name and its points, one line on the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What a plot shows.
#[derive(Debug, Clone)]
pub struct Figure {
    pub x: String,
    pub y: String,
    pub log2_x: bool,
    pub series: Vec<Series>,
}

/// An experiment's result.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    /// What was run, as (name, value).
    pub params: Vec<(String, String)>,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Published figures to read beside the table.
    pub reference: Vec<String>,
    pub figure: Option<Figure>,
}

impl Table {
    /// The table as text: parameters, then aligned columns.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n", self.title);
        for (k, v) in &self.params {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, String::len))
                    .chain([self.columns[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:>w$}"))
                .collect::<Vec<_>>()
                .join("  ")
        };
        out.push_str(&line(self.columns.clone()));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        for r in &self.reference {
            out.push_str(&format!("  published: {r}\n"));
        }
        out
    }

    /// The table as CSV: a header of the column names, then the rows.
    pub fn csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.join(","));
            out.push('\n');
        }
        out
    }
}

/// The smallest network an experiment runs (fewer and there is no ring to
/// speak of, nor relays for a circuit).
pub const MIN_NODES: usize = 8;
/// The largest: 2^17 nodes is about 6 GiB here; more is beyond one machine.
pub const MAX_NODES: usize = 1 << 17;
/// The longest virtual run: a year.
pub const MAX_DURATION: u64 = 365 * 86_400;

/// Run the experiment `name`.
/// Users an experiment may be asked to simulate at most.
pub const MAX_USERS: usize = 10_000;

pub fn run(name: &str, opts: &Options) -> Result<Table, String> {
    if let Some(n) = opts.nodes {
        if !(MIN_NODES..=MAX_NODES).contains(&n) {
            return Err(format!(
                "--nodes must be from {MIN_NODES} to {MAX_NODES}, not {n}"
            ));
        }
    }
    if let Some(d) = opts.duration {
        if !(1..=MAX_DURATION).contains(&d) {
            return Err(format!(
                "--duration must be from 1 to {MAX_DURATION} seconds, not {d}"
            ));
        }
    }
    if let Some(u) = opts.users {
        if !(1..=MAX_USERS).contains(&u) {
            return Err(format!("--users must be from 1 to {MAX_USERS}, not {u}"));
        }
    }
    if opts.only.is_some() && name != "anonymity" {
        return Err("--only selects rows of the anonymity experiment alone".into());
    }
    match name {
        "paths" => Ok(paths::run(opts)),
        "failures" => Ok(failures::run(opts)),
        "churn" => Ok(churn::run(opts)),
        "load" => Ok(load::run(opts)),
        "survival" => Ok(survival::run(opts)),
        "anonymity" => anonymity::run(opts),
        other => Err(format!(
            "no experiment {other:?}; there are: {}",
            NAMES.join(", ")
        )),
    }
}

// ---- what the experiments share ----

/// Ring maintenance and relay sampling slowed to nothing: a network that
/// stays as it was settled while something else is measured.
pub(crate) fn quiet(mut s: Settings) -> Settings {
    // About eleven days: longer than any experiment runs.
    let never = Duration::from_secs(1_000_000);
    s.node = Config {
        stabilize_ms: 1_000_000_000,
        ..s.node
    };
    s.sampling = crate::node::core::sampling::Pace {
        fast: never,
        slow: never,
        idle: never,
    };
    s.trace = crate::sim::Trace::Off;
    s
}

/// `n` nodes with random ids, settled.
pub(crate) fn settled(settings: Settings, seed: u64, n: usize) -> Net {
    let mut net = Net::new(settings, seed);
    for _ in 0..n {
        net.add(None);
    }
    net.settle_ring();
    net
}

/// The live nodes' ids, sorted, with their indices.
pub(crate) fn live_ids(net: &Net) -> Vec<(NodeId, usize)> {
    let mut v: Vec<(NodeId, usize)> = (0..net.len())
        .filter(|&i| net.is_alive(i))
        .map(|i| (net.core(i).id(), i))
        .collect();
    v.sort();
    v
}

/// The live node that truly succeeds `point`.
pub(crate) fn true_successor(live: &[(NodeId, usize)], point: &[u8; 32]) -> NodeId {
    let k = match live.binary_search_by(|(id, _)| id.0.cmp(point)) {
        Ok(k) => k,
        Err(k) => k % live.len(),
    };
    live[k].0
}

/// Run the simulation until `pending` requests (node, token) are all
/// answered, or `limit` of virtual time passes; the answers.
pub(crate) fn await_replies(
    net: &mut Net,
    pending: &[(usize, Token)],
    limit: Duration,
) -> HashMap<(usize, Token), Reply> {
    let mut got = HashMap::new();
    let end = net.now() + limit;
    loop {
        for &(i, t) in pending {
            if let std::collections::hash_map::Entry::Vacant(e) = got.entry((i, t)) {
                if let Some(r) = net.take_reply(i, t) {
                    e.insert(r);
                }
            }
        }
        if got.len() == pending.len() || net.now() >= end {
            return got;
        }
        let before = net.answered();
        // Run until something is answered, a little at a time.
        while net.answered() == before && net.now() < end {
            net.run_for(Duration::from_millis(100));
        }
    }
}

/// One ring lookup's outcome.
pub(crate) struct LookupResult {
    pub correct: bool,
    pub steps: u32,
    pub timeouts: u32,
}

/// `count` lookups of random points from random live nodes, `batch` at a
/// time.
pub(crate) fn lookups(
    net: &mut Net,
    rng: &mut StdRng,
    count: usize,
    batch: usize,
) -> Vec<LookupResult> {
    let live = live_ids(net);
    let mut out = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let n = left.min(batch);
        left -= n;
        let mut asked = Vec::new();
        for _ in 0..n {
            let from = live[rng.gen_range(0..live.len())].1;
            let target: [u8; 32] = rng.gen();
            let token = net.submit(from, Request::Lookup(target));
            asked.push((from, token, target));
        }
        let pending: Vec<(usize, Token)> = asked.iter().map(|&(i, t, _)| (i, t)).collect();
        let got = await_replies(net, &pending, Duration::from_secs(600));
        for (i, t, target) in asked {
            let (correct, steps, timeouts) = match got.get(&(i, t)) {
                Some(Reply::Lookup {
                    successor,
                    steps,
                    timeouts,
                }) => (
                    *successor == Some(true_successor(&live, &target)),
                    *steps,
                    *timeouts,
                ),
                _ => (false, 0, 0),
            };
            out.push(LookupResult {
                correct,
                steps,
                timeouts,
            });
        }
    }
    out
}

/// `work` on every item of `items`, on as many threads as the machine has
/// cores (each item a network of its own), the results in `items`' order.
/// A thread that panics leaves its results at their default.
pub(crate) fn parallel<T: Sync, R: Send + Default>(
    items: &[T],
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(k) else { break };
                let r = work(item);
                if let Ok(mut o) = out.lock() {
                    o.push((k, r));
                }
            });
        }
    });
    let mut got = out.into_inner().unwrap_or_default();
    got.sort_by_key(|(k, _)| *k);
    let mut results: Vec<R> = (0..items.len()).map(|_| R::default()).collect();
    for (k, r) in got {
        results[k] = r;
    }
    results
}

pub(crate) fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// The `q`-quantile (0 to 1) of `v`, nearest rank.
pub(crate) fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

pub(crate) fn rng(seed: u64, salt: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

pub(crate) fn f2(x: f64) -> String {
    format!("{x:.2}")
}

pub(crate) fn f3(x: f64) -> String {
    format!("{x:.3}")
}
