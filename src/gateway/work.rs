//! What the gateway's requests do beyond routing: inserts (under a
//! content-hash key, a signed key or a keyword), request bodies and upload
//! forms read within their bounds, and work whose progress streams back to
//! the client as it goes.

use super::*;
use crate::client::ReadError;

/// What an insert is signed with: nothing for a content-hash key, the
/// subspace's key for an insert URI, the keyword's key (and the keyword,
/// to name the result) for a keyword.
pub(super) type Signer = Option<(SskInsertKey, Option<String>)>;

/// What a link opens to.
pub(super) enum Resolved {
    /// A document, or a site's file: the type to serve it as, and the file
    /// name to offer it under.
    Doc {
        doc: client::Opened<NodeClient>,
        content_type: String,
        name: Option<String>,
        /// The signed document's version: the site's, for a site's file.
        version: Option<u64>,
    },
    /// A site asked for without a path: its pages' relative links work
    /// only under `URI/`.
    Folder,
}

/// Open what `link` names: the document, or, when it is a site, the file
/// its path names (a folder's index page for `""` or a path ending in
/// `/`). A site named without a path is [`Resolved::Folder`], or, with
/// `index`, its index page.
pub(super) async fn resolve(
    node: &NodeClient,
    link: &Link,
    budget: &Budget,
    index: bool,
) -> Result<Resolved, (ErrorCode, String)> {
    let failed = |e: ClientError| (ErrorCode::of(&e), e.to_string());
    let doc = client::open(node, &link.uri, budget)
        .await
        .map_err(failed)?;
    if doc.content_type != keys::site::SITE_TYPE {
        let content_type = link
            .file_name()
            .and_then(content_type_of)
            .unwrap_or_else(|| doc.content_type.clone());
        let version = doc.version;
        return Ok(Resolved::Doc {
            doc,
            content_type,
            name: link.file_name().map(str::to_string),
            version,
        });
    }
    let Some(path) = link.name.as_deref().or(index.then_some("")) else {
        return Ok(Resolved::Folder);
    };
    if doc.len > keys::site::MAX_SITE_BYTES {
        return Err((
            ErrorCode::BadDocument,
            keys::site::SiteError::TooLarge.to_string(),
        ));
    }
    let version = doc.version;
    let list = doc.read_all(None).collect().await.map_err(failed)?;
    let site = keys::site::Site::decode(&list)
        .map_err(|e| (ErrorCode::BadDocument, format!("a malformed site: {e}")))?;
    let Some((path, file)) = site.lookup(path) else {
        return Err((
            ErrorCode::NotFound,
            format!("this site has no file {path:?}"),
        ));
    };
    let doc = client::open(node, &file.uri, budget)
        .await
        .map_err(failed)?;
    let content_type = Some(file.content_type.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| content_type_of(path))
        .unwrap_or_else(|| doc.content_type.clone());
    Ok(Resolved::Doc {
        doc,
        content_type,
        name: path.rsplit('/').next().map(str::to_string),
        version,
    })
}

/// The signer for an insert to `target`; other URIs cannot be inserted to.
pub(super) fn signing_key(target: Option<Uri>) -> Result<Signer, &'static str> {
    match target {
        None => Ok(None),
        Some(Uri::SskInsert(k)) => Ok(Some((k, None))),
        Some(Uri::Ksk(word)) => Ok(Some((keys::ksk(&word), Some(word)))),
        Some(_) => Err(
            "an insert goes to / for a content-hash key, or to an umbra:ssk-insert: or umbra:ksk: URI",
        ),
    }
}

/// Insert under a content-hash key, or under a signed key at the next
/// version. Returns the URI to fetch with.
pub(super) async fn insert<R: AsyncRead + Unpin>(
    node: &NodeClient,
    content_type: &str,
    data: R,
    len: Option<u64>,
    key: Signer,
    progress: Option<&ProgressTx>,
) -> Result<Uri, ClientError> {
    match key {
        None => client::insert_from(node, content_type, data, len, Target::Chk, progress).await,
        Some((key, word)) => {
            let version = client::next_version(node, &key).await?;
            let uri = client::insert_from(
                node,
                content_type,
                data,
                len,
                Target::Signed(&key, version),
                progress,
            )
            .await?;
            Ok(word.map_or(uri, Uri::Ksk))
        }
    }
}

