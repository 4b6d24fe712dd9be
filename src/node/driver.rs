//! The real node's driver: a tokio task that feeds the core and carries
//! out what it asks, on QUIC links, timers, the datastore's thread and the
//! local API. It decides nothing about the protocol.
//!
//! Around the one task: an accept loop, a task per dial and per probe, two
//! tasks per link (reader and writer, in `link`, which also decode and
//! encode frames off this task), and the datastore's thread (`worker`).
//! Test harnesses can watch what the node receives ([`Hooks::observer`])
//! and rewrite what it sends ([`Hooks::tap`]): a Byzantine node in a test
//! is the honest core behind a tap, never a switch in the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use tokio::sync::{mpsc, oneshot, watch};

use super::api::Command;
use super::core::{Action, CloseReason, Core, DialId, LinkId, OpId, Reply, StoreResult};
use super::{load_identity, worker, Config, Error, NodeHandle};
use crate::link::{self, close, Accepted, Endpoint, Link};
use crate::observe::{Observation, Observer};
use crate::store::Store;
use crate::token::{Token, Tokens};
use crate::wire::{Frame, NodeId};

/// Rewrites the frames a node sends, for test harnesses: return `None` to
/// drop one. Runs on the driver's task: keep it quick.
pub trait Tap: Send + 'static {
    fn sending(&mut self, to: NodeId, frame: Frame) -> Option<Frame>;
}

