//! `load`: how evenly the ring spreads blocks over the nodes (Chord,
//! SIGCOMM 2001, Fig. 8: without virtual nodes the 99th percentile holds
//! 4.6 times the mean, the most loaded node 9.1 times).

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

use super::{await_replies, f2, live_ids, mean, quantile, quiet, rng, settled, Options, Table};
use crate::keys::chk_routing_key;
use crate::node::core::{Reply, Request};
use crate::sim::Settings;
use crate::token::Token;
use crate::wire::{KeyKind, NodeId};

/// The percentiles of `counts` and their mean and maximum, as cells.
fn row(what: &str, n: usize, blocks: usize, mut counts: Vec<f64>) -> Vec<String> {
    let m = mean(counts.iter().copied());
    let p1 = quantile(&mut counts, 0.01);
    let p50 = quantile(&mut counts, 0.5);
    let p99 = quantile(&mut counts, 0.99);
    let max = counts.iter().copied().fold(0.0, f64::max);
    let ratio = |x: f64| if m > 0.0 { x / m } else { 0.0 };
    vec![
        what.to_string(),
        n.to_string(),
        blocks.to_string(),
        f2(p1),
        f2(p50),
        f2(p99),
        f2(max),
        f2(m),
        f2(ratio(p99)),
        f2(ratio(max)),
    ]
}

pub fn run(opts: &Options) -> Table {
    let n = opts.nodes.unwrap_or(if opts.small { 50 } else { 10_000 });
    let blocks = if opts.small { 2_000 } else { 500_000 };
    let settings = quiet(Settings::default());
    let replicas = settings.node.replicas;
    let mut net = settled(settings, opts.seed, n);
    let mut rng = rng(opts.seed, 3);
    let live = live_ids(&net);
    let mut wrong_place = 0usize;
    let mut failed = 0usize;
    let mut stored = 0usize;
    let mut left = blocks;
    while left > 0 {
        let batch = left.min(2_000);
        left -= batch;
        let mut asked: Vec<(usize, Token, NodeId)> = Vec::with_capacity(batch);
        for _ in 0..batch {
            // A tiny block: only where it lands matters.
            let block: [u8; 16] = rng.gen();
            let key = chk_routing_key(&block);
            let from = live[rng.gen_range(0..live.len())].1;
            let token = net.submit(
                from,
                Request::Store {
                    kind: KeyKind::CHK,
                    key,
                    block: block.to_vec(),
                },
            );
            asked.push((from, token, super::true_successor(&live, &key.0)));
        }
        let pending: Vec<(usize, Token)> = asked.iter().map(|&(i, t, _)| (i, t)).collect();
        let got = await_replies(&mut net, &pending, Duration::from_secs(600));
        for (i, t, truth) in asked {
            match got.get(&(i, t)) {
                Some(Reply::Stored(Ok(at))) => {
                    stored += 1;
                    if *at != truth {
                        wrong_place += 1;
                    }
                }
                _ => failed += 1,
            }
        }
    }
    // Let replication finish before counting copies.
    net.run_for(Duration::from_secs(30));

    // What each node holds, read from its store: the blocks it is the
    // successor of, and every copy it keeps.
    let index: HashMap<NodeId, usize> = live.iter().map(|&(id, i)| (id, i)).collect();
    let mut primary = vec![0f64; net.len()];
    let mut copies = vec![0f64; net.len()];
    for &(_, i) in &live {
        for (_, key) in net.store(i).primary_keys() {
            copies[i] += 1.0;
            let owner = super::true_successor(&live, &key.0);
            if index.get(&owner) == Some(&i) {
                primary[i] += 1.0;
            }
        }
    }
    let total_copies: f64 = copies.iter().sum();
    let rows = vec![
        row("successor", n, blocks, primary),
        row("all copies", n, blocks, copies),
    ];
    Table {
        title: "load: blocks per node".into(),
        params: vec![
            ("nodes".into(), format!("{n}, random ids, one id each (no virtual nodes), settled")),
            (
                "blocks".into(),
                format!("{blocks} tiny CHK blocks of random content, each stored from a random node through the node's own placement (a ring lookup, then the successor replicates)"),
            ),
            ("replicas".into(), replicas.to_string()),
            (
                "outcome".into(),
                format!(
                    "{stored} stored, {failed} failed, {wrong_place} placed on a node other than the true successor; {:.3} copies per block on average",
                    total_copies / blocks.max(1) as f64
                ),
            ),
            ("seed".into(), opts.seed.to_string()),
        ],
        columns: vec![
            "counted", "nodes", "blocks", "p1", "p50", "p99", "max", "mean", "p99_over_mean",
            "max_over_mean",
        ],
        rows,
        reference: vec![
            "Chord (SIGCOMM 2001, Fig. 8), N = 10^4, 5x10^5 keys, no virtual nodes: 99th percentile 4.6 times the mean, maximum 9.1 times the mean".into(),
        ],
        figure: None,
    }
}
