//! Links: QUIC connections to neighbouring nodes (quinn with rustls),
//! authenticated at both ends by node id, carrying frames (`wire::frame`) on
//! one bidirectional stream.
//!
//! The dialer opens the stream and both sides send a HELLO with their
//! descriptor first. Each link is run by two tasks: a reader that turns
//! bytes into frames and hands them to the node, and a writer that drains
//! a bounded queue. A reader that meets a malformed frame closes the link
//! and says so, and the node counts the peer as misbehaving. Bounds: a
//! node's links ([`Config::max_links`], enforced by the node), streams per
//! link ([`Config::max_streams`]), bytes buffered per stream and per link
//! (QUIC flow-control windows), frames queued for sending
//! ([`Config::send_queue`]), and the reader's buffer (one frame, at most
//! [`MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes). Keep-alives and an idle timeout detect dead
//! links; the keep-alives also hold NAT mappings open (see
//! [`Config::keep_alive`]).
//!
//! Addresses: [`addr`] says which ones a node may advertise and dial, and in
//! what order; [`reach`] learns a reachable one from peers. A reachability
//! probe is a short connection of its own protocol ([`PROBE_ALPN`]) from a
//! fresh socket: [`probe`] makes one, and [`Endpoint::complete`] tells it
//! apart from a link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

use crate::crypto::Identity;
use crate::wire::{self, Frame, NodeId, PeerMessage};

pub mod addr;
mod emulate;
mod probe;
pub mod reach;
mod socket;
mod stream;
pub mod tls;

pub use emulate::Emulation;
pub use probe::probe;
pub use socket::Traffic;
pub use stream::FrameReader;
pub use tls::{certificate, peer_id, ALPN, PROBE_ALPN};

use stream::{read_loop, write_loop};

/// Close codes, as the peer sees them.
pub mod close {
    use quinn::VarInt;
    pub const NORMAL: VarInt = VarInt::from_u32(0);
    pub const PROTOCOL: VarInt = VarInt::from_u32(1);
    pub const DUPLICATE: VarInt = VarInt::from_u32(2);
    pub const TOO_MANY_LINKS: VarInt = VarInt::from_u32(3);
    pub const LEAVING: VarInt = VarInt::from_u32(4);
    /// Nothing used the link for a while: nothing failed.
    pub const IDLE: VarInt = VarInt::from_u32(5);
}

