//! The gateway's transfers: fetching a document (whole, as a range, as a
//! stream of progress lines, or through the browser filter), and
//! inserting one, a file or a folder as a site, from a request body or
//! the upload form.

use super::*;

impl Service {
    pub(super) async fn fetch(&self, req: &Request<Incoming>, link: Link) -> Response<Body> {
        if matches!(link.uri, Uri::SskInsert(_)) {
            return failure(ErrorCode::InsertUri, ClientError::InsertUri);
        }
        let node = self.node.clone();
        let budget = self.local.budget.clone();
        if wants_progress(req) {
            return work::streamed_fetch(node, link, budget);
        }
        // A file name says what the bytes are better than the type they
        // were inserted with, which is often none; a site's path names
        // one of its files.
        let (doc, content_type, name, version) = match resolve(&node, &link, &budget, false).await {
            Ok(Resolved::Doc {
                doc,
                content_type,
                name,
                version,
            }) => (doc, content_type, name, version),
            Ok(Resolved::Folder) => return redirect(&format!("{link}/")),
            Err((code, message)) => return failure(code, message),
        };
        let len = doc.len;
        let kind = filter::Kind::of(&content_type);
        let what = link.to_string();
        if kind.filtered() {
            return filtered(req, doc, kind, name, version, (&self.local.session, what)).await;
        }
        let range = match header_str(req.headers(), header::RANGE).map(|r| range::parse(r, len)) {
            None | Some(range::Asked::Ignored) => None,
            Some(range::Asked::Part(r)) => Some(r),
            Some(range::Asked::Unsatisfiable) => {
                let mut r = failure(
                    ErrorCode::RangeNotSatisfiable,
                    format!("the document is {len} bytes long"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        };
        let (status, part) = match &range {
            Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
            None => (StatusCode::OK, 0..len),
        };
        let mut r = if req.method() == Method::HEAD {
            // What the manifest says is all a HEAD needs.
            let mut r = Response::new(full(Bytes::new()));
            r.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(part.end - part.start),
            );
            r
        } else {
            let (watched, tx) = self.local.session.watch(Direction::Fetch, what);
            let mut reader = doc.read(part.clone(), Some(tx));
            // The first piece before the answer's head, so that a document
            // that cannot be read at all gets its own error code.
            let first = match reader.next().await {
                Some(Ok(piece)) => piece,
                Some(Err(e)) => return failure(ErrorCode::of(&e), e),
                None => Bytes::new(),
            };
            let body = ReaderBody {
                first: Some(first),
                reader,
                left: part.end - part.start,
            }
            .map_err(|never| match never {});
            Response::new(
                Watching {
                    body,
                    _watched: watched,
                }
                .boxed(),
            )
        };
        *r.status_mut() = status;
        let h = r.headers_mut();
        document_headers(h, &content_type);
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if range.is_some() && !part.is_empty() {
            let value = format!("bytes {}-{}/{len}", part.start, part.end - 1);
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        if let Some(v) = version {
            h.insert(VERSION_HEADER, HeaderValue::from(v));
        }
        // What a browser would run or follow unfiltered is saved, not
        // shown.
        let how = match kind {
            filter::Kind::Saved => "attachment",
            _ => "inline",
        };
        match name.as_deref().and_then(|n| disposition(how, n)) {
            Some(v) => {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            None if how == "attachment" => {
                h.insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
            }
            None => {}
        }
        r
    }

    /// Insert the request's body under `target`, or a content-hash key
    /// whose URI carries the file name `name`.
    pub(super) async fn insert(
        &self,
        req: Request<Incoming>,
        target: Option<Uri>,
        name: Option<String>,
    ) -> Response<Body> {
        let key = match signing_key(target) {
            Ok(k) => k,
            Err(why) => return failure(ErrorCode::BadRequest, why),
        };
        // The type the request says, else what the file name says.
        let content_type = header_str(req.headers(), header::CONTENT_TYPE)
            .map(str::to_string)
            .or_else(|| name.as_deref().and_then(content_type_of))
            .unwrap_or_else(|| "application/octet-stream".into());
        // What the page calls the insert while it runs.
        let label = match (&name, &key) {
            (Some(n), _) => n.clone(),
            (None, Some((_, Some(word)))) => format!("umbra:ksk:{word}"),
            (None, Some(_)) => "a signed document".to_string(),
            (None, None) => "a document".to_string(),
        };
        let named = move |uri: Uri| Link {
            uri,
            name: name.clone(),
        };
        let progress = wants_progress(&req);
        let limit = self.local.insert_limit;
        let body = req.into_body();
        let declared = hyper::body::Body::size_hint(&body).exact();
        if declared.is_some_and(|n| n > limit) {
            work::drain(body).await;
            return failure(
                ErrorCode::TooLarge,
                format!("documents are limited to {limit} bytes"),
            );
        }
        let window = declared.map_or(INSERT_WINDOW, |n| {
            n.saturating_mul(client::HOLD_PER_BYTE).min(INSERT_WINDOW)
        });
        let held = match self.local.budget.hold(window).await {
            Ok(h) => h,
            Err(e) => {
                work::drain(body).await;
                return failure(ErrorCode::of(&e), e);
            }
        };
        let body = work::BodyReader::new(body, limit, self.local.body_timeout);
        let node = self.node.clone();
        let session = self.local.session.clone();
        let (watched, tx) = session.watch(Direction::Insert, label);
        if progress {
            return streamed(tx, move |p| async move {
                let done = match insert(&node, &content_type, body, declared, key, Some(&p)).await {
                    Ok(uri) => {
                        let link = named(uri);
                        session.inserted(link.clone(), declared);
                        Finished::Inserted(Box::new(link))
                    }
                    Err(e) => Finished::Failed(ErrorCode::of(&e), e.to_string()),
                };
                drop((held, watched));
                done
            });
        }
        let done = insert(&node, &content_type, body, declared, key, Some(&tx)).await;
        drop((held, watched));
        match done.map(named) {
            Ok(uri) => {
                session.inserted(uri.clone(), declared);
                let mut r = respond(
                    StatusCode::CREATED,
                    "text/plain; charset=utf-8",
                    format!("{uri}\n"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "/{}",
                    url::percent_encode_path(&uri.to_string())
                )) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Err(e) => failure(ErrorCode::of(&e), e),
        }
    }

    /// A folder from the upload form, inserted as one site: each file
    /// under a content-hash key, typed by its name, then the list of them
    /// under `key` (the next version of a signed key) or a content-hash
    /// key.
    pub(super) async fn upload_site(
        &self,
        mut files: Vec<(String, Vec<u8>)>,
        key: work::Signer,
    ) -> Response<Body> {
        work::folder_paths(&mut files);
        let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        let session = &self.local.session;
        let (watched, tx) = session.watch(
            Direction::Insert,
            format!("a site of {} files", files.len()),
        );
        let mut site = keys::site::Site::default();
        for (path, bytes) in &files {
            if let Err(e) = keys::site::check_path(path) {
                return page_failure(ErrorCode::BadRequest, e);
            }
            let content_type = content_type_of(path).unwrap_or_default();
            let stored = if content_type.is_empty() {
                "application/octet-stream"
            } else {
                &content_type
            };
            let len = Some(bytes.len() as u64);
            let uri = match insert(&self.node, stored, &bytes[..], len, None, Some(&tx)).await {
                Ok(u) => u,
                Err(e) => return page_failure(ErrorCode::of(&e), e),
            };
            if let Err(e) = site.insert(path, keys::site::SiteFile { uri, content_type }) {
                return page_failure(ErrorCode::BadRequest, e);
            }
        }
        let list = site.encode();
        let len = Some(list.len() as u64);
        let site_type = keys::site::SITE_TYPE;
        let done = insert(&self.node, site_type, &list[..], len, key, Some(&tx)).await;
        drop(watched);
        match done {
            Ok(uri) => {
                let link = Link {
                    uri,
                    name: Some(String::new()),
                };
                session.inserted(link.clone(), Some(total));
                html(StatusCode::CREATED, page::inserted(&link, total as usize))
            }
            Err(e) => page_failure(ErrorCode::of(&e), e),
        }
    }

    /// The upload form: a file, an optional content type, an optional
    /// insert URI; or a folder (the `site` field), inserted as one site.
    pub(super) async fn upload(&self, req: Request<Incoming>) -> Response<Body> {
        let boundary = match header_str(req.headers(), header::CONTENT_TYPE)
            .map(multer::parse_boundary)
        {
            Some(Ok(b)) => b,
            _ => return page_failure(ErrorCode::BadRequest, "the form has no multipart boundary"),
        };
        let (body, _held) =
            match read_body(req.into_body(), MAX_FORM + (64 << 10), &self.local).await {
                Ok(d) => d,
                Err(r) => return r,
            };
        let form = match read_form(body, boundary).await {
            Ok(f) => f,
            Err(e) => return page_failure(ErrorCode::BadRequest, format!("malformed form: {e}")),
        };
        let target = match form.insert_uri.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<Uri>() {
                Ok(u) => Some(u),
                Err(e) => {
                    return page_failure(
                        ErrorCode::MalformedUri,
                        format!("malformed insert URI: {e}"),
                    )
                }
            },
        };
        let key = match signing_key(target) {
            Ok(k) => k,
            Err(why) => return page_failure(ErrorCode::BadRequest, why),
        };
        if !form.folder.is_empty() {
            return self.upload_site(form.folder, key).await;
        }
        let content_type = form
            .content_type
            .filter(|c| !c.trim().is_empty())
            .or(form.file_type)
            .unwrap_or_else(|| "application/octet-stream".into());
        let len = Some(form.file.len() as u64);
        // A signed key's URI carries no file name.
        let name = form.file_name.filter(|_| key.is_none());
        let label = name.clone().unwrap_or_else(|| "an uploaded file".into());
        let (watched, tx) = self.local.session.watch(Direction::Insert, label);
        let done = insert(
            &self.node,
            content_type.trim(),
            &form.file[..],
            len,
            key,
            Some(&tx),
        )
        .await;
        drop(watched);
        match done {
            Ok(uri) => {
                let link = Link { uri, name };
                self.local.session.inserted(link.clone(), len);
                html(StatusCode::CREATED, page::inserted(&link, form.file.len()))
            }
            Err(e) => page_failure(ErrorCode::of(&e), e),
        }
    }
}
