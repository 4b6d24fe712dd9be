//! `survival`: a fraction of the nodes dies at once and nothing repairs;
//! which documents can still be fetched, with the erasure code and without
//! it, beside a probability model (docs/performance.md, "survival").

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

use super::{await_replies, f3, quiet, rng, settled, Figure, Options, Series, Table};
use crate::keys::{chk_decode, chk_encode, copy_routing_key, ChkKey, BLOCK_PAYLOAD, ROOT_COPIES};
use crate::keys::{decode_root, encode_document, Root, Segment};
use crate::node::core::{Reply, Request};
use crate::route::{self, Outcome};
use crate::sim::Settings;
use crate::token::Token;
use crate::wire::{KeyKind, RoutingKey};

/// What a fetch needs, as a tree over blocks.
enum Need {
    Block(Key),
    All(Vec<Need>),
    /// A root and its copies: any one will do.
    Any(Vec<Need>),
    /// `data` of the parts, which come first, and `parts.len() - data`
    /// parity parts: any `data` of them rebuild the segment.
    Segment {
        data: usize,
        parts: Vec<Key>,
    },
}

/// A block's kind and routing key.
type Key = (KeyKind, RoutingKey);

impl Need {
    /// Whether a fetch succeeds when `ok` says which blocks can be got.
    fn holds(&self, ok: &dyn Fn(&Key) -> bool, erasure: bool) -> bool {
        match self {
            Need::Block(k) => ok(k),
            Need::All(v) => v.iter().all(|n| n.holds(ok, erasure)),
            Need::Any(v) => v.iter().any(|n| n.holds(ok, erasure)),
            Need::Segment { data, parts } => {
                if erasure {
                    parts.iter().filter(|k| ok(k)).count() >= *data
                } else {
                    parts[..*data].iter().all(ok)
                }
            }
        }
    }

    /// The probability that it holds when each block survives with
    /// probability `q`, independently.
    fn chance(&self, q: f64, erasure: bool) -> f64 {
        match self {
            Need::Block(_) => q,
            Need::All(v) => v.iter().map(|n| n.chance(q, erasure)).product(),
            Need::Any(v) => {
                1.0 - v
                    .iter()
                    .map(|n| 1.0 - n.chance(q, erasure))
                    .product::<f64>()
            }
            Need::Segment { data, parts } => {
                if erasure {
                    at_least(parts.len(), *data, q)
                } else {
                    q.powi(*data as i32)
                }
            }
        }
    }

    fn keys(&self, out: &mut Vec<Key>) {
        match self {
            Need::Block(k) => out.push(*k),
            Need::All(v) | Need::Any(v) => v.iter().for_each(|n| n.keys(out)),
            Need::Segment { parts, .. } => out.extend_from_slice(parts),
        }
    }
}

/// P(X >= k) for X ~ Binomial(n, q).
fn at_least(n: usize, k: usize, q: f64) -> f64 {
    let mut total = 0.0;
    for x in k..=n {
        total += binomial(n, x) * q.powi(x as i32) * (1.0 - q).powi((n - x) as i32);
    }
    total.min(1.0)
}

fn binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

fn segments(segs: &[Segment]) -> Vec<Need> {
    segs.iter()
        .map(|s| Need::Segment {
            data: s.data,
            parts: s.keys.iter().map(|k| (KeyKind::CHK, k.routing)).collect(),
        })
        .collect()
}

/// The plaintext of the block under `key`, from the blocks in hand.
fn plain(key: &ChkKey, blocks: &HashMap<RoutingKey, Vec<u8>>) -> Vec<u8> {
    blocks
        .get(&key.routing)
        .and_then(|b| chk_decode(key, b).ok())
        .unwrap_or_default()
}

/// The tree of the document whose root block is under `key`, reading it
/// and any nested key list from `blocks`.
fn need(key: &ChkKey, blocks: &HashMap<RoutingKey, Vec<u8>>) -> Need {
    let mut all = vec![root(key)];
    match decode_root(&plain(key, blocks)) {
        Ok(Root::Inline { .. }) | Err(_) => {}
        Ok(Root::Manifest(m)) => all.extend(segments(&m.segments)),
        Ok(Root::Nested { manifest, list, .. }) => {
            // The segments' keys are only in the list: fill them in so
            // that the tree names every block.
            all.push(need(&list, blocks));
            let filled = crate::keys::fill_keys(manifest, list_keys(&list, blocks))
                .expect("the key list the insert wrote fits its manifest");
            all.extend(segments(&filled.segments));
        }
    }
    Need::All(all)
}

