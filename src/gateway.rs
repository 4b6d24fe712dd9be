//! The HTTP interface to documents. One service answers on the gateway's
//! listener and on every SOCKS stream to a `.umbra` name
//! ([`crate::socks`]):
//!
//! ```text
//! GET  /                   index page: node status, fetch and upload forms
//! GET  /?uri=URI           303 to /URI (the fetch form)
//! GET  /status             the node's status, JSON
//! GET  /URI                the document, served with its content type
//! GET  /URI/NAME           the same, a content-hash URI under a file
//!                          name: its type and the name to save it as
//! PUT|POST /               insert the body under a content-hash key;
//!                          201 and the URI as text
//! PUT|POST /NAME           the same, under a file name: the URI carries
//!                          it (`curl -T FILE http://doc.umbra/`)
//! PUT|POST /INSERT-URI     insert under a signed key (ssk-insert or ksk),
//!                          at the next version
//! POST / multipart         the upload form; an HTML page with the URI
//! ```
//!
//! `URI` is the whole URI, `umbra:` included, percent-encoded where it
//! needs to be. A request with `X-Umbra-Progress: 1` gets its answer as a
//! stream of progress lines ([`remote`] reads it; `docs/protocol.md`
//! gives the format). Failures carry an `X-Umbra-Error` code
//! ([`ErrorCode`]) next to the HTTP status.
//!
//! Documents are served under a Content-Security-Policy that lets them
//! load nothing but other documents from the same origin, and run no
//! script: an HTML document cannot reach the open web, or the node's own
//! interface, on its reader's behalf.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::client::{self, Budget, ClientError, Held, Progress, ProgressTx, Target};
use crate::keys::{self, Link, SskInsertKey, Uri};
use crate::node::NodeClient;
use session::Direction;

mod error;
pub mod filter;
pub mod page;
pub mod range;
pub mod remote;
pub mod session;
mod transfer;
pub mod url;
mod work;

use work::{insert, read_body, read_form, resolve, signing_key, streamed, Resolved};

pub use error::ErrorCode;
pub use remote::{fetch_status, Fetched, GatewayError};

/// Largest document one insert takes by default (`limits.insert_bytes`):
/// an insert is streamed, so this bounds its work, not its memory.
pub const MAX_INSERT: u64 = 64 << 30;
/// Largest upload form, parsed in memory.
pub const MAX_FORM: usize = 256 << 20;
/// Memory an insert streamed from a request body holds from the budget:
/// the two segments being filled, the bytes read ahead, the blocks on
/// their way.
pub const INSERT_WINDOW: u64 = 16 << 20;
/// Largest request head (request line and headers), in bytes; a larger
/// one is answered 431.
pub const MAX_HEAD: usize = 16 << 10;
/// A request head must arrive within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body may go this long without sending a byte by default
/// (`limits.body_secs`): a client that stops sending its body holds a
/// connection and a share of the document budget only this long.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(600);

/// What the requests of every local client, on the gateway and through
/// the proxy alike, are held to together.
#[derive(Clone, Debug)]
pub struct Local {
    /// The memory their documents may take.
    pub budget: Budget,
    /// The time a request body may go without sending a byte.
    pub body_timeout: Duration,
    /// The largest document one insert may be.
    pub insert_limit: u64,
    /// What the page shows of this session.
    pub session: session::Session,
}

impl Default for Local {
    fn default() -> Local {
        Local {
            budget: Budget::new(crate::node::Limits::default().document_bytes),
            body_timeout: BODY_TIMEOUT,
            insert_limit: MAX_INSERT,
            session: session::Session::default(),
        }
    }
}
/// Connections the gateway's listener serves at once by default
/// (`limits.gateway_clients`); more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Progress lines go out at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Ask for the answer as progress lines.
pub const PROGRESS_HEADER: &str = "x-umbra-progress";
/// The content type of a progress answer.
pub const PROGRESS_TYPE: &str = "application/x-umbra-progress";
/// The [`ErrorCode`] of a failure.
pub const ERROR_HEADER: &str = "x-umbra-error";
/// The version of a signed document served.
pub const VERSION_HEADER: &str = "x-umbra-version";
/// How often the page looks for a followed site's newest version.
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// The longest destination the warning page names.
const MAX_LEAVE: usize = 8 << 10;
/// Where a browser says a request comes from (Fetch Metadata).
const SEC_FETCH_SITE: header::HeaderName = header::HeaderName::from_static("sec-fetch-site");

