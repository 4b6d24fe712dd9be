//! The on-disk datastore: an embedded ACID database (redb) holding the
//! blocks this node is responsible for (its own and replicas), and a
//! separately bounded cache with least-recently-used eviction.
//!
//! Every block is checked against its key before it is written and again
//! when it is read, so a corrupted disk or a bug can never hand out a block
//! that does not match its key. Primary writes are durable when `put`
//! returns (redb's default `Durability::Immediate`: fsync before the commit
//! returns), which is what lets a node acknowledge a store to a peer; a
//! `kill -9` at any moment leaves the last committed state. Cache writes
//! skip the fsync: losing cached blocks in a crash costs nothing.

use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::wire::{KeyKind, RoutingKey};

/// kind (1) | routing key (32).
type StoreKey = [u8; 33];

const PRIMARY: TableDefinition<StoreKey, &[u8]> = TableDefinition::new("primary");
/// key → (last use, block).
const CACHE: TableDefinition<StoreKey, (u64, &[u8])> = TableDefinition::new("cache");
/// last use → key: the eviction order.
const CACHE_LRU: TableDefinition<u64, StoreKey> = TableDefinition::new("cache_lru");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const PRIMARY_BYTES: &str = "primary_bytes";
const CACHE_BYTES: &str = "cache_bytes";
const CLOCK: &str = "cache_clock";

/// Checks a block against its key; see `keys::verify_block`. Passed in so
/// the store depends on nothing above it.
pub type Verifier = fn(KeyKind, &RoutingKey, &[u8]) -> bool;

/// Whether a new block replaces the one held under the same key (a higher
/// version of a signed block); see `keys::supersedes`.
pub type Supersedes = fn(KeyKind, &[u8], &[u8]) -> bool;

/// Size limits, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub primary_bytes: u64,
    pub cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            primary_bytes: 1 << 30,
            cache_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("datastore: {0}")]
    Db(String),
    #[error("block does not match its key")]
    BadBlock,
    #[error("primary store is full ({used} of {limit} bytes used)")]
    Full { used: u64, limit: u64 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Stored,
    /// A newer version replaced the one held.
    Replaced,
    AlreadyHad,
}

/// Where a block was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Primary,
    Cache,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub blocks_stored: u64,
    pub bytes_stored: u64,
    pub blocks_cached: u64,
    pub bytes_cached: u64,
}

pub struct Store {
    db: Database,
    limits: Limits,
    verify: Verifier,
    supersedes: Supersedes,
}

fn store_key(kind: KeyKind, key: &RoutingKey) -> StoreKey {
    let mut k = [0u8; 33];
    k[0] = kind.0;
    k[1..].copy_from_slice(&key.0);
    k
}

fn split_key(k: &StoreKey) -> (KeyKind, RoutingKey) {
    let mut key = [0u8; 32];
    key.copy_from_slice(&k[1..]);
    (KeyKind(k[0]), RoutingKey(key))
}

fn len64(b: &[u8]) -> u64 {
    u64::try_from(b.len()).unwrap_or(u64::MAX)
}

/// Memory the datastore keeps of its file's pages. redb's own default is
/// 1 GiB, which a node filling its store reaches: blocks are read once
/// and sent on, and the kernel's page cache keeps hot ones anyway.
pub const DB_CACHE: usize = 32 << 20;