/// A request body read as it arrives: at most `limit` bytes, each piece
/// within `timeout` of the one before. Its failures are typed
/// ([`ReadError`]) for the insert that reads it.
pub(super) struct BodyReader {
    body: Incoming,
    buf: Bytes,
    left: u64,
    limit: u64,
    timeout: Duration,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl BodyReader {
    pub(super) fn new(body: Incoming, limit: u64, timeout: Duration) -> BodyReader {
        BodyReader {
            body,
            buf: Bytes::new(),
            left: limit,
            limit,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let failed = |e: ReadError| Poll::Ready(Err(std::io::Error::other(e)));
        loop {
            if !this.buf.is_empty() {
                let n = this.buf.len().min(out.remaining());
                out.put_slice(&this.buf.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match hyper::body::Body::poll_frame(std::pin::Pin::new(&mut this.body), cx) {
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return failed(ReadError::Io(format!("the request body broke off: {e}")))
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let n = data.len() as u64;
                        if n > this.left {
                            return failed(ReadError::TooLong(this.limit));
                        }
                        this.left -= n;
                        this.buf = data;
                        let next = tokio::time::Instant::now() + this.timeout;
                        this.timer.as_mut().reset(next);
                    }
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return failed(ReadError::Timeout(this.timeout.as_secs()));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Bytes of a refused body read and dropped before the refusal goes out.
const DRAIN_BYTES: usize = 4 << 20;
/// And for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Read and drop some of a body that is refused before it is read: a
/// client still sending it when the answer comes and the connection
/// closes sees a failed write, not the refusal. A body longer than
/// [`DRAIN_BYTES`] or slower than [`DRAIN_TIME`] is left unread.
pub(super) async fn drain(body: Incoming) {
    let mut body = Limited::new(body, DRAIN_BYTES);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// A request body, at most `limit` bytes, whole in memory (the upload
/// form).
#[allow(clippy::result_large_err)]
pub(super) async fn read_body(
    body: Incoming,
    limit: usize,
    local: &Local,
) -> Result<(Vec<u8>, Held), Response<Body>> {
    let budget = &local.budget;
    let too_large = || {
        failure(
            ErrorCode::TooLarge,
            format!("documents are limited to {limit} bytes"),
        )
    };
    let refused = |e: ClientError| failure(ErrorCode::of(&e), e);
    // The whole declared length at once when the client declares it,
    // else frame by frame as they come.
    let declared = hyper::body::Body::size_hint(&body).exact();
    let mut held = Held::default();
    if let Some(n) = declared {
        if n > limit as u64 {
            drain(body).await;
            return Err(too_large());
        }
        match budget.hold(n.saturating_mul(client::HOLD_PER_BYTE)).await {
            Ok(h) => held = h,
            Err(e) => {
                drain(body).await;
                return Err(refused(e));
            }
        }
    }
    let mut body = Limited::new(body, limit);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + local.body_timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(failure(
                    ErrorCode::Timeout,
                    format!(
                        "the request body did not arrive within {} s",
                        local.body_timeout.as_secs()
                    ),
                ))
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(e) => {
                return Err(failure(
                    ErrorCode::BadRequest,
                    format!("the request body broke off: {e}"),
                ))
            }
        };
        if let Ok(data) = frame.into_data() {
            if declared.is_none() {
                let more = budget
                    .hold((data.len() as u64).saturating_mul(client::HOLD_PER_BYTE))
                    .await
                    .map_err(refused)?;
                held.merge(more);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok((out, held))
}

pub(super) struct Form {
    pub(super) file: Vec<u8>,
    pub(super) file_type: Option<String>,
    /// The name the browser gave the file, if it is one a URI can carry.
    pub(super) file_name: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) insert_uri: Option<String>,
    /// The files of a folder (the `site` field, many times): each path as
    /// the browser gave it, and the bytes.
    pub(super) folder: Vec<(String, Vec<u8>)>,
}

pub(super) async fn read_form(body: Vec<u8>, boundary: String) -> Result<Form, multer::Error> {
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(body)) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut form = Form {
        file: Vec::new(),
        file_type: None,
        file_name: None,
        content_type: None,
        insert_uri: None,
        folder: Vec::new(),
    };
    while let Some(field) = parts.next_field().await? {
        match field.name() {
            Some("file") => {
                form.file_type = field.content_type().map(|m| m.to_string());
                form.file_name = field
                    .file_name()
                    .map(str::to_string)
                    .filter(|n| crate::keys::check_file_name(n).is_ok());
                form.file = field.bytes().await?.to_vec();
            }
            Some("site") => {
                let path = field.file_name().unwrap_or("").to_string();
                form.folder.push((path, field.bytes().await?.to_vec()));
            }
            Some("content_type") => form.content_type = Some(field.text().await?),
            Some("insert_uri") => form.insert_uri = Some(field.text().await?),
            _ => {}
        }
    }
    Ok(form)
}

/// Run an insert or fetch and answer with its progress as it goes, then
/// its result (see `docs/protocol.md`, "Gateway"). A reader that goes away
/// cancels the work.
pub(super) fn streamed<F, Fut>(tx: ProgressTx, work: F) -> Response<Body>
where
    F: FnOnce(ProgressTx) -> Fut,
    Fut: Future<Output = Finished> + Send + 'static,
{
    let rx = tx.subscribe();
    let work = work(tx);
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut sent = None;
        let finished = loop {
            tokio::select! {
                f = &mut work => break f,
                _ = tick.tick() => {
                    let p = *rx.borrow();
                    if sent != Some(p) {
                        sent = Some(p);
                        let line = format!("progress {} {}\n", p.done, p.total);
                        if sender.send_data(line.into()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let p = *rx.borrow();
        let mut lines = format!("progress {} {}\n", p.done, p.total);
        match finished {
            Finished::Inserted(uri) => lines.push_str(&format!("ok {uri}\n")),
            Finished::Failed(code, message) => {
                let message = message.replace(['\n', '\r'], " ");
                lines.push_str(&format!("error {code} {message}\n"));
            }
        }
        let _ = sender.send_data(lines.into()).await;
    });
    progress_answer(body)
}

/// A fetch answered as progress lines: `ok VERSION LENGTH CTYPE` once the
/// root is read, then the document in `data N` frames between progress
/// lines, then `end`, or `error CODE MESSAGE` wherever it fails (see
/// `docs/protocol.md`, "Progress answers"). Memory stays within the
/// reader's window whatever the document's size.
pub(super) fn streamed_fetch(node: NodeClient, link: Link, budget: Budget) -> Response<Body> {
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        let said = |code: ErrorCode, message: &str| {
            let message = message.replace(['\n', '\r'], " ");
            format!("error {code} {message}\n")
        };
        let failed = |e: &ClientError| said(ErrorCode::of(e), &e.to_string());
        // A site without a path: its index page.
        let (doc, ctype, version) = match resolve(&node, &link, &budget, true).await {
            Ok(Resolved::Doc {
                doc,
                content_type,
                version,
                ..
            }) => (doc, content_type, version),
            Ok(Resolved::Folder) => {
                let _ = sender
                    .send_data(said(ErrorCode::BadDocument, "a site within a site").into())
                    .await;
                return;
            }
            Err((code, message)) => {
                let _ = sender.send_data(said(code, &message).into()).await;
                return;
            }
        };
        let version = version.map_or("-".to_string(), |v| v.to_string());
        let ctype = ctype.replace(['\n', '\r'], " ");
        let head = format!("ok {version} {} {ctype}\n", doc.len);
        if sender.send_data(head.into()).await.is_err() {
            return;
        }
        let (tx, rx) = watch::channel(Progress::default());
        let mut reader = doc.read_all(Some(tx));
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut sent = None;
        loop {
            let out: Vec<Bytes> = tokio::select! {
                piece = reader.next() => match piece {
                    Some(Ok(piece)) => {
                        vec![format!("data {}\n", piece.len()).into(), piece]
                    }
                    Some(Err(e)) => {
                        let _ = sender.send_data(failed(&e).into()).await;
                        return;
                    }
                    None => {
                        let p = *rx.borrow();
                        let end = format!("progress {} {}\nend\n", p.done, p.total);
                        let _ = sender.send_data(end.into()).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    let p = *rx.borrow();
                    if sent == Some(p) {
                        continue;
                    }
                    sent = Some(p);
                    vec![format!("progress {} {}\n", p.done, p.total).into()]
                }
            };
            for b in out {
                if sender.send_data(b).await.is_err() {
                    return;
                }
            }
        }
    });
    progress_answer(body)
}

/// The answer that carries a progress stream.
fn progress_answer(body: Channel<Bytes, Infallible>) -> Response<Body> {
    let mut r = Response::new(body.map_err(|never| match never {}).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROGRESS_TYPE),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The paths of a folder's files relative to the folder: a browser names
/// each file of a chosen folder `FOLDER/PATH`, and the folder's own name
/// is no part of the site. Paths with `\\` (a browser on Windows) read as
/// `/`.
pub(super) fn folder_paths(files: &mut [(String, Vec<u8>)]) {
    for (path, _) in files.iter_mut() {
        *path = path.replace('\\', "/");
    }
    let first = |p: &str| p.split_once('/').map(|(f, _)| f.to_string());
    let top = files.first().and_then(|(p, _)| first(p));
    if let Some(top) = top {
        if files.iter().all(|(p, _)| first(p).as_deref() == Some(&top)) {
            for (path, _) in files.iter_mut() {
                *path = path[top.len() + 1..].to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::folder_paths;

    #[test]
    fn a_folders_own_name_is_no_part_of_its_paths() {
        let mut files = vec![
            ("blog/index.html".to_string(), vec![]),
            ("blog\\css\\s.css".to_string(), vec![]),
        ];
        folder_paths(&mut files);
        assert_eq!(files[0].0, "index.html");
        assert_eq!(files[1].0, "css/s.css");
        let mut loose = vec![
            ("a.html".to_string(), vec![]),
            ("b/c.html".to_string(), vec![]),
        ];
        folder_paths(&mut loose);
        assert_eq!(loose[0].0, "a.html");
        assert_eq!(loose[1].0, "b/c.html");
    }
}
