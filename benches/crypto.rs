//! Throughput of the cell codec and the onion layers, next to raw
//! ChaCha20-Poly1305 measured in the same run (`docs/performance.md`).
//!
//! `cargo bench --bench crypto`

use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use umbra::crypto::{ClientCircuit, LayerKeys, RelayLayer};
use umbra::wire::{Cell, CircId, CELL_LEN, ONION_LEN, RELAY_PAYLOAD_LEN};

/// Raw ChaCha20-Poly1305 seal in place, across buffer sizes: the baseline,
/// and the data behind the choice of cell size.
fn raw_aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw_chacha20poly1305_seal");
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    for size in [512usize, 1024, 2048, 4096, 8192, 16384, 32768] {
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                cipher
                    .encrypt_in_place_detached(&[0u8; 12].into(), &[], &mut buf)
                    .unwrap()
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("raw_chacha20poly1305_seal_ring");
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[7u8; 32]).unwrap(),
    );
    for size in [512usize, 4096, 16384] {
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                key.seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key([0u8; 12]),
                    ring::aead::Aad::empty(),
                    &mut buf,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn keys(i: u8) -> LayerKeys {
    LayerKeys::from_bytes(&[i; 96])
}

fn client(hops: u8) -> ClientCircuit {
    let mut c = ClientCircuit::new();
    for i in 0..hops {
        c.add_hop(&keys(i)).unwrap();
    }
    c
}

fn cells(c: &mut Criterion) {
    let mut g = c.benchmark_group("cell");
    g.throughput(Throughput::Bytes(CELL_LEN as u64));
    let relay = Cell::Relay {
        circ: CircId(0x8000_0001),
        onion: Box::new([0x5a; ONION_LEN]),
    };
    let bytes = relay.encode().unwrap();
    g.bench_function("encode", |b| b.iter(|| relay.encode().unwrap()));
    g.bench_function("parse", |b| b.iter(|| Cell::decode(&bytes).unwrap()));
    g.finish();
}

/// Time `f` over `iters` cells that `prepare` made beforehand, untimed:
/// opening a layer needs a fresh, valid cell each time.
fn timed_over<T>(iters: u64, prepare: impl FnOnce(u64) -> T, f: impl FnOnce(T)) -> Duration {
    let input = prepare(iters);
    let start = Instant::now();
    f(input);
    start.elapsed()
}

fn layers(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Bytes(ONION_LEN as u64));
    let payload = Box::new([0x5a; RELAY_PAYLOAD_LEN]);

    // One layer: the work a middle relay does per cell.
    g.bench_function("seal_1", |b| {
        let mut relay = RelayLayer::new(&keys(0));
        let mut onion = Box::new([0u8; ONION_LEN]);
        b.iter(|| relay.wrap_backward(&mut onion).unwrap())
    });
    g.bench_function("open_1", |b| {
        b.iter_custom(|iters| {
            timed_over(
                iters,
                |n| {
                    let mut cl = client(1);
                    let mut rng = ChaCha20Rng::seed_from_u64(1);
                    (0..n)
                        .map(|_| cl.wrap_forward(&mut rng, &payload).unwrap())
                        .collect::<Vec<_>>()
                },
                |cells| {
                    let mut relay = RelayLayer::new(&keys(0));
                    for mut cell in cells {
                        relay.peel_forward(&mut cell).unwrap();
                    }
                },
            )
        })
    });

    // A whole 3-hop circuit: the client's wrap, and the three peels.
    g.bench_function("wrap_3_forward", |b| {
        let mut cl = client(3);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        b.iter(|| cl.wrap_forward(&mut rng, &payload).unwrap())
    });
    g.bench_function("peel_3_forward", |b| {
        b.iter_custom(|iters| {
            timed_over(
                iters,
                |n| {
                    let mut cl = client(3);
                    let mut rng = ChaCha20Rng::seed_from_u64(3);
                    (0..n)
                        .map(|_| cl.wrap_forward(&mut rng, &payload).unwrap())
                        .collect::<Vec<_>>()
                },
                |cells| {
                    let mut relays: Vec<_> = (0..3).map(|i| RelayLayer::new(&keys(i))).collect();
                    for mut cell in cells {
                        for r in &mut relays {
                            r.peel_forward(&mut cell).unwrap();
                        }
                    }
                },
            )
        })
    });
    g.bench_function("wrap_3_backward", |b| {
        let mut relays: Vec<_> = (0..3).map(|i| RelayLayer::new(&keys(i))).collect();
        b.iter(|| {
            let mut onion = relays[2].seal_backward(&payload).unwrap();
            relays[1].wrap_backward(&mut onion).unwrap();
            relays[0].wrap_backward(&mut onion).unwrap();
            onion
        })
    });
    g.bench_function("peel_3_backward", |b| {
        b.iter_custom(|iters| {
            timed_over(
                iters,
                |n| {
                    let mut relays: Vec<_> = (0..3).map(|i| RelayLayer::new(&keys(i))).collect();
                    (0..n)
                        .map(|_| {
                            let mut onion = relays[2].seal_backward(&payload).unwrap();
                            relays[1].wrap_backward(&mut onion).unwrap();
                            relays[0].wrap_backward(&mut onion).unwrap();
                            onion
                        })
                        .collect::<Vec<_>>()
                },
                |cells| {
                    let mut cl = client(3);
                    for mut cell in cells {
                        cl.unwrap_backward(&mut cell).unwrap();
                    }
                },
            )
        })
    });
    g.finish();
}

/// What an identity costs: one key generation and its puzzle hash, and a
/// key that solves 8 bits of id puzzle (about 256 of them). Placing a
/// relay on a chosen arc of width 1/N takes N keys that solve the
/// network's puzzle: N × 2^bits key generations (docs/threat-model.md,
/// "Sybil placement").
fn identities(c: &mut Criterion) {
    let mut g = c.benchmark_group("identity");
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    g.bench_function("keygen_and_puzzle_hash", |b| {
        b.iter(|| {
            let who = umbra::crypto::Identity::generate(&mut rng);
            umbra::crypto::puzzle_bits(&who.identity_key())
        })
    });
    g.sample_size(20);
    g.bench_function("solve_8_bits", |b| {
        b.iter(|| umbra::crypto::Identity::generate_solving(&mut rng, 8))
    });
    g.finish();
}

criterion_group!(benches, raw_aead, cells, layers, identities);
criterion_main!(benches);
