//! The filter between a stored document and the browser that shows it.
//!
//! HTML and SVG pass through a streaming HTML rewriter, style sheets
//! through a CSS tokenizer. Every reference is judged ([`refs`]): what
//! stays on the origin that served the document, or names an umbra URI,
//! stays; a link or form out of umbra goes to the gateway's warning page
//! ([`refs::LEAVE_PATH`]), which names the destination and asks; whatever
//! would load from outside by itself is taken out. Scripts, plugins,
//! `<base>` and event handler attributes are taken out. Types a browser
//! shows without running or loading anything (text, pictures, sound,
//! video, fonts) pass as they are; every other type is served to be
//! saved, not shown.
//!
//! The Content-Security-Policy the gateway sends with every document
//! stays: the filter is the first wall, the policy the second.

pub mod css;
pub mod refs;

use std::error::Error;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame};
use lol_html::html_content::{Comment, ContentType, Doctype, TextChunk};
use lol_html::send::{Element, HtmlRewriter, Settings};
use lol_html::{
    comments, doc_comments, doctype, element, text, AsciiCompatibleEncoding, MemorySettings,
    OutputSink,
};

use crate::client;
use crate::gateway::page::escape;
use refs::{decode_entities, judge, judge_refresh, judge_srcset, Use, Verdict};

/// A style sheet is filtered whole: one longer than this is not served.
pub const CSS_LIMIT: usize = 8 << 20;
/// The text of one `<style>` element held to be filtered whole; past it,
/// the element is left empty.
const STYLE_LIMIT: usize = 1 << 20;
/// What the HTML rewriter may hold at once.
const REWRITER_MEMORY: usize = 8 << 20;

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// What a document's type makes of it in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// HTML (or XHTML, served as HTML) in this encoding.
    Html(&'static encoding_rs::Encoding),
    Svg,
    Css,
    /// Shown as it is: it can neither run nor load anything.
    Shown,
    /// Saved, not shown: a browser might run it or follow what is in it,
    /// and the filter does not read it.
    Saved,
}

impl Kind {
    /// The kind of a document served as `content_type`.
    pub fn of(content_type: &str) -> Kind {
        let mut parts = content_type.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/html" | "application/xhtml+xml" => {
                let charset = parts.find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("charset")
                        .then(|| v.trim().trim_matches('"'))
                });
                // Only an encoding in which markup is ASCII is read as
                // declared: in any other, the rewriter would see other
                // markup than the browser.
                let encoding = charset
                    .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
                    .filter(|e| AsciiCompatibleEncoding::new(e).is_some())
                    .unwrap_or(encoding_rs::UTF_8);
                Kind::Html(encoding)
            }
            "image/svg+xml" => Kind::Svg,
            "text/css" => Kind::Css,
            ""
            | "text/plain"
            | "text/csv"
            | "text/markdown"
            | "text/vtt"
            | "application/json"
            | "application/octet-stream" => Kind::Shown,
            e if ["image/", "audio/", "video/", "font/"]
                .iter()
                .any(|p| e.starts_with(p)) =>
            {
                Kind::Shown
            }
            _ => Kind::Saved,
        }
    }

    /// Whether the filter rewrites documents of this kind.
    pub fn filtered(&self) -> bool {
        matches!(self, Kind::Html(_) | Kind::Svg | Kind::Css)
    }

    /// The type to serve a filtered document as, its encoding stated so
    /// that the browser reads the bytes as the filter read them.
    pub fn content_type(&self) -> Option<String> {
        match self {
            Kind::Html(e) => Some(format!(
                "text/html; charset={}",
                e.name().to_ascii_lowercase()
            )),
            Kind::Svg => Some("image/svg+xml; charset=utf-8".into()),
            Kind::Css => Some("text/css; charset=utf-8".into()),
            Kind::Shown | Kind::Saved => None,
        }
    }
}

