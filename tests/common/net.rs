//! A network of real nodes in one test process, each with its own QUIC
//! endpoint on 127.0.0.1 and its own data directory.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};
use tempfile::TempDir;
use umbra::keys::chk_routing_key;
use umbra::node::{self, Bootstrap, Config, NodeHandle, Status};
use umbra::ring::in_half_open;
use umbra::wire::{KeyKind, NodeId, RoutingKey};

pub const REPLICAS: usize = 3;

pub fn config(dir: &Path, bootstrap: Option<SocketAddr>) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        bootstrap: bootstrap
            .map(|addr| Bootstrap { addr, id: None })
            .into_iter()
            .collect(),
        replicas: REPLICAS,
        stabilize_ms: 100,
        link_timeout_ms: 1500,
        id_puzzle_bits: 8,
        ..Config::default()
    }
}

/// Poll `check` until it passes or `limit` runs out; returns how long it
/// took, or panics with the last complaint.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub struct Net {
    pub nodes: Vec<(NodeHandle, TempDir)>,
}

impl Net {
    /// `n` nodes, each joining through the first once the one before it has
    /// joined.
    pub async fn grow(n: usize) -> Net {
        let mut net = Net { nodes: Vec::new() };
        net.add(None).await;
        let first = net.nodes[0].0.listen;
        for _ in 1..n {
            net.add(Some(first)).await;
            let h = &net.nodes.last().expect("just added").0;
            eventually("joined", Duration::from_secs(10), || async {
                match h.status().await {
                    Ok(s) if s.joined => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
        net
    }

    pub async fn add(&mut self, bootstrap: Option<SocketAddr>) -> usize {
        self.add_with(bootstrap, |_| {}).await
    }

    /// [`Net::add`], its config changed by `edit` first.
    pub async fn add_with(
        &mut self,
        bootstrap: Option<SocketAddr>,
        edit: impl FnOnce(&mut Config),
    ) -> usize {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = config(dir.path(), bootstrap);
        edit(&mut cfg);
        let h = node::start(cfg).await.expect("node starts");
        self.nodes.push((h, dir));
        self.nodes.len() - 1
    }

    pub async fn statuses(&self) -> Result<Vec<Status>, String> {
        let mut out = Vec::new();
        for (h, _) in &self.nodes {
            out.push(h.status().await.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    /// Node ids in ring order.
    pub fn sorted_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.nodes.iter().map(|(h, _)| h.id).collect();
        ids.sort();
        ids
    }

    /// Every predecessor and successor pointer against the sorted ids, and
    /// the successor lists as far as they go.
    pub async fn ring_correct(&self) -> Result<(), String> {
        let statuses = self.statuses().await?;
        umbra::testnet::ring_correct(&statuses, Config::default().successors)
            .map_err(|e| format!("{e}; {}", super::procs::ring_views(&statuses)))
    }

    /// The nodes that should hold `key`: its successor and the next ones.
    pub fn expected_holders(&self, key: &RoutingKey) -> Vec<NodeId> {
        let ids = self.sorted_ids();
        let n = ids.len();
        let first = (0..n)
            .find(|&i| in_half_open(&key.0, &ids[(i + n - 1) % n].0, &ids[i].0))
            .expect("some node succeeds every key");
        (0..REPLICAS.min(n)).map(|k| ids[(first + k) % n]).collect()
    }

    pub async fn holders(&self, key: &RoutingKey) -> Result<Vec<NodeId>, String> {
        let mut out = Vec::new();
        for (h, _) in &self.nodes {
            if h.holds(KeyKind::CHK, *key)
                .await
                .map_err(|e| e.to_string())?
            {
                out.push(h.id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every block on exactly its successor and replicas.
    pub async fn placed(&self, keys: &[RoutingKey]) -> Result<(), String> {
        for key in keys {
            let mut want = self.expected_holders(key);
            want.sort();
            let have = self.holders(key).await?;
            if have != want {
                // Where the holders sit, counted in ring order from the
                // key's successor (0): which ones took copies they should
                // not have, and which lack theirs.
                let ids = self.sorted_ids();
                let first = self.expected_holders(key)[0];
                let owner = ids.iter().position(|i| *i == first);
                let places: Vec<usize> = have
                    .iter()
                    .filter_map(|h| {
                        let at = ids.iter().position(|i| i == h)?;
                        Some((at + ids.len() - owner?) % ids.len())
                    })
                    .collect();
                // What the first holders say of refused replicas and
                // peers cut off: a push refused by a right holder shows
                // here.
                let mut said = Vec::new();
                for (place, id) in
                    (0..REPLICAS + 2).map(|k| (k, ids[(owner.unwrap_or(0) + k) % ids.len()]))
                {
                    if let Some((h, _)) = self.nodes.iter().find(|(h, _)| h.id == id) {
                        if let Ok(s) = h.status().await {
                            said.push(format!(
                                "{place}: {} refused, {} cut off",
                                s.replicas_refused, s.misbehaving_peers
                            ));
                        }
                    }
                }
                return Err(format!(
                    "block held by {} nodes, {} of them the right ones, at places {places:?} after its successor; by place, replicas refused and peers cut off: {}",
                    have.len(),
                    have.iter().filter(|h| want.contains(h)).count(),
                    said.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Every block at least on its successor and replicas.
    pub async fn at_least_placed(&self, keys: &[RoutingKey]) -> Result<(), String> {
        for key in keys {
            let have = self.holders(key).await?;
            let want = self.expected_holders(key);
            let missing: Vec<String> = want
                .iter()
                .enumerate()
                .filter(|(_, w)| !have.contains(w))
                .map(|(k, w)| format!("{w:?} (holder {k} of {REPLICAS})"))
                .collect();
            if !missing.is_empty() {
                // Which of its holders lack it, and who has it instead.
                return Err(format!(
                    "a block lacks {} of its {REPLICAS} copies: not on {}; on {have:?}",
                    missing.len(),
                    missing.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Store `count` random blocks, each through a random node.
    pub async fn store_blocks(&self, count: usize) -> Vec<RoutingKey> {
        let mut rng = super::seeded_rng("blocks");
        let mut keys = Vec::new();
        for _ in 0..count {
            let mut block = vec![0u8; 1024];
            rng.fill_bytes(&mut block);
            let key = chk_routing_key(&block);
            let via = &self.nodes[rng.gen_range(0..self.nodes.len())].0;
            via.store_block(KeyKind::CHK, key, block)
                .await
                .expect("stored through the ring");
            keys.push(key);
        }
        keys
    }

    pub fn take(&mut self, id: NodeId) -> (NodeHandle, TempDir) {
        let i = self
            .nodes
            .iter()
            .position(|(h, _)| h.id == id)
            .expect("node present");
        self.nodes.remove(i)
    }
}
