//! The `umbra` binary as a person runs it: `umbra node` processes on
//! loopback, read through `umbra status --json`, stopped with SIGTERM or
//! killed with SIGKILL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::{eventually, ring_correct, start, status};

use rand::RngCore;
use umbra::keys::chk_routing_key;
use umbra::node::{self, Bootstrap, Config};
use umbra::ring::in_half_open;
use umbra::store::{Limits, Store};
use umbra::wire::{KeyKind, NodeId, RoutingKey};

#[test]
fn three_processes_form_a_ring_and_sigterm_leaves_it_cleanly() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), None, None);
    let b = start(dirs[1].path(), None, Some(a.listen));
    let c = start(dirs[2].path(), None, Some(a.listen));
    eventually("ring of three", Duration::from_secs(30), || {
        ring_correct(&[&a.gateway, &b.gateway, &c.gateway])
    });

    // SIGTERM: the node leaves the ring and exits 0.
    let mut b = b;
    let pid = b.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let start_wait = Instant::now();
    let code = loop {
        if let Some(code) = b.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code:?}");
    eventually("ring of two", Duration::from_secs(10), || {
        ring_correct(&[&a.gateway, &c.gateway])
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_block() {
    let pdir = tempfile::tempdir().unwrap();
    let p = start(pdir.path(), None, None);
    let gateway = p.gateway.clone();
    let p_id = tokio::task::spawn_blocking(move || status(&gateway))
        .await
        .unwrap()
        .expect("status");
    let p_id = NodeId::from_hex(&p_id.id).expect("hex id");

    // An in-process node joins it and stores blocks through the ring. The
    // successor that stores a block acknowledges it only once it is on its
    // disk, and `store_block` says which node that was.
    let tdir = tempfile::tempdir().unwrap();
    let t = node::start(Config {
        data_dir: tdir.path().to_path_buf(),
        bootstrap: vec![Bootstrap {
            addr: p.listen,
            id: Some(p_id),
        }],
        stabilize_ms: 100,
        link_timeout_ms: 1500,
        ..Config::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !t
        .status()
        .await
        .unwrap()
        .successors
        .contains(&p_id.to_hex())
    {
        assert!(Instant::now() < deadline, "never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Only blocks whose key the process owns, (T, P] on the ring, however
    // small its share of the ring happens to be.
    let mut rng = common::seeded_rng("kill9");
    let mut owned_by_p = || loop {
        let mut block = vec![0u8; 4096];
        rng.fill_bytes(&mut block);
        let key = chk_routing_key(&block);
        if in_half_open(&key.0, &t.id.0, &p_id.0) {
            return (key, block);
        }
    };
    let mut acked_by_p: Vec<RoutingKey> = Vec::new();
    let mut p = p;
    for _ in 0..1000 {
        let (key, block) = owned_by_p();
        if t.store_block(KeyKind::CHK, key, block).await == Ok(p_id) {
            acked_by_p.push(key);
        }
        if acked_by_p.len() == 150 {
            break;
        }
    }
    assert_eq!(acked_by_p.len(), 150, "the process stopped acknowledging");
    // SIGKILL in the middle of the stream of writes: one more store is in
    // flight while the process dies.
    let (key, block) = owned_by_p();
    let kill = async {
        tokio::task::yield_now().await;
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    };
    let (last, ()) = tokio::join!(t.store_block(KeyKind::CHK, key, block), kill);
    if last == Ok(p_id) {
        acked_by_p.push(key);
    }
    t.crash().await;

    // The store file opens cleanly and holds every acknowledged block.
    let store = Store::open(
        &pdir.path().join("data/store.redb"),
        Limits::default(),
        umbra::keys::verify_block,
        umbra::keys::supersedes,
    )
    .expect("the store survives SIGKILL");
    for key in &acked_by_p {
        assert!(
            store.get(KeyKind::CHK, key).unwrap().is_some(),
            "an acknowledged block was lost"
        );
    }
    let stored = store.stats().unwrap().blocks_stored;
    drop(store);

    // Restarted on its data dir: same id, same blocks.
    let again = start(pdir.path(), None, None);
    let gateway = again.gateway.clone();
    let s = tokio::task::spawn_blocking(move || status(&gateway))
        .await
        .unwrap()
        .expect("status after restart");
    assert_eq!(s.id, p_id.to_hex());
    assert_eq!(s.blocks_stored, stored);
    assert!(stored >= 150);
}
