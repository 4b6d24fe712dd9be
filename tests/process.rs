//! The `umbra` binary as a person runs it: `umbra node` processes on
//! loopback, read through `umbra status --json`, stopped with SIGTERM or
//! killed with SIGKILL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::procs::{eventually, ring_correct, start, status, umbra};

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

/// A node killed with SIGKILL in the middle of work and started again on
/// its data dir: its store opens with every block it had counted as
/// stored, it rejoins, and the documents are whole.
struct Victim {
    index: usize,
    listen: std::net::SocketAddr,
    stored: u64,
}

fn kill_9(procs: &mut [Option<common::procs::Proc>], index: usize) -> Victim {
    let p = procs[index].as_mut().expect("a running node");
    // Every block the status counts has been committed to disk: it is a
    // lower bound on what the store must hold after the kill.
    let stored = status(&p.gateway)
        .expect("status before the kill")
        .blocks_stored;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let listen = p.listen;
    procs[index] = None;
    Victim {
        index,
        listen,
        stored,
    }
}

fn restart(
    procs: &mut [Option<common::procs::Proc>],
    dirs: &[tempfile::TempDir],
    v: &Victim,
    bootstrap: std::net::SocketAddr,
) {
    let p = start(dirs[v.index].path(), Some(v.listen), Some(bootstrap));
    let s = status(&p.gateway).expect("the store opens and the node answers");
    assert!(
        s.blocks_stored >= v.stored,
        "node {}: {} blocks after the restart, {} counted before the kill",
        v.index,
        s.blocks_stored,
        v.stored
    );
    procs[v.index] = Some(p);
}

fn all_gateways(procs: &[Option<common::procs::Proc>]) -> Vec<String> {
    procs.iter().flatten().map(|p| p.gateway.clone()).collect()
}

