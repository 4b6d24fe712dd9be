//! The server's side of a SOCKS5 handshake (RFC 1928, with RFC 1929
//! username/password) as a pure parser: bytes from the client in, bytes to
//! answer and what to do next out. No I/O, no clock: the proxy drives it
//! over a TCP stream, the fuzz target over arbitrary bytes.
//!
//! The client speaks in three turns (greeting, credentials if the method
//! needs them, request), each waiting for the proxy's answer. [`Handshake::step`]
//! takes all the client's bytes not yet consumed and says how many it used
//! and what to write back; "need more" is its own answer, never an error,
//! and says how many bytes at least are missing, so that a driver can read
//! exactly that many and never swallow what the application sends once
//! its stream is open. A turn is at most 1 + 1 + 255 + 1 + 255 bytes.

use sha2::{Digest, Sha256};

use crate::circuit::Isolation;

const VERSION: u8 = 5;
const AUTH_VERSION: u8 = 1;
const METHOD_NONE: u8 = 0x00;
const METHOD_PASSWORD: u8 = 0x02;
const METHOD_UNACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 0x01;
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// The most bytes one client turn can take (credentials: version, two
/// lengths, two strings of up to 255).
pub const MAX_TURN: usize = 3 + 255 + 255;

/// The top-level domain the proxy serves.
pub const DOMAIN: &str = "umbra";

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
pub const SOCKS4_REJECTED: u8 = 0x5b;
/// The answer to an HTTP request sent to the proxy port.
pub const NOT_HTTP: &[u8] = b"HTTP/1.0 501 Not Implemented\r\nContent-Type: text/plain\r\n\
Connection: close\r\n\r\nThis is umbra's SOCKS5 proxy, not an HTTP proxy. Set it as a SOCKS5 \
proxy (with remote name resolution), or use the HTTP gateway.\n";

/// Why a handshake ended before its stream opened. Each is logged at debug
/// level only: the names asked for are the user's business.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("the client closed the connection mid-handshake")]
    Truncated,
    #[error("the handshake did not finish in time")]
    Timeout,
    #[error("i/o: {0}")]
    Io(String),
}

/// What to do after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The turn is not complete: read at least `bytes` more and call
    /// again with every byte not yet used.
    NeedMore { bytes: usize },
    /// `used` bytes were one turn; write `reply` and go on.
    Reply { used: usize, reply: Vec<u8> },
    /// The stream is open: write `reply`; what follows `used` is the
    /// application's. `isolation` is what the credentials chose, if any.
    Open {
        used: usize,
        reply: Vec<u8>,
        isolation: Option<Isolation>,
    },
    /// Refused: write `reply` (perhaps empty), then close.
    Refuse { reply: Vec<u8>, error: SocksError },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Greeting,
    Credentials,
    Request,
    Finished,
}

/// One handshake in progress.
#[derive(Debug)]
pub struct Handshake {
    turn: Turn,
    isolation: Option<Isolation>,
}

impl Default for Handshake {
    fn default() -> Self {
        Handshake {
            turn: Turn::Greeting,
            isolation: None,
        }
    }
}