#[derive(Debug, Clone)]
pub struct Config {
    /// A link silent this long is dead.
    pub idle_timeout: Duration,
    /// An idle link sends a QUIC PING this often. Besides keeping the link
    /// alive, this holds open the mapping of any NAT on the way: UDP
    /// mappings are forgotten after as little as 30 s of silence (Linux
    /// conntrack's default for a flow; many home routers do the same,
    /// though RFC 4787 asks for 2 minutes), so a keep-alive must come well
    /// within that.
    pub keep_alive: Duration,
    /// Links this node keeps open at once.
    pub max_links: usize,
    /// Bidirectional streams a peer may open on one link.
    pub max_streams: u32,
    /// Bytes a peer may have in flight per stream before it must wait
    /// (4 MiB: what a link of 60 ms round trip carries at 70 MB/s; an
    /// exit answering a read sends its window in bursts of up to 4 MiB).
    pub stream_window: u32,
    /// Bytes a peer may have in flight per link.
    pub link_window: u32,
    /// Control frames (ring messages, acknowledgements) queued for sending
    /// on one link.
    pub send_queue: usize,
    /// Bulk frames (blocks) queued for sending on one link. Kept apart so
    /// that a burst of blocks never crowds out the ring's messages.
    pub bulk_queue: usize,
    /// Cells queued for sending on one link. Circuit windows keep each
    /// circuit's share small; a cell that finds the queue full is dropped,
    /// and its circuit fails the next hop's layer check and is torn down.
    pub cell_queue: usize,
    /// How long a dial or an accept may take.
    pub handshake_timeout: Duration,
    /// Latency and bandwidth emulated on every datagram sent, for
    /// benchmarks; `None` on any real network.
    pub emulate: Option<Emulation>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Duration::from_secs(6),
            keep_alive: Duration::from_secs(1),
            max_links: 256,
            max_streams: 2,
            stream_window: 4 << 20,
            link_window: 8 << 20,
            send_queue: 256,
            bulk_queue: 64,
            cell_queue: 2048,
            handshake_timeout: Duration::from_secs(5),
            emulate: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot bind or dial: {0}")]
    Io(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("the peer presented no Ed25519 node certificate")]
    NoIdentity,
    #[error("the peer is not the node we dialled")]
    WrongPeer,
    #[error("the link timed out during its handshake")]
    Timeout,
    #[error("the link is closed")]
    Closed,
    #[error("the peer sent a malformed frame: {0}")]
    Protocol(#[from] wire::Error),
}

/// The transport of the links a node dials (`dialer`) or accepts. Only
/// the dialer sends keep-alives: the other end's acknowledgements keep
/// the dialer's idle timer going, its pings keep the other end's, and
/// the mapping of a NAT in front of the dialer (the end that can be
/// behind one) stays open. Both ends pinging would double the datagrams
/// of an idle link for nothing.
fn transport(cfg: &Config, dialer: bool) -> Result<Arc<quinn::TransportConfig>, Error> {
    let mut t = quinn::TransportConfig::default();
    let idle =
        quinn::IdleTimeout::try_from(cfg.idle_timeout).map_err(|e| Error::Tls(e.to_string()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(dialer.then_some(cfg.keep_alive))
        .max_concurrent_bidi_streams(VarInt::from_u32(cfg.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(cfg.stream_window))
        .receive_window(VarInt::from_u32(cfg.link_window))
        .send_window(u64::from(cfg.link_window));
    Ok(Arc::new(t))
}

/// A UDP socket for a QUIC endpoint on the current tokio runtime, through
/// an emulated path if `emulate` says so (benchmarks build their
/// baselines on the same path as the nodes they measure).
pub fn udp_socket(
    socket: std::net::UdpSocket,
    emulate: Option<Emulation>,
) -> Result<Arc<dyn quinn::AsyncUdpSocket>, Error> {
    let runtime = quinn::default_runtime().ok_or_else(|| Error::Io("no async runtime".into()))?;
    let socket = runtime
        .wrap_udp_socket(socket)
        .map_err(|e| Error::Io(e.to_string()))?;
    Ok(match emulate {
        Some(emu) => {
            let rt = tokio::runtime::Handle::try_current()
                .map_err(|_| Error::Io("no async runtime".into()))?;
            Arc::new(emulate::Emulated::new(socket, emu, &rt))
        }
        None => socket,
    })
}

/// A node's QUIC endpoint: it accepts links and dials them.
pub struct Endpoint {
    ep: quinn::Endpoint,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    transport: Arc<quinn::TransportConfig>,
    cfg: Config,
    rejected: Arc<AtomicUsize>,
    counters: Arc<socket::Counters>,
}

impl Endpoint {
    /// Bind `addr`. A client-only node passes `accept = false`: it dials
    /// but accepts no links.
    pub fn bind(
        identity: &Identity,
        addr: SocketAddr,
        accept: bool,
        cfg: Config,
    ) -> Result<Endpoint, Error> {
        let (cert, key) = certificate(identity)?;
        let (transport, accepted) = (transport(&cfg, true)?, transport(&cfg, false)?);
        let rejected = Arc::new(AtomicUsize::new(0));
        let server = if accept {
            let mut tls = rustls::ServerConfig::builder_with_provider(tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| Error::Tls(e.to_string()))?
                .with_client_cert_verifier(Arc::new(tls::ClientVerifier {
                    provider: tls::provider(),
                    rejected: rejected.clone(),
                }))
                .with_single_cert(vec![cert.clone()], key.clone_key())
                .map_err(|e| Error::Tls(e.to_string()))?;
            tls.alpn_protocols = vec![ALPN.to_vec(), PROBE_ALPN.to_vec()];
            let quic = QuicServerConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
            let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
            server.transport_config(accepted);
            Some(server)
        } else {
            None
        };
        let socket = std::net::UdpSocket::bind(addr).map_err(|e| Error::Io(e.to_string()))?;
        socket::size_buffers(&socket);
        let runtime =
            quinn::default_runtime().ok_or_else(|| Error::Io("no async runtime".into()))?;
        let socket = udp_socket(socket, cfg.emulate)?;
        let counters = Arc::new(socket::Counters::default());
        let socket = Arc::new(socket::Counting::new(socket, counters.clone()));
        let ep = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            server,
            socket,
            runtime,
        )
        .map_err(|e| Error::Io(e.to_string()))?;
        Ok(Endpoint {
            ep,
            cert,
            key,
            transport,
            cfg,
            rejected,
            counters,
        })
    }

    /// What the endpoint's socket has carried since it opened.
    pub fn traffic(&self) -> Traffic {
        self.counters.read()
    }

    /// Inbound connections refused because the peer's certificate was not
    /// an Ed25519 node certificate.
    pub fn rejected_certificates(&self) -> usize {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.ep.local_addr().map_err(|e| Error::Io(e.to_string()))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Dial `addr`. With `expected`, the link fails unless the peer's key
    /// hashes to that id.
    pub async fn dial(&self, addr: SocketAddr, expected: Option<NodeId>) -> Result<Link, Error> {
        let (client, mismatch) = client_config(
            &self.cert,
            &self.key,
            expected,
            ALPN,
            self.transport.clone(),
        )?;
        let connecting = self
            .ep
            .connect_with(client, addr, "umbra")
            .map_err(|e| Error::Connect(e.to_string()))?;
        let setup = async {
            let conn = connecting.await.map_err(|e| connect_error(&mismatch, e))?;
            let peer = authenticated_id(&conn)?;
            if expected.is_some_and(|want| want != peer) {
                conn.close(close::PROTOCOL, b"wrong peer");
                return Err(Error::WrongPeer);
            }
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            Ok(Link::new(conn, peer, addr, false, send, recv))
        };
        tokio::time::timeout(self.cfg.handshake_timeout, setup)
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// Dial the first of `addrs` that answers, racing them as Happy
    /// Eyeballs does (RFC 8305): each attempt gets [`DIAL_STAGGER`] to
    /// succeed before the next one starts alongside it, and the first link
    /// up wins. `addrs` come in the order to try (see
    /// [`addr::Policy::dial_order`]). The error is the last attempt's.
    pub async fn dial_any(
        self: &Arc<Self>,
        addrs: &[SocketAddr],
        expected: Option<NodeId>,
    ) -> Result<Link, Error> {
        let mut pending = tokio::task::JoinSet::new();
        let mut next = addrs.iter().copied();
        let mut last = Error::Connect("no address to dial".into());
        loop {
            if let Some(a) = next.next() {
                let me = self.clone();
                pending.spawn(async move { me.dial(a, expected).await });
            } else if pending.is_empty() {
                return Err(last);
            }
            let more = next.len() > 0;
            let outcome = if more {
                match tokio::time::timeout(DIAL_STAGGER, pending.join_next()).await {
                    Ok(r) => r,
                    // Still going: start the next address beside it.
                    Err(_) => continue,
                }
            } else {
                pending.join_next().await
            };
            match outcome {
                Some(Ok(Ok(link))) => {
                    // Dropping the set aborts the other attempts.
                    return Ok(link);
                }
                Some(Ok(Err(e))) => last = e,
                Some(Err(e)) => last = Error::Connect(e.to_string()),
                None => {}
            }
        }
    }

    /// The next incoming connection attempt; `None` once the endpoint is
    /// closed. The caller decides whether to [`Endpoint::complete`] it or
    /// refuse it.
    pub async fn incoming(&self) -> Option<quinn::Incoming> {
        self.ep.accept().await
    }

    /// Finish accepting: TLS, the peer's id, and the dialer's stream; or,
    /// for a reachability probe, its nonce.
    pub async fn complete(&self, incoming: quinn::Incoming) -> Result<Accepted, Error> {
        let remote = incoming.remote_address();
        let setup = async {
            let conn = incoming.await.map_err(|e| Error::Connect(e.to_string()))?;
            let peer = authenticated_id(&conn)?;
            if negotiated_alpn(&conn).as_deref() == Some(PROBE_ALPN) {
                let (_send, mut recv) = conn
                    .accept_bi()
                    .await
                    .map_err(|e| Error::Connect(e.to_string()))?;
                let mut nonce = [0u8; 16];
                let read = recv.read_exact(&mut nonce).await;
                conn.close(close::NORMAL, b"");
                read.map_err(|_| Error::Closed)?;
                return Ok(Accepted::Probe { nonce });
            }
            let (send, recv) = conn
                .accept_bi()
                .await
                .map_err(|e| Error::Connect(e.to_string()))?;
            Ok(Accepted::Link(Link::new(
                conn, peer, remote, true, send, recv,
            )))
        };
        tokio::time::timeout(self.cfg.handshake_timeout, setup)
            .await
            .map_err(|_| Error::Timeout)?
    }

    /// Close every link and stop accepting; waits until the peers have been
    /// told, bounded by the idle timeout.
    pub async fn close(&self) {
        self.ep.close(close::LEAVING, b"leaving");
        let _ = tokio::time::timeout(self.cfg.idle_timeout, self.ep.wait_idle()).await;
    }
}

/// How long a dial to one address runs alone before the next address is
/// tried beside it (RFC 8305 suggests 250 ms; a QUIC handshake to a peer
/// that is there takes one round trip).
pub const DIAL_STAGGER: Duration = Duration::from_millis(300);

/// What an inbound connection turned out to be.
pub enum Accepted {
    Link(Link),
    /// A reachability probe that presented this nonce.
    Probe {
        nonce: [u8; 16],
    },
}

/// A client configuration presenting `cert`, checking the server against
/// `expected`, speaking `alpn`; the flag is set when the server was the
/// wrong node.
fn client_config(
    cert: &rustls::pki_types::CertificateDer<'static>,
    key: &rustls::pki_types::PrivateKeyDer<'static>,
    expected: Option<NodeId>,
    alpn: &[u8],
    transport: Arc<quinn::TransportConfig>,
) -> Result<(quinn::ClientConfig, Arc<AtomicBool>), Error> {
    let provider = tls::provider();
    let mismatch = Arc::new(AtomicBool::new(false));
    let verifier = tls::ServerVerifier {
        expected,
        provider: provider.clone(),
        mismatch: mismatch.clone(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![cert.clone()], key.clone_key())
        .map_err(|e| Error::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(transport);
    Ok((client, mismatch))
}

fn connect_error(mismatch: &AtomicBool, e: quinn::ConnectionError) -> Error {
    if mismatch.load(Ordering::Relaxed) {
        Error::WrongPeer
    } else {
        Error::Connect(e.to_string())
    }
}

fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn authenticated_id(conn: &quinn::Connection) -> Result<NodeId, Error> {
    let certs = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(Error::NoIdentity)?;
    certs.first().and_then(peer_id).ok_or(Error::NoIdentity)
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

/// An established, authenticated link, before its tasks start.
pub struct Link {
    pub serial: u64,
    pub peer: NodeId,
    pub remote: SocketAddr,
    /// The peer dialled us.
    pub inbound: bool,
    conn: quinn::Connection,
    send: SendStream,
    recv: RecvStream,
}

/// What a link's tasks tell the node.
#[derive(Debug)]
pub enum Event {
    Frame {
        serial: u64,
        peer: NodeId,
        frame: Frame,
        /// Its length on the wire, framing included.
        len: usize,
    },
    Closed {
        serial: u64,
        peer: NodeId,
        /// Set when the peer broke the protocol.
        misbehaved: Option<Error>,
        /// The peer closed it for being unused ([`close::IDLE`]): it is
        /// not gone, only the link.
        idle: bool,
    },
}

/// The node's side of a running link.
#[derive(Debug, Clone)]
pub struct Handle {
    pub serial: u64,
    pub peer: NodeId,
    pub remote: SocketAddr,
    pub inbound: bool,
    control: mpsc::Sender<Frame>,
    cells: mpsc::Sender<Frame>,
    bulk: mpsc::Sender<Frame>,
    conn: quinn::Connection,
}

/// Frames that carry blocks go on the bulk queue; everything else is
/// control and is sent first.
fn is_bulk(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::Message(
            PeerMessage::StoreReplica { .. } | PeerMessage::Put { .. } | PeerMessage::Data { .. }
        )
    )
}

impl Handle {
    /// Queue a frame. A full queue means the peer is not keeping up; the
    /// frame is dropped and the protocol above times out and retries,
    /// rather than this node buffering without bound.
    pub fn send(&self, frame: Frame) -> Result<(), Error> {
        let queue = if is_bulk(&frame) {
            &self.bulk
        } else if matches!(frame, Frame::Cell(_)) {
            &self.cells
        } else {
            &self.control
        };
        queue.try_send(frame).map_err(|_| Error::Closed)
    }

    pub fn close(&self, code: VarInt, reason: &[u8]) {
        self.conn.close(code, reason);
    }

    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Resolves once the link is closed, by either side.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + use<> {
        let conn = self.conn.clone();
        async move {
            conn.closed().await;
        }
    }
}

impl Link {
    fn new(
        conn: quinn::Connection,
        peer: NodeId,
        remote: SocketAddr,
        inbound: bool,
        send: SendStream,
        recv: RecvStream,
    ) -> Link {
        Link {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            peer,
            remote,
            inbound,
            conn,
            send,
            recv,
        }
    }

    /// The raw connection and stream, for a caller that speaks the framing
    /// itself (tests that play a misbehaving peer).
    pub fn into_parts(self) -> (quinn::Connection, SendStream, RecvStream) {
        (self.conn, self.send, self.recv)
    }

    /// Start the reader and writer tasks; frames and the link's end are
    /// reported on `events`.
    pub fn spawn(self, cfg: &Config, events: mpsc::Sender<Event>) -> Handle {
        let (control, control_rx) = mpsc::channel(cfg.send_queue.max(1));
        let (bulk, bulk_rx) = mpsc::channel(cfg.bulk_queue.max(1));
        let (cells, cells_rx) = mpsc::channel(cfg.cell_queue.max(1));
        let handle = Handle {
            serial: self.serial,
            peer: self.peer,
            remote: self.remote,
            inbound: self.inbound,
            control,
            cells,
            bulk,
            conn: self.conn.clone(),
        };
        tokio::spawn(write_loop(
            self.send,
            control_rx,
            cells_rx,
            bulk_rx,
            self.conn.clone(),
        ));
        tokio::spawn(read_loop(
            self.recv,
            self.conn,
            self.serial,
            self.peer,
            events,
        ));
        handle
    }
}