/// What a document may load: other documents from its own origin (the
/// gateway, or the `.umbra` name it came through), nothing else; no
/// script, no `<base>`; forms only to its own origin (the filter makes
/// every form a GET, and sends those out of umbra to the warning page).
pub const DOCUMENT_CSP: &str = "default-src 'none'; img-src 'self' data:; \
     media-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; \
     frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'";
/// The interface's own pages: inline style, forms to itself, its own
/// transfers page in a frame, nothing more.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
     frame-src 'self'; base-uri 'none'; frame-ancestors 'none'";
/// The transfers page, which the index page shows in a frame.
const FRAMED_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'self'";

/// A response body: whole, or streamed.
pub type Body = BoxBody<Bytes, BodyError>;
/// Why a streamed body stopped short: hyper then ends the connection
/// without the body's end, so no client takes it for whole.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The gateway's own listener: requests must name it by an IP address
    /// or `localhost` (no DNS rebinding).
    Gateway,
    /// A SOCKS stream to a `.umbra` name, already checked by the proxy.
    Socks,
}

/// Serve the gateway's listener until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    node: NodeClient,
    clients: usize,
    local: Local,
    shutdown: watch::Receiver<bool>,
) {
    accept_each(listener, clients, shutdown, move |stream| {
        serve_connection(stream, node.clone(), Front::Gateway, local.clone())
    })
    .await;
}

/// Accept connections until `shutdown` changes and hand each to `serve`,
/// at most `limit` at once; the others wait in the kernel's accept queue.
pub(crate) async fn accept_each<F, Fut>(
    listener: TcpListener,
    limit: usize,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let work = serve(stream);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}

/// Serve HTTP/1.1 on one connection until either side closes it.
/// Requests go through `node` (and so take its circuit isolation); the
/// documents they fetch and insert are held to `local`.
pub async fn serve_connection<I>(io: I, node: NodeClient, front: Front, local: Local)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Service { node, front, local };
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(MAX_HEAD)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let conn = builder.serve_connection(
        TokioIo::new(io),
        service_fn(move |req| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.handle(req).await) }
        }),
    );
    if let Err(e) = conn.await {
        tracing::debug!("http connection ended: {e}");
    }
}

#[derive(Clone)]
struct Service {
    node: NodeClient,
    front: Front,
    local: Local,
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A document's body as its reader brings it: the length is known (and
/// sent as Content-Length), so a reading that fails half way ends the
/// connection short of it, which no client takes for the whole document.
/// The reader holds the document's share of the budget until it is
/// dropped: sent, or the client gone.
struct ReaderBody {
    first: Option<Bytes>,
    reader: client::Reader,
    left: u64,
}

impl hyper::body::Body for ReaderBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        let this = self.get_mut();
        let piece = match this.first.take() {
            Some(first) => first,
            None => match this.reader.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(piece))) => piece,
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("a document broke off while it was sent: {e}");
                    return Poll::Ready(None);
                }
                Poll::Ready(None) => return Poll::Ready(None),
            },
        };
        this.left = this.left.saturating_sub(piece.len() as u64);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// A body that keeps its transfer on the session's page while it is
/// sent.
struct Watching<B> {
    body: B,
    _watched: session::Watched,
}

impl<B> hyper::body::Body for Watching<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, B::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A failure as plain text, with its code in `X-Umbra-Error`.
fn failure(code: ErrorCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut r = respond(
        code.status(),
        "text/plain; charset=utf-8",
        format!("{message}\n"),
    );
    r.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code.as_str()));
    if code == ErrorCode::MethodNotAllowed {
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, PUT, POST"),
        );
    }
    r
}

/// One of the interface's own HTML pages.
fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = respond(status, "text/html; charset=utf-8", body);
    policy(r.headers_mut(), PAGE_CSP);
    r
}

