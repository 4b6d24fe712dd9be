//! Talking to a node's gateway from another process: what `umbra status`,
//! `umbra put` and `umbra get` use. Inserts and fetches ask for progress
//! lines, so a display can follow a large document block by block.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::url::{percent_encode_path, percent_encode_segment};
use super::{ErrorCode, ERROR_HEADER, PROGRESS_HEADER, PROGRESS_TYPE};
use crate::client::Progress;
use crate::node::Status;

/// Largest status reply, error text or progress line read, in bytes.
const MAX_REPLY: usize = 1 << 20;
const MAX_LINE: usize = 64 << 10;
/// Largest data frame of a fetch's progress answer, in bytes.
const MAX_FRAME: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad gateway URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    #[error("cannot reach the node at {0}: {1}")]
    Unreachable(String, String),
    /// The node answered with a failure.
    #[error("{message}")]
    Failed { code: ErrorCode, message: String },
    #[error("the gateway answered {0}")]
    Status(StatusCode),
    #[error("the gateway's answer is malformed: {0}")]
    BadReply(String),
    #[error("cannot write the document: {0}")]
    Write(String),
}

/// Exit codes of the command line, for scripts (README.md lists them).
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const MALFORMED_URI: u8 = 4;
    pub const DATA_NOT_FOUND: u8 = 5;
    pub const ROUTE_NOT_FOUND: u8 = 6;
    pub const TIMEOUT: u8 = 7;
    pub const RETRACTED: u8 = 8;
    /// No circuit could be built, or the network refused the request.
    pub const NETWORK: u8 = 9;
}

impl GatewayError {
    /// The command line's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            GatewayError::BadUrl(_) => exit::USAGE,
            GatewayError::Unreachable(..) => exit::UNREACHABLE,
            GatewayError::Failed { code, .. } => match code {
                ErrorCode::MalformedUri | ErrorCode::InsertUri => exit::MALFORMED_URI,
                ErrorCode::DataNotFound => exit::DATA_NOT_FOUND,
                ErrorCode::RouteNotFound => exit::ROUTE_NOT_FOUND,
                ErrorCode::Timeout => exit::TIMEOUT,
                ErrorCode::Retracted => exit::RETRACTED,
                ErrorCode::Circuit | ErrorCode::Rejected | ErrorCode::Stopped => exit::NETWORK,
                _ => exit::FAILURE,
            },
            GatewayError::Status(_) | GatewayError::BadReply(_) | GatewayError::Write(_) => {
                exit::FAILURE
            }
        }
    }
}

/// What a fetch through a gateway found; its bytes went to the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub content_type: String,
    pub version: Option<u64>,
    /// The document's length, every byte of it written.
    pub len: u64,
}

/// A node's gateway, for example `http://127.0.0.1:8080`.
pub struct Gateway {
    /// Where to connect: host and port.
    pub addr: String,
    /// What the requests name as their Host.
    pub authority: String,
}

impl Gateway {
    /// The gateway a user named (`--gateway`): an `http://` URL with a
    /// host, or [`GatewayError::BadUrl`].
    pub fn parse(url: &str) -> Result<Gateway, GatewayError> {
        let bad = || GatewayError::BadUrl(url.into());
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.clone();
        let port = authority.port_u16().unwrap_or(80);
        Ok(Gateway {
            addr: format!("{}:{port}", authority.host()),
            authority: authority.as_str().to_string(),
        })
    }

    async fn send<B>(&self, req: Request<B>) -> Result<Response<Incoming>, GatewayError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let unreachable =
            |e: &dyn std::fmt::Display| GatewayError::Unreachable(self.addr.clone(), e.to_string());
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| unreachable(&e))
    }

    fn request(&self, method: hyper::Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
    }
}

/// A failed answer: its typed code if it has one.
async fn failed(resp: Response<Incoming>) -> GatewayError {
    let status = resp.status();
    let code = resp
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ErrorCode::parse);
    let Some(code) = code else {
        return GatewayError::Status(status);
    };
    let message = match Limited::new(resp.into_body(), MAX_REPLY).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(_) => code.to_string(),
    };
    GatewayError::Failed { code, message }
}

