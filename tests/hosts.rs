//! umbra across hosts: `umbra node` processes in separate network
//! namespaces, each with its own private address on a virtual bridge, and
//! client machines behind a NAT router (nftables masquerade, inbound only
//! for replies, UDP mappings forgotten after a few seconds of silence). The
//! test talks to every node as its user would, with `umbra put`, `umbra
//! get` and `umbra status` run inside that node's namespace.
//!
//! Two hosts are told their address (`--public-addr`); the others listen on
//! 0.0.0.0 and learn theirs from their peers. Behind the NAT, a client-only
//! node inserts and fetches through circuits, and a node that would relay
//! finds that nobody can dial it and does not pretend to be a relay.
//!
//! Needs iproute2 and nftables, and root or, where the kernel allows them,
//! an unprivileged user namespace (the test then runs itself again inside
//! one); fails saying so when it cannot build its network.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::lab::{Host, Lab};
use rand::RngCore;
use umbra::node::{Reachability, Status};

const PORT: u16 = 7000;
/// The NAT router forgets an idle UDP mapping after this long.
const NAT_UDP_TIMEOUT_S: u32 = 5;

/// A running `umbra node` inside a lab host; killed when dropped. Its log
/// is printed if the test fails.
struct Node {
    name: String,
    ns: String,
    child: Child,
    gateway: String,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- log of {} (last lines) ----", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn umbra() -> &'static str {
    env!("CARGO_BIN_EXE_umbra")
}

/// Start `umbra node` in `host` with these extra arguments; its gateway on
/// the namespace's own loopback.
fn start(lab: &Lab, name: &str, host: &Host, dir: &Path, args: &[String]) -> Node {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    // Beside the data directory, not in it: that one is the node's own.
    let log = dir.join(format!("{name}.log"));
    let mut cmd = lab.command(&host.ns, umbra());
    cmd.arg("node")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http", "127.0.0.1:8080"])
        .args(args)
        .env("RUST_LOG", "info,umbra=debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = cmd.spawn().expect("umbra node starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut gateway = None;
    for _ in 0..4 {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(g) = line.trim().strip_prefix("gateway ") {
            gateway = Some(g.to_string());
            break;
        }
    }
    let gateway = gateway.unwrap_or_else(|| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("{name}: umbra node printed no gateway line; its log:\n{log}")
    });
    Node {
        name: name.to_string(),
        ns: host.ns.clone(),
        child,
        gateway,
        log,
    }
}