impl Store {
    pub fn open(
        path: &Path,
        limits: Limits,
        verify: Verifier,
        supersedes: Supersedes,
    ) -> Result<Store, Error> {
        // redb checks a file it opens, but some damage still reaches an
        // `unreachable!` inside it: a damaged file is an error here, never
        // a panic that takes the node down at start.
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redb::Builder::new().set_cache_size(DB_CACHE).create(path)
        }))
        .map_err(|_| {
            Error::Db(format!(
                "{} is damaged: the datastore cannot read it",
                path.display()
            ))
        })??;
        Store::with_db(db, limits, verify, supersedes)
    }

    fn with_db(
        db: Database,
        limits: Limits,
        verify: Verifier,
        supersedes: Supersedes,
    ) -> Result<Store, Error> {
        let txn = db.begin_write()?;
        {
            // Create the tables so that readers never meet a missing one.
            txn.open_table(PRIMARY)?;
            txn.open_table(CACHE)?;
            txn.open_table(CACHE_LRU)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Store {
            db,
            limits,
            verify,
            supersedes,
        })
    }

    /// Store a block this node is responsible for. Durable on return.
    pub fn put(&self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> Result<Put, Error> {
        self.put_many(&[(kind, *key, block)])
            .pop()
            .unwrap_or(Err(Error::Db("no outcome".into())))
    }

    /// Store several blocks in one transaction, with one fsync for all:
    /// every outcome is durable on return (group commit). Each block
    /// succeeds or fails on its own; if the commit fails, all fail.
    pub fn put_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Vec<Result<Put, Error>> {
        match self.put_txn(blocks) {
            Ok(outcomes) => outcomes,
            Err(e) => blocks
                .iter()
                .map(|_| Err(Error::Db(e.to_string())))
                .collect(),
        }
    }

    fn put_txn(
        &self,
        blocks: &[(KeyKind, RoutingKey, &[u8])],
    ) -> Result<Vec<Result<Put, Error>>, Error> {
        let mut outcomes = Vec::with_capacity(blocks.len());
        let txn = self.db.begin_write()?;
        let mut wrote = false;
        {
            let mut primary = txn.open_table(PRIMARY)?;
            let mut meta = txn.open_table(META)?;
            let mut used = meta.get(PRIMARY_BYTES)?.map_or(0, |v| v.value());
            for &(kind, key, block) in blocks {
                if !(self.verify)(kind, &key, block) {
                    outcomes.push(Err(Error::BadBlock));
                    continue;
                }
                let k = store_key(kind, &key);
                let mut old_len = None;
                if let Some(old) = primary.get(k)? {
                    if !(self.supersedes)(kind, old.value(), block) {
                        outcomes.push(Ok(Put::AlreadyHad));
                        continue;
                    }
                    old_len = Some(len64(old.value()));
                }
                let after = used
                    .saturating_sub(old_len.unwrap_or(0))
                    .saturating_add(len64(block));
                if after > self.limits.primary_bytes {
                    outcomes.push(Err(Error::Full {
                        used,
                        limit: self.limits.primary_bytes,
                    }));
                    continue;
                }
                primary.insert(k, block)?;
                used = after;
                wrote = true;
                outcomes.push(Ok(if old_len.is_some() {
                    Put::Replaced
                } else {
                    Put::Stored
                }));
            }
            if wrote {
                meta.insert(PRIMARY_BYTES, used)?;
            }
        }
        if wrote {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(outcomes)
    }

    /// Keep a block that passed through this node, evicting the least
    /// recently used blocks to stay within the cache limit. Not durable.
    pub fn cache(&self, kind: KeyKind, key: &RoutingKey, block: &[u8]) -> Result<(), Error> {
        self.cache_many(&[(kind, *key, block)])
    }

    /// Cache several blocks in one transaction (not durable). Blocks that
    /// do not match their key are skipped; the first one is reported.
    pub fn cache_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Result<(), Error> {
        let mut bad = false;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut cache = txn.open_table(CACHE)?;
            let mut lru = txn.open_table(CACHE_LRU)?;
            let mut meta = txn.open_table(META)?;
            let mut clock = meta.get(CLOCK)?.map_or(0, |v| v.value());
            let mut used = meta.get(CACHE_BYTES)?.map_or(0, |v| v.value());
            for &(kind, key, block) in blocks {
                if !(self.verify)(kind, &key, block) {
                    bad = true;
                    continue;
                }
                if len64(block) > self.limits.cache_bytes {
                    continue;
                }
                let k = store_key(kind, &key);
                clock += 1;
                if let Some(old) = cache.remove(k)? {
                    let (seq, bytes) = old.value();
                    used = used.saturating_sub(len64(bytes));
                    lru.remove(seq)?;
                }
                while used.saturating_add(len64(block)) > self.limits.cache_bytes {
                    let Some((_, victim)) = lru.pop_first()? else {
                        break;
                    };
                    if let Some(v) = cache.remove(victim.value())? {
                        used = used.saturating_sub(len64(v.value().1));
                    }
                }
                cache.insert(k, (clock, block))?;
                lru.insert(clock, k)?;
                used = used.saturating_add(len64(block));
            }
            meta.insert(CACHE_BYTES, used)?;
            meta.insert(CLOCK, clock)?;
        }
        txn.commit()?;
        if bad {
            return Err(Error::BadBlock);
        }
        Ok(())
    }

    /// Find a block, primary store first. A block that no longer matches its
    /// key is removed and reported as missing: never handed out.
    pub fn get(&self, kind: KeyKind, key: &RoutingKey) -> Result<Option<(Vec<u8>, Found)>, Error> {
        let k = store_key(kind, key);
        let found = {
            let txn = self.db.begin_read()?;
            if let Some(v) = txn.open_table(PRIMARY)?.get(k)? {
                Some((v.value().to_vec(), Found::Primary))
            } else {
                txn.open_table(CACHE)?
                    .get(k)?
                    .map(|v| (v.value().1.to_vec(), Found::Cache))
            }
        };
        let Some((block, place)) = found else {
            return Ok(None);
        };
        if !(self.verify)(kind, key, &block) {
            tracing::warn!("datastore: dropping a block that no longer matches its key");
            self.remove(kind, key)?;
            self.uncache(kind, key)?;
            return Ok(None);
        }
        if place == Found::Cache {
            self.touch(k)?;
        }
        Ok(Some((block, place)))
    }

    /// Whether the primary store holds the key (no verification, no copy).
    pub fn has(&self, kind: KeyKind, key: &RoutingKey) -> Result<bool, Error> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(PRIMARY)?
            .get(store_key(kind, key))?
            .is_some())
    }

    /// Drop a block from the primary store and the cache (an operator
    /// removing content, or a test deleting blocks).
    pub fn forget(&self, kind: KeyKind, key: &RoutingKey) -> Result<(), Error> {
        self.remove(kind, key)?;
        self.uncache(kind, key)
    }

    /// Drop a block from the primary store.
    pub fn remove(&self, kind: KeyKind, key: &RoutingKey) -> Result<bool, Error> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut primary = txn.open_table(PRIMARY)?;
            let mut meta = txn.open_table(META)?;
            let removed = primary
                .remove(store_key(kind, key))?
                .map(|v| len64(v.value()));
            if let Some(n) = removed {
                let used = meta.get(PRIMARY_BYTES)?.map_or(0, |v| v.value());
                meta.insert(PRIMARY_BYTES, used.saturating_sub(n))?;
            }
            removed.is_some()
        };
        txn.commit()?;
        Ok(removed)
    }

    fn uncache(&self, kind: KeyKind, key: &RoutingKey) -> Result<(), Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut cache = txn.open_table(CACHE)?;
            let mut lru = txn.open_table(CACHE_LRU)?;
            let mut meta = txn.open_table(META)?;
            if let Some(v) = cache.remove(store_key(kind, key))? {
                let (seq, bytes) = v.value();
                lru.remove(seq)?;
                let used = meta.get(CACHE_BYTES)?.map_or(0, |v| v.value());
                meta.insert(CACHE_BYTES, used.saturating_sub(len64(bytes)))?;
            };
        }
        txn.commit()?;
        Ok(())
    }

    /// Mark a cached block as just used.
    fn touch(&self, k: StoreKey) -> Result<(), Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut cache = txn.open_table(CACHE)?;
            let mut lru = txn.open_table(CACHE_LRU)?;
            let mut meta = txn.open_table(META)?;
            let clock = meta.get(CLOCK)?.map_or(0, |v| v.value()) + 1;
            let mut entry = None;
            if let Some(v) = cache.get(k)? {
                let (seq, bytes) = v.value();
                entry = Some((seq, bytes.to_vec()));
            }
            if let Some((seq, bytes)) = entry {
                lru.remove(seq)?;
                lru.insert(clock, k)?;
                cache.insert(k, (clock, bytes.as_slice()))?;
                meta.insert(CLOCK, clock)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every key in the primary store, for replication and hand-over.
    pub fn primary_keys(&self) -> Result<Vec<(KeyKind, RoutingKey)>, Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PRIMARY)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            out.push(split_key(&k.value()));
        }
        Ok(out)
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let get = |name| -> Result<u64, Error> { Ok(meta.get(name)?.map_or(0, |v| v.value())) };
        Ok(Stats {
            blocks_stored: txn.open_table(PRIMARY)?.len()?,
            bytes_stored: get(PRIMARY_BYTES)?,
            blocks_cached: txn.open_table(CACHE)?.len()?,
            bytes_cached: get(CACHE_BYTES)?,
        })
    }
}

