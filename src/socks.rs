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

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::circuit::Isolation;
use crate::gateway::{self, Front};
use crate::node::NodeClient;

const VERSION: u8 = 5;
const AUTH_VERSION: u8 = 1;
const METHOD_NONE: u8 = 0x00;
const METHOD_PASSWORD: u8 = 0x02;
const METHOD_UNACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// Reply codes (RFC 1928, section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowed = 0x02,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// SOCKS4's "request rejected or failed".
const SOCKS4_REJECTED: u8 = 0x5b;
/// The answer to an HTTP request sent to the proxy port.
const NOT_HTTP: &[u8] = b"HTTP/1.0 501 Not Implemented\r\nContent-Type: text/plain\r\n\
Connection: close\r\n\r\nThis is umbra's SOCKS5 proxy, not an HTTP proxy. Set it as a SOCKS5 \
proxy (with remote name resolution), or use the HTTP gateway.\n";

/// The top-level domain the proxy serves.
pub const DOMAIN: &str = "umbra";

/// Proxy sessions served at once; more wait in the kernel's accept queue.
const MAX_SESSIONS: usize = 256;

/// Why a SOCKS session ended before its stream opened. Each is logged at
/// debug level only: the names asked for are the user's business.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("not SOCKS version 5 (first byte {0:#04x})")]
    Version(u8),
    #[error("the client offers no method this proxy accepts")]
    NoMethod,
    #[error("malformed username/password negotiation")]
    BadAuth,
    #[error("command {0:#04x} is not supported (CONNECT only)")]
    Command(u8),
    #[error("address type {0:#04x} is not supported")]
    AddressType(u8),
    #[error("the destination is not a .umbra name")]
    Refused,
    #[error("the destination name is not valid")]
    BadName,
    #[error("the handshake did not finish in time")]
    Timeout,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings of the proxy.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The SOCKS handshake must finish within this time.
    pub handshake_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serve the proxy's listener until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    node: NodeClient,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) {
    gateway::accept_each(listener, MAX_SESSIONS, shutdown, move |stream| {
        session(stream, node.clone(), settings)
    })
    .await;
}

async fn session(mut stream: TcpStream, node: NodeClient, settings: Settings) {
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
    gateway::serve_connection(stream, node, Front::Socks).await;
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

/// The isolation key of a username/password pair.
pub fn isolation(username: &[u8], password: &[u8]) -> Isolation {
    let mut h = Sha256::new();
    h.update(b"umbra socks isolation\0");
    h.update(
        u64::try_from(username.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    h.update(username);
    h.update(password);
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    Isolation(u64::from_be_bytes(first))
}

async fn reply<S: AsyncWrite + Unpin>(s: &mut S, code: Reply) -> std::io::Result<()> {
    // BND.ADDR and BND.PORT carry nothing: 0.0.0.0:0.
    s.write_all(&[VERSION, code as u8, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0])
        .await?;
    s.flush().await
}

/// Refuse with `code` and end the session with `e`.
async fn refuse<S: AsyncWrite + Unpin>(
    s: &mut S,
    code: Reply,
    e: SocksError,
) -> Result<Option<Isolation>, SocksError> {
    reply(s, code).await?;
    Err(e)
}

/// Run the server's side of the handshake. On success the stream is
/// open; returns the isolation the credentials chose, if any.
pub async fn handshake<S>(s: &mut S) -> Result<Option<Isolation>, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Greeting: VER NMETHODS METHODS...
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != VERSION {
        // Say what went wrong in words the client may understand: a
        // SOCKS4 rejection, or an HTTP answer to what looks like HTTP.
        if head[0] == 4 {
            s.write_all(&[0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0]).await?;
        } else if head[0].is_ascii_uppercase() {
            s.write_all(NOT_HTTP).await?;
        }
        s.flush().await?;
        return Err(SocksError::Version(head[0]));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    // Credentials win when offered: they are how a client asks for a
    // circuit of its own.
    let method = if methods.contains(&METHOD_PASSWORD) {
        METHOD_PASSWORD
    } else if methods.contains(&METHOD_NONE) {
        METHOD_NONE
    } else {
        s.write_all(&[VERSION, METHOD_UNACCEPTABLE]).await?;
        return Err(SocksError::NoMethod);
    };
    s.write_all(&[VERSION, method]).await?;
    s.flush().await?;

    let iso = if method == METHOD_PASSWORD {
        // VER ULEN UNAME PLEN PASSWD
        let mut ver = [0u8; 2];
        s.read_exact(&mut ver).await?;
        if ver[0] != AUTH_VERSION {
            s.write_all(&[AUTH_VERSION, 1]).await?;
            return Err(SocksError::BadAuth);
        }
        let mut user = vec![0u8; usize::from(ver[1])];
        s.read_exact(&mut user).await?;
        let mut plen = [0u8; 1];
        s.read_exact(&mut plen).await?;
        let mut pass = vec![0u8; usize::from(plen[0])];
        s.read_exact(&mut pass).await?;
        s.write_all(&[AUTH_VERSION, 0]).await?;
        s.flush().await?;
        Some(isolation(&user, &pass))
    } else {
        None
    };

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != VERSION {
        return Err(SocksError::Version(req[0]));
    }
    let host = match req[3] {
        ATYP_IPV4 => {
            let mut rest = [0u8; 4 + 2];
            s.read_exact(&mut rest).await?;
            None
        }
        ATYP_IPV6 => {
            let mut rest = [0u8; 16 + 2];
            s.read_exact(&mut rest).await?;
            None
        }
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0]) + 2];
            s.read_exact(&mut name).await?;
            name.truncate(usize::from(len[0]));
            Some(name)
        }
        other => {
            return refuse(
                s,
                Reply::AddressTypeNotSupported,
                SocksError::AddressType(other),
            )
            .await
        }
    };
    if req[1] != CMD_CONNECT {
        return refuse(s, Reply::CommandNotSupported, SocksError::Command(req[1])).await;
    }
    let Some(host) = host else {
        return refuse(s, Reply::NotAllowed, SocksError::Refused).await;
    };
    match serves(&host) {
        Ok(()) => {}
        Err(e) => return refuse(s, Reply::NotAllowed, e).await,
    }
    reply(s, Reply::Succeeded).await?;
    Ok(iso)
}

