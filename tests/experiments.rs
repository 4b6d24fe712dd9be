//! A small run of every `umbra sim` experiment: its table must be well
//! formed and a few things that cannot be otherwise must hold, so that the
//! experiments do not rot between the big runs (docs/performance.md).

use umbra::sim::experiments::{run, Options, Table, NAMES};

fn small(name: &str) -> Table {
    run(
        name,
        &Options {
            nodes: None,
            seed: 7,
            small: true,
            duration: None,
            users: None,
            only: None,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every row has a cell per column, the CSV is the header and the rows,
/// and the text names the experiment's parameters.
fn well_formed(name: &str, t: &Table, columns: &[&str]) {
    assert_eq!(t.columns, columns, "{name}: the columns the issue names");
    assert!(!t.rows.is_empty(), "{name}: no rows");
    for r in &t.rows {
        assert_eq!(r.len(), t.columns.len(), "{name}: row {r:?}");
    }
    let csv = t.csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), t.rows.len() + 1, "{name}: CSV lines");
    assert_eq!(lines[0], t.columns.join(","));
    let text = t.text();
    assert!(text.contains("seed: 7"), "{name}: the seed is stated");
    assert!(
        !t.reference.is_empty(),
        "{name}: a published figure beside it"
    );
}

/// Column `c` of every row, as numbers.
fn col(t: &Table, c: &str) -> Vec<f64> {
    let k = t.columns.iter().position(|x| *x == c).expect("the column");
    t.rows
        .iter()
        .map(|r| {
            r[k].trim_start_matches('>')
                .parse()
                .unwrap_or_else(|_| panic!("column {c}: {:?} is not a number", r[k]))
        })
        .collect()
}

fn cell<'a>(t: &'a Table, row: usize, c: &str) -> &'a str {
    let k = t.columns.iter().position(|x| *x == c).expect("the column");
    &t.rows[row][k]
}

#[test]
fn every_experiment_has_a_name_and_unknown_ones_are_refused() {
    assert_eq!(NAMES.len(), 6);
    let e = run(
        "nonsense",
        &Options {
            nodes: None,
            seed: 1,
            small: true,
            duration: None,
            users: None,
            only: None,
        },
    )
    .expect_err("an unknown experiment is refused");
    assert!(e.contains("paths"), "the error lists the experiments: {e}");
    // Sizes a network cannot have, or this machine cannot hold, are
    // refused before anything is built.
    for (nodes, duration, users) in [
        (Some(0), None, None),
        (Some(usize::MAX), None, None),
        (None, Some(u64::MAX), None),
        (None, None, Some(0)),
        (None, None, Some(usize::MAX)),
    ] {
        let e = run(
            "anonymity",
            &Options {
                nodes,
                seed: 1,
                small: true,
                duration,
                users,
                only: None,
            },
        )
        .expect_err("refused");
        assert!(e.contains("must be from"), "{e}");
    }
}

#[test]
fn paths_small() {
    let t = small("paths");
    well_formed(
        "paths",
        &t,
        &[
            "nodes",
            "lookups",
            "mean_hops",
            "p1_hops",
            "p99_hops",
            "routed_mean_hops",
            "chord_mean",
            "wrong",
        ],
    );
    let nodes = col(&t, "nodes");
    assert_eq!(nodes, vec![8.0, 16.0, 32.0, 64.0]);
    for (k, n) in nodes.iter().enumerate() {
        let mean = col(&t, "mean_hops")[k];
        assert!(col(&t, "p1_hops")[k] <= mean && mean <= col(&t, "p99_hops")[k]);
        assert!(mean >= 1.0 && mean < *n, "N = {n}: mean path {mean}");
        // A settled ring with nothing failing answers every lookup right.
        assert_eq!(col(&t, "wrong")[k], 0.0, "N = {n}");
        assert!((col(&t, "chord_mean")[k] - 0.5 * n.log2()).abs() < 1e-3);
    }
    // The same seed gives the same table.
    assert_eq!(small("paths").rows, t.rows);
}

#[test]
fn failures_small() {
    let t = small("failures");
    well_formed(
        "failures",
        &t,
        &[
            "successors",
            "failed_fraction",
            "lookups",
            "failed_lookups",
            "mean_hops",
            "mean_timeouts",
        ],
    );
    for (k, p) in col(&t, "failed_fraction").iter().enumerate() {
        if *p == 0.0 {
            assert_eq!(
                col(&t, "failed_lookups")[k],
                0.0,
                "nothing failed, no lookup fails"
            );
            assert_eq!(
                col(&t, "mean_timeouts")[k],
                0.0,
                "nothing failed, nothing times out"
            );
        }
    }
}