/// What a node needs of a datastore; [`Store`] (redb, on disk) and
/// [`Memory`] (for simulations of many nodes) keep the same contract: every
/// block is checked against its key on the way in and out, a primary write
/// is durable when it returns, the cache evicts the least recently used.
pub trait Datastore {
    fn get(&self, kind: KeyKind, key: &RoutingKey) -> Result<Option<(Vec<u8>, Found)>, Error>;
    fn put_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Vec<Result<Put, Error>>;
    fn cache_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Result<(), Error>;
    fn has(&self, kind: KeyKind, key: &RoutingKey) -> Result<bool, Error>;
    fn forget(&self, kind: KeyKind, key: &RoutingKey) -> Result<(), Error>;
    fn stats(&self) -> Result<Stats, Error>;
}

impl Datastore for Store {
    fn get(&self, kind: KeyKind, key: &RoutingKey) -> Result<Option<(Vec<u8>, Found)>, Error> {
        Store::get(self, kind, key)
    }
    fn put_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Vec<Result<Put, Error>> {
        Store::put_many(self, blocks)
    }
    fn cache_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Result<(), Error> {
        Store::cache_many(self, blocks)
    }
    fn has(&self, kind: KeyKind, key: &RoutingKey) -> Result<bool, Error> {
        Store::has(self, kind, key)
    }
    fn forget(&self, kind: KeyKind, key: &RoutingKey) -> Result<(), Error> {
        Store::forget(self, kind, key)
    }
    fn stats(&self) -> Result<Stats, Error> {
        Store::stats(self)
    }
}