/// Why a filtered document stopped short.
#[derive(Debug)]
pub enum FilterError {
    /// The rewriter could not read the document with certainty (markup
    /// it cannot place, or more than it may hold).
    Rewriting(String),
    /// A style sheet longer than [`CSS_LIMIT`].
    TooLong,
    /// The document itself broke off.
    Read(client::ClientError),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Rewriting(e) => write!(f, "the filter could not read the document: {e}"),
            FilterError::TooLong => write!(
                f,
                "a style sheet longer than {} MiB is not filtered",
                CSS_LIMIT >> 20
            ),
            FilterError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl Error for FilterError {}

/// Where the rewriter writes.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        lock(&self.0).extend_from_slice(chunk);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Stage {
    /// In a mutex only so that the body may be shared between threads,
    /// which hyper asks and the rewriter's handlers are not; it is only
    /// ever used through `&mut`.
    Markup(Box<Mutex<HtmlRewriter<'static, Sink>>>),
    Sheet(Vec<u8>),
    Done,
}

/// A filtered document as a response body: the reader's pieces through
/// the filter, as they come. A failure, of the reading or of the filter,
/// ends the body with an error, so that the connection closes short and
/// no client takes what came for the whole.
pub struct Filtered {
    first: Option<Bytes>,
    reader: client::Reader,
    out: Arc<Mutex<Vec<u8>>>,
    stage: Stage,
    started: bool,
}

impl Filtered {
    /// Filter the document `reader` reads (`first` already read from it)
    /// as `kind`, which must be a filtered kind.
    pub fn new(kind: &Kind, first: Bytes, reader: client::Reader) -> Filtered {
        let out = Arc::new(Mutex::new(Vec::new()));
        let stage = match kind {
            Kind::Html(encoding) => Stage::Markup(Box::new(Mutex::new(rewriter(
                encoding,
                false,
                Sink(out.clone()),
            )))),
            Kind::Svg => Stage::Markup(Box::new(Mutex::new(rewriter(
                encoding_rs::UTF_8,
                true,
                Sink(out.clone()),
            )))),
            _ => Stage::Sheet(Vec::new()),
        };
        Filtered {
            first: Some(first),
            reader,
            out,
            stage,
            started: false,
        }
    }

    fn feed(&mut self, mut piece: &[u8]) -> Result<(), FilterError> {
        if !self.started {
            self.started = true;
            piece = without_utf16_mark(piece);
        }
        match &mut self.stage {
            Stage::Markup(r) => r
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .write(piece)
                .map_err(|e| FilterError::Rewriting(e.to_string())),
            Stage::Sheet(text) => {
                if text.len() + piece.len() > CSS_LIMIT {
                    return Err(FilterError::TooLong);
                }
                text.extend_from_slice(piece);
                Ok(())
            }
            Stage::Done => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), FilterError> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Markup(r) => r
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .end()
                .map_err(|e| FilterError::Rewriting(e.to_string())),
            Stage::Sheet(text) => {
                let sheet = css::filter(&String::from_utf8_lossy(&text));
                lock(&self.out).extend_from_slice(sheet.as_bytes());
                Ok(())
            }
            Stage::Done => Ok(()),
        }
    }
}

impl hyper::body::Body for Filtered {
    type Data = Bytes;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            {
                let mut out = lock(&this.out);
                if !out.is_empty() {
                    let data = Bytes::from(std::mem::take(&mut *out));
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
            }
            if matches!(this.stage, Stage::Done) {
                return Poll::Ready(None);
            }
            let piece = match this.first.take() {
                Some(first) => Some(first),
                None => match this.reader.poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(piece))) => Some(piece),
                    Poll::Ready(Some(Err(e))) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Some(Err(Box::new(FilterError::Read(e)))));
                    }
                    Poll::Ready(None) => None,
                },
            };
            let fed = match piece {
                Some(p) => this.feed(&p),
                None => this.finish(),
            };
            if let Err(e) = fed {
                tracing::debug!("a filtered document stopped short: {e}");
                this.stage = Stage::Done;
                lock(&this.out).clear();
                return Poll::Ready(Some(Err(Box::new(e))));
            }
        }
    }
}

/// A byte order mark of UTF-16 would make the browser read the bytes
/// otherwise than the filter did: it is not passed on.
fn without_utf16_mark(start: &[u8]) -> &[u8] {
    if start.starts_with(&[0xFE, 0xFF]) || start.starts_with(&[0xFF, 0xFE]) {
        &start[2..]
    } else {
        start
    }
}

/// Filter a whole document in memory: what [`Filtered`] sends, at once.
pub fn filter_bytes(kind: &Kind, document: &[u8]) -> Result<Vec<u8>, FilterError> {
    let document = without_utf16_mark(document);
    let out = Arc::new(Mutex::new(Vec::new()));
    match kind {
        Kind::Html(_) | Kind::Svg => {
            let (encoding, svg) = match kind {
                Kind::Html(e) => (*e, false),
                _ => (encoding_rs::UTF_8, true),
            };
            let mut r = rewriter(encoding, svg, Sink(out.clone()));
            r.write(document)
                .map_err(|e| FilterError::Rewriting(e.to_string()))?;
            r.end().map_err(|e| FilterError::Rewriting(e.to_string()))?;
            let done = std::mem::take(&mut *lock(&out));
            Ok(done)
        }
        Kind::Css => {
            if document.len() > CSS_LIMIT {
                return Err(FilterError::TooLong);
            }
            Ok(css::filter(&String::from_utf8_lossy(document)).into_bytes())
        }
        Kind::Shown | Kind::Saved => Ok(document.to_vec()),
    }
}

