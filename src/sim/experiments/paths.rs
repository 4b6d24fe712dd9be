//! `paths`: how many nodes a lookup asks, and how many hops a routed get
//! takes, as the network grows (Chord, SIGCOMM 2001, Fig. 10: path length
//! about ½·log2 N).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;

use super::{
    await_replies, f2, f3, live_ids, lookups, mean, quantile, quiet, rng, settled, Figure, Options,
    Series, Table,
};
use crate::node::core::Request;
use crate::route;
use crate::sim::Settings;
use crate::wire::{Frame, KeyKind, PeerMessage, RequestId, RoutingKey};

/// Lookups per network size at most: 100·N is past what this machine
/// does in reasonable time beyond N = 1,000.
const LOOKUP_CAP: usize = 100_000;
/// Routed gets per network size at most.
const ROUTED_CAP: usize = 10_000;

pub fn run(opts: &Options) -> Table {
    let max = opts
        .nodes
        .unwrap_or(if opts.small { 64 } else { 1 << 14 })
        .max(8);
    let mut sizes = Vec::new();
    let mut n = 8;
    while n <= max {
        sizes.push(n);
        n *= 2;
    }
    let mut rows = Vec::new();
    let mut hops_series = Vec::new();
    let mut routed_series = Vec::new();
    let mut chord_series = Vec::new();
    for &n in &sizes {
        let mut rng = rng(opts.seed, n as u64);
        let mut net = settled(quiet(Settings::default()), opts.seed ^ n as u64, n);
        let count = if opts.small {
            4 * n
        } else {
            (100 * n).min(LOOKUP_CAP)
        };
        let results = lookups(&mut net, &mut rng, count, 1024);
        let mut steps: Vec<f64> = results.iter().map(|r| f64::from(r.steps)).collect();
        let wrong = results.iter().filter(|r| !r.correct).count();
        let mean_hops = mean(steps.iter().copied());
        let p1 = quantile(&mut steps, 0.01);
        let p99 = quantile(&mut steps, 0.99);

        // Routed gets for keys nobody holds: every one goes to the key's
        // successor, which answers "data not found". Count each request's
        // GET messages as it travels.
        let gets: Rc<RefCell<HashMap<RequestId, u32>>> = Rc::default();
        let seen = gets.clone();
        net.watch(Box::new(move |_, _, frame: &Frame| {
            if let Frame::Message(PeerMessage::Get { id, .. }) = frame {
                *seen.borrow_mut().entry(*id).or_default() += 1;
            }
        }));
        let live = live_ids(&net);
        let routed = if opts.small {
            n
        } else {
            (10 * n).min(ROUTED_CAP)
        };
        let mut pending = Vec::new();
        let mut ids = Vec::new();
        for k in 0..routed {
            let from = live[rng.gen_range(0..live.len())].1;
            let id = RequestId(k as u64 + 1);
            let token = net.submit(
                from,
                Request::Route {
                    kind: KeyKind::CHK,
                    key: RoutingKey(rng.gen()),
                    request: route::Request::Get,
                    id: Some(id),
                },
            );
            pending.push((from, token));
            ids.push(id);
            if pending.len() == 1024 || k + 1 == routed {
                await_replies(&mut net, &pending, Duration::from_secs(600));
                pending.clear();
            }
        }
        let counts = gets.borrow();
        let routed_mean = mean(
            ids.iter()
                .map(|id| f64::from(*counts.get(id).unwrap_or(&0))),
        );
        let chord = 0.5 * (n as f64).log2();
        rows.push(vec![
            n.to_string(),
            results.len().to_string(),
            f3(mean_hops),
            f2(p1),
            f2(p99),
            f3(routed_mean),
            f3(chord),
            wrong.to_string(),
        ]);
        let x = n as f64;
        hops_series.push((x, mean_hops));
        routed_series.push((x, routed_mean));
        chord_series.push((x, chord));
    }
    Table {
        title: "paths: nodes asked per ring lookup and hops per routed get".into(),
        params: vec![
            ("nodes".into(), format!("{} to {max}, doubling", sizes[0])),
            (
                "lookups".into(),
                format!("100·N random points from random nodes, at most {LOOKUP_CAP}"),
            ),
            (
                "routed gets".into(),
                format!("10·N keys nobody holds, at most {ROUTED_CAP}"),
            ),
            (
                "network".into(),
                "settled ring (successor lists of 8, fingers), no churn, 10 ms per link".into(),
            ),
            ("seed".into(), opts.seed.to_string()),
        ],
        columns: vec![
            "nodes",
            "lookups",
            "mean_hops",
            "p1_hops",
            "p99_hops",
            "routed_mean_hops",
            "chord_mean",
            "wrong",
        ],
        rows,
        reference: vec![
            "Chord (SIGCOMM 2001, Fig. 10): mean path length ½·log2 N, 1st and 99th percentiles a few hops either side".into(),
        ],
        figure: Some(Figure {
            x: "nodes".into(),
            y: "hops".into(),
            log2_x: true,
            series: vec![
                Series {
                    name: "lookup: nodes asked".into(),
                    points: hops_series,
                },
                Series {
                    name: "routed get: hops".into(),
                    points: routed_series,
                },
                Series {
                    name: "Chord: ½·log2 N".into(),
                    points: chord_series,
                },
            ],
        }),
    }
}