type MemKey = (KeyKind, RoutingKey);

#[derive(Default)]
struct MemInner {
    primary: std::collections::HashMap<MemKey, Vec<u8>>,
    primary_bytes: u64,
    /// key → (last use, block).
    cache: std::collections::HashMap<MemKey, (u64, Vec<u8>)>,
    /// last use → key: the eviction order.
    lru: std::collections::BTreeMap<u64, MemKey>,
    cache_bytes: u64,
    clock: u64,
}

/// A datastore held in memory, for simulations: nothing is durable beyond
/// the process, which a simulated node does not outlive. A few dozen
/// bytes when empty, where a database costs a mebibyte.
pub struct Memory {
    limits: Limits,
    verify: Verifier,
    supersedes: Supersedes,
    inner: std::cell::RefCell<MemInner>,
}

impl Memory {
    pub fn new(limits: Limits, verify: Verifier, supersedes: Supersedes) -> Memory {
        Memory {
            limits,
            verify,
            supersedes,
            inner: std::cell::RefCell::new(MemInner::default()),
        }
    }

    /// Every key in the primary store.
    pub fn primary_keys(&self) -> Vec<(KeyKind, RoutingKey)> {
        let mut keys: Vec<_> = self.inner.borrow().primary.keys().copied().collect();
        keys.sort();
        keys
    }
}