/// A content security policy, and no referrer to wherever a link leads.
fn policy(h: &mut HeaderMap, csp: &'static str) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The headers every served document carries.
fn document_headers(h: &mut HeaderMap, content_type: &str) {
    let ctype = HeaderValue::from_str(content_type)
        .ok()
        .filter(|_| !content_type.is_empty())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ctype);
    policy(h, DOCUMENT_CSP);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_DNS_PREFETCH_CONTROL,
        HeaderValue::from_static("off"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// A document the filter rewrites ([`filter`]): served whole, since its
/// length is not known before it is sent and a range of it would be a
/// range of other bytes.
async fn filtered(
    req: &Request<Incoming>,
    doc: client::Opened<NodeClient>,
    kind: filter::Kind,
    name: Option<String>,
    version: Option<u64>,
    (session, what): (&session::Session, String),
) -> Response<Body> {
    let mut r = if req.method() == Method::HEAD {
        Response::new(
            http_body_util::StreamBody::new(futures_util::stream::empty::<
                Result<hyper::body::Frame<Bytes>, BodyError>,
            >())
            .boxed(),
        )
    } else {
        let (watched, tx) = session.watch(Direction::Fetch, what);
        let mut reader = doc.read_all(Some(tx));
        let first = match reader.next().await {
            Some(Ok(piece)) => piece,
            Some(Err(e)) => return failure(ErrorCode::of(&e), e),
            None => Bytes::new(),
        };
        Response::new(
            Watching {
                body: filter::Filtered::new(&kind, first, reader),
                _watched: watched,
            }
            .boxed(),
        )
    };
    let h = r.headers_mut();
    document_headers(h, &kind.content_type().unwrap_or_default());
    if let Some(v) = version {
        h.insert(VERSION_HEADER, HeaderValue::from(v));
    }
    if let Some(v) = name.as_deref().and_then(|n| disposition("inline", n)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

fn wants_progress(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(PROGRESS_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// How an insert or fetch ended, for a progress answer.
enum Finished {
    Inserted(Box<Link>),
    Failed(ErrorCode, String),
}

impl Service {
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let host = header_str(req.headers(), header::HOST);
        if self.front == Front::Gateway && !host.is_none_or(url::host_allowed) {
            return failure(
                ErrorCode::Forbidden,
                "the gateway answers only to its IP address or localhost",
            );
        }
        let method = req.method().clone();
        let writes = method == Method::PUT || method == Method::POST;
        // hyper sends no body in answer to HEAD.
        let reads = method == Method::GET || method == Method::HEAD;
        let path = req.uri().path().to_string();
        let provenance = url::Provenance {
            fetch_site: header_str(req.headers(), SEC_FETCH_SITE),
            origin: header_str(req.headers(), header::ORIGIN),
            referer: header_str(req.headers(), header::REFERER),
        };
        if let Some(why) = url::cross_site(provenance, host) {
            let again = (method == Method::GET && path.len() > 1).then_some(path.as_str());
            let mut r = html(StatusCode::FORBIDDEN, page::cross_site(why, again));
            r.headers_mut().insert(
                ERROR_HEADER,
                HeaderValue::from_static(ErrorCode::Forbidden.as_str()),
            );
            return r;
        }
        // Requests for different sites (the gateway, or each `.umbra`
        // name through the proxy) never share a circuit, under whatever
        // key the SOCKS credentials chose.
        let label = [
            match self.front {
                Front::Gateway => b"gateway\0".as_slice(),
                Front::Socks => b"socks\0".as_slice(),
            },
            host.unwrap_or("").to_ascii_lowercase().as_bytes(),
        ]
        .concat();
        let this = Service {
            node: self.node.within(&label),
            front: self.front,
            local: self.local.clone(),
        };
        this.route(req, path, reads, writes).await
    }

    async fn route(
        self,
        req: Request<Incoming>,
        path: String,
        reads: bool,
        writes: bool,
    ) -> Response<Body> {
        match path.as_str() {
            "/" => {
                if reads {
                    match req.uri().query().and_then(|q| url::form_value(q, "uri")) {
                        Some(uri) => redirect(&uri),
                        None => self.index().await,
                    }
                } else if writes && is_multipart(req.headers()) {
                    self.upload(req).await
                } else if writes {
                    self.insert(req, None, None).await
                } else {
                    failure(ErrorCode::MethodNotAllowed, "use GET, PUT or POST")
                }
            }
            "/status" if reads => self.status().await,
            page::TRANSFERS_PATH if reads => {
                let mut r = html(
                    StatusCode::OK,
                    page::transfers(&self.local.session.transfers()),
                );
                policy(r.headers_mut(), FRAMED_CSP);
                r
            }
            page::SESSION_PATH if reads => {
                let mut r = respond(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    page::session_list(&self.local.session),
                );
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"umbra-session.txt\""),
                );
                r
            }
            page::FOLLOW_PATH | page::UNFOLLOW_PATH if req.method() == Method::POST => {
                let follow = path == page::FOLLOW_PATH;
                self.follow(req, follow).await
            }
            filter::refs::LEAVE_PATH if reads => {
                match req.uri().query().and_then(|q| url::form_value(q, "url")) {
                    Some(to) if !to.is_empty() && to.len() <= MAX_LEAVE => {
                        html(StatusCode::OK, page::leave(&to))
                    }
                    _ => page_failure(
                        ErrorCode::BadRequest,
                        "the warning page needs the address it warns about: /leave?url=URL",
                    ),
                }
            }
            _ => {
                let Some(text) = url::percent_decode(&path[1..]) else {
                    return failure(
                        ErrorCode::MalformedUri,
                        "the path is not valid percent-encoded UTF-8",
                    );
                };
                if !text.starts_with("umbra:") {
                    if writes && !is_multipart(req.headers()) {
                        // `curl -T report.pdf http://doc.umbra/` puts to
                        // /report.pdf: the last segment names the file.
                        let name = text.rsplit('/').next().unwrap_or("").to_string();
                        if let Err(e) = keys::check_file_name(&name) {
                            return failure(ErrorCode::BadRequest, e);
                        }
                        return self.insert(req, None, Some(name)).await;
                    }
                    return failure(
                        ErrorCode::NotFound,
                        "not found: ask for /umbra:KIND:KEY, or / for the index page",
                    );
                }
                let link: Link = match text.parse() {
                    Ok(u) => u,
                    Err(e) => {
                        return failure(ErrorCode::MalformedUri, format!("malformed URI: {e}"))
                    }
                };
                if reads {
                    self.fetch(&req, link).await
                } else if writes && link.name.is_none() {
                    self.insert(req, Some(link.uri), None).await
                } else if writes {
                    failure(
                        ErrorCode::BadRequest,
                        "a file name goes on an insert as PUT /NAME, not after a URI",
                    )
                } else {
                    failure(ErrorCode::MethodNotAllowed, "use GET, PUT or POST")
                }
            }
        }
    }

    async fn status(&self) -> Response<Body> {
        match self.node.status().await {
            Ok(status) => match serde_json::to_string_pretty(&status) {
                Ok(json) => respond(StatusCode::OK, "application/json", json + "\n"),
                Err(e) => failure(ErrorCode::Stopped, e),
            },
            Err(e) => failure(ErrorCode::Stopped, e),
        }
    }

    async fn index(&self) -> Response<Body> {
        let status = self.node.status().await.ok();
        let session = &self.local.session;
        self.check_followed();
        html(
            StatusCode::OK,
            page::index(
                status.as_ref(),
                self.front,
                &session.inserts(),
                &session.followed(),
            ),
        )
    }

    /// Look for the newest version of each followed site not looked for
    /// in [`CHECK_EVERY`], in the background: the page shows what was
    /// found when it is next opened.
    fn check_followed(&self) {
        let session = self.local.session.clone();
        let due: Vec<Link> = session
            .followed()
            .into_iter()
            .filter(|f| f.checked.is_none_or(|t| t.elapsed() >= CHECK_EVERY))
            .map(|f| f.link)
            .collect();
        for link in due {
            // Marked as looked for now, so that two views of the page do
            // not look twice.
            session.found(&link, None);
            let (node, budget, session) = (
                self.node.clone(),
                self.local.budget.clone(),
                session.clone(),
            );
            tokio::spawn(async move {
                if let Ok(doc) = client::open(&node, &link.uri, &budget).await {
                    session.found(&link, doc.version);
                }
            });
        }
    }

    /// Follow a site, or stop following it: the index page's forms.
    async fn follow(&self, req: Request<Incoming>, follow: bool) -> Response<Body> {
        let (body, _held) = match read_body(req.into_body(), 16 << 10, &self.local).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let text = String::from_utf8_lossy(&body);
        let link: Link = match url::form_value(&text, "uri").map(|u| u.trim().parse()) {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                return page_failure(ErrorCode::MalformedUri, format!("malformed URI: {e}"))
            }
            None => return page_failure(ErrorCode::BadRequest, "the form names no URI"),
        };
        if matches!(link.uri, Uri::SskInsert(_)) {
            return page_failure(ErrorCode::InsertUri, ClientError::InsertUri);
        }
        let session = &self.local.session;
        if follow {
            if !session.follow(link) {
                return page_failure(
                    ErrorCode::TooLarge,
                    format!(
                        "at most {} sites can be followed at once",
                        session::MAX_FOLLOWED
                    ),
                );
            }
            self.check_followed();
        } else {
            session.unfollow(&link);
        }
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        r
    }
}

fn page_failure(code: ErrorCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut r = html(code.status(), page::failed(code, &message.to_string()));
    r.headers_mut()
        .insert(ERROR_HEADER, HeaderValue::from_static(code.as_str()));
    r
}

/// The fetch form's answer: to the document's own path, and only for a
/// URI (anything else, `/evil.example` say, would make `//evil.example`
/// a way off the node).
fn redirect(text: &str) -> Response<Body> {
    let uri: Link = match text.trim().parse() {
        Ok(u) => u,
        Err(e) => return page_failure(ErrorCode::MalformedUri, format!("malformed URI: {e}")),
    };
    match HeaderValue::from_str(&format!("/{}", url::percent_encode_path(&uri.to_string()))) {
        Ok(location) => {
            let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(_) => failure(ErrorCode::MalformedUri, "malformed URI"),
    }
}

/// The content type a file name's extension says, if it says one; text
/// is taken to be UTF-8.
pub fn content_type_of(name: &str) -> Option<String> {
    let mime = mime_guess::from_path(name).first()?;
    Some(if mime.type_() == mime_guess::mime::TEXT {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    })
}

/// `Content-Disposition` for a document served under `name`: shown in the
/// browser where it can be, saved under that name (RFC 6266; the UTF-8
/// form for any name, a plain one with the rest replaced for old readers).
fn disposition(how: &str, name: &str) -> Option<HeaderValue> {
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "{how}; filename=\"{plain}\"; filename*=UTF-8''{encoded}"
    ))
    .ok()
}

fn is_multipart(h: &HeaderMap) -> bool {
    header_str(h, header::CONTENT_TYPE).is_some_and(|c| {
        c.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RequestError;

    #[test]
    fn a_file_name_gives_a_type_and_a_name_to_save_under() {
        assert_eq!(content_type_of("a.PDF").as_deref(), Some("application/pdf"));
        assert_eq!(
            content_type_of("index.html").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(content_type_of("README"), None);
        let d = disposition("inline", "r\u{e9}sum\u{e9} \"1\"%.txt").unwrap();
        assert_eq!(
            d.to_str().unwrap(),
            "inline; filename=\"r_sum_ _1__.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22%25.txt"
        );
    }

    #[test]
    fn error_codes_parse_back() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("no-such-code"), None);
    }

    #[test]
    fn failures_map_to_distinct_codes() {
        let cases = [
            (RequestError::DataNotFound, ErrorCode::DataNotFound, 404),
            (RequestError::RouteNotFound, ErrorCode::RouteNotFound, 503),
            (RequestError::Timeout, ErrorCode::Timeout, 504),
        ];
        for (e, code, status) in cases {
            let c = ErrorCode::of(&ClientError::Request(e));
            assert_eq!(c, code);
            assert_eq!(c.status().as_u16(), status);
        }
        assert_eq!(
            ErrorCode::of(&ClientError::Retracted { version: 3 }),
            ErrorCode::Retracted
        );
    }

    #[test]
    fn the_fetch_form_redirects_only_to_documents_here() {
        for off in [
            "/evil.example",
            "//evil.example",
            "http://evil.example/",
            "evil",
        ] {
            let r = redirect(off);
            assert!(r.headers().get(header::LOCATION).is_none(), "{off}");
            assert_eq!(r.status(), ErrorCode::MalformedUri.status(), "{off}");
        }
        let r = redirect(" umbra:ksk:my words ");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = r.headers().get(header::LOCATION).unwrap().to_str().unwrap();
        assert_eq!(to, "/umbra:ksk:my%20words");
    }
}