/// What a harness puts around a node. The production node has none.
#[derive(Default)]
pub struct Hooks {
    /// Sees every frame the node receives, and the relay messages it reads
    /// as an exit or as a circuit's client.
    pub observer: Option<Observer>,
    pub tap: Option<Box<dyn Tap>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Start a node. It runs until [`NodeHandle::leave`] or
/// [`NodeHandle::crash`].
pub async fn start(cfg: Config) -> Result<NodeHandle, Error> {
    start_with(cfg, Hooks::default()).await
}

/// Start a node with a harness's hooks.
pub async fn start_with(cfg: Config, hooks: Hooks) -> Result<NodeHandle, Error> {
    cfg.validate()?;
    super::datadir::prepare(&cfg.data_dir)?;
    // A relay keeps one identity: its place on the ring and the key
    // clients build circuits to. A client-only node shows none that lasts:
    // a fresh one each run, so the relays it dials cannot tell that two
    // runs (on two networks, say) are one user.
    let identity = if cfg.relay {
        load_identity(&cfg.data_dir, cfg.id_puzzle_bits)?
    } else {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| Error::DataDir {
            path: cfg.data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        crate::crypto::Identity::generate(&mut rand::rngs::OsRng)
    };
    let store = Store::open(
        &cfg.data_dir.join("store.redb"),
        crate::store::Limits {
            primary_bytes: cfg.store_bytes,
            cache_bytes: cfg.cache_bytes,
        },
        crate::keys::verify_block,
        crate::keys::supersedes,
    )?;
    let held = store.primary_keys()?;
    let link_cfg = cfg.link();
    let endpoint = Arc::new(Endpoint::bind(
        &identity,
        cfg.listen,
        cfg.relay,
        link_cfg.clone(),
    )?);
    let listen = endpoint.local_addr()?;
    let mut settings = cfg.core_settings(listen);
    settings.circuits.observer = hooks.observer.clone();
    let learning = settings.learn.is_some();
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let identity_key = identity.identity_key();
    let mut core = Core::new(identity, settings, held, seed, Instant::now(), unix_now())
        .map_err(|e| Error::Identity(e.to_string()))?;
    let guards_file = cfg.data_dir.join(GUARDS_FILE);
    match std::fs::read(&guards_file) {
        Ok(bytes) => {
            let g = crate::circuit::guards::Guards::decode(&bytes).map_err(|e| Error::Guards {
                path: guards_file.display().to_string(),
                message: e.to_string(),
            })?;
            core.set_guards(g);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Guards {
                path: guards_file.display().to_string(),
                message: e.to_string(),
            })
        }
    }
    let onion_file = cfg.data_dir.join(ONION_FILE);
    if cfg.relay {
        match std::fs::read(&onion_file) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                let keys = crate::node::core::onion::OnionKeys::decode(&bytes).map_err(|e| {
                    Error::DataDir {
                        path: onion_file.display().to_string(),
                        message: format!("{e} (remove it to make a new onion key)"),
                    }
                })?;
                core.set_onion_keys(keys, Instant::now());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::DataDir {
                    path: onion_file.display().to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
    let id = core.id();
    let onion_key = core.descriptor().onion_key;
    if learning {
        tracing::info!(
            "listening on an unspecified address with no public address: learning one from \
             peers; not relaying until others can reach this node"
        );
    }
    tracing::info!("node started");
    tracing::debug!(?id, %listen, "node identity and address");

    let (store, store_rx) = worker::spawn(store);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (link_tx, link_rx) = mpsc::channel(1024);
    let (accept_tx, accept_rx) = mpsc::channel(16);
    let (dial_tx, dial_rx) = mpsc::channel(64);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let link_count = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    tokio::spawn(accept_loop(
        endpoint.clone(),
        accept_tx,
        link_count.clone(),
        refused.clone(),
        shutdown_rx,
    ));
    let driver = Driver {
        core,
        me: id,
        endpoint,
        link_cfg,
        links: HashMap::new(),
        link_count,
        refused,
        replies: HashMap::new(),
        tokens: Tokens::default(),
        store: Some(store),
        link_tx,
        dial_tx,
        hooks,
        shutdown,
        guards_file,
        guards_saved: Instant::now(),
        onion_file,
        received: HashMap::new(),
    };
    let task = tokio::spawn(driver.run(cmd_rx, link_rx, accept_rx, dial_rx, store_rx));
    Ok(NodeHandle {
        id,
        identity_key,
        onion_key,
        listen,
        cmd: cmd_tx,
        task,
    })
}

async fn accept_loop(
    endpoint: Arc<Endpoint>,
    accepted: mpsc::Sender<Accepted>,
    link_count: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.incoming() => match i {
                Some(i) => i,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        if link_count.load(Ordering::Relaxed) >= endpoint.config().max_links {
            incoming.refuse();
            continue;
        }
        let endpoint = endpoint.clone();
        let accepted = accepted.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            match endpoint.complete(incoming).await {
                Ok(a) => {
                    let _ = accepted.send(a).await;
                }
                Err(link::Error::NoIdentity) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!("inbound link failed: {e}"),
            }
        });
    }
}

struct Driver {
    core: Core,
    me: NodeId,
    endpoint: Arc<Endpoint>,
    link_cfg: link::Config,
    links: HashMap<LinkId, link::Handle>,
    /// Open links, for the accept loop's bound.
    link_count: Arc<AtomicUsize>,
    /// Inbound connections refused for presenting no node certificate.
    refused: Arc<AtomicUsize>,
    replies: HashMap<Token, oneshot::Sender<Reply>>,
    tokens: Tokens,
    /// The datastore's thread; taken when the node stops.
    store: Option<worker::Worker>,
    link_tx: mpsc::Sender<link::Event>,
    dial_tx: mpsc::Sender<(DialId, Result<Link, link::Error>)>,
    hooks: Hooks,
    shutdown: watch::Sender<bool>,
    /// Where the entry guards persist, and when they were last written.
    guards_file: std::path::PathBuf,
    guards_saved: Instant,
    /// Where a relay's onion keys persist.
    onion_file: std::path::PathBuf,
    /// Frames received, by kind, since start.
    received: HashMap<&'static str, super::FrameCount>,
}

/// The entry guards' file in the data directory.
pub const GUARDS_FILE: &str = "guards";
/// A relay's onion keys' file in the data directory.
pub const ONION_FILE: &str = "onion.keys";
/// Guards' path-bias counts change with every circuit; they are written
/// at most this often, and when the node stops.
const GUARDS_SAVE_EVERY: Duration = Duration::from_secs(10);

impl Driver {
    /// Write the guard list if it changed: to a temporary file, synced,
    /// then renamed over the old one, so that a crash leaves one or the
    /// other whole.
    fn save_onion_keys(&mut self) {
        if let Some(bytes) = self.core.take_onion_changed() {
            if let Err(e) = super::identity::write_secret(&self.onion_file, &bytes) {
                tracing::error!("cannot save the onion keys: {e}");
            }
        }
    }