impl Datastore for Memory {
    fn get(&self, kind: KeyKind, key: &RoutingKey) -> Result<Option<(Vec<u8>, Found)>, Error> {
        let mut m = self.inner.borrow_mut();
        let k = (kind, *key);
        if let Some(b) = m.primary.get(&k) {
            if (self.verify)(kind, key, b) {
                return Ok(Some((b.clone(), Found::Primary)));
            }
            if let Some(b) = m.primary.remove(&k) {
                m.primary_bytes = m.primary_bytes.saturating_sub(len64(&b));
            }
            return Ok(None);
        }
        let clock = m.clock + 1;
        let Some((seq, block)) = m.cache.get(&k).map(|(s, b)| (*s, b.clone())) else {
            return Ok(None);
        };
        m.lru.remove(&seq);
        if !(self.verify)(kind, key, &block) {
            m.cache.remove(&k);
            m.cache_bytes = m.cache_bytes.saturating_sub(len64(&block));
            return Ok(None);
        }
        m.clock = clock;
        m.lru.insert(clock, k);
        if let Some(e) = m.cache.get_mut(&k) {
            e.0 = clock;
        }
        Ok(Some((block, Found::Cache)))
    }

    fn put_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Vec<Result<Put, Error>> {
        let mut m = self.inner.borrow_mut();
        blocks
            .iter()
            .map(|&(kind, key, block)| {
                if !(self.verify)(kind, &key, block) {
                    return Err(Error::BadBlock);
                }
                let k = (kind, key);
                let old_len = match m.primary.get(&k) {
                    Some(old) if !(self.supersedes)(kind, old, block) => {
                        return Ok(Put::AlreadyHad)
                    }
                    Some(old) => Some(len64(old)),
                    None => None,
                };
                let used = m.primary_bytes;
                let after = used
                    .saturating_sub(old_len.unwrap_or(0))
                    .saturating_add(len64(block));
                if after > self.limits.primary_bytes {
                    return Err(Error::Full {
                        used,
                        limit: self.limits.primary_bytes,
                    });
                }
                m.primary.insert(k, block.to_vec());
                m.primary_bytes = after;
                Ok(if old_len.is_some() {
                    Put::Replaced
                } else {
                    Put::Stored
                })
            })
            .collect()
    }

    fn cache_many(&self, blocks: &[(KeyKind, RoutingKey, &[u8])]) -> Result<(), Error> {
        let mut m = self.inner.borrow_mut();
        let mut bad = false;
        for &(kind, key, block) in blocks {
            if !(self.verify)(kind, &key, block) {
                bad = true;
                continue;
            }
            if len64(block) > self.limits.cache_bytes {
                continue;
            }
            let k = (kind, key);
            m.clock += 1;
            let clock = m.clock;
            if let Some((seq, old)) = m.cache.remove(&k) {
                m.cache_bytes = m.cache_bytes.saturating_sub(len64(&old));
                m.lru.remove(&seq);
            }
            while m.cache_bytes.saturating_add(len64(block)) > self.limits.cache_bytes {
                let Some((_, victim)) = m.lru.pop_first() else {
                    break;
                };
                if let Some((_, v)) = m.cache.remove(&victim) {
                    m.cache_bytes = m.cache_bytes.saturating_sub(len64(&v));
                }
            }
            m.cache.insert(k, (clock, block.to_vec()));
            m.lru.insert(clock, k);
            m.cache_bytes = m.cache_bytes.saturating_add(len64(block));
        }
        if bad {
            return Err(Error::BadBlock);
        }
        Ok(())
    }

    fn has(&self, kind: KeyKind, key: &RoutingKey) -> Result<bool, Error> {
        Ok(self.inner.borrow().primary.contains_key(&(kind, *key)))
    }

