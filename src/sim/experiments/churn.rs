//! `churn`: nodes join, leave and crash continually while lookups run
//! (Chord, ToN 2003, Table III: 0 to 16 failed lookups per 10^4 at R = 0.05
//! to 0.4 joins and failures per second, stabilizing every 30 s).

use std::time::Duration;

use rand::Rng;

use super::{f2, f3, live_ids, mean, rng, settled, true_successor, Figure, Options, Series, Table};
use crate::node::core::{Reply, Request};
use crate::node::Config;
use crate::sim::Settings;
use crate::token::Token;

/// Poisson draws for one time step.
fn poisson(rng: &mut impl Rng, mean: f64) -> usize {
    // Knuth's method: fine for the small means of one step.
    let l = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.gen::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

#[derive(Default)]
struct Outcome {
    lookups: usize,
    failed: usize,
    hops: f64,
    /// Failed because the answer was a node that had left or crashed.
    departed: usize,
    /// Failed because the answer skipped a node that joined during the run
    /// (its predecessor had not yet stabilized onto it).
    newcomer: usize,
    /// No answer at all (the lookup gave up, or was still out at the end).
    unanswered: usize,
}

fn one(n: usize, rate: f64, stabilize_ms: u64, secs: u64, seed: u64) -> Outcome {
    let mut settings = Settings::default();
    settings.node = Config {
        stabilize_ms,
        ..settings.node
    };
    settings.trace = crate::sim::Trace::Off;
    let mut net = settled(settings, seed, n);
    let mut rng = rng(seed, 2);
    let step = Duration::from_millis(100);
    let steps = secs * 10;
    // Let the samples fill and the links come up before counting.
    net.run_for(Duration::from_secs(20));
    let mut pending: Vec<(usize, Token, [u8; 32])> = Vec::new();
    let mut failed = 0;
    let mut done = 0;
    let mut hops = Vec::new();
    let mut out = Outcome::default();
    let mut newcomers = std::collections::HashSet::new();
    // The last 10 s only drain: no churn, no new lookups.
    let drain = 100;
    for s in 0..steps + drain {
        let churning = s < steps;
        let live = live_ids(&net);
        let members: Vec<usize> = live
            .iter()
            .map(|&(_, i)| i)
            .filter(|&i| net.core(i).ring().is_joined())
            .collect();
        let dt = step.as_secs_f64();
        let (joins, departs, asks) = if churning {
            (
                poisson(&mut rng, rate * dt),
                poisson(&mut rng, rate * dt),
                poisson(&mut rng, members.len() as f64 * dt),
            )
        } else {
            (0, 0, 0)
        };
        for _ in 0..joins {
            let boot = members[rng.gen_range(0..members.len())];
            newcomers.insert(net.add(Some(boot)));
        }
        for _ in 0..departs {
            if members.len() <= 8 {
                break;
            }
            let victim = members[rng.gen_range(0..members.len())];
            if !net.is_alive(victim) {
                continue;
            }
            if rng.gen_bool(0.5) {
                net.crash(victim);
            } else {
                net.submit(victim, Request::Leave);
            }
        }
        // One lookup per node per second on average.
        for _ in 0..asks {
            let from = members[rng.gen_range(0..members.len())];
            if !net.is_alive(from) {
                continue;
            }
            let target: [u8; 32] = rng.gen();
            let t = net.submit(from, Request::Lookup(target));
            pending.push((from, t, target));
        }
        net.run_for(step);
        // Judge what came back against the membership now.
        let now_live: Vec<_> = live_ids(&net)
            .into_iter()
            .filter(|&(_, i)| net.core(i).ring().is_joined())
            .collect();
        pending.retain(|&(i, t, target)| {
            if !net.is_alive(i) {
                // The asker left: nobody counts its lookup.
                return false;
            }
            match net.take_reply(i, t) {
                Some(Reply::Lookup {
                    successor, steps, ..
                }) => {
                    done += 1;
                    hops.push(f64::from(steps));
                    let truth = true_successor(&now_live, &target);
                    if successor != Some(truth) {
                        failed += 1;
                        match successor {
                            None => out.unanswered += 1,
                            Some(s) if now_live.binary_search_by(|(id, _)| id.cmp(&s)).is_err() => {
                                out.departed += 1
                            }
                            Some(s) => {
                                let k = now_live
                                    .binary_search_by(|(id, _)| id.cmp(&truth))
                                    .unwrap_or(0);
                                let (_, ti) = now_live[k];
                                if newcomers.contains(&ti)
                                    && now_live[(k + 1) % now_live.len()].0 == s
                                {
                                    out.newcomer += 1;
                                }
                            }
                        }
                    }
                    false
                }
                Some(_) => false,
                None => true,
            }
        });
    }
    // Lookups still out after the drain are counted as failed.
    let out_at_end = pending.iter().filter(|&&(i, _, _)| net.is_alive(i)).count();
    out.lookups = done + out_at_end;
    out.failed = failed + out_at_end;
    out.unanswered += out_at_end;
    out.hops = mean(hops);
    out
}

pub fn run(opts: &Options) -> Table {
    let n = opts.nodes.unwrap_or(if opts.small { 40 } else { 1000 });
    let secs = opts.duration.unwrap_or(if opts.small { 30 } else { 3600 });
    let rates = [0.05, 0.1, 0.2, 0.4];
    let intervals: [u64; 2] = [500, 30_000];
    let configs: Vec<(f64, u64)> = intervals
        .iter()
        .flat_map(|&s| rates.iter().map(move |&r| (r, s)))
        .collect();
    let results: Vec<Outcome> = super::parallel(&configs, |&(rate, s)| {
        let seed = opts.seed ^ (s << 16) ^ ((rate * 1000.0) as u64);
        one(n, rate, s, secs, seed)
    });
    let mut rows = Vec::new();
    let mut series: Vec<Series> = intervals
        .iter()
        .map(|s| Series {
            name: format!("stabilize every {} ms", s),
            points: Vec::new(),
        })
        .collect();
    for (&(rate, s), o) in configs.iter().zip(&results) {
        let per = |x: usize| 1e4 * x as f64 / o.lookups.max(1) as f64;
        let per10k = per(o.failed);
        rows.push(vec![
            f2(rate),
            s.to_string(),
            o.lookups.to_string(),
            f2(per10k),
            f3(o.hops),
            f2(per(o.departed)),
            f2(per(o.newcomer)),
            f2(per(o.unanswered)),
        ]);
        let k = intervals.iter().position(|x| *x == s).unwrap_or(0);
        series[k].points.push((rate, per10k));
    }
    Table {
        title: "churn: lookups while nodes join, leave and crash".into(),
        params: vec![
            ("nodes".into(), format!("{n} at the start, settled")),
            ("duration".into(), format!("{secs} s of virtual time, after 20 s to settle")),
            (
                "churn".into(),
                "joins at rate R per second through a random member; departures at rate R, half graceful leaves, half silent crashes (peers notice after a 6 s link timeout)".into(),
            ),
            (
                "lookups".into(),
                "one per member per second on average, random points; failed if the answer is not the live member that succeeds the point when the answer comes".into(),
            ),
            ("latency".into(), "10 ms per link".into()),
            ("seed".into(), opts.seed.to_string()),
            (
                "failure causes".into(),
                "departed: the answer was a node that had left or crashed; past newcomer: the answer was the node after one that joined during the run; unanswered: the lookup gave up or was still out at the end".into(),
            ),
        ],
        columns: vec![
            "rate",
            "stabilize_ms",
            "lookups",
            "failed_per_10k",
            "mean_hops",
            "departed_per_10k",
            "past_newcomer_per_10k",
            "unanswered_per_10k",
        ],
        rows,
        reference: vec![
            "Chord (ToN 2003, Table III), N = 1,000, stabilizing every 30 s on average: 0 to 16 failed lookups per 10^4 for R = 0.05 to 0.4".into(),
        ],
        figure: Some(Figure {
            x: "joins (and failures) per second".into(),
            y: "failed lookups per 10^4".into(),
            log2_x: false,
            series,
        }),
    }
}
