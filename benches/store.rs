//! The datastore under load (`docs/performance.md`): durable primary puts
//! (fsync per commit) against non-durable cache puts, and reads on an idle
//! store against reads while another thread makes durable writes.
//!
//! `cargo bench --bench store`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use umbra::keys::{chk_routing_key, verify_block};
use umbra::store::{Limits, Store};
use umbra::wire::{KeyKind, RoutingKey};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("bench.redb"),
        Limits {
            primary_bytes: u64::MAX,
            cache_bytes: u64::MAX,
        },
        verify_block,
        umbra::keys::supersedes,
    )
    .unwrap();
    (dir, store)
}

fn blocks(rng: &mut ChaCha20Rng, n: u64, size: usize) -> Vec<(RoutingKey, Vec<u8>)> {
    (0..n)
        .map(|_| {
            let mut b = vec![0u8; size];
            rng.fill_bytes(&mut b);
            (chk_routing_key(&b), b)
        })
        .collect()
}

fn writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_write");
    g.sample_size(20);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for size in [1024usize, 32 * 1024] {
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("durable_put", size), &size, |b, &size| {
            let (_dir, store) = open();
            b.iter_custom(|iters| {
                let input = blocks(&mut rng, iters, size);
                let start = Instant::now();
                for (k, v) in &input {
                    store.put(KeyKind::CHK, k, v).unwrap();
                }
                start.elapsed()
            })
        });
        g.bench_with_input(BenchmarkId::new("cache_put", size), &size, |b, &size| {
            let (_dir, store) = open();
            b.iter_custom(|iters| {
                let input = blocks(&mut rng, iters, size);
                let start = Instant::now();
                for (k, v) in &input {
                    store.cache(KeyKind::CHK, k, v).unwrap();
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_read");
    let size = 32 * 1024;
    g.throughput(Throughput::Bytes(size as u64));
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (_dir, store) = open();
    let store = Arc::new(store);
    let stored = blocks(&mut rng, 256, size);
    for (k, v) in &stored {
        store.put(KeyKind::CHK, k, v).unwrap();
    }
    let mut i = 0;
    g.bench_function("get_idle", |b| {
        b.iter(|| {
            i = (i + 1) % stored.len();
            store.get(KeyKind::CHK, &stored[i].0).unwrap().unwrap()
        })
    });
    // A writer that keeps committing durable 32 KiB puts meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = ChaCha20Rng::seed_from_u64(3);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (k, v) in blocks(&mut rng, 8, 32 * 1024) {
                    store.put(KeyKind::CHK, &k, &v).unwrap();
                    n += 1;
                }
            }
            n
        })
    };
    let started = Instant::now();
    g.bench_function("get_under_durable_writes", |b| {
        b.iter(|| {
            i = (i + 1) % stored.len();
            store.get(KeyKind::CHK, &stored[i].0).unwrap().unwrap()
        })
    });
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "background writer: {written} durable 32 KiB puts in {secs:.1} s ({:.0}/s)",
        written as f64 / secs
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = writes, reads
}
criterion_main!(benches);