    fn forget(&self, kind: KeyKind, key: &RoutingKey) -> Result<(), Error> {
        let mut m = self.inner.borrow_mut();
        let k = (kind, *key);
        if let Some(b) = m.primary.remove(&k) {
            m.primary_bytes = m.primary_bytes.saturating_sub(len64(&b));
        }
        if let Some((seq, b)) = m.cache.remove(&k) {
            m.lru.remove(&seq);
            m.cache_bytes = m.cache_bytes.saturating_sub(len64(&b));
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats, Error> {
        let m = self.inner.borrow();
        Ok(Stats {
            blocks_stored: u64::try_from(m.primary.len()).unwrap_or(u64::MAX),
            bytes_stored: m.primary_bytes,
            blocks_cached: u64::try_from(m.cache.len()).unwrap_or(u64::MAX),
            bytes_cached: m.cache_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_damaged_store_file_is_an_error_not_a_panic() {
        // Found by the `files` fuzz target: redb panics opening it. The
        // first byte chose the datastore; the rest is the file.
        let input = include_bytes!("../tests/regressions/files/redb-open-unreachable");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        std::fs::write(&path, &input[1..]).unwrap();
        let e = super::Store::open(
            &path,
            super::Limits::default(),
            crate::keys::verify_block,
            crate::keys::supersedes,
        )
        .err()
        .expect("a damaged file does not open");
        assert!(matches!(e, super::Error::Db(_)), "{e}");
    }

    use super::*;
    use sha2::{Digest, Sha256};

    fn chk(_: KeyKind, key: &RoutingKey, block: &[u8]) -> bool {
        Sha256::digest(block).as_slice() == key.0
    }

    fn block(i: u32, len: usize) -> (RoutingKey, Vec<u8>) {
        let mut b = vec![0u8; len];
        b[..4].copy_from_slice(&i.to_be_bytes());
        (RoutingKey(Sha256::digest(&b).into()), b)
    }

    fn never_newer(_: KeyKind, _: &[u8], _: &[u8]) -> bool {
        false
    }

    fn open(dir: &tempfile::TempDir, limits: Limits) -> Store {
        Store::open(&dir.path().join("store.redb"), limits, chk, never_newer).unwrap()
    }

    #[test]
    fn blocks_survive_reopening_and_bad_blocks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key, b) = block(1, 100);
        {
            let s = open(&dir, Limits::default());
            assert_eq!(s.put(KeyKind::CHK, &key, &b).unwrap(), Put::Stored);
            assert_eq!(s.put(KeyKind::CHK, &key, &b).unwrap(), Put::AlreadyHad);
            let (wrong, _) = block(2, 100);
            assert!(matches!(
                s.put(KeyKind::CHK, &wrong, &b),
                Err(Error::BadBlock)
            ));
        }
        let s = open(&dir, Limits::default());
        assert_eq!(
            s.get(KeyKind::CHK, &key).unwrap(),
            Some((b.clone(), Found::Primary))
        );
        assert_eq!(s.stats().unwrap().blocks_stored, 1);
        assert_eq!(s.stats().unwrap().bytes_stored, 100);
        assert!(s.remove(KeyKind::CHK, &key).unwrap());
        assert_eq!(s.get(KeyKind::CHK, &key).unwrap(), None);
        assert_eq!(s.stats().unwrap().bytes_stored, 0);
    }

    #[test]
    fn a_group_commit_judges_each_block_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(
            &dir,
            Limits {
                primary_bytes: 250,
                cache_bytes: 0,
            },
        );
        let (k1, b1) = block(1, 100);
        let (k2, b2) = block(2, 100);
        let (k3, b3) = block(3, 100);
        let (wrong, _) = block(4, 100);
        let out = s.put_many(&[
            (KeyKind::CHK, k1, &b1),
            (KeyKind::CHK, wrong, &b1),
            (KeyKind::CHK, k1, &b1),
            (KeyKind::CHK, k2, &b2),
            (KeyKind::CHK, k3, &b3),
        ]);
        assert!(matches!(out[0], Ok(Put::Stored)));
        assert!(matches!(out[1], Err(Error::BadBlock)));
        assert!(matches!(out[2], Ok(Put::AlreadyHad)));
        assert!(matches!(out[3], Ok(Put::Stored)));
        assert!(matches!(out[4], Err(Error::Full { used: 200, .. })));
        drop(s);
        let s = open(&dir, Limits::default());
        assert_eq!(s.stats().unwrap().blocks_stored, 2);
        assert_eq!(s.stats().unwrap().bytes_stored, 200);
    }

    /// The in-memory datastore keeps the same contract as the database:
    /// the same sequence of operations gives the same answers.
    #[test]
    fn memory_and_database_agree() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            primary_bytes: 350,
            cache_bytes: 250,
        };
        let db = open(&dir, limits);
        let mem = Memory::new(limits, chk, never_newer);
        let blocks: Vec<_> = (0..6).map(|i| block(i, 100)).collect();
        let stores: [&dyn Datastore; 2] = [&db, &mem];
        let mut answers = Vec::new();
        for s in stores {
            let mut a = Vec::new();
            for (k, b) in &blocks[..4] {
                a.push(format!("{:?}", s.put_many(&[(KeyKind::CHK, *k, b)])));
            }
            for (k, b) in &blocks[2..] {
                a.push(format!("{:?}", s.cache_many(&[(KeyKind::CHK, *k, b)])));
            }
            let _ = s.get(KeyKind::CHK, &blocks[4].0);
            s.cache_many(&[(KeyKind::CHK, blocks[0].0, &blocks[0].1)])
                .unwrap();
            for (k, _) in &blocks {
                a.push(format!(
                    "{:?}",
                    s.get(KeyKind::CHK, k).unwrap().map(|x| x.1)
                ));
                a.push(format!("{:?}", s.has(KeyKind::CHK, k).unwrap()));
            }
            s.forget(KeyKind::CHK, &blocks[1].0).unwrap();
            a.push(format!("{:?}", s.stats().unwrap()));
            answers.push(a);
        }
        assert_eq!(answers[0], answers[1]);
    }

