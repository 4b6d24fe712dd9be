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

/// Replay every file of `fuzz/corpus/NAME` through `body`; with
/// `UMBRA_WRITE_SEEDS` set, write `seeds` there first. The corpus must
/// hold every seed's part (the first byte of each, modulo `parts`).
fn replay(name: &str, body: fn(&[u8]), seeds: Vec<(&str, Vec<u8>)>, parts: Option<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    if std::env::var_os("UMBRA_WRITE_SEEDS").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in &seeds {
            fs::write(dir.join(format!("seed-{file}")), bytes).unwrap();
        }
    }
    let files = files_in(&format!("fuzz/corpus/{name}"));
    assert!(!files.is_empty(), "the {name} corpus is empty");
    let mut seen = BTreeSet::new();
    for path in files {
        let data = fs::read(path).unwrap();
        body(&data);
        if let (Some(p), Some(&b)) = (parts, data.first()) {
            seen.insert(b % p);
        }
    }
    if let Some(p) = parts {
        assert_eq!(seen, (0..p).collect(), "a seed for every part of {name}");
    }
}

fn with(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(bytes);
    v
}

#[test]
fn the_documents_corpus_replays_cleanly() {
    use umbra::keys::encode_document;
    let small = encode_document("text/plain", b"a small document").unwrap();
    let large_body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let large = encode_document("application/octet-stream", &large_body).unwrap();
    let (key, block) = large.blocks[0].clone();
    let mut keyed = key.routing.0.to_vec();
    keyed.extend_from_slice(&key.decrypt);
    keyed.extend_from_slice(&block);
    let mut enc = vec![10u8];
    enc.extend_from_slice(b"text/plain");
    enc.extend_from_slice(b"hello");
    let cut = |root: &[u8]| {
        let mut v = vec![u8::try_from(root.len().div_ceil(8)).unwrap_or(255)];
        v.extend_from_slice(root);
        v
    };
    replay(
        "documents",
        bodies::documents,
        vec![
            ("inline-root", with(bodies::DOC_ROOT, &cut(&small.root))),
            ("manifest-root", with(bodies::DOC_ROOT, &cut(&large.root))),
            ("encode", with(bodies::DOC_ENCODE, &enc)),
            ("block", with(bodies::DOC_BLOCK, &keyed)),
        ],
        Some(3),
    );
}

#[test]
fn the_descriptor_corpus_replays_cleanly() {
    let mut d = 1_700_000_000u64.to_be_bytes().to_vec();
    d.extend(samples::descriptor().encode().unwrap());
    replay("descriptor", bodies::descriptor, vec![("relay", d)], None);
}

#[test]
fn the_config_corpus_replays_cleanly() {
    let text = "data_dir = \"umbra-data\"\nlisten = \"127.0.0.1:7000\"\nbootstrap = [\"127.0.0.1:7001\"]\nhttp = \"127.0.0.1:8080\"\nreplicas = 3\nsuccessors = 8\nstore_bytes = 1073741824\n";
    replay(
        "config",
        bodies::config,
        vec![("node", text.as_bytes().to_vec())],
        None,
    );
}

#[test]
fn the_http_corpus_replays_cleanly() {
    let same = "/umbra:chk:AAAA/%7Eindex.html?uri=umbra%3Achk%3Ax\n127.0.0.1:8080\nhttp://127.0.0.1:8080\nhttp://127.0.0.1:8080/\nsame-origin";
    let cross = "/?uri=/evil.example\n127.0.0.1:8080\nhttp://evil.example\nhttp://evil.example/page\ncross-site";
    replay(
        "http",
        bodies::http,
        vec![
            ("same-site", same.as_bytes().to_vec()),
            ("cross-site", cross.as_bytes().to_vec()),
            ("range", b"bytes=100-199\nlocalhost:8080".to_vec()),
        ],
        None,
    );
}

#[test]
fn the_filter_corpus_replays_cleanly() {
    let page = "<!doctype html><title>t</title><base href=\"http://example.org/\">\
                <a href=\"http://example.org/\" onclick=\"x()\">out</a><a href=\"two.html\">in</a>\
                <img srcset=\"a.png 1x, //example.org/b.png 2x\"><script>x()</script>\
                <form action=\"//example.org/f\"><input name=q></form>\
                <style>@import url(http://example.org/s.css); p{color:red}</style>\
                <div style=\"background:url(&#104;ttp://example.org/d.png)\">d</div>";
    let svg = "<?xml version=\"1.0\"?><?xml-stylesheet href=\"http://example.org/s.css\"?>\
               <svg xmlns=\"http://www.w3.org/2000/svg\"><style><![CDATA[@import 'x.css';]]></style>\
               <a href=\"http://example.org/\"><rect/></a><s:script>x()</s:script></svg>";
    let sheet = "@import 'http://example.org/a.css'; a{background:u\\72l(//example.org/b.png)}\
                 b{c:image-set('x.png' 1x, 'http://example.org/y.png' 2x)} d{e:url(umbra:chk:K)}";
    replay(
        "filter",
        bodies::filter,
        vec![
            ("page", page.as_bytes().to_vec()),
            ("svg", svg.as_bytes().to_vec()),
            ("sheet", sheet.as_bytes().to_vec()),
            (
                "refresh",
                b"0; url='http://example.org/'\n1x, a.png 2x".to_vec(),
            ),
        ],
        None,
    );
}

