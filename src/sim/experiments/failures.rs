//! `failures`: a fraction of the nodes fails at once and lookups run
//! before anything repairs (Chord, ToN 2003, Table II).

use rand::Rng;

use super::{f2, f3, lookups, mean, quiet, rng, settled, Figure, Options, Series, Table};
use crate::node::Config;
use crate::sim::Settings;

pub fn run(opts: &Options) -> Table {
    let n = opts.nodes.unwrap_or(if opts.small { 60 } else { 1000 });
    let count = if opts.small { 100 } else { 10_000 };
    let fractions = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5];
    let mut rows = Vec::new();
    let mut figure = Vec::new();
    for successors in [8, 20] {
        let mut failed_series = Vec::new();
        for (k, &p) in fractions.iter().enumerate() {
            let mut settings = quiet(Settings::default());
            settings.node = Config {
                successors,
                ..settings.node
            };
            // Nobody is told: the failed nodes are found by timeouts.
            settings.detect = None;
            let seed = opts.seed ^ ((successors as u64) << 8) ^ k as u64;
            let mut net = settled(settings, seed, n);
            let mut rng = rng(seed, 1);
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let dead = (p * n as f64).round() as usize;
            for &i in &order[..dead] {
                net.crash(i);
            }
            let results = lookups(&mut net, &mut rng, count, 100);
            let failed = results.iter().filter(|r| !r.correct).count();
            rows.push(vec![
                successors.to_string(),
                f2(p),
                results.len().to_string(),
                failed.to_string(),
                f3(mean(results.iter().map(|r| f64::from(r.steps)))),
                f3(mean(results.iter().map(|r| f64::from(r.timeouts)))),
            ]);
            failed_series.push((p, 1e4 * failed as f64 / results.len().max(1) as f64));
        }
        figure.push(Series {
            name: format!("successor list of {successors}: failed lookups per 10^4"),
            points: failed_series,
        });
    }
    Table {
        title: "failures: lookups after a fraction of the nodes fails at once, before repair".into(),
        params: vec![
            ("nodes".into(), n.to_string()),
            ("lookups".into(), format!("{count} per row, random points from random live nodes, 100 at a time")),
            (
                "network".into(),
                "settled ring; failed nodes go silent and nobody is told; no stabilization, so no repair; query timeout 5 s, 3 in a row take a node for dead".into(),
            ),
            ("seed".into(), opts.seed.to_string()),
        ],
        columns: vec![
            "successors",
            "failed_fraction",
            "lookups",
            "failed_lookups",
            "mean_hops",
            "mean_timeouts",
        ],
        rows,
        reference: vec![
            "Chord (ToN 2003, Table II), N = 1,000, r = 20: no failed lookup up to p = 0.5; mean path length 3.84 at p = 0, 5.09 at p = 0.5".into(),
        ],
        figure: Some(Figure {
            x: "fraction of nodes failed".into(),
            y: "failed lookups per 10^4".into(),
            log2_x: false,
            series: figure,
        }),
    }
}
