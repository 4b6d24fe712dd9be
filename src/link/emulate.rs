//! A path with latency and a bandwidth limit, emulated inside the process
//! for benchmarks: every datagram the node's socket sends waits in a
//! queue for its turn on a line of the given rate, then for the one-way
//! delay, before it goes out. With every node of a test network sending
//! this way, each link has the delay in each direction, as a kernel
//! without netem cannot give it.
//!
//! The queue is first in, first out, as a router's is: jitter lengthens a
//! datagram's delay but never lets it overtake one sent before it. Past
//! the queue's size in bytes waiting for the line, datagrams are dropped,
//! so congestion control meets the losses a full bottleneck makes.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::Rng;
use tokio::sync::mpsc;

/// What the emulated path does to each datagram sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emulation {
    /// Added to every datagram's way out.
    pub delay: Duration,
    /// Up to this much more, drawn uniformly for each datagram.
    pub jitter: Duration,
    /// Bytes per second the line carries; `None`: as fast as the host.
    pub rate: Option<u64>,
    /// Bytes that may wait for the line; a datagram that finds the queue
    /// fuller is dropped. Only with a rate.
    pub queue: u64,
    /// Datagrams lost at random, in parts per million, each on its own
    /// (the datagrams of one segmented send too), as a lossy path loses
    /// them.
    pub loss_ppm: u32,
}

impl Emulation {
    /// A one-way delay and nothing else.
    pub fn delay(delay: Duration) -> Emulation {
        Emulation {
            delay,
            jitter: Duration::ZERO,
            rate: None,
            queue: 0,
            loss_ppm: 0,
        }
    }
}

struct Queued {
    due: Instant,
    to: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    segment_size: Option<usize>,
    data: Vec<u8>,
}

/// When the line is next free, and the last datagram's due time (none
/// goes out before it).
struct Line {
    free_at: Instant,
    last_due: Instant,
}

/// A socket whose sends go through an emulated path.
pub(crate) struct Emulated {
    inner: Arc<dyn AsyncUdpSocket>,
    emu: Emulation,
    line: Mutex<Line>,
    tx: mpsc::UnboundedSender<Queued>,
    dropped: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Emulated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulated")
            .field("emu", &self.emu)
            .finish_non_exhaustive()
    }
}

