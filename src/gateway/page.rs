//! The interface's own HTML: the index page, the answer to an upload, and
//! failures met by the forms. Plain HTML and inline style, no script.

use super::url::percent_encode_path;
use super::{ErrorCode, Front, MAX_FORM};
use crate::keys::Link;
use crate::node::Status;

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}\
table{border-collapse:collapse}td{padding:.1rem 1rem .1rem 0;vertical-align:top}\
input[type=text]{width:100%;box-sizing:border-box;font-family:monospace}\
code{word-break:break-all}.note{color:#666;font-size:.9rem}";

/// Escape text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

fn status_table(s: &Status) -> String {
    let rows = [
        ("node", s.id.get(..16).unwrap_or(&s.id).to_string() + "…"),
        (
            "on the ring",
            if s.joined { "yes" } else { "not yet" }.to_string(),
        ),
        ("links", s.links.to_string()),
        (
            "stored",
            format!("{} blocks, {} bytes", s.blocks_stored, s.bytes_stored),
        ),
        (
            "cached",
            format!("{} blocks, {} bytes", s.blocks_cached, s.bytes_cached),
        ),
        (
            "circuits",
            format!(
                "{} own, {} relayed, {} relays to choose from",
                s.circuits_own, s.circuits_relayed, s.relay_sample
            ),
        ),
    ];
    let mut out = String::from("<table>");
    for (k, v) in rows {
        out.push_str(&format!("<tr><td>{k}</td><td>{}</td></tr>", escape(&v)));
    }
    out.push_str("</table>");
    out
}

/// The index page: the node's status, a fetch form, an upload form.
pub fn index(status: Option<&Status>, front: Front) -> String {
    let status = match status {
        Some(s) => status_table(s),
        None => "<p>The node is shutting down.</p>".into(),
    };
    let via = match front {
        Front::Gateway => "the node's HTTP gateway",
        Front::Socks => "the node's SOCKS proxy",
    };
    let body = format!(
        "<h1>umbra</h1>\n\
         <p>An anonymous document store, reached through {via}. Every insert and \
         fetch leaves this node through an onion circuit: no node in the network \
         learns who asked.</p>\n\
         <h2>Fetch</h2>\n\
         <form method=\"get\" action=\"/\">\
         <p><input type=\"text\" name=\"uri\" placeholder=\"umbra:chk:…\" required></p>\
         <p><button type=\"submit\">Fetch</button></p></form>\n\
         <h2>Insert</h2>\n\
         <form method=\"post\" action=\"/\" enctype=\"multipart/form-data\">\
         <p><input type=\"file\" name=\"file\" required></p>\
         <p><label>Content type (empty: the file's own)<br>\
         <input type=\"text\" name=\"content_type\" placeholder=\"text/html; charset=utf-8\"></label></p>\
         <p><label>Insert URI (empty: a content-hash key; umbra:ssk-insert:… or \
         umbra:ksk:… publishes the next version under it)<br>\
         <input type=\"text\" name=\"insert_uri\" autocomplete=\"off\"></label></p>\
         <p><button type=\"submit\">Insert</button> \
         <span class=\"note\">up to {} MiB</span></p></form>\n\
         <h2>This node</h2>\n{status}\n\
         <p class=\"note\">Documents pass through a filter that takes out scripts and \
         whatever would load from outside umbra, and are served with a policy that \
         forbids both again. A link or form that leads out of umbra stops at a \
         warning page first: following it from there connects your browser to that \
         site directly, not through umbra.</p>",
        MAX_FORM >> 20
    );
    document("umbra", &body)
}

/// The answer to an upload: the URI and a link to it.
pub fn inserted(uri: &Link, len: usize) -> String {
    let text = uri.to_string();
    let body = format!(
        "<h1>Inserted</h1>\n<p>{len} bytes. Anyone with this URI can fetch them:</p>\n\
         <p><code>{}</code></p>\n<p><a href=\"/{}\">Open it</a> · <a href=\"/\">Back</a></p>",
        escape(&text),
        escape(&percent_encode_path(&text)),
    );
    document("umbra: inserted", &body)
}

/// A failure the forms met.
pub fn failed(code: ErrorCode, message: &str) -> String {
    let body = format!(
        "<h1>Failed</h1>\n<p>{}</p>\n<p class=\"note\">{code}</p>\n<p><a href=\"/\">Back</a></p>",
        escape(message)
    );
    document("umbra: failed", &body)
}

/// The answer to a request a page of another site made. `path` (a GET
/// of a document, already percent-encoded) becomes a link the user can
/// follow from here, which makes it a request of this origin.
pub fn cross_site(why: &str, path: Option<&str>) -> String {
    let link = match path {
        Some(p) => format!(
            "<p>If you meant to open it, open it from here: <a href=\"{}\"><code>{}</code></a></p>",
            escape(p),
            escape(p)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>Refused</h1>\n<p>{}: a page that is not this node's asked your node for \
         this. Another site could use such a request to make your node fetch a key of its \
         choosing and learn from the network that you visited it.</p>\n{link}\n\
         <p><a href=\"/\">Back</a></p>",
        escape(why)
    );
    document("umbra: refused", &body)
}

/// The warning page before a way out of umbra that a document's link
/// or form offers: it names the destination and asks.
pub fn leave(destination: &str) -> String {
    let scheme = destination
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let go = if scheme == "http" || scheme == "https" {
        format!(
            "<p><a id=\"leave\" href=\"{}\" rel=\"noreferrer noopener\">Leave umbra and open \
             it anyway</a></p>",
            escape(destination)
        )
    } else {
        "<p id=\"refused\">umbra does not open links of this kind from a document.</p>".to_string()
    };
    let body = format!(
        "<h1>This link leaves umbra</h1>\n<p>The document you came from leads to:</p>\n\
         <p><code id=\"destination\">{}</code></p>\n\
         <p>That is not in umbra. Your browser would connect to it directly: the site \
         would see your address, and whoever watches your network would see where you \
         went. What you typed into a form would go there too.</p>\n{go}\n\
         <p>To stay, go back in your browser, or to <a href=\"/\">this node's page</a>.</p>",
        escape(destination)
    );
    document("umbra: leaving", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = failed(ErrorCode::BadRequest, "<script>alert(1)</script>");
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn the_warning_page_links_only_to_the_web() {
        let page = leave("https://example.org/?a=1&b=\"2\"");
        assert!(page.contains("href=\"https://example.org/?a=1&amp;b=&quot;2&quot;\""));
        for other in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
        ] {
            let page = leave(other);
            assert!(!page.contains("id=\"leave\""), "{other}");
            assert!(page.contains("id=\"refused\""), "{other}");
        }
    }
}