#[test]
fn churn_small() {
    let t = small("churn");
    let cols = [
        "rate",
        "stabilize_ms",
        "lookups",
        "failed_per_10k",
        "mean_hops",
        "departed_per_10k",
        "past_newcomer_per_10k",
        "unanswered_per_10k",
    ];
    well_formed("churn", &t, &cols);
    assert_eq!(t.rows.len(), 8, "four rates at two stabilize intervals");
    for (k, lookups) in col(&t, "lookups").iter().enumerate() {
        assert!(*lookups > 100.0, "row {k}: lookups ran");
        let failed = col(&t, "failed_per_10k")[k];
        assert!((0.0..=10_000.0).contains(&failed));
        // The causes are part of the failures, never more.
        let causes: f64 = [
            "departed_per_10k",
            "past_newcomer_per_10k",
            "unanswered_per_10k",
        ]
        .iter()
        .map(|c| col(&t, c)[k])
        .sum();
        // Each of the four is printed rounded to 0.01: their sum may
        // pass the rounded total by up to 0.02.
        assert!(
            causes <= failed + 0.02,
            "row {k}: causes {causes} > failed {failed}"
        );
    }
}

#[test]
fn load_small() {
    let t = small("load");
    well_formed(
        "load",
        &t,
        &[
            "counted",
            "nodes",
            "blocks",
            "p1",
            "p50",
            "p99",
            "max",
            "mean",
            "p99_over_mean",
            "max_over_mean",
        ],
    );
    let (nodes, blocks) = (col(&t, "nodes")[0], col(&t, "blocks")[0]);
    // Every block has exactly one successor, so the successors' mean is
    // blocks / nodes exactly; every copy adds to the second row.
    assert_eq!(cell(&t, 0, "counted"), "successor");
    assert!((col(&t, "mean")[0] - blocks / nodes).abs() < 0.01);
    assert!(
        col(&t, "mean")[1] >= 2.9 * blocks / nodes,
        "three copies of each"
    );
    for k in 0..2 {
        assert!(col(&t, "p1")[k] <= col(&t, "p50")[k]);
        assert!(col(&t, "p50")[k] <= col(&t, "p99")[k]);
        assert!(col(&t, "p99")[k] <= col(&t, "max")[k]);
    }
}

#[test]
fn survival_small() {
    let t = small("survival");
    well_formed(
        "survival",
        &t,
        &[
            "failed_fraction",
            "blocks",
            "documents",
            "fetchable_erasure",
            "model_erasure",
            "fetchable_plain",
            "model_plain",
        ],
    );
    for (k, p) in col(&t, "failed_fraction").into_iter().enumerate() {
        let (with, without) = (
            col(&t, "fetchable_erasure")[k],
            col(&t, "fetchable_plain")[k],
        );
        assert!(
            with >= without,
            "row {k}: the erasure code never loses a document"
        );
        if p == 0.0 {
            assert_eq!(with, 1.0, "row {k}: nothing died, everything is fetched");
            assert_eq!(col(&t, "model_erasure")[k], 1.0);
        }
        if p == 1.0 {
            assert_eq!(with, 0.0, "row {k}: every node died, nothing is fetched");
            assert_eq!(col(&t, "model_erasure")[k], 0.0);
        }
    }
}

#[test]
fn anonymity_small() {
    let t = small("anonymity");
    well_formed(
        "anonymity",
        &t,
        &[
            "adversary",
            "f",
            "circuits",
            "first_and_exit_fraction",
            "sample_adversarial_fraction",
            "users_compromised_30d",
            "median_days_to_first_compromise",
            "bound_f2",
            "destroyed",
        ],
    );
    let f = col(&t, "f");
    let row = |adv: &str, at: f64| {
        (0..t.rows.len())
            .find(|&k| cell(&t, k, "adversary") == adv && f[k] == at)
            .unwrap_or_else(|| panic!("a row for {adv} at f = {at}"))
    };
    for adv in ["passive", "lying-lookups", "sybil", "selective-dos"] {
        let k = row(adv, 0.0);
        assert!(col(&t, "circuits")[k] > 0.0, "{adv}: circuits were built");
        assert_eq!(col(&t, "first_and_exit_fraction")[k], 0.0, "{adv}: f = 0");
        assert_eq!(col(&t, "sample_adversarial_fraction")[k], 0.0);
        assert_eq!(col(&t, "users_compromised_30d")[k], 0.0);
        assert_eq!(col(&t, "destroyed")[k], 0.0);
    }
    // Checked walks keep liars and Sybils near their share of the
    // samples (unchecked lookups let liars fill 99% of them here);
    // selective DoS destroys circuits.
    let share = col(&t, "sample_adversarial_fraction");
    for adv in ["passive", "lying-lookups", "sybil"] {
        let k = row(adv, 0.2);
        assert!(share[k] <= 1.5 * 0.2, "{adv}: sample share {}", share[k]);
    }
    assert!(col(&t, "destroyed")[row("selective-dos", 0.2)] > 0.0);

    // A row run alone is the same row, so a long run can be split.
    let opts = |only: &str| Options {
        nodes: None,
        seed: 7,
        small: true,
        duration: None,
        users: None,
        only: Some(only.into()),
    };
    let alone = run("anonymity", &opts("sybil@0.2,passive")).expect("rows selected");
    let want: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| r[0] == "passive" || (r[0] == "sybil" && r[1] == "0.200"))
        .collect();
    assert_eq!(alone.rows.iter().collect::<Vec<_>>(), want);
    for bad in ["nobody", "sybil@0.25", "passive@x"] {
        let e = run("anonymity", &opts(bad)).expect_err("refused");
        assert!(e.contains("--only"), "{bad}: {e}");
    }
}
