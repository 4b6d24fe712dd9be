//! Replays every fuzz corpus file and every past crash through the fuzz
//! target bodies, so CI exercises the parsers and the layers with the
//! fuzzer's inputs and checks without running the fuzzer.
//!
//! `UMBRA_WRITE_SEEDS=1 cargo test --test fuzz_corpus` rewrites the seed
//! files (one valid encoding of every message kind) before checking.

mod common;

#[path = "../fuzz/fuzz_targets/bodies.rs"]
#[allow(dead_code)]
mod bodies;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::samples;
use umbra::wire::{decode_frame, encode_frame, Cell, Frame, PeerMessage, RelayMessage};

fn files_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    out.sort();
    out
}

/// Selector bytes of the wire target (see bodies.rs).
const CELL: u8 = 0;
const PEER: u8 = 1;
const RELAY: u8 = 2;
const FRAMES: u8 = 3;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: String, selector: u8, bytes: Vec<u8>| {
        let mut v = vec![selector];
        v.extend(bytes);
        out.push((name, v));
    };
    for c in samples::cells() {
        add(
            format!("seed-cell-{:?}", c.command()),
            CELL,
            c.encode().unwrap(),
        );
    }
    for m in samples::relay_messages() {
        add(
            format!("seed-relay-{:?}", m.command()),
            RELAY,
            m.encode().unwrap(),
        );
    }
    let mut stream = Vec::new();
    for m in samples::peer_messages() {
        let bytes = m.encode().unwrap();
        add(format!("seed-peer-{:?}", m.kind()), PEER, bytes);
        stream.extend(encode_frame(&Frame::Message(m)).unwrap());
    }
    stream.extend(encode_frame(&Frame::Cell(samples::cells().remove(1))).unwrap());
    add("seed-frames".into(), FRAMES, stream);
    out
}

#[test]
fn the_wire_corpus_replays_cleanly_and_covers_every_kind() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire");
    if std::env::var_os("UMBRA_WRITE_SEEDS").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            fs::write(dir.join(name.replace("::", "-")), bytes).unwrap();
        }
    }
    let mut kinds = BTreeSet::new();
    let files = files_in("fuzz/corpus/wire");
    for path in &files {
        let data = fs::read(path).unwrap();
        bodies::wire(&data);
        let Some((&sel, input)) = data.split_first() else {
            continue;
        };
        match sel % 5 {
            CELL => {
                let mut cell = input.to_vec();
                cell.resize(umbra::wire::CELL_LEN, 0);
                if let Ok(c) = Cell::decode(&cell) {
                    kinds.insert(format!("cell {:?}", c.command()));
                }
            }
            PEER => {
                if let Ok(m) = PeerMessage::decode(input) {
                    kinds.insert(format!("peer {:?}", m.kind()));
                }
            }
            RELAY => {
                if let Ok(m) = RelayMessage::decode(input) {
                    kinds.insert(format!("relay {:?}", m.command()));
                }
            }
            FRAMES => {
                if let Ok(Some(_)) = decode_frame(input) {
                    kinds.insert("frames".to_string());
                }
            }
            _ => {}
        }
    }
    let wanted: BTreeSet<String> = samples::cells()
        .iter()
        .map(|c| format!("cell {:?}", c.command()))
        .chain(
            samples::relay_messages()
                .iter()
                .map(|m| format!("relay {:?}", m.command())),
        )
        .chain(
            samples::peer_messages()
                .iter()
                .map(|m| format!("peer {:?}", m.kind())),
        )
        .chain(["frames".to_string()])
        .collect();
    let missing: Vec<_> = wanted.difference(&kinds).collect();
    assert!(missing.is_empty(), "no seed in the corpus for {missing:?}");
}

#[test]
fn the_onion_corpus_replays_cleanly() {
    let files = files_in("fuzz/corpus/onion");
    assert!(!files.is_empty(), "the onion corpus is empty");
    for path in files {
        bodies::onion(&fs::read(path).unwrap());
    }
}

#[test]
fn past_crashes_stay_fixed() {
    for path in files_in("tests/regressions/wire") {
        bodies::wire(&fs::read(path).unwrap());
    }
}

#[test]
fn the_user_corpus_replays_cleanly() {
    let files = files_in("fuzz/corpus/user");
    let selectors: BTreeSet<u8> = files
        .iter()
        .map(|p| {
            let data = fs::read(p).unwrap();
            bodies::user(&data);
            data.first().copied().unwrap_or(0) % 4
        })
        .collect();
    assert_eq!(
        selectors,
        BTreeSet::from([
            bodies::USER_SOCKS,
            bodies::USER_URI,
            bodies::USER_PATH,
            bodies::USER_ROOT
        ]),
        "a seed for every part of the user target"
    );
}