impl Emulated {
    /// Wrap `inner`; the datagrams go out from a task on `runtime`, which
    /// ends when the socket is dropped.
    pub(crate) fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        emu: Emulation,
        runtime: &tokio::runtime::Handle,
    ) -> Emulated {
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(deliver(inner.clone(), rx));
        let now = Instant::now();
        Emulated {
            inner,
            emu,
            line: Mutex::new(Line {
                free_at: now,
                last_due: now,
            }),
            tx,
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Send each datagram when it is due, in order.
async fn deliver(inner: Arc<dyn AsyncUdpSocket>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut poller = inner.clone().create_io_poller();
    let mut queue: VecDeque<Queued> = VecDeque::new();
    loop {
        let next = queue.front().map(|q| q.due);
        tokio::select! {
            got = rx.recv() => match got {
                Some(q) => queue.push_back(q),
                None => return,
            },
            _ = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                while queue.front().is_some_and(|q| q.due <= now) {
                    let Some(q) = queue.pop_front() else { break };
                    let t = Transmit {
                        destination: q.to,
                        ecn: q.ecn,
                        contents: &q.data,
                        segment_size: q.segment_size,
                        src_ip: q.src_ip,
                    };
                    loop {
                        match inner.try_send(&t) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                            // Sent, or lost as a datagram may be.
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Emulated {
    /// Queue one send for its due time, or drop it if the line's queue
    /// is full.
    fn enqueue(&self, transmit: &Transmit) -> io::Result<()> {
        let now = Instant::now();
        let len = transmit.contents.len() as u64;
        let due = {
            let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
            let start = line.free_at.max(now);
            if let Some(rate) = self.emu.rate.filter(|r| *r > 0) {
                let waiting = start.duration_since(now).as_secs_f64() * rate as f64;
                if waiting > self.emu.queue as f64 {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                line.free_at = start + Duration::from_secs_f64(len as f64 / rate as f64);
            }
            let jitter = if self.emu.jitter.is_zero() {
                Duration::ZERO
            } else {
                rand::thread_rng().gen_range(Duration::ZERO..=self.emu.jitter)
            };
            let due = (line.free_at.max(now) + self.emu.delay + jitter).max(line.last_due);
            line.last_due = due;
            due
        };
        let q = Queued {
            due,
            to: transmit.destination,
            ecn: transmit.ecn,
            src_ip: transmit.src_ip,
            segment_size: transmit.segment_size,
            data: transmit.contents.to_vec(),
        };
        // The task ends only with the runtime: then nothing is sent.
        self.tx
            .send(q)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "emulated path stopped"))
    }
}

impl AsyncUdpSocket for Emulated {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Sends never wait: the queue takes them or drops them.
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if self.emu.loss_ppm == 0 {
            return self.enqueue(transmit);
        }
        // Each datagram of a segmented send is lost or kept on its own.
        let stride = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut rng = rand::thread_rng();
        for one in transmit.contents.chunks(stride) {
            if rng.gen_range(0..1_000_000) < self.emu.loss_ppm {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            self.enqueue(&Transmit {
                contents: one,
                segment_size: None,
                ..*transmit
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
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

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An emulated socket sending to a plain one, both on loopback.
    fn pair(emu: Emulation) -> (Emulated, tokio::net::UdpSocket) {
        let runtime = quinn::default_runtime().expect("tokio");
        let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inner = runtime.wrap_udp_socket(raw).unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::link::socket::size_buffers(&rx);
        rx.set_nonblocking(true).unwrap();
        let rx = tokio::net::UdpSocket::from_std(rx).unwrap();
        let socket = Emulated::new(inner, emu, &tokio::runtime::Handle::current());
        (socket, rx)
    }

    fn send(s: &Emulated, to: SocketAddr, data: &[u8]) {
        s.try_send(&Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        })
        .unwrap();
    }

    #[tokio::test]
    async fn datagrams_arrive_after_the_delay_in_the_order_sent() {
        let emu = Emulation {
            jitter: Duration::from_millis(20),
            ..Emulation::delay(Duration::from_millis(40))
        };
        let (s, rx) = pair(emu);
        let to = rx.local_addr().unwrap();
        let start = Instant::now();
        for i in 0..50u8 {
            send(&s, to, &[i; 100]);
        }
        let mut buf = [0u8; 200];
        for i in 0..50u8 {
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf))
                .await
                .expect("every datagram arrives")
                .unwrap();
            assert_eq!(&buf[..n], &[i; 100], "datagram {i} out of order");
            assert!(start.elapsed() >= Duration::from_millis(40));
        }
    }

    #[tokio::test]
    async fn the_line_paces_what_it_carries_and_drops_what_overflows_its_queue() {
        // 100 kB/s: 1,000 bytes every 10 ms; a queue of 20,000 bytes
        // holds 200 ms of sending.
        let emu = Emulation {
            rate: Some(100_000),
            queue: 20_000,
            ..Emulation::delay(Duration::ZERO)
        };
        let (s, rx) = pair(emu);
        let to = rx.local_addr().unwrap();
        let start = Instant::now();
        for i in 0..40u8 {
            send(&s, to, &[i; 1000]);
        }
        let (mut got, mut last) = (Vec::new(), Duration::ZERO);
        let mut buf = [0u8; 2000];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv(&mut buf)).await
        {
            assert_eq!(n, 1000);
            got.push(buf[0]);
            last = start.elapsed();
        }
        // The first 21 fit (the line free, then 20,000 bytes waiting);
        // the rest found the queue full.
        assert_eq!(got, (0..21).collect::<Vec<u8>>());
        assert_eq!(s.dropped.load(std::sync::atomic::Ordering::Relaxed), 19);
        // The last left the line 210 ms after the first began.
        assert!(last >= Duration::from_millis(210), "{last:?}");
    }

    #[tokio::test]
    async fn a_lossy_path_loses_single_datagrams_of_a_segmented_send() {
        let emu = Emulation {
            loss_ppm: 500_000,
            ..Emulation::delay(Duration::ZERO)
        };
        let (s, rx) = pair(emu);
        let to = rx.local_addr().unwrap();
        // 100 sends of 10 datagrams of 100 bytes each, numbered.
        let mut sent = 0u16;
        for _ in 0..100 {
            let mut batch = Vec::new();
            for _ in 0..10 {
                batch.extend_from_slice(&[(sent >> 8) as u8, sent as u8]);
                batch.resize(batch.len() + 98, 0);
                sent += 1;
            }
            s.try_send(&Transmit {
                destination: to,
                ecn: None,
                contents: &batch,
                segment_size: Some(100),
                src_ip: None,
            })
            .unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 2000];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), rx.recv(&mut buf)).await
        {
            assert_eq!(n, 100, "datagrams arrive one by one, not as the batch");
            got.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
        let dropped = s.dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(got.len() as u64 + dropped, 1000);
        // Half lost, give or take six standard deviations.
        assert!((400..=600).contains(&got.len()), "{} arrived", got.len());
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    }
}