#[test]
fn the_socks_corpus_replays_cleanly() {
    // A CONNECT to a name, port 80, without and with credentials.
    let mut plain = vec![5, 1, 0, 5, 1, 0, 3, 8];
    plain.extend_from_slice(b"doc.umbra");
    plain[7] = 9;
    plain.extend_from_slice(&[0, 80]);
    let mut auth = vec![5, 1, 2, 1, 1, b'a', 1, b'b', 5, 1, 0, 3, 9];
    auth.extend_from_slice(b"doc.umbra");
    auth.extend_from_slice(&[0, 80]);
    replay(
        "socks",
        |d| {
            bodies::user(&with(bodies::USER_SOCKS, d));
        },
        vec![("plain", with(4, &plain)), ("auth", with(4, &auth))],
        None,
    );
}

#[test]
fn the_circuits_corpus_replays_cleanly() {
    use umbra::wire::{KeyKind, RelayMessage, RoutingKey, StreamId};
    let get = RelayMessage::Get {
        stream: StreamId(1),
        kind: KeyKind::CHK,
        key: RoutingKey([9; 32]),
    }
    .encode()
    .unwrap();
    // Op 1: a sealed relay message (its length in fours), op 2: its
    // answer, op 3: a minute passes.
    let mut ops = vec![1, u8::try_from(get.len().div_ceil(4)).unwrap()];
    let mut padded = get.clone();
    padded.resize(get.len().div_ceil(4) * 4, 0);
    ops.extend_from_slice(&padded);
    ops.extend_from_slice(&[2, 60, 0, 3, 61]);
    // A raw cell from the other peer: a CREATE for an id it may not use.
    let mut raw = vec![0x80];
    raw.extend(samples::cells()[1].encode().unwrap());
    replay(
        "circuits",
        bodies::circuits,
        vec![("get", ops), ("raw", raw)],
        None,
    );
}

#[test]
fn the_files_corpus_replays_cleanly() {
    use umbra::circuit::guards::Guards;
    use umbra::node::core::onion::OnionKeys;
    let onion = OnionKeys {
        made: 1_700_000_000,
        current: x25519_dalek::StaticSecret::from([7u8; 32]),
        previous: Some(x25519_dalek::StaticSecret::from([8u8; 32])),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    drop(
        umbra::store::Store::open(
            &path,
            umbra::store::Limits::default(),
            umbra::keys::verify_block,
            umbra::keys::supersedes,
        )
        .unwrap(),
    );
    let store = fs::read(&path).unwrap();
    replay(
        "files",
        bodies::files,
        vec![
            (
                "guards",
                with(bodies::FILE_GUARDS, &Guards::default().encode()),
            ),
            ("onion", with(bodies::FILE_ONION, &onion.encode())),
            ("identity", with(bodies::FILE_IDENTITY, &[9u8; 64])),
            ("store", with(bodies::FILE_STORE, &store)),
        ],
        Some(4),
    );
}

#[test]
fn the_cli_corpus_replays_cleanly() {
    let args = |a: &[&str]| a.join("\0").into_bytes();
    replay(
        "cli",
        bodies::cli,
        vec![
            (
                "node",
                args(&[
                    "node",
                    "--listen",
                    "127.0.0.1:7000",
                    "--bootstrap",
                    "127.0.0.1:7001",
                    "--http",
                    "--hops",
                    "3",
                ]),
            ),
            (
                "get",
                args(&[
                    "get",
                    "umbra:ksk:hello",
                    "--gateway",
                    "http://127.0.0.1:8080",
                ]),
            ),
            ("put", args(&["put", "-", "--ssk", "umbra:ksk:hello"])),
            ("status", args(&["status", "--json"])),
        ],
        None,
    );
}

#[test]
fn the_certificate_corpus_replays_cleanly() {
    let identity = umbra::crypto::Identity::from_secret_bytes(&[5u8; 64]);
    let (cert, _) = umbra::link::certificate(&identity).unwrap();
    assert_eq!(umbra::link::peer_id(&cert), Some(identity.id()));
    replay(
        "certificate",
        bodies::certificate,
        vec![
            ("any", with(0, &cert)),
            ("called", with(1, &cert)),
            ("another", with(2, &cert)),
        ],
        None,
    );
}