    fn save_guards(&mut self, force: bool) {
        if !force && self.guards_saved.elapsed() < GUARDS_SAVE_EVERY {
            return;
        }
        let Some(bytes) = self.core.take_guards_changed() else {
            return;
        };
        self.guards_saved = Instant::now();
        let tmp = self.guards_file.with_extension("tmp");
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.guards_file)
        })();
        if let Err(e) = written {
            tracing::error!("cannot save the entry guards: {e}");
        }
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut link_rx: mpsc::Receiver<link::Event>,
        mut accept_rx: mpsc::Receiver<Accepted>,
        mut dial_rx: mpsc::Receiver<(DialId, Result<Link, link::Error>)>,
        mut store_rx: mpsc::UnboundedReceiver<(OpId, StoreResult)>,
    ) {
        loop {
            let deadline = self.core.poll_timeout();
            tokio::select! {
                Some(ev) = link_rx.recv() => self.on_link_event(ev),
                Some(accepted) = accept_rx.recv() => match accepted {
                    Accepted::Link(l) => self.link_up(l, None),
                    Accepted::Probe { nonce } => self.core.handle_probe_arrived(nonce, Instant::now()),
                },
                Some((dial, res)) = dial_rx.recv() => match res {
                    Ok(l) => self.link_up(l, Some(dial)),
                    Err(e) => {
                        tracing::debug!("dial failed: {e}");
                        let wrong = matches!(e, link::Error::WrongPeer | link::Error::NoIdentity);
                        self.core.handle_dial_failed(dial, wrong, Instant::now());
                    }
                },
                Some((op, result)) = store_rx.recv() => {
                    self.core.handle_store(op, result, Instant::now());
                }
                cmd = cmds.recv() => match cmd {
                    Some(Command::Request(request, reply)) => {
                        let token = self.tokens.issue();
                        self.replies.insert(token, reply);
                        self.core.handle_request(token, request, Instant::now());
                    }
                    Some(Command::Crash(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            if self.carry_out() {
                self.stop().await;
                return;
            }
            self.save_guards(false);
            self.save_onion_keys();
        }
    }

    fn link_up(&mut self, link: Link, dial: Option<DialId>) {
        let (id, peer, remote, inbound) =
            (LinkId(link.serial), link.peer, link.remote, link.inbound);
        let handle = link.spawn(&self.link_cfg, self.link_tx.clone());
        self.links.insert(id, handle);
        self.link_count.store(self.links.len(), Ordering::Relaxed);
        self.core
            .handle_link_up(id, peer, remote, inbound, dial, Instant::now());
    }

    fn on_link_event(&mut self, ev: link::Event) {
        match ev {
            link::Event::Frame {
                serial,
                peer,
                frame,
                len,
            } => {
                let kind = match &frame {
                    Frame::Cell(_) => "CELL",
                    Frame::Message(m) => m.kind().name().unwrap_or("UNKNOWN"),
                };
                let count = self.received.entry(kind).or_default();
                count.frames += 1;
                count.bytes += len as u64;
                if let Some(obs) = &self.hooks.observer {
                    obs.observe(&Observation::Frame {
                        at: self.me,
                        from: peer,
                        len,
                        frame: &frame,
                    });
                }
                self.core
                    .handle_frame(LinkId(serial), frame, Instant::now());
            }
            link::Event::Closed {
                serial,
                misbehaved,
                idle,
                ..
            } => {
                self.links.remove(&LinkId(serial));
                self.link_count.store(self.links.len(), Ordering::Relaxed);
                self.core.handle_link_down(
                    LinkId(serial),
                    misbehaved.is_some(),
                    idle,
                    Instant::now(),
                );
            }
        }
    }

    /// Carry out the core's actions; true once it asks to stop.
    fn carry_out(&mut self) -> bool {
        let mut stop = false;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { link, frame } => self.send(link, frame),
                Action::Dial { dial, peer, addrs } => {
                    let endpoint = self.endpoint.clone();
                    let tx = self.dial_tx.clone();
                    tokio::spawn(async move {
                        let res = endpoint.dial_any(&addrs, peer).await;
                        let _ = tx.send((dial, res)).await;
                    });
                }
                Action::Close { link, reason } => {
                    if let Some(h) = self.links.get(&link) {
                        let (code, why): (_, &[u8]) = match reason {
                            CloseReason::Protocol => (close::PROTOCOL, b"protocol violation"),
                            CloseReason::Duplicate => (close::DUPLICATE, b"duplicate link"),
                            CloseReason::Idle => (close::IDLE, b"idle"),
                        };
                        h.close(code, why);
                    }
                }
                Action::Store { op, what } => {
                    let sent = self.store.as_ref().map(|w| w.ops.send((op, what)));
                    if !matches!(sent, Some(Ok(()))) {
                        tracing::error!("the datastore thread is gone");
                    }
                }
                Action::Probe {
                    target,
                    peer,
                    nonce,
                } => {
                    let cfg = self.link_cfg.clone();
                    tokio::spawn(probe(target, peer, nonce, cfg));
                }
                Action::Reply { token, reply } => {
                    if let Some(tx) = self.replies.remove(&token) {
                        let _ = tx.send(self.complete(reply));
                    }
                }
                Action::Stop => stop = true,
            }
        }
        stop
    }

    fn send(&mut self, link: LinkId, frame: Frame) {
        let Some(h) = self.links.get(&link) else {
            return;
        };
        let frame = match &mut self.hooks.tap {
            Some(tap) => match tap.sending(h.peer, frame) {
                Some(f) => f,
                None => return,
            },
            None => frame,
        };
        if h.send(frame).is_err() {
            tracing::debug!("send queue full or link closed; frame dropped");
        }
    }

    /// Add to a reply what only the driver knows: connections refused
    /// before they became links.
    fn complete(&self, reply: Reply) -> Reply {
        match reply {
            Reply::Status(mut s) => {
                let refused =
                    self.refused.load(Ordering::Relaxed) + self.endpoint.rejected_certificates();
                s.misbehaving_peers = s
                    .misbehaving_peers
                    .saturating_add(u64::try_from(refused).unwrap_or(u64::MAX));
                s.traffic = self.endpoint.traffic();
                s.frames_received = self
                    .received
                    .iter()
                    .map(|(k, c)| (k.to_string(), *c))
                    .collect();
                Reply::Status(s)
            }
            other => other,
        }
    }

    async fn stop(&mut self) {
        self.save_guards(true);
        self.save_onion_keys();
        let _ = self.shutdown.send(true);
        // Dropping the handles lets each writer send what is queued, finish
        // its stream and close its link; wait for that, briefly, before
        // closing the endpoint (which would cut off unsent frames).
        let links: Vec<link::Handle> = self.links.drain().map(|(_, h)| h).collect();
        let closing: Vec<_> = links.iter().map(link::Handle::closed).collect();
        drop(links);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for c in closing {
                c.await;
            }
        })
        .await;
        self.endpoint.close().await;
        // Let the datastore finish what is queued and close its file, so
        // that the data directory can be opened again at once.
        if let Some(w) = self.store.take() {
            drop(w.ops);
            if tokio::time::timeout(Duration::from_secs(30), w.finished)
                .await
                .is_err()
            {
                tracing::warn!("the datastore did not close within 30 s");
            }
        }
    }
}

async fn probe(target: SocketAddr, peer: NodeId, nonce: [u8; 16], cfg: link::Config) {
    if let Err(e) = link::probe(target, peer, nonce, &cfg).await {
        tracing::debug!("dial-back probe failed: {e}");
    }
}
