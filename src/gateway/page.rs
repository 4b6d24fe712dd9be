//! The interface's own HTML: the index page, the answer to an upload, and
//! failures met by the forms. Plain HTML and inline style, no script.

use super::session::{Direction, Followed, Inserted, Session, Transfer};
use super::url::percent_encode_path;
use super::{ErrorCode, Front, MAX_FORM};
use crate::keys::{Link, Uri};
use crate::node::Status;

/// The transfers in progress, a page the index page shows in a frame.
pub const TRANSFERS_PATH: &str = "/_/transfers";
/// The session's lists as a file, for a user who wants to keep them.
pub const SESSION_PATH: &str = "/_/session.txt";
/// The forms that follow a site and stop following it.
pub const FOLLOW_PATH: &str = "/_/follow";
pub const UNFOLLOW_PATH: &str = "/_/unfollow";

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}\
table{border-collapse:collapse}td{padding:.1rem 1rem .1rem 0;vertical-align:top}\
input[type=text]{width:100%;box-sizing:border-box;font-family:monospace}\
code{word-break:break-all}.note{color:#666;font-size:.9rem}\
iframe{border:0;width:100%;height:9rem}progress{width:12rem}\
ul.plain{list-style:none;padding:0}ul.plain li{margin:.3rem 0}\
form.inline{display:inline;margin-left:.5rem}";

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

/// Where an id (hex) sits on the ring, as a fraction of the way round.
fn on_ring(id: &str) -> f64 {
    let head = id.get(..8).unwrap_or(id);
    u32::from_str_radix(head, 16).map_or(0.0, |v| f64::from(v) / 4_294_967_296.0)
}

/// A point on a circle of radius `r` around the picture's centre, at
/// `frac` of the way round from the top, clockwise.
fn point(frac: f64, r: f64) -> (f64, f64) {
    let angle = frac * std::f64::consts::TAU - std::f64::consts::FRAC_PI_2;
    (180.0 + r * angle.cos(), 180.0 + r * angle.sin())
}

/// The node's place in the network, drawn: the ring, this node on it,
/// its predecessor and successors where their ids put them, the points
/// its fingers aim at, and how many circuits it has and relays it knows.
pub fn picture(s: &Status) -> String {
    const R: f64 = 130.0;
    let me = on_ring(&s.id);
    let (mx, my) = point(me, R);
    let mut shapes = String::new();
    // Fingers aim at half the ring away, a quarter, an eighth...
    for k in 0..s.fingers.min(12) {
        let (x, y) = point(me + 0.5f64.powi(k as i32 + 1), R);
        shapes.push_str(&format!(
            "<line class=\"finger\" x1=\"{mx:.1}\" y1=\"{my:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\" \
             stroke=\"#8fb3e0\" stroke-width=\"1.5\"/>"
        ));
    }
    for (i, id) in s.successors.iter().enumerate() {
        let (x, y) = point(on_ring(id), R);
        shapes.push_str(&format!(
            "<line x1=\"{mx:.1}\" y1=\"{my:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#3a9a5b\" \
             stroke-width=\"{}\"/><circle class=\"successor\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" \
             fill=\"#3a9a5b\"><title>successor {}</title></circle>",
            if i == 0 { 3 } else { 1 },
            i + 1
        ));
    }
    if let Some(p) = &s.predecessor {
        let (x, y) = point(on_ring(p), R);
        shapes.push_str(&format!(
            "<line x1=\"{mx:.1}\" y1=\"{my:.1}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#d08a2c\" \
             stroke-width=\"3\"/><circle class=\"predecessor\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" \
             fill=\"#d08a2c\"><title>predecessor</title></circle>"
        ));
    }
    // Each circuit of its own, a ring around the node.
    for c in 0..s.circuits_own.min(6) {
        shapes.push_str(&format!(
            "<circle class=\"circuit\" cx=\"{mx:.1}\" cy=\"{my:.1}\" r=\"{}\" fill=\"none\" \
             stroke=\"#7a4fb5\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>",
            14 + 6 * c
        ));
    }
    shapes.push_str(&format!(
        "<circle class=\"me\" cx=\"{mx:.1}\" cy=\"{my:.1}\" r=\"9\" fill=\"#222\">\
         <title>this node</title></circle>"
    ));
    let ring = if s.joined {
        "on the ring"
    } else {
        "not on the ring yet"
    };
    format!(
        "<svg id=\"place\" viewBox=\"0 0 360 360\" width=\"360\" height=\"360\" role=\"img\" \
         aria-label=\"this node's place in the network\">\
         <circle cx=\"180\" cy=\"180\" r=\"{R}\" fill=\"#f4f6fa\" stroke=\"#9aa3b5\" stroke-width=\"2\"/>\
         {shapes}\
         <text x=\"180\" y=\"168\" text-anchor=\"middle\" font-size=\"15\">{ring}</text>\
         <text id=\"circuits\" x=\"180\" y=\"190\" text-anchor=\"middle\" font-size=\"13\" \
         fill=\"#7a4fb5\">{} circuits of its own, {} relayed</text>\
         <text id=\"relays\" x=\"180\" y=\"210\" text-anchor=\"middle\" font-size=\"13\">{} relays \
         known</text></svg>\n\
         <p class=\"note\">The ring of node ids, clockwise from the top. Black: this node; \
         <span style=\"color:#d08a2c\">orange</span>: its predecessor; \
         <span style=\"color:#3a9a5b\">green</span>: its successors, which hold replicas of \
         what it stores; <span style=\"color:#8fb3e0\">blue</span>: the points its {} fingers \
         aim at; <span style=\"color:#7a4fb5\">dashed rings</span>: its own circuits. Where the \
         relays of its circuits are is not drawn: the page shows nothing that would say which \
         relays this node uses.</p>",
        s.circuits_own, s.circuits_relayed, s.relay_sample, s.fingers
    )
}

/// The link to a document on this gateway, and its URI as text.
fn uri_link(link: &Link) -> String {
    let text = link.to_string();
    format!(
        "<a href=\"/{}\"><code>{}</code></a>",
        escape(&percent_encode_path(&text)),
        escape(&text)
    )
}

fn inserted_list(inserts: &[Inserted]) -> String {
    if inserts.is_empty() {
        return "<p id=\"inserted\">Nothing yet.</p>".into();
    }
    let mut out = String::from("<ul id=\"inserted\" class=\"plain\">");
    for i in inserts {
        let size = i.bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default();
        out.push_str(&format!("<li>{}{size}</li>", uri_link(&i.link)));
    }
    out.push_str("</ul>");
    out
}

fn followed_list(followed: &[Followed]) -> String {
    let mut out = String::from("<ul id=\"followed\" class=\"plain\">");
    for f in followed {
        let version = match (&f.link.uri, f.version, f.checked) {
            (Uri::Ssk(_), Some(v), _) => format!("newest version: {v}"),
            (Uri::Ssk(_), None, None) => "not looked for yet".into(),
            (Uri::Ssk(_), None, Some(_)) => "looking for its newest version".into(),
            _ => "a fixed version".into(),
        };
        let text = f.link.to_string();
        out.push_str(&format!(
            "<li>{} <span class=\"version note\">{version}</span>\
             <form class=\"inline\" method=\"post\" action=\"{UNFOLLOW_PATH}\">\
             <input type=\"hidden\" name=\"uri\" value=\"{}\">\
             <button type=\"submit\">Stop following</button></form></li>",
            uri_link(&f.link),
            escape(&text)
        ));
    }
    out.push_str("</ul>");
    out
}

/// The transfers in progress, each with a bar. It reloads itself every
/// second while it is open: the page stays without script.
pub fn transfers(list: &[Transfer]) -> String {
    let mut rows = String::new();
    for t in list {
        let way = match t.direction {
            Direction::Fetch => "fetching",
            Direction::Insert => "inserting",
        };
        let (done, total) = (t.progress.done, t.progress.total);
        let bar = if total > 0 {
            format!(
                "<progress value=\"{done}\" max=\"{total}\"></progress> {done} of {total} blocks"
            )
        } else {
            format!("<progress></progress> {done} blocks")
        };
        rows.push_str(&format!(
            "<tr class=\"transfer\"><td>{way}</td><td><code>{}</code></td><td>{bar}</td>\
             <td>{} s</td></tr>",
            escape(&t.what),
            t.seconds
        ));
    }
    let body = if rows.is_empty() {
        "<p id=\"idle\">No transfers in progress.</p>".to_string()
    } else {
        format!("<table id=\"transfers\">{rows}</table>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"1\"><title>transfers</title>\
         <style>{STYLE}body{{margin:0;max-width:none}}</style></head><body>{body}</body></html>\n"
    )
}

/// The session's lists as text: what the user keeps if they ask to.
pub fn session_list(session: &Session) -> String {
    let mut out = String::from("# Inserted this session, newest first\n");
    for i in session.inserts() {
        out.push_str(&format!("{}\n", i.link));
    }
    out.push_str("# Followed\n");
    for f in session.followed() {
        out.push_str(&format!("{}\n", f.link));
    }
    out
}

/// The index page: fetch and insert forms, the transfers in progress,
/// what this session inserted, the sites it follows, and the node's
/// place in the network.
pub fn index(
    status: Option<&Status>,
    front: Front,
    inserts: &[Inserted],
    followed: &[Followed],
) -> String {
    let status = match status {
        Some(s) => format!("{}\n{}", picture(s), status_table(s)),
        None => "<p>The node is shutting down.</p>".into(),
    };
    let via = match front {
        Front::Gateway => "the node's HTTP gateway",
        Front::Socks => "the node's SOCKS proxy",
    };
    let inserted = inserted_list(inserts);
    let followed = followed_list(followed);
    let body = format!(
        "<h1>umbra</h1>\n\
         <p>An anonymous document store, reached through {via}. Every insert and \
         fetch leaves this node through an onion circuit: no node in the network \
         learns who asked.</p>\n\
         <h2>Fetch</h2>\n\
         <form method=\"get\" action=\"/\">\
         <p><input type=\"text\" name=\"uri\" placeholder=\"umbra:chk:…\" required></p>\
         <p><button type=\"submit\">Fetch</button></p></form>\n\
         <h2>Transfers</h2>\n\
         <iframe title=\"transfers in progress\" src=\"{TRANSFERS_PATH}\"></iframe>\n\
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
         <h3>A folder, as one site</h3>\n\
         <form method=\"post\" action=\"/\" enctype=\"multipart/form-data\">\
         <p><input type=\"file\" name=\"site\" webkitdirectory multiple required></p>\
         <p><label>Insert URI (empty: a content-hash key; umbra:ssk-insert:… publishes the \
         site's next version under it, and unchanged files keep their blocks)<br>\
         <input type=\"text\" name=\"insert_uri\" autocomplete=\"off\"></label></p>\
         <p><button type=\"submit\">Insert the folder</button> <span class=\"note\">its \
         <code>index.html</code> is the site's first page; relative links between its \
         files work</span></p></form>\n\
         <h2>Inserted this session</h2>\n{inserted}\n\
         <h2>Followed sites</h2>\n{followed}\n\
         <form method=\"post\" action=\"{FOLLOW_PATH}\"><p><label>Follow a site (its request \
         URI: the page shows its newest version)<br>\
         <input type=\"text\" name=\"uri\" placeholder=\"umbra:ssk:…\" required></label></p>\
         <p><button type=\"submit\">Follow</button></p></form>\n\
         <p class=\"note\">What this session inserted and follows is held in this node's \
         memory only and forgotten when it stops: nothing on its disk says what you \
         published or read. To keep the lists, <a href=\"{SESSION_PATH}\">save them as a \
         file</a> and keep that file where you choose.</p>\n\
         <h2>This node in the network</h2>\n{status}\n\
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