/// A root block and its copies, as the client stores and fetches them.
fn root(key: &ChkKey) -> Need {
    Need::Any(
        std::iter::once((KeyKind::CHK, key.routing))
            .chain((1..=ROOT_COPIES).map(|i| (KeyKind::COPY, copy_routing_key(&key.routing, i))))
            .map(Need::Block)
            .collect(),
    )
}

/// A document of `chunks` blocks of data (one: small enough to live in its
/// root), its blocks and its tree.
fn document(rng: &mut impl Rng, chunks: usize) -> Doc {
    let len = if chunks == 1 {
        BLOCK_PAYLOAD / 2
    } else {
        chunks * BLOCK_PAYLOAD
    };
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    let doc = encode_document("application/octet-stream", &data).expect("a document encodes");
    let (root_key, root_block) = chk_encode(&doc.root).expect("a root encodes");
    let mut blocks = doc.blocks;
    blocks.push((root_key, root_block));
    let map: HashMap<RoutingKey, Vec<u8>> =
        blocks.iter().map(|(k, b)| (k.routing, b.clone())).collect();
    let tree = need(&root_key, &map);
    // What the client stores: every block, and the roots' copies too.
    let stored = blocks
        .into_iter()
        .flat_map(|(key, block)| {
            let root = key == root_key || doc.lists.contains(&key);
            crate::client::with_copies(key, block, root)
        })
        .collect();
    (tree, stored)
}

/// The keys a nested key list holds, read from the blocks in hand.
fn list_keys(list: &ChkKey, blocks: &HashMap<RoutingKey, Vec<u8>>) -> Vec<ChkKey> {
    let bytes = match decode_root(&plain(list, blocks)) {
        Ok(Root::Inline { data, .. }) => data,
        Ok(Root::Manifest(m)) => {
            let mut out = Vec::new();
            for s in &m.segments {
                for k in &s.keys[..s.data] {
                    out.extend(plain(k, blocks));
                }
            }
            out.truncate(usize::try_from(m.total_len).unwrap_or(usize::MAX));
            out
        }
        _ => Vec::new(),
    };
    crate::keys::split_key_list(&bytes).unwrap_or_default()
}

/// A document: its tree and its blocks.
type Doc = (Need, Vec<(KeyKind, RoutingKey, Vec<u8>)>);
/// Documents of one size: blocks of data each, and the documents.
type Docs = Vec<(usize, Vec<Doc>)>;

/// Per size of document: how many, how many fetchable with the erasure
/// code, and without it.
fn one(n: usize, p: f64, docs: &Docs, seed: u64) -> Vec<(usize, usize, usize)> {
    // Links to the dead time out as QUIC's idle timeout would (the
    // simulator's default detection); nothing else is told.
    let settings = quiet(Settings::default());
    let mut net = settled(settings, seed, n);
    let mut rng = rng(seed, 4);
    // Store every block through the node's own placement.
    let mut pending: Vec<(usize, Token)> = Vec::new();
    for (_, set) in docs {
        for (_, blocks) in set {
            for (kind, key, block) in blocks {
                let from = rng.gen_range(0..n);
                pending.push((
                    from,
                    net.submit(
                        from,
                        Request::Store {
                            kind: *kind,
                            key: *key,
                            block: block.clone(),
                        },
                    ),
                ));
                if pending.len() == 1000 {
                    await_replies(&mut net, &pending, Duration::from_secs(600));
                    pending.clear();
                }
            }
        }
    }
    await_replies(&mut net, &pending, Duration::from_secs(600));
    net.run_for(Duration::from_secs(30));
    // The fetcher: a client-only node that holds nothing itself.
    let fetcher = net.add_client(0, None);
    net.run_for(Duration::from_secs(30));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let dead = (p * n as f64).round() as usize;
    for &i in &order[..dead] {
        net.crash(i);
    }
    // Let the survivors' links to the dead time out. Whatever copying
    // this lets placement do cannot bring back a block whose every copy
    // died, which is all this experiment asks.
    net.run_for(Duration::from_secs(30));
    // One routed get per block, through the network as it is now.
    let mut keys = Vec::new();
    for (_, set) in docs {
        for (tree, _) in set {
            tree.keys(&mut keys);
        }
    }
    keys.sort();
    keys.dedup();
    let mut found: HashMap<Key, bool> = HashMap::new();
    for chunk in keys.chunks(500) {
        let asked: Vec<(Key, Token)> = chunk
            .iter()
            .map(|&(kind, key)| {
                let t = net.submit(
                    fetcher,
                    Request::Route {
                        kind,
                        key,
                        request: route::Request::Get,
                        id: None,
                    },
                );
                ((kind, key), t)
            })
            .collect();
        let pending: Vec<(usize, Token)> = asked.iter().map(|&(_, t)| (fetcher, t)).collect();
        let got = await_replies(&mut net, &pending, Duration::from_secs(900));
        for (key, t) in asked {
            let ok = matches!(
                got.get(&(fetcher, t)),
                Some(Reply::Routed(Outcome::Found(_)))
            );
            found.insert(key, ok);
        }
    }
    let ok = |k: &Key| found.get(k).copied().unwrap_or(false);
    docs.iter()
        .map(|(_, set)| {
            let with = set.iter().filter(|(t, _)| t.holds(&ok, true)).count();
            let without = set.iter().filter(|(t, _)| t.holds(&ok, false)).count();
            (set.len(), with, without)
        })
        .collect()
}

