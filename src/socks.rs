//! The SOCKS5 proxy (RFC 1928, with RFC 1929 username/password). It
//! accepts CONNECT to a host name under `.umbra` and nothing else: the
//! stream that opens speaks HTTP/1.1 to the node's document interface
//! ([`crate::gateway`]), so `curl --socks5-hostname` and a browser set to
//! the proxy can fetch `http://doc.umbra/umbra:chk:…` and insert with PUT
//! or POST. Other names and IP literals are refused with reply 0x02
//! (connection not allowed by ruleset) and nothing is dialled: umbra is not
//! an exit to the open internet.
//!
//! Credentials choose circuit isolation, as in Tor: streams with different
//! username/password pairs never share a circuit, so an exit cannot link
//! them. Any credentials are accepted.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::circuit::Isolation;
use crate::gateway::{self, Front, Local};
use crate::node::NodeClient;

mod handshake;

pub use handshake::{
    isolation, run_pieces, serves, Handshake, Reply, SocksError, Step, DOMAIN, MAX_TURN,
};

/// Proxy sessions served at once by default (`limits.socks_clients`);
/// more wait in the kernel's accept queue.
pub const MAX_SESSIONS: usize = 256;

/// Settings of the proxy.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The SOCKS handshake must finish within this time.
    pub handshake_timeout: Duration,
    /// Sessions served at once.
    pub max_sessions: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            handshake_timeout: Duration::from_secs(10),
            max_sessions: MAX_SESSIONS,
        }
    }
}

/// Serve the proxy's listener until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    node: NodeClient,
    settings: Settings,
    local: Local,
    shutdown: watch::Receiver<bool>,
) {
    gateway::accept_each(listener, settings.max_sessions, shutdown, move |stream| {
        session(stream, node.clone(), settings, local.clone())
    })
    .await;
}

async fn session(mut stream: TcpStream, node: NodeClient, settings: Settings, local: Local) {
    let _ = stream.set_nodelay(true);
    let iso = match tokio::time::timeout(settings.handshake_timeout, handshake(&mut stream)).await {
        Ok(Ok(iso)) => iso,
        Ok(Err(e)) => {
            tracing::debug!("socks session refused: {e}");
            linger(stream).await;
            return;
        }
        Err(_) => {
            tracing::debug!("socks session refused: {}", SocksError::Timeout);
            return;
        }
    };
    let node = match iso {
        Some(iso) => node.isolated(iso),
        None => node,
    };
    gateway::serve_connection(stream, node, Front::Socks, local).await;
}

/// Close a refused session so that the client reads the answer: closing
/// with its unread bytes still queued would reset the connection and
/// could discard the reply. Send our end's close, then read and drop
/// what the client still sends, for a moment and a few kilobytes.
async fn linger(mut stream: TcpStream) {
    const LINGER: Duration = Duration::from_secs(1);
    const DRAIN: u64 = 64 << 10;
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = tokio::io::sink();
    let mut rest = (&mut stream).take(DRAIN);
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
}

/// Run the server's side of the handshake over `s`, with the pure
/// [`Handshake`] deciding every answer. On success the stream is open;
/// returns the isolation the credentials chose, if any. Holds at most one
/// client turn.
pub async fn handshake<S>(s: &mut S) -> Result<Option<Isolation>, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| SocksError::Io(e.to_string());
    let mut machine = Handshake::default();
    let mut buf: Vec<u8> = Vec::with_capacity(MAX_TURN);
    loop {
        match machine.step(&buf) {
            Step::NeedMore { bytes } => {
                // Exactly what the turn still lacks: never a byte of what
                // the application sends once the stream is open, and never
                // more than one turn in memory.
                let start = buf.len();
                buf.resize(start + bytes.clamp(1, MAX_TURN), 0);
                match s.read_exact(&mut buf[start..]).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(SocksError::Truncated)
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            Step::Reply { used, reply } => {
                s.write_all(&reply).await.map_err(io)?;
                s.flush().await.map_err(io)?;
                buf.drain(..used.min(buf.len()));
            }
            Step::Open {
                reply, isolation, ..
            } => {
                s.write_all(&reply).await.map_err(io)?;
                s.flush().await.map_err(io)?;
                return Ok(isolation);
            }
            Step::Refuse { reply, error } => {
                if !reply.is_empty() {
                    s.write_all(&reply).await.map_err(io)?;
                    s.flush().await.map_err(io)?;
                }
                return Err(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver over an in-memory pipe: the same answers as the pure
    /// machine, and the stream's end mid-handshake is an error.
    #[tokio::test]
    async fn the_driver_answers_as_the_machine_does() {
        let mut bytes = vec![5, 1, 0, 5, 1, 0, 3, 9];
        bytes.extend_from_slice(b"doc.umbra");
        bytes.extend_from_slice(&[0, 80]);
        for input in [&bytes[..], &bytes[..5], b"GET / HTTP/1.1\r\n\r\n"] {
            let (mut a, mut b) = tokio::io::duplex(4096);
            a.write_all(input).await.unwrap();
            a.shutdown().await.unwrap();
            let r = handshake(&mut b).await;
            drop(b);
            let mut out = Vec::new();
            a.read_to_end(&mut out).await.unwrap();
            let (want_out, want) = run_pieces([input]);
            assert_eq!(out, want_out);
            match want {
                Some(w) => assert_eq!(r, w),
                None => assert_eq!(r, Err(SocksError::Truncated)),
            }
        }
    }
}