/// A reply to a request: BND.ADDR and BND.PORT carry nothing (0.0.0.0:0).
pub fn request_reply(code: Reply) -> Vec<u8> {
    vec![VERSION, code as u8, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
}

fn refuse(code: Reply, error: SocksError) -> Step {
    Step::Refuse {
        reply: request_reply(code),
        error,
    }
}

/// `n` bytes at `at`, or how many are missing.
fn take(input: &[u8], at: usize, n: usize) -> Result<&[u8], Step> {
    let end = at.saturating_add(n);
    input.get(at..end).ok_or(Step::NeedMore {
        bytes: end.saturating_sub(input.len()),
    })
}

/// The byte at `at`, or how many are missing.
fn byte(input: &[u8], at: usize) -> Result<u8, Step> {
    take(input, at, 1).map(|b| b[0])
}

impl Handshake {
    /// Take the client's bytes not yet used; see [`Step`]. After `Open` or
    /// `Refuse` the handshake is over and refuses anything more.
    pub fn step(&mut self, input: &[u8]) -> Step {
        let step = match self.turn {
            Turn::Greeting => self.greeting(input),
            Turn::Credentials => self.credentials(input),
            Turn::Request => self.request(input),
            Turn::Finished => Ok(Step::Refuse {
                reply: Vec::new(),
                error: SocksError::Truncated,
            }),
        }
        .unwrap_or_else(|need| need);
        if matches!(step, Step::Open { .. } | Step::Refuse { .. }) {
            self.turn = Turn::Finished;
        }
        step
    }

    /// VER NMETHODS METHODS...
    fn greeting(&mut self, input: &[u8]) -> Result<Step, Step> {
        let version = byte(input, 0)?;
        if version != VERSION {
            // Say what went wrong in words the client may understand: a
            // SOCKS4 rejection, or an HTTP answer to what looks like HTTP.
            let reply = if version == 4 {
                vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0]
            } else if version.is_ascii_uppercase() {
                NOT_HTTP.to_vec()
            } else {
                Vec::new()
            };
            return Ok(Step::Refuse {
                reply,
                error: SocksError::Version(version),
            });
        }
        let n = byte(input, 1)?;
        let methods = take(input, 2, usize::from(n))?;
        // Credentials win when offered: they are how a client asks for a
        // circuit of its own.
        let method = if methods.contains(&METHOD_PASSWORD) {
            self.turn = Turn::Credentials;
            METHOD_PASSWORD
        } else if methods.contains(&METHOD_NONE) {
            self.turn = Turn::Request;
            METHOD_NONE
        } else {
            return Ok(Step::Refuse {
                reply: vec![VERSION, METHOD_UNACCEPTABLE],
                error: SocksError::NoMethod,
            });
        };
        Ok(Step::Reply {
            used: 2 + methods.len(),
            reply: vec![VERSION, method],
        })
    }

    /// VER ULEN UNAME PLEN PASSWD
    fn credentials(&mut self, input: &[u8]) -> Result<Step, Step> {
        if byte(input, 0)? != AUTH_VERSION {
            return Ok(Step::Refuse {
                reply: vec![AUTH_VERSION, 1],
                error: SocksError::BadAuth,
            });
        }
        let ulen = usize::from(byte(input, 1)?);
        let user = take(input, 2, ulen)?;
        let plen = usize::from(byte(input, 2 + ulen)?);
        let pass = take(input, 3 + ulen, plen)?;
        self.isolation = Some(isolation(user, pass));
        self.turn = Turn::Request;
        Ok(Step::Reply {
            used: 3 + ulen + plen,
            reply: vec![AUTH_VERSION, 0],
        })
    }

    /// VER CMD RSV ATYP DST.ADDR DST.PORT
    fn request(&mut self, input: &[u8]) -> Result<Step, Step> {
        let head = take(input, 0, 4)?;
        if head[0] != VERSION {
            return Ok(Step::Refuse {
                reply: Vec::new(),
                error: SocksError::Version(head[0]),
            });
        }
        let (host, used) = match head[3] {
            ATYP_IPV4 | ATYP_IPV6 => {
                let len = if head[3] == ATYP_IPV4 { 4 } else { 16 };
                take(input, 4, len + 2)?;
                (None, 4 + len + 2)
            }
            ATYP_DOMAIN => {
                let n = usize::from(byte(input, 4)?);
                let name = take(input, 5, n)?;
                take(input, 5 + n, 2)?;
                (Some(name), 5 + n + 2)
            }
            other => {
                return Ok(refuse(
                    Reply::AddressTypeNotSupported,
                    SocksError::AddressType(other),
                ))
            }
        };
        if head[1] != CMD_CONNECT {
            return Ok(refuse(
                Reply::CommandNotSupported,
                SocksError::Command(head[1]),
            ));
        }
        let Some(host) = host else {
            return Ok(refuse(Reply::NotAllowed, SocksError::Refused));
        };
        if let Err(e) = serves(host) {
            return Ok(refuse(Reply::NotAllowed, e));
        }
        Ok(Step::Open {
            used,
            reply: request_reply(Reply::Succeeded),
            isolation: self.isolation,
        })
    }
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

/// Run a whole handshake over bytes that arrive in the given pieces, as a
/// driver would: what the client was told, and how it ended (`None` while
/// it still needs bytes). For tests and the fuzz target.
pub fn run_pieces<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, Option<Result<Option<Isolation>, SocksError>>) {
    let mut h = Handshake::default();
    let mut buf = Vec::new();
    let mut written = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match h.step(&buf) {
                Step::NeedMore { .. } => break,
                Step::Reply { used, reply } => {
                    written.extend(reply);
                    buf.drain(..used);
                }
                Step::Open {
                    reply, isolation, ..
                } => {
                    written.extend(reply);
                    return (written, Some(Ok(isolation)));
                }
                Step::Refuse { reply, error } => {
                    written.extend(reply);
                    return (written, Some(Err(error)));
                }
            }
        }
    }
    (written, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_domain(name: &[u8]) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 5, 1, 0, 3, u8::try_from(name.len()).unwrap()];
        v.extend_from_slice(name);
        v.extend_from_slice(&[0, 80]);
        v
    }

    fn run(bytes: &[u8]) -> (Vec<u8>, Option<Result<Option<Isolation>, SocksError>>) {
        run_pieces([bytes])
    }

    #[test]
    fn an_umbra_name_opens_and_others_are_refused() {
        let (out, r) = run(&connect_domain(b"doc.umbra"));
        assert_eq!(r, Some(Ok(None)));
        assert_eq!(out, [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

        let (out, r) = run(&connect_domain(b"example.com"));
        assert_eq!(r, Some(Err(SocksError::Refused)));
        assert_eq!(out[2..4], [5, Reply::NotAllowed as u8]);

        let (out, r) = run(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        assert_eq!(r, Some(Err(SocksError::Refused)));
        assert_eq!(out[3], Reply::NotAllowed as u8);

        let (out, r) = run(&[
            5, 1, 0, 5, 2, 0, 3, 9, b'd', b'o', b'c', b'.', b'u', b'm', b'b', b'r', b'a', 0, 80,
        ]);
        assert_eq!(r, Some(Err(SocksError::Command(2))));
        assert_eq!(out[3], Reply::CommandNotSupported as u8);
    }

    #[test]
    fn every_split_of_the_bytes_gives_the_same_answer() {
        let mut v = vec![5, 2, 0, 2, 1, 5];
        v.extend_from_slice(b"alice");
        v.push(3);
        v.extend_from_slice(b"pwd");
        v.extend_from_slice(&connect_domain(b"doc.umbra")[3..]);
        let whole = run(&v);
        assert_eq!(whole.1, Some(Ok(Some(isolation(b"alice", b"pwd")))));
        assert_eq!(whole.0[..4], [5, 2, 1, 0]);
        for cut in 0..v.len() {
            assert_eq!(run_pieces([&v[..cut], &v[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = v.chunks(1).collect();
        assert_eq!(run_pieces(bytes), whole);
        assert_ne!(isolation(b"alice", b"pwd"), isolation(b"alicep", b"wd"));
    }

    #[test]
    fn broken_handshakes_end_with_an_error_or_wait() {
        let (out, r) = run(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r, Some(Err(SocksError::Version(b'G'))));
        assert!(out.starts_with(b"HTTP/1.0 501"));
        let (out, r) = run(&[4, 1, 0, 80, 127, 0, 0, 1, 0]);
        assert_eq!(r, Some(Err(SocksError::Version(4))));
        assert_eq!(out[..2], [0, SOCKS4_REJECTED]);
        assert_eq!(run(&[5, 2, 0]).1, None, "a truncated greeting waits");
        let (out, r) = run(&[5, 1, 0x80]);
        assert_eq!(r, Some(Err(SocksError::NoMethod)));
        assert_eq!(out, [5, 0xff]);
        let (out, r) = run(&[5, 1, 0, 5, 1, 0, 9, 0, 0]);
        assert_eq!(r, Some(Err(SocksError::AddressType(9))));
        assert_eq!(out[3], Reply::AddressTypeNotSupported as u8);
        let (out, r) = run(&[5, 1, 2, 9]);
        assert_eq!(r, Some(Err(SocksError::BadAuth)));
        assert_eq!(out, [5, 2, 1, 1]);
        let mut h = Handshake::default();
        assert_eq!(h.step(&[]), Step::NeedMore { bytes: 1 });
        assert_eq!(h.step(&[5, 3, 0]), Step::NeedMore { bytes: 2 });
    }

    #[test]
    fn names() {
        for ok in ["doc.umbra", "a.b.UMBRA", "x.umbra."] {
            assert!(serves(ok.as_bytes()).is_ok(), "{ok}");
        }
        for refused in ["umbra.com", "example.org", "localhost"] {
            assert_eq!(
                serves(refused.as_bytes()),
                Err(SocksError::Refused),
                "{refused}"
            );
        }
        for bad in ["", ".umbra", "a..umbra", "a b.umbra", "\u{ff}.umbra"] {
            assert_eq!(serves(bad.as_bytes()), Err(SocksError::BadName), "{bad}");
        }
        assert_eq!(serves(&[0xff, b'.', b'u']), Err(SocksError::BadName));
    }
}