pub fn run(opts: &Options) -> Table {
    let n = opts.nodes.unwrap_or(if opts.small { 40 } else { 1000 });
    let sizes: Vec<(usize, usize)> = if opts.small {
        vec![(1, 20), (10, 6), (300, 1)]
    } else {
        vec![(1, 400), (10, 100), (300, 12)]
    };
    let fractions: Vec<f64> = if opts.small {
        vec![0.0, 0.3, 1.0]
    } else {
        vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    };
    let replicas = Settings::default().node.replicas;
    let mut rng = rng(opts.seed, 5);
    let docs: Docs = sizes
        .iter()
        .map(|&(chunks, count)| {
            (
                chunks,
                (0..count).map(|_| document(&mut rng, chunks)).collect(),
            )
        })
        .collect();
    let mut rows = Vec::new();
    let mut series: Vec<Series> = Vec::new();
    for (k, &p) in fractions.iter().enumerate() {
        let m = one(n, p, &docs, opts.seed ^ ((k as u64) << 12));
        // A block is lost only when all its copies are: q = 1 - p^r.
        let q = 1.0 - p.powi(replicas as i32);
        for (j, ((chunks, set), &(count, with, without))) in docs.iter().zip(&m).enumerate() {
            let model = |erasure: bool| {
                set.iter().map(|(t, _)| t.chance(q, erasure)).sum::<f64>() / count.max(1) as f64
            };
            let frac = |x: usize| x as f64 / count.max(1) as f64;
            rows.push(vec![
                f3(p),
                chunks.to_string(),
                count.to_string(),
                f3(frac(with)),
                f3(model(true)),
                f3(frac(without)),
                f3(model(false)),
            ]);
            for (s, (name, y)) in [
                (format!("{chunks} blocks, erasure coded"), frac(with)),
                (format!("{chunks} blocks, no erasure code"), frac(without)),
            ]
            .into_iter()
            .enumerate()
            {
                let at = 2 * j + s;
                if series.len() <= at {
                    series.push(Series {
                        name,
                        points: Vec::new(),
                    });
                }
                series[at].points.push((p, y));
            }
        }
    }
    Table {
        title: "survival: documents still fetchable after a fraction of the nodes dies, with no repair".into(),
        params: vec![
            ("nodes".into(), format!("{n}, settled; the dead go silent, and their links time out after 6 s")),
            ("replicas".into(), replicas.to_string()),
            (
                "documents".into(),
                sizes
                    .iter()
                    .map(|(c, k)| format!("{k} of {c} block{}", if *c == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + "; a 1-block document lives in its root block, the others are cut into segments of up to 64 data blocks with half as many parity blocks (plus the root and, past about 100 keys, a key-list document); roots are stored at their own position and at their copies'",
            ),
            (
                "measure".into(),
                "every block is stored through the node's placement, then fetched by a routed get from a client-only node after the deaths; a document is fetchable with the erasure code if its root, key list and at least k of each segment's k + m blocks came back, without it if its root, key list and every data block did".into(),
            ),
            ("model".into(), format!("each block survives with q = 1 - p^{replicas}, independently; a root (and a key list's root) with 1 - (1 - q)^{} over its own position and its {ROOT_COPIES} copies; a segment with Binomial(k + m, q) >= k", 1 + ROOT_COPIES)),
            ("seed".into(), opts.seed.to_string()),
        ],
        columns: vec![
            "failed_fraction",
            "blocks",
            "documents",
            "fetchable_erasure",
            "model_erasure",
            "fetchable_plain",
            "model_plain",
        ],
        rows,
        reference: vec![
            "the model (docs/performance.md, \"survival\"); no published table runs this exact experiment: Chord's ToN 2003 Table II is the lookups under the same failures (see failures)".into(),
        ],
        figure: Some(Figure {
            x: "fraction of nodes dead".into(),
            y: "fraction of documents fetchable".into(),
            log2_x: false,
            series,
        }),
    }
}