/// The text of the `<style>` element being read.
#[derive(Default)]
struct StyleText {
    svg: bool,
    text: String,
    overflow: bool,
}

fn rewriter(
    encoding: &'static encoding_rs::Encoding,
    svg: bool,
    sink: Sink,
) -> HtmlRewriter<'static, Sink> {
    let style = Arc::new(Mutex::new(StyleText::default()));
    let at_element = style.clone();
    let encoding = AsciiCompatibleEncoding::new(encoding)
        .or_else(|| AsciiCompatibleEncoding::new(encoding_rs::UTF_8))
        .expect("UTF-8 is ASCII-compatible");
    let settings = Settings::new_send()
        .with_encoding(encoding)
        .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(REWRITER_MEMORY))
        .append_element_content_handler(element!("*", move |el: &mut Element<'_, '_>| {
            filter_element(el, &at_element);
            Ok(())
        }))
        .append_element_content_handler(text!("style", move |t: &mut TextChunk<'_>| {
            filter_style_text(t, &style);
            Ok(())
        }))
        .append_element_content_handler(comments!("*", |c: &mut Comment<'_>| {
            processing_instruction(c);
            Ok(())
        }))
        .append_document_content_handler(doc_comments!(|c: &mut Comment<'_>| {
            processing_instruction(c);
            Ok(())
        }))
        .append_document_content_handler(doctype!(move |d: &mut Doctype<'_>| {
            // An SVG document's type declaration may declare entities
            // that the filter would not see expanded.
            if svg {
                d.remove();
            }
            Ok(())
        }));
    HtmlRewriter::new(settings, sink)
}

/// `<?xml-stylesheet href=...?>` loads a style sheet in an XML document;
/// the HTML parser sees a comment. Only the XML declaration stays.
fn processing_instruction(c: &mut Comment<'_>) {
    let text = c.text();
    if text.starts_with('?') && !text.starts_with("?xml ") {
        c.remove();
    }
}

/// Elements taken out with all they hold: what runs code or plugins,
/// what changes how every reference reads.
const REMOVED: &[&str] = &[
    "script",
    "object",
    "embed",
    "applet",
    "base",
    "noscript",
    "portal",
    "fencedframe",
];

/// Attributes taken out wherever they are (event handlers too: every
/// `on...`).
const DROPPED: &[&str] = &[
    "ping",
    "srcdoc",
    "formmethod",
    "formenctype",
    "attributionsrc",
    "base",
];

/// Attributes that name something to load, judged as loads.
const LOADS: &[&str] = &[
    "data", "codebase", "archive", "classid", "manifest", "longdesc", "profile", "cite", "usemap",
    "itemtype",
];

/// SVG presentation attributes whose value is CSS and may hold `url()`:
/// a paint, filter, mask, clip or marker from another document.
const CSS_VALUED: &[&str] = &[
    "fill",
    "stroke",
    "filter",
    "mask",
    "clip-path",
    "marker",
    "marker-start",
    "marker-mid",
    "marker-end",
    "cursor",
];