/// `umbra status --json` inside the node's namespace.
fn status(lab: &Lab, n: &Node) -> Result<Status, String> {
    let out = lab.exec(
        &n.ns,
        &[umbra(), "status", "--json", "--gateway", &n.gateway],
    )?;
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// `umbra put FILE` inside the node's namespace: the URI.
fn put(lab: &Lab, n: &Node, file: &Path) -> Result<String, String> {
    let file = file.to_str().ok_or("path")?;
    let out = lab.exec(&n.ns, &[umbra(), "put", file, "--gateway", &n.gateway])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `umbra get URI -o FILE` inside the node's namespace: the bytes.
fn get(lab: &Lab, n: &Node, uri: &str, dir: &Path) -> Result<Vec<u8>, String> {
    let out = dir.join(format!("got-{}-{}", n.name, rand::thread_rng().next_u32()));
    let path = out.to_str().ok_or("path")?;
    lab.exec(
        &n.ns,
        &[umbra(), "get", uri, "-o", path, "--gateway", &n.gateway],
    )?;
    std::fs::read(&out).map_err(|e| e.to_string())
}

fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:{PORT}").parse().expect("address")
}

#[test]
fn nodes_on_separate_hosts_and_behind_nat_insert_and_fetch() {
    if common::lab::in_own_namespaces("nodes_on_separate_hosts_and_behind_nat_insert_and_fetch") {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new("net").unwrap_or_else(|e| panic!("cannot build the test network: {e}"));
    let dir = tempfile::tempdir().expect("temp dir");

    // Five hosts on one switch; a NAT router with two machines behind it.
    let hosts: Vec<Host> = (0..5)
        .map(|i| {
            lab.host(&format!("h{i}"), &format!("10.77.0.{}/24", 10 + i))
                .expect("host")
        })
        .collect();
    let router = lab
        .nat_router(
            "nat",
            "10.77.0.254/24",
            "192.168.77.1/24",
            NAT_UDP_TIMEOUT_S,
        )
        .expect("NAT router");
    let behind_client = lab
        .host_behind("c", &router, "192.168.77.2/24", "192.168.77.1")
        .expect("client host");
    let behind_relay = lab
        .host_behind("r", &router, "192.168.77.3/24", "192.168.77.1")
        .expect("second host behind the NAT");

    let boot = format!("{}", addr(&hosts[0].ip));
    let listen = format!("0.0.0.0:{PORT}");
    let s = |x: &str| x.to_string();
    let mut nodes = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut args = vec![s("--listen"), listen.clone()];
        if i < 2 {
            // Told its address.
            args.extend([s("--public-addr"), addr(&h.ip).to_string()]);
        }
        if i > 0 {
            args.extend([s("--bootstrap"), boot.clone()]);
        }
        nodes.push(start(&lab, &format!("h{i}"), h, dir.path(), &args));
        if i == 0 {
            eventually("the first node serves", Duration::from_secs(20), || {
                status(&lab, &nodes[0])
            });
        }
    }
    // A node behind the NAT that would relay if it could be reached.
    let hidden = start(
        &lab,
        "nat-relay",
        &behind_relay,
        dir.path(),
        &[
            s("--listen"),
            listen.clone(),
            s("--bootstrap"),
            boot.clone(),
        ],
    );

    // Every host ends up advertising exactly its own address: two because
    // they were told, three because their peers saw them there and dialled
    // them back.
    let statuses = eventually(
        "every host advertises its address",
        Duration::from_secs(60),
        || {
            let st: Vec<Status> = nodes
                .iter()
                .map(|n| status(&lab, n))
                .collect::<Result<_, _>>()?;
            for (i, (s, h)) in st.iter().zip(&hosts).enumerate() {
                let want = if i < 2 {
                    Reachability::Configured
                } else {
                    Reachability::Learned
                };
                if s.reachability != want || s.addresses != vec![addr(&h.ip)] || !s.relay {
                    return Err(format!(
                        "h{i}: {:?} {:?} relay={}",
                        s.reachability, s.addresses, s.relay
                    ));
                }
            }
            umbra::testnet::ring_correct(&st, umbra::node::Config::default().successors)?;
            Ok(st)
        },
    );
    eprintln!("ring of five hosts correct after {:?}", started.elapsed());
    for s in &statuses {
        assert!(s.listen.ip().is_unspecified(), "{}", s.listen);
    }

    let client = start(
        &lab,
        "nat-client",
        &behind_client,
        dir.path(),
        &[
            s("--client-only"),
            s("--listen"),
            s("0.0.0.0:0"),
            s("--bootstrap"),
            boot.clone(),
        ],
    );
    let c = eventually(
        "the NAT'd client knows relays",
        Duration::from_secs(60),
        || {
            let c = status(&lab, &client)?;
            if c.relay_sample >= 3 {
                Ok(c)
            } else {
                Err(format!("{} relays", c.relay_sample))
            }
        },
    );
    assert_eq!(c.reachability, Reachability::ClientOnly);
    assert!(c.addresses.is_empty(), "a client advertises nothing");
    assert!(!c.relay);

    // A document inserted on a host that learned its address is fetched on
    // the other hosts and behind the NAT.
    let mut doc = vec![0u8; 300_000];
    rand::thread_rng().fill_bytes(&mut doc);
    let file = dir.path().join("doc.bin");
    std::fs::write(&file, &doc).expect("document written");
    // Its relays are found by sampling after the ring formed: wait for
    // enough of them to build a circuit.
    eventually("h2 knows relays", Duration::from_secs(60), || {
        let s = status(&lab, &nodes[2])?;
        if s.relay_sample >= 3 {
            Ok(())
        } else {
            Err(format!("{} relays", s.relay_sample))
        }
    });
    let uri = put(&lab, &nodes[2], &file).expect("insert on h2");
    assert!(uri.starts_with("umbra:chk:"), "{uri}");
    for n in [&nodes[0], &nodes[3], &nodes[4], &client] {
        let got = eventually(
            &format!("fetch on {}", n.name),
            Duration::from_secs(60),
            || get(&lab, n, &uri, dir.path()),
        );
        assert!(got == doc, "{} got other bytes", n.name);
    }

    // The NAT'd client's own insert is fetched on the hosts.
    let note = format!("from behind the NAT, {}", rand::thread_rng().next_u64());
    let note_file = dir.path().join("note.txt");
    std::fs::write(&note_file, &note).expect("note written");
    let note_uri = put(&lab, &client, &note_file).expect("insert behind the NAT");
    for n in [&nodes[1], &nodes[3], &nodes[0]] {
        let got = eventually(
            &format!("fetch on {}", n.name),
            Duration::from_secs(60),
            || get(&lab, n, &note_uri, dir.path()),
        );
        assert_eq!(got, note.as_bytes(), "{}", n.name);
    }

    // Idle for longer than both the NAT's UDP timeout and a link's idle
    // timeout: keep-alives hold the client's links and the NAT mapping
    // open, so its circuit is still there and no new one is built. (Time
    // passing is the point here; there is no condition to wait for.)
    let built = status(&lab, &client).expect("client status").circuits_built;
    std::thread::sleep(Duration::from_secs(u64::from(NAT_UDP_TIMEOUT_S) * 2 + 4));
    let got = get(&lab, &client, &uri, dir.path()).expect("fetch after idling");
    assert!(got == doc);
    let after = status(&lab, &client).expect("client status");
    assert_eq!(
        after.circuits_built, built,
        "the client's circuit did not survive an idle NAT timeout"
    );

    // The node behind the NAT found no address anyone can dial: it says
    // so, advertises nothing, relays nothing and holds no place on the
    // ring, yet fetches like a client.
    let hidden_status = eventually(
        "the NAT'd would-be relay gives up on its address",
        Duration::from_secs(90),
        || {
            let st = status(&lab, &hidden)?;
            if st.reachability == Reachability::Unreachable {
                Ok(st)
            } else {
                Err(format!("{:?}", st.reachability))
            }
        },
    );
    assert!(hidden_status.addresses.is_empty());
    assert!(!hidden_status.relay);
    for n in &nodes {
        let st = status(&lab, n).expect("status");
        assert!(
            !st.successors.contains(&hidden_status.id)
                && st.predecessor.as_deref() != Some(&hidden_status.id),
            "{} counts the unreachable node as a neighbour",
            n.name
        );
    }
    let got = get(&lab, &hidden, &note_uri, dir.path()).expect("fetch behind the NAT");
    assert_eq!(got, note.as_bytes());
    eprintln!("many-host test done in {:?}", started.elapsed());
}

/// The link layer on its own across the NAT: a client behind it dials a
/// host, both go quiet for longer than the NAT remembers an idle UDP
/// mapping, then the host speaks first. With the node's keep-alives the
/// mapping is still there and the client hears it; with keep-alives off
/// (and a link timeout long enough to outlast the silence), the NAT has
/// forgotten the mapping and drops the host's packets. The second half
/// shows the first is the keep-alives' doing.
#[test]
fn keep_alives_hold_a_nat_mapping_open() {
    if common::lab::in_own_namespaces("keep_alives_hold_a_nat_mapping_open") {
        return;
    }
    let mut lab = Lab::new("ka").unwrap_or_else(|e| panic!("cannot build the test network: {e}"));
    let host = lab.host("s", "10.78.0.10/24").expect("host");
    let router = lab
        .nat_router("nat", "10.78.0.254/24", "192.168.78.1/24", 12)
        .expect("NAT router");
    let client = lab
        .host_behind("c", &router, "192.168.78.2/24", "192.168.78.1")
        .expect("client host");
    // Longer than the NAT remembers; the node's keep-alives (every 7.5 s
    // by default) come within it.
    let idle = Duration::from_secs(16);
    for keep_alive in [true, false] {
        let heard = link_across_nat(&lab, &host, &client, keep_alive, idle);
        assert_eq!(
            heard,
            keep_alive,
            "keep-alives {}: the host's message after {idle:?} of silence {} the client",
            if keep_alive { "on" } else { "off" },
            if heard { "reached" } else { "did not reach" }
        );
    }
}

/// Run one end of [`keep_alives_hold_a_nat_mapping_open`] in a
/// namespace: this test binary runs itself there, selecting this
/// function, with its role in the environment.
fn link_end(lab: &Lab, host: &Host, role: &str, envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = lab.command(&host.ns, exe);
    cmd.args([
        "--exact",
        "link_end_in_namespace",
        "--ignored",
        "--nocapture",
    ])
    .env("UMBRA_LAB_ROLE", role)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("link end starts")
}

/// The next line from a link end that starts with `prefix`, without it.
fn line_from(
    child: &mut Child,
    reader: &mut Option<BufReader<std::process::ChildStdout>>,
    prefix: &str,
) -> String {
    let r = reader.get_or_insert_with(|| BufReader::new(child.stdout.take().expect("stdout")));
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("link end exited before saying {prefix:?}");
        }
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

fn link_across_nat(
    lab: &Lab,
    host: &Host,
    client: &Host,
    keep_alive: bool,
    idle: Duration,
) -> bool {
    use std::io::Write;
    let ka = if keep_alive { "on" } else { "off" };
    let listen = format!("{}:{}", host.ip, PORT + 1);
    let mut server = link_end(
        lab,
        host,
        "server",
        &[
            ("UMBRA_LAB_LISTEN", listen.clone()),
            ("UMBRA_LAB_KEEPALIVE", ka.into()),
        ],
    );
    let mut server_out = None;
    let id = line_from(&mut server, &mut server_out, "id ");
    let wait = idle + Duration::from_secs(5);
    let mut client_end = link_end(
        lab,
        client,
        "client",
        &[
            ("UMBRA_LAB_SERVER", listen),
            ("UMBRA_LAB_ID", id),
            ("UMBRA_LAB_KEEPALIVE", ka.into()),
            ("UMBRA_LAB_WAIT_MS", wait.as_millis().to_string()),
        ],
    );
    let mut client_out = None;
    line_from(&mut client_end, &mut client_out, "linked");
    line_from(&mut server, &mut server_out, "linked");
    // Silence on the link: what is being tested is what it does to the NAT.
    std::thread::sleep(idle);
    let mut stdin = server.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("server told");
    stdin.flush().expect("flushed");
    let heard = line_from(&mut client_end, &mut client_out, "heard ") == "yes";
    drop(stdin);
    let _ = client_end.wait();
    let _ = server.kill();
    let _ = server.wait();
    heard
}

/// Not a test by itself: one end of a link, run by
/// [`keep_alives_hold_a_nat_mapping_open`] inside a namespace.
#[test]
#[ignore = "an end of keep_alives_hold_a_nat_mapping_open, run by it inside a namespace"]
fn link_end_in_namespace() {
    use tokio::sync::mpsc;
    use umbra::link::{self, Accepted, Endpoint};
    use umbra::wire::{Frame, NodeId, PeerMessage};

    let role = std::env::var("UMBRA_LAB_ROLE")
        .expect("run by keep_alives_hold_a_nat_mapping_open, which sets UMBRA_LAB_ROLE");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let cfg = if env("UMBRA_LAB_KEEPALIVE") == "on" {
        umbra::node::Config::default().link()
    } else {
        link::Config {
            idle_timeout: Duration::from_secs(120),
            keep_alive: Duration::from_secs(3600),
            ..link::Config::default()
        }
    };
    /// The next peer message on the link.
    async fn next(rx: &mut mpsc::Receiver<link::Event>) -> Option<PeerMessage> {
        loop {
            match rx.recv().await {
                Some(link::Event::Frame {
                    frame: Frame::Message(m),
                    ..
                }) => return Some(m),
                Some(link::Event::Frame { .. }) => {}
                _ => return None,
            }
        }
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let identity = umbra::crypto::Identity::generate(&mut rand::rngs::OsRng);
        let me = identity.id();
        let (tx, mut rx) = mpsc::channel(16);
        if role == "server" {
            let addr: SocketAddr = env("UMBRA_LAB_LISTEN").parse().expect("address");
            let ep = Endpoint::bind(&identity, addr, true, cfg.clone()).expect("bind");
            println!("id {}", me.to_hex());
            let incoming = ep.incoming().await.expect("a connection");
            let Ok(Accepted::Link(l)) = ep.complete(incoming).await else {
                panic!("not a link");
            };
            let h = l.spawn(&cfg, tx);
            assert_eq!(next(&mut rx).await, Some(PeerMessage::Ping { nonce: 1 }));
            h.send(Frame::Message(PeerMessage::Pong { nonce: 1 }))
                .expect("sent");
            println!("linked");
            let mut go = String::new();
            tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go))
                .await
                .expect("stdin")
                .expect("go");
            h.send(Frame::Message(PeerMessage::Ping { nonce: 2 }))
                .expect("sent");
            // Stay up until the test is done with us.
            tokio::time::sleep(Duration::from_secs(60)).await;
        } else {
            let server: SocketAddr = env("UMBRA_LAB_SERVER").parse().expect("address");
            let id = NodeId::from_hex(&env("UMBRA_LAB_ID")).expect("id");
            let wait = Duration::from_millis(env("UMBRA_LAB_WAIT_MS").parse().expect("ms"));
            let ep = Endpoint::bind(
                &identity,
                "0.0.0.0:0".parse().expect("address"),
                false,
                cfg.clone(),
            )
            .expect("bind");
            let l = ep
                .dial(server, Some(id))
                .await
                .expect("dial across the NAT");
            let h = l.spawn(&cfg, tx);
            h.send(Frame::Message(PeerMessage::Ping { nonce: 1 }))
                .expect("sent");
            assert_eq!(next(&mut rx).await, Some(PeerMessage::Pong { nonce: 1 }));
            println!("linked");
            let heard = tokio::time::timeout(wait, next(&mut rx)).await;
            let yes = matches!(heard, Ok(Some(PeerMessage::Ping { nonce: 2 })));
            println!("heard {}", if yes { "yes" } else { "no" });
            drop(h);
        }
    });
}