    #[test]
    fn the_primary_limit_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(
            &dir,
            Limits {
                primary_bytes: 250,
                cache_bytes: 0,
            },
        );
        for i in 0..2 {
            let (k, b) = block(i, 100);
            s.put(KeyKind::CHK, &k, &b).unwrap();
        }
        let (k, b) = block(3, 100);
        assert!(matches!(
            s.put(KeyKind::CHK, &k, &b),
            Err(Error::Full {
                used: 200,
                limit: 250
            })
        ));
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(
            &dir,
            Limits {
                primary_bytes: 0,
                cache_bytes: 300,
            },
        );
        let blocks: Vec<_> = (0..4).map(|i| block(i, 100)).collect();
        for (k, b) in &blocks[..3] {
            s.cache(KeyKind::CHK, k, b).unwrap();
        }
        // Use block 0, so block 1 is now the least recently used.
        assert!(s.get(KeyKind::CHK, &blocks[0].0).unwrap().is_some());
        s.cache(KeyKind::CHK, &blocks[3].0, &blocks[3].1).unwrap();
        let present: Vec<bool> = blocks
            .iter()
            .map(|(k, _)| s.get(KeyKind::CHK, k).unwrap().is_some())
            .collect();
        assert_eq!(present, [true, false, true, true]);
        let st = s.stats().unwrap();
        assert_eq!((st.blocks_cached, st.bytes_cached), (3, 300));
    }

    #[test]
    fn a_block_corrupted_on_disk_is_never_returned() {
        // A verifier that a test can turn against the stored bytes stands in
        // for disk corruption: what is read no longer matches the key.
        fn never(_: KeyKind, _: &RoutingKey, _: &[u8]) -> bool {
            false
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (k, b) = block(9, 64);
        Store::open(&path, Limits::default(), chk, never_newer)
            .unwrap()
            .put(KeyKind::CHK, &k, &b)
            .unwrap();
        let s = Store::open(&path, Limits::default(), never, never_newer).unwrap();
        assert_eq!(s.get(KeyKind::CHK, &k).unwrap(), None);
        assert!(!s.has(KeyKind::CHK, &k).unwrap());
    }
}
