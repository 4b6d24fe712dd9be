use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Raw ChaCha20-Poly1305 seal, in place, across buffer sizes: the baseline
/// every layer figure is compared with, and the data behind the cell size.
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
}

criterion_group!(benches, raw_aead);
criterion_main!(benches);
