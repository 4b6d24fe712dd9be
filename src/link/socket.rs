//! The UDP socket under a node's QUIC endpoint, wrapped to count what
//! passes through it: every link's packets, handshakes, acknowledgements
//! and keep-alives, which the frames a node sends do not show.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use serde::{Deserialize, Serialize};

/// Bytes an IPv4 and a UDP header add to each datagram on the wire.
pub const HEADER_BYTES: u64 = 28;

/// Datagrams and their payload bytes, each way, since the socket opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    pub bytes_received: u64,
}

impl Traffic {
    /// Bytes sent with their IPv4 and UDP headers: what the wire carried.
    pub fn wire_bytes_sent(&self) -> u64 {
        self.bytes_sent + HEADER_BYTES * self.datagrams_sent
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    datagrams_sent: AtomicU64,
    bytes_sent: AtomicU64,
    datagrams_received: AtomicU64,
    bytes_received: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> Traffic {
        Traffic {
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// What a link socket asks the kernel to buffer each way. Linux's
/// default of 208 KiB holds a few milliseconds of a busy node's traffic:
/// when the node's tasks are late to read, the kernel drops datagrams,
/// and QUIC takes each loss for congestion and slows the link. The
/// kernel caps the request at `net.core.rmem_max` (`wmem_max`): this
/// asks, it does not force.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Ask for [`SOCKET_BUFFER`] each way; the receive buffer granted (Linux
/// reports twice what it grants, its own bookkeeping included).
pub(crate) fn size_buffers(socket: &std::net::UdpSocket) -> usize {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("receive buffer not resized: {e}");
    }
    if let Err(e) = s.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("send buffer not resized: {e}");
    }
    s.recv_buffer_size().unwrap_or(0)
}

/// Datagrams in `len` bytes sent or received in segments of `stride`
/// (generic segmentation offload: one call, many datagrams).
fn datagrams(len: usize, stride: usize) -> u64 {
    if stride == 0 || len == 0 {
        return u64::from(len > 0);
    }
    len.div_ceil(stride) as u64
}

/// A socket that counts, around the runtime's own.
pub(crate) struct Counting {
    inner: Arc<dyn AsyncUdpSocket>,
    counters: Arc<Counters>,
}

impl Counting {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, counters: Arc<Counters>) -> Counting {
        Counting { inner, counters }
    }
}

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counting")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for Counting {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)?;
        let len = transmit.contents.len();
        let n = datagrams(len, transmit.segment_size.unwrap_or(len));
        let c = &self.counters;
        c.datagrams_sent.fetch_add(n, Ordering::Relaxed);
        c.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = polled {
            let c = &self.counters;
            for m in meta.iter().take(n) {
                c.datagrams_received
                    .fetch_add(datagrams(m.len, m.stride), Ordering::Relaxed);
                c.bytes_received.fetch_add(m.len as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmented_sends_count_each_datagram() {
        assert_eq!(datagrams(0, 0), 0);
        assert_eq!(datagrams(1200, 1200), 1);
        assert_eq!(datagrams(3000, 1200), 3);
        assert_eq!(datagrams(2400, 1200), 2);
        assert_eq!(datagrams(5, 0), 1);
    }

    #[test]
    fn a_link_socket_gets_the_buffer_the_system_allows() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("buffer size");
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("Linux reports its socket buffer cap")
            .trim()
            .parse()
            .expect("a number");
        let granted = size_buffers(&socket);
        let want = SOCKET_BUFFER.min(cap);
        assert!(
            granted >= want,
            "asked for {want} bytes (cap {cap}), granted {granted}, was {before}"
        );
    }
}