/// The name after a namespace prefix: `svg:script` is a script.
fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn filter_element(el: &mut Element<'_, '_>, style: &Mutex<StyleText>) {
    let tag = el.tag_name().to_ascii_lowercase();
    let tag = local(&tag).to_string();
    if REMOVED.contains(&tag.as_str()) {
        el.remove();
        return;
    }
    match tag.as_str() {
        "meta" if !meta_stays(el) => {
            el.remove();
            return;
        }
        "style" => {
            *lock(style) = StyleText {
                svg: el.namespace_uri() == SVG_NS,
                ..StyleText::default()
            }
        }
        // An animation that sets a link's target sets it past the filter.
        "set" | "animate" | "animatemotion" | "animatetransform" | "animatecolor"
            if el
                .get_attribute("attributename")
                .is_some_and(|a| a.to_ascii_lowercase().ends_with("href")) =>
        {
            el.remove();
            return;
        }
        _ => {}
    }
    let follow = matches!(tag.as_str(), "a" | "area");
    let picture = matches!(tag.as_str(), "img" | "input" | "image" | "feimage");
    let attributes: Vec<(String, String)> = el
        .attributes()
        .iter()
        .map(|a| (a.name().to_ascii_lowercase(), a.value()))
        .collect();
    for (name, value) in attributes {
        let local_name = local(&name);
        let verdict = if local_name.starts_with("on") || DROPPED.contains(&local_name) {
            Verdict::Drop
        } else {
            match local_name {
                "href" => {
                    let how = if follow {
                        Use::Follow
                    } else if picture {
                        Use::Picture
                    } else {
                        Use::Load
                    };
                    judge(&value, how, true)
                }
                "src" if picture => judge(&value, Use::Picture, true),
                "src" => judge(&value, Use::Load, true),
                "srcset" | "imagesrcset" => judge_srcset(&value),
                "poster" | "background" | "lowsrc" | "dynsrc" => judge(&value, Use::Picture, true),
                "action" | "formaction" => judge(&value, Use::Follow, true),
                l if LOADS.contains(&l) => judge(&value, Use::Load, true),
                l if l == "style" || CSS_VALUED.contains(&l) => match decode_entities(&value) {
                    Some(declarations) => {
                        let filtered = css::filter(&declarations);
                        if filtered == declarations {
                            Verdict::Keep
                        } else {
                            Verdict::Replace(filtered)
                        }
                    }
                    None => Verdict::Drop,
                },
                _ => Verdict::Keep,
            }
        };
        match verdict {
            Verdict::Keep => {}
            Verdict::Drop => {
                el.remove_attribute(&name);
            }
            Verdict::Replace(to) if to.starts_with(refs::LEAVE_PATH) => {
                // The warning page opens in the whole window: in a frame
                // of the document, the document could hide it under
                // something else for the reader's click.
                if local_name == "href" {
                    let _ = el.set_attribute("target", "_top");
                    let _ = el.set_attribute(&name, &to);
                    continue;
                }
                // A form out of umbra goes to the warning page, which a
                // form reaches with the destination as a field of its
                // own; a button's own destination goes.
                el.remove_attribute(&name);
                if tag == "form" {
                    if let Some(destination) = refs::destination(&value) {
                        let _ = el.set_attribute("target", "_top");
                        let _ = el.set_attribute("action", refs::LEAVE_PATH);
                        el.prepend(
                            &format!(
                                "<input type=\"hidden\" name=\"url\" value=\"{}\">",
                                escape(&destination)
                            ),
                            ContentType::Html,
                        );
                    }
                }
            }
            Verdict::Replace(to) => {
                let _ = el.set_attribute(&name, &to.replace('&', "&amp;"));
            }
        }
    }
    if tag == "form" {
        // Every form is sent as a GET: no form of a document writes
        // through the gateway.
        el.remove_attribute("method");
        el.remove_attribute("enctype");
    }
}

/// Whether a `<meta>` stays, its refresh rewritten if it names an umbra
/// URI.
fn meta_stays(el: &mut Element<'_, '_>) -> bool {
    let lower = |v: Option<String>| v.map(|v| v.trim().to_ascii_lowercase());
    if lower(el.get_attribute("name")).as_deref() == Some("referrer") {
        // It would loosen the no-referrer policy the gateway sends.
        return false;
    }
    match lower(el.get_attribute("http-equiv")).as_deref() {
        None | Some("content-type") | Some("content-language") => true,
        Some("refresh") => match judge_refresh(&el.get_attribute("content").unwrap_or_default()) {
            Verdict::Keep => true,
            Verdict::Replace(to) => el
                .set_attribute("content", &to.replace('&', "&amp;"))
                .is_ok(),
            Verdict::Drop => false,
        },
        // Cookies, policies and whatever else a header could say.
        Some(_) => false,
    }
}

fn filter_style_text(t: &mut TextChunk<'_>, style: &Mutex<StyleText>) {
    let mut s = lock(style);
    if !s.overflow {
        if s.text.len() + t.as_str().len() > STYLE_LIMIT {
            s.overflow = true;
            s.text.clear();
        } else {
            s.text.push_str(t.as_str());
        }
    }
    if !t.last_in_text_node() {
        t.remove();
        return;
    }
    let text = std::mem::take(&mut s.text);
    let sheet = if s.overflow {
        String::new()
    } else if s.svg {
        // In SVG, a style element's text is parsed as XML text:
        // character references are decoded, and CDATA marks are not
        // CSS.
        let text = text.replace("<![CDATA[", "").replace("]]>", "");
        decode_entities(&text)
            .map(|css| css::filter_for_html(&css).replace('&', "\\26 "))
            .unwrap_or_default()
    } else {
        css::filter_for_html(&text)
    };
    s.overflow = false;
    t.replace(&sheet, ContentType::Html);
}

#[cfg(test)]
mod tests;