/// Ask the node behind `gateway` for its status.
pub async fn fetch_status(gateway: &str) -> Result<Status, GatewayError> {
    let g = Gateway::parse(gateway)?;
    let req = g
        .request(hyper::Method::GET, "/status")
        .body(Full::new(Bytes::new()))
        .map_err(|e| GatewayError::BadUrl(e.to_string()))?;
    let resp = g.send(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(failed(resp).await);
    }
    let body = Limited::new(resp.into_body(), MAX_REPLY)
        .collect()
        .await
        .map_err(|e| GatewayError::BadReply(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| GatewayError::BadReply(e.to_string()))
}

/// A request body read from `from` as hyper sends it: a file or standard
/// input goes out as it is read, never whole in memory.
struct ReadBody<R> {
    from: R,
    buf: Vec<u8>,
    left: Option<u64>,
    done: bool,
}

/// Bytes of an upload read at a time.
const UPLOAD_PIECE: usize = 256 << 10;

impl<R: AsyncRead + Unpin> hyper::body::Body for ReadBody<R> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.buf.resize(UPLOAD_PIECE, 0);
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf);
        match std::pin::Pin::new(&mut this.from).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    this.done = true;
                    return Poll::Ready(None);
                }
                if let Some(left) = &mut this.left {
                    *left = left.saturating_sub(n as u64);
                }
                let piece = Bytes::copy_from_slice(&this.buf[..n]);
                Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.left {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

/// Insert what `from` reads (`len` bytes, if known: sent as its
/// Content-Length) through the node behind `gateway`, streamed: under a
/// content-hash key, or under `insert_uri` (ssk-insert or ksk) at its next
/// version. Returns the URI to fetch it with.
pub async fn put<R: AsyncRead + Send + Unpin + 'static>(
    gateway: &str,
    content_type: &str,
    from: R,
    len: Option<u64>,
    insert_uri: Option<&str>,
    on_progress: impl FnMut(Progress),
) -> Result<String, GatewayError> {
    put_named(
        gateway,
        content_type,
        from,
        len,
        insert_uri,
        None,
        on_progress,
    )
    .await
}

/// [`put`], and a content-hash URI that carries the file name `name`
/// (ignored under an insert URI: a signed key's URI names its document
/// itself).
pub async fn put_named<R: AsyncRead + Send + Unpin + 'static>(
    gateway: &str,
    content_type: &str,
    from: R,
    len: Option<u64>,
    insert_uri: Option<&str>,
    name: Option<&str>,
    mut on_progress: impl FnMut(Progress),
) -> Result<String, GatewayError> {
    let g = Gateway::parse(gateway)?;
    let path = match (insert_uri, name) {
        (Some(u), _) => format!("/{}", percent_encode_path(u)),
        (None, Some(n)) => format!("/{}", percent_encode_segment(n)),
        (None, None) => "/".into(),
    };
    let req = g
        .request(hyper::Method::PUT, &path)
        .header(header::CONTENT_TYPE, content_type)
        .header(PROGRESS_HEADER, "1")
        .body(ReadBody {
            from,
            buf: Vec::new(),
            left: len,
            done: false,
        })
        .map_err(|e| GatewayError::BadReply(e.to_string()))?;
    let mut lines = progress_answer(g.send(req).await?).await?;
    let rest = lines.until_result(&mut on_progress).await?;
    let uri = rest.trim();
    if uri.is_empty() || uri.contains(char::is_whitespace) {
        return Err(GatewayError::BadReply(format!("{rest:?} is not a URI")));
    }
    Ok(uri.to_string())
}

/// Fetch the document `uri` names through the node behind `gateway`,
/// writing its bytes to `out` as they come: memory stays small whatever
/// the document's size. On a failure, what was written is a part of the
/// document only.
pub async fn get<W: AsyncWrite + Unpin>(
    gateway: &str,
    uri: &str,
    mut on_progress: impl FnMut(Progress),
    out: &mut W,
) -> Result<Fetched, GatewayError> {
    let g = Gateway::parse(gateway)?;
    let req = g
        .request(
            hyper::Method::GET,
            &format!("/{}", percent_encode_path(uri)),
        )
        .header(PROGRESS_HEADER, "1")
        .body(Full::new(Bytes::new()))
        .map_err(|e| GatewayError::BadReply(e.to_string()))?;
    let mut lines = progress_answer(g.send(req).await?).await?;
    let rest = lines.until_result(&mut on_progress).await?;
    // "VERSION LENGTH CONTENT-TYPE"
    let bad = || GatewayError::BadReply(format!("{rest:?} is not a document header"));
    let mut parts = rest.splitn(3, ' ');
    let version = match parts.next().ok_or_else(bad)? {
        "-" => None,
        v => Some(v.parse().map_err(|_| bad())?),
    };
    let len: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let content_type = parts.next().unwrap_or("").to_string();
    let mut written = 0u64;
    let wrote = |e: std::io::Error| GatewayError::Write(e.to_string());
    loop {
        match lines.next(&mut on_progress).await? {
            Line::Data(n) => {
                if n > MAX_FRAME || written + n > len {
                    return Err(GatewayError::BadReply(format!(
                        "{n} more bytes after {written} of {len}"
                    )));
                }
                let piece = lines.take(n).await?;
                out.write_all(&piece).await.map_err(wrote)?;
                written += n;
            }
            Line::End if written == len => break,
            Line::Ok(_) => return Err(GatewayError::BadReply("a second result".into())),
            Line::End => {
                return Err(GatewayError::BadReply(format!(
                    "the document ended after {written} of {len} bytes"
                )))
            }
        }
    }
    out.flush().await.map_err(wrote)?;
    Ok(Fetched {
        content_type,
        version,
        len,
    })
}