#[test]
fn kill_9_during_an_insert_a_fetch_and_replication_loses_nothing() {
    // Enough nodes that an exit holds only some of the blocks itself (5
    // copies of each) and forwards requests for the rest.
    const N: usize = 8;
    let dirs: Vec<_> = (0..N).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start(dirs[0].path(), None, None);
    let boot = first.listen;
    let mut procs: Vec<Option<common::procs::Proc>> = vec![Some(first)];
    for d in &dirs[1..] {
        procs.push(Some(start(d.path(), None, Some(boot))));
    }
    let ring = |procs: &[Option<common::procs::Proc>], when: &str| {
        let g = all_gateways(procs);
        let g: Vec<&str> = g.iter().map(String::as_str).collect();
        eventually(
            &format!("a correct ring {when}"),
            Duration::from_secs(120),
            || ring_correct(&g),
        );
        // And relays enough in every node's sample for circuits that
        // leave one out.
        eventually(
            &format!("relay samples {when}"),
            Duration::from_secs(60),
            || {
                for gw in &g {
                    let s = status(gw)?;
                    if s.relay_sample < N - 2 {
                        return Err(format!("a sample of {}", s.relay_sample));
                    }
                }
                Ok(())
            },
        );
    };
    ring(&procs, "at the start");
    let mut rng = common::seeded_rng("kill_9_during");
    let gateway = |procs: &[Option<common::procs::Proc>], i: usize| {
        procs[i].as_ref().expect("running").gateway.clone()
    };

    // 1. During an insert: a 24 MiB document through node 1's gateway,
    // node 2 killed while the insert runs.
    let mut big = vec![0u8; 24 << 20];
    rng.fill_bytes(&mut big);
    let file = dirs[1].path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let mut put = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["put", "--gateway", &gateway(&procs, 1)])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = status(&gateway(&procs, 2)).unwrap().blocks_stored;
    eventually(
        "node 2 storing the insert's blocks",
        Duration::from_secs(60),
        || {
            if let Some(code) = put.try_wait().unwrap() {
                let mut why = String::new();
                std::io::Read::read_to_string(put.stderr.as_mut().unwrap(), &mut why).unwrap();
                panic!("the insert ended ({code}) before the kill: {why}");
            }
            let now = status(&gateway(&procs, 2))?.blocks_stored;
            if now >= before + 20 {
                Ok(())
            } else {
                Err(format!("{now} blocks"))
            }
        },
    );
    assert!(
        put.try_wait().unwrap().is_none(),
        "the insert ended before the kill: the test needs a larger document"
    );
    let v = kill_9(&mut procs, 2);
    let out = put.wait_with_output().unwrap();
    let uri = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        // A failure is allowed if it says what failed; the document is
        // then inserted again once the node is back.
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(!why.trim().is_empty(), "a failed insert says why");
        String::new()
    };
    restart(&mut procs, &dirs, &v, boot);
    ring(&procs, "after the kill during the insert");
    let uri = if uri.is_empty() {
        let out = umbra(&[
            "put",
            "--gateway",
            &gateway(&procs, 1),
            file.to_str().unwrap(),
        ])
        .expect("the insert again, with the node back");
        String::from_utf8_lossy(&out).trim().to_string()
    } else {
        uri
    };
    let fetched = dirs[3].path().join("fetched.bin");
    let get = |procs: &[Option<common::procs::Proc>], from: usize| {
        umbra(&[
            "get",
            "--gateway",
            &gateway(procs, from),
            "-o",
            fetched.to_str().unwrap(),
            &uri,
        ])
        .map(|_| std::fs::read(&fetched).unwrap())
    };
    assert!(get(&procs, 3).expect("fetched after the restart") == big);

    // 2. During a fetch: node 4 killed while node 3 fetches.
    let forwarded = |procs: &[Option<common::procs::Proc>]| -> Result<u64, String> {
        all_gateways(procs)
            .iter()
            .map(|g| status(g).map(|s| s.requests_forwarded))
            .sum()
    };
    let before = forwarded(&procs).unwrap();
    let mut fetch = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["get", "--gateway", &gateway(&procs, 3), "-o"])
        .arg(dirs[3].path().join("during.bin"))
        .arg(&uri)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The fetch is under way once its first bytes are written (to
    // `during.bin.part`, renamed when whole). How many of its requests
    // the exit forwards depends on what it holds or cached: reported, not
    // waited for.
    let part = dirs[3].path().join("during.bin.part");
    eventually("the fetch under way", Duration::from_secs(60), || {
        if let Some(code) = fetch.try_wait().unwrap() {
            panic!("the fetch ended ({code}) before the kill");
        }
        let written = std::fs::metadata(&part).map_or(0, |m| m.len());
        if written >= 1 << 20 {
            Ok(())
        } else {
            Err(format!(
                "{written} bytes written, {} requests forwarded",
                forwarded(&procs)? - before
            ))
        }
    });
    assert!(
        fetch.try_wait().unwrap().is_none(),
        "the fetch ended before the kill: the test needs a larger document"
    );
    let v = kill_9(&mut procs, 4);
    let out = fetch.wait_with_output().unwrap();
    if out.status.success() {
        assert!(std::fs::read(dirs[3].path().join("during.bin")).unwrap() == big);
    } else {
        assert!(!out.stderr.is_empty(), "a failed fetch says why");
    }
    restart(&mut procs, &dirs, &v, boot);
    ring(&procs, "after the kill during the fetch");
    assert!(get(&procs, 5).expect("fetched after the second restart") == big);

    // 3. During replication: node 5 killed, which sends its blocks' other
    // holders copying them to new ones; node 0 killed while they do. (The
    // new holders may hold some already, copies from while nodes 2 and 4
    // were down: what shows replication at work is replicas taken, not
    // blocks stored.)
    let taken = |procs: &[Option<common::procs::Proc>]| -> Result<u64, String> {
        all_gateways(procs)
            .iter()
            .map(|g| status(g).map(|s| s.replicas_taken))
            .sum()
    };
    let v5 = kill_9(&mut procs, 5);
    let before = taken(&procs).unwrap();
    eventually("replication under way", Duration::from_secs(60), || {
        let now = taken(&procs)?;
        if now >= before + 20 {
            Ok(())
        } else {
            Err(format!("{} replicas taken since the kill", now - before))
        }
    });
    let v0 = kill_9(&mut procs, 0);
    let boot = procs[1].as_ref().unwrap().listen;
    restart(&mut procs, &dirs, &v5, boot);
    restart(&mut procs, &dirs, &v0, boot);
    ring(&procs, "after the kills during replication");
    assert!(get(&procs, 2).expect("fetched after the third restart") == big);
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_node_keeps_serving_what_it_holds() {
    // Node 3's data dir on a 6 MiB tmpfs; the others on the real disk.
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let small = common::procs::Tmpfs::mount(dirs[3].path(), "6m")
        .unwrap_or_else(|e| panic!("the full-disk test cannot set up its disk: {e}"));
    let log = dirs[0].path().join("full-node.log");
    eprintln!("full disk: node 3 logs to {}", log.display());
    let first = start(dirs[0].path(), None, None);
    let boot = first.listen;
    let mut procs = vec![first];
    for d in &dirs[1..3] {
        procs.push(start(d.path(), None, Some(boot)));
    }
    procs.push(common::procs::start_logged(
        dirs[3].path(),
        None,
        Some(boot),
        common::procs::FAST,
        Some(&log),
    ));
    let g: Vec<String> = procs.iter().map(|p| p.gateway.clone()).collect();
    let g: Vec<&str> = g.iter().map(String::as_str).collect();
    eventually("a ring of four", Duration::from_secs(60), || {
        ring_correct(&g)
    });
    eventually("relay samples", Duration::from_secs(60), || {
        for gw in &g {
            if status(gw)?.relay_sample < 3 {
                return Err("a sample still filling".into());
            }
        }
        Ok(())
    });

    // Insert 256 KiB documents until node 3's disk is full: each puts
    // some 15 blocks on every node (four nodes, five copies).
    let mut rng = common::seeded_rng("full_disk");
    let mut inserted: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failures = Vec::new();
    for i in 0..40 {
        let mut d = vec![0u8; 256 << 10];
        rng.fill_bytes(&mut d);
        let f = dirs[0].path().join(format!("d{i}"));
        std::fs::write(&f, &d).unwrap();
        match umbra(&["put", "--gateway", g[0], f.to_str().unwrap()]) {
            Ok(out) => inserted.push((String::from_utf8_lossy(&out).trim().to_string(), d)),
            Err(e) => failures.push(e),
        }
    }
    let full = status(g[3]).expect("the node with the full disk still answers");
    assert!(
        full.store_write_failures > 0,
        "node 3 never found its disk full"
    );
    // Its log says so, in words, and once: not a line per block.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let said = text
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .count();
    assert_eq!(
        said,
        1,
        "node 3's log should say once that its disk is full ({} writes failed): {}",
        full.store_write_failures,
        text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    );
    eprintln!(
        "full disk: {} inserted, {} failed ({:?}); node 3 holds {} blocks",
        inserted.len(),
        failures.len(),
        failures.first(),
        full.blocks_stored
    );
    // A failed insert says what failed, in words a user can act on.
    for e in &failures {
        assert!(!e.is_empty(), "an insert failed without a reason");
    }
    assert!(inserted.len() >= 5, "hardly anything went in: {failures:?}");
    // Every document acknowledged is whole, and node 3 keeps serving:
    // its own gateway fetches them too, and its store kept its blocks.
    for (uri, data) in &inserted {
        for gw in [g[1], g[3]] {
            let out = dirs[1].path().join("got");
            umbra(&["get", "--gateway", gw, "-o", out.to_str().unwrap(), uri])
                .unwrap_or_else(|e| panic!("{uri} through {gw}: {e}"));
            assert!(std::fs::read(&out).unwrap() == *data);
        }
    }
    let after = status(g[3]).unwrap();
    assert!(after.blocks_stored >= full.blocks_stored);
    drop(procs);
    if std::env::var_os("UMBRA_SHOW_LOG").is_some() {
        eprintln!("{text}");
    }
    drop(small);
}