/// Whether the proxy serves this host name: one under `.umbra` (a
/// trailing dot allowed), made of DNS name characters.
pub fn serves(host: &[u8]) -> Result<(), SocksError> {
    let name = std::str::from_utf8(host).map_err(|_| SocksError::BadName)?;
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || name.split('.').any(str::is_empty)
    {
        return Err(SocksError::BadName);
    }
    match name.rsplit_once('.') {
        Some((_, tld)) if tld == DOMAIN => Ok(()),
        _ => Err(SocksError::Refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the handshake over an in-memory pipe with `client` bytes; return
    /// the result and what the server wrote.
    async fn run(client: &[u8]) -> (Result<Option<Isolation>, SocksError>, Vec<u8>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(client).await.unwrap();
        a.shutdown().await.unwrap();
        let r = handshake(&mut b).await;
        drop(b);
        let mut out = Vec::new();
        a.read_to_end(&mut out).await.unwrap();
        (r, out)
    }

    fn connect_domain(name: &[u8]) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 5, 1, 0, 3, u8::try_from(name.len()).unwrap()];
        v.extend_from_slice(name);
        v.extend_from_slice(&[0, 80]);
        v
    }

    #[tokio::test]
    async fn an_umbra_name_opens_and_others_are_refused() {
        let (r, out) = run(&connect_domain(b"doc.umbra")).await;
        assert!(matches!(r, Ok(None)), "{r:?}");
        assert_eq!(out, [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

        let (r, out) = run(&connect_domain(b"example.com")).await;
        assert!(matches!(r, Err(SocksError::Refused)), "{r:?}");
        assert_eq!(out[2..4], [5, Reply::NotAllowed as u8]);

        let (r, out) = run(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80]).await;
        assert!(matches!(r, Err(SocksError::Refused)), "{r:?}");
        assert_eq!(out[3], Reply::NotAllowed as u8);

        let (r, out) = run(&[
            5, 1, 0, 5, 2, 0, 3, 9, b'd', b'o', b'c', b'.', b'u', b'm', b'b', b'r', b'a', 0, 80,
        ])
        .await;
        assert!(matches!(r, Err(SocksError::Command(2))), "{r:?}");
        assert_eq!(out[3], Reply::CommandNotSupported as u8);
    }

    #[tokio::test]
    async fn credentials_choose_isolation() {
        let mut v = vec![5, 2, 0, 2, 1, 5];
        v.extend_from_slice(b"alice");
        v.push(3);
        v.extend_from_slice(b"pwd");
        v.extend_from_slice(&connect_domain(b"doc.umbra")[3..]);
        let (r, out) = run(&v).await;
        assert_eq!(r.unwrap(), Some(isolation(b"alice", b"pwd")));
        assert_eq!(out[..4], [5, 2, 1, 0]);
        assert_ne!(isolation(b"alice", b"pwd"), isolation(b"alicep", b"wd"));
    }

    #[tokio::test]
    async fn broken_handshakes_end_with_an_error() {
        let (r, out) = run(b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(matches!(r, Err(SocksError::Version(b'G'))));
        assert!(out.starts_with(b"HTTP/1.0 501"));
        let (r, out) = run(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).await;
        assert!(matches!(r, Err(SocksError::Version(4))));
        assert_eq!(out[..2], [0, SOCKS4_REJECTED]);
        let (r, _) = run(&[5, 2, 0]).await;
        assert!(matches!(r, Err(SocksError::Io(_))));
        let (r, out) = run(&[5, 1, 0x80]).await;
        assert!(matches!(r, Err(SocksError::NoMethod)));
        assert_eq!(out, [5, 0xff]);
        let (r, out) = run(&[5, 1, 0, 5, 1, 0, 9, 0, 0]).await;
        assert!(matches!(r, Err(SocksError::AddressType(9))));
        assert_eq!(out[3], Reply::AddressTypeNotSupported as u8);
    }

    #[test]
    fn names() {
        for ok in ["doc.umbra", "a.b.UMBRA", "x.umbra."] {
            assert!(serves(ok.as_bytes()).is_ok(), "{ok}");
        }
        for refused in ["umbra.com", "example.org", "localhost"] {
            assert!(
                matches!(serves(refused.as_bytes()), Err(SocksError::Refused)),
                "{refused}"
            );
        }
        for bad in ["", ".umbra", "a..umbra", "a b.umbra", "\u{ff}.umbra"] {
            assert!(
                matches!(serves(bad.as_bytes()), Err(SocksError::BadName)),
                "{bad}"
            );
        }
        assert!(matches!(
            serves(&[0xff, b'.', b'u']),
            Err(SocksError::BadName)
        ));
    }
}