/// A line of a progress answer past the progress lines.
enum Line {
    /// `ok ...`: the result, or a fetch's header.
    Ok(String),
    /// `data N`: N bytes of the document follow.
    Data(u64),
    /// `end`: a fetch sent every byte.
    End,
}

async fn progress_answer(resp: Response<Incoming>) -> Result<Lines, GatewayError> {
    if resp.status() != StatusCode::OK {
        return Err(failed(resp).await);
    }
    let ctype = resp.headers().get(header::CONTENT_TYPE);
    if ctype.is_none_or(|c| c.as_bytes() != PROGRESS_TYPE.as_bytes()) {
        return Err(GatewayError::BadReply("not a progress answer".into()));
    }
    Ok(Lines {
        body: resp.into_body(),
        buf: Vec::new(),
    })
}

/// A progress answer, read line by line and then as raw data.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    /// More of the body into `buf`; false at its end.
    async fn fill(&mut self) -> Result<bool, GatewayError> {
        loop {
            match self.body.frame().await {
                None => return Ok(false),
                Some(Err(e)) => return Err(GatewayError::BadReply(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                        return Ok(true);
                    }
                }
            }
        }
    }

    async fn line(&mut self) -> Result<String, GatewayError> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return String::from_utf8(line[..end].to_vec())
                    .map_err(|_| GatewayError::BadReply("a line is not UTF-8".into()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(GatewayError::BadReply("a line is too long".into()));
            }
            if !self.fill().await? {
                return Err(GatewayError::BadReply(
                    "the answer ended before its result".into(),
                ));
            }
        }
    }

    /// Progress lines up to the next line that says something else.
    async fn next(&mut self, on_progress: &mut impl FnMut(Progress)) -> Result<Line, GatewayError> {
        loop {
            let line = self.line().await?;
            if let Some(rest) = line.strip_prefix("progress ") {
                let mut n = rest.split(' ').map(str::parse::<u64>);
                if let (Some(Ok(done)), Some(Ok(total))) = (n.next(), n.next()) {
                    on_progress(Progress { done, total });
                    continue;
                }
            } else if let Some(rest) = line.strip_prefix("ok ") {
                return Ok(Line::Ok(rest.to_string()));
            } else if let Some(n) = line.strip_prefix("data ").and_then(|n| n.parse().ok()) {
                return Ok(Line::Data(n));
            } else if line == "end" {
                return Ok(Line::End);
            } else if let Some(rest) = line.strip_prefix("error ") {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = ErrorCode::parse(code)
                    .ok_or_else(|| GatewayError::BadReply(format!("unknown error {code:?}")))?;
                return Err(GatewayError::Failed {
                    code,
                    message: message.to_string(),
                });
            }
            return Err(GatewayError::BadReply(format!("unexpected line {line:?}")));
        }
    }

    /// Progress lines up to the result; returns what follows `ok `.
    async fn until_result(
        &mut self,
        on_progress: &mut impl FnMut(Progress),
    ) -> Result<String, GatewayError> {
        match self.next(on_progress).await? {
            Line::Ok(rest) => Ok(rest),
            _ => Err(GatewayError::BadReply("data before the result".into())),
        }
    }

    /// Exactly `len` more bytes (at most [`MAX_FRAME`]).
    async fn take(&mut self, len: u64) -> Result<Vec<u8>, GatewayError> {
        let len = usize::try_from(len.min(MAX_FRAME)).unwrap_or(0);
        while self.buf.len() < len {
            if !self.fill().await? {
                return Err(GatewayError::BadReply(
                    "the answer broke off inside a data frame".into(),
                ));
            }
        }
        Ok(self.buf.drain(..len).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_a_user_can_act_on_has_its_own_exit_code() {
        let failed = |code| GatewayError::Failed {
            code,
            message: String::new(),
        };
        let codes = [
            GatewayError::Unreachable("a".into(), "b".into()).exit_code(),
            failed(ErrorCode::MalformedUri).exit_code(),
            failed(ErrorCode::DataNotFound).exit_code(),
            failed(ErrorCode::RouteNotFound).exit_code(),
            failed(ErrorCode::Timeout).exit_code(),
            failed(ErrorCode::Retracted).exit_code(),
            failed(ErrorCode::Circuit).exit_code(),
            GatewayError::BadUrl(String::new()).exit_code(),
            GatewayError::BadReply(String::new()).exit_code(),
        ];
        let mut distinct = codes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), codes.len(), "{codes:?}");
        assert!(!codes.contains(&0));
    }
}
