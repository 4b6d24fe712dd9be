//! Where a reference in a document leads, read the way a browser reads
//! it, and what the filter puts in its place.
//!
//! A reference stays if it resolves on the origin that served the
//! document (a relative path, an absolute path, a fragment) or names an
//! umbra URI (rewritten to the gateway's path for it). Anything else
//! leaves umbra: a link or a form goes to the gateway's warning page,
//! whatever would load by itself is taken out. What cannot be read with
//! certainty (a character reference the filter does not know) is taken
//! out too.

use crate::gateway::url::percent_encode_query;

/// The gateway's warning page before a way out of umbra.
pub const LEAVE_PATH: &str = "/leave";

/// How a document uses a reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Followed when the reader asks: a link, a form.
    Follow,
    /// Fetched as the document loads: a style sheet, a frame, a script.
    Load,
    /// Fetched as a picture: a `data:` picture stays, since a picture
    /// loads nothing more.
    Picture,
}

/// What goes in a reference's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The reference as written.
    Keep,
    /// This instead.
    Replace(String),
    /// Nothing: the attribute, the element or the value goes.
    Drop,
}

/// The warning page's address for a way out to `destination`.
pub fn leave_url(destination: &str) -> String {
    format!("{LEAVE_PATH}?url={}", percent_encode_query(destination))
}

#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// On the origin that served the document.
    Here,
    /// An umbra URI.
    Umbra,
    /// A `data:` URL: its content is in the reference.
    Data,
    /// Anywhere else.
    Outside,
}

/// Judge a reference as it appears in a document. `entities`: the text
/// may hold character references (an HTML attribute), which the browser
/// decodes before it reads the URL.
pub fn judge(raw: &str, how: Use, entities: bool) -> Verdict {
    let decoded = if entities {
        match decode_entities(raw) {
            Some(d) => d,
            None => return Verdict::Drop,
        }
    } else {
        raw.to_string()
    };
    let url = clean(&decoded);
    match (place(&url), how) {
        (Place::Here, _) => Verdict::Keep,
        (Place::Umbra, _) => Verdict::Replace(format!("/{url}")),
        (Place::Data, Use::Picture) => Verdict::Keep,
        (_, Use::Follow) => Verdict::Replace(leave_url(&url)),
        (_, Use::Load | Use::Picture) => Verdict::Drop,
    }
}

/// The URL a reference names, as a browser reads it.
pub fn destination(raw: &str) -> Option<String> {
    decode_entities(raw).map(|d| clean(&d))
}

/// What a browser ignores in a URL: leading and trailing spaces and
/// control characters, and tabs and line breaks anywhere.
fn clean(s: &str) -> String {
    s.trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

fn place(url: &str) -> Place {
    // A browser reads `\` as `/` in web URLs: `/\host` is `//host`.
    if url.replace('\\', "/").starts_with("//") {
        return Place::Outside;
    }
    let Some(colon) = url.find(':') else {
        return Place::Here;
    };
    let before = &url[..colon];
    if before.contains(['/', '?', '#', '\\']) {
        // The colon is in the path, query or fragment.
        return Place::Here;
    }
    let scheme = before
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && before
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme {
        // A relative path with a colon in its first segment: a browser
        // would stay here, but no document needs one, and a stricter
        // reading costs nothing.
        return Place::Outside;
    }
    match before.to_ascii_lowercase().as_str() {
        "umbra" => Place::Umbra,
        "data" => Place::Data,
        _ => Place::Outside,
    }
}

/// Decode the character references of an attribute value: numeric ones
/// and the five of XML. `None` if it holds any other named reference:
/// the filter does not guess what it means.
pub fn decode_entities(raw: &str) -> Option<String> {
    if !raw.contains('&') {
        return Some(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(number) = rest.strip_prefix('#') {
            let (radix, digits) = match number.strip_prefix(['x', 'X']) {
                Some(hex) => (16, hex),
                None => (10, number),
            };
            let len = digits
                .find(|c: char| !c.is_digit(radix))
                .unwrap_or(digits.len());
            if len == 0 {
                return None;
            }
            let significant = digits[..len].trim_start_matches('0');
            let code = if significant.len() > 8 {
                None
            } else if significant.is_empty() {
                Some(0)
            } else {
                u32::from_str_radix(significant, radix).ok()
            };
            // What a browser makes of a reference to nothing, or too far.
            let c = code
                .filter(|&c| c != 0)
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            out.push(c);
            rest = &digits[len..];
            rest = rest.strip_prefix(';').unwrap_or(rest);
            continue;
        }
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        if len == 0 {
            out.push('&');
            continue;
        }
        let c = match &rest[..len] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return None,
        };
        out.push(c);
        rest = &rest[len..];
        rest = rest.strip_prefix(';').unwrap_or(rest);
    }
    out.push_str(rest);
    Some(out)
}

/// Judge a `srcset`: every picture in it. Any that would leave takes the
/// whole attribute with it.
pub fn judge_srcset(raw: &str) -> Verdict {
    let Some(text) = decode_entities(raw) else {
        return Verdict::Drop;
    };
    let mut out = String::new();
    let mut changed = false;
    for (url, descriptor) in candidates(&text) {
        let url = match judge(url, Use::Picture, false) {
            Verdict::Keep => url.to_string(),
            Verdict::Replace(r) => {
                changed = true;
                r
            }
            Verdict::Drop => return Verdict::Drop,
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&url);
        if !descriptor.is_empty() {
            out.push(' ');
            out.push_str(descriptor);
        }
    }
    if changed {
        Verdict::Replace(out)
    } else {
        Verdict::Keep
    }
}

/// The candidates of a `srcset` as the HTML standard splits them: a URL
/// up to white space (a trailing comma ends the candidate), then a
/// descriptor up to a comma outside parentheses.
fn candidates(s: &str) -> Vec<(&str, &str)> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c');
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| is_space(c) || c == ',');
        if rest.is_empty() {
            return out;
        }
        let end = rest.find(is_space).unwrap_or(rest.len());
        let url = &rest[..end];
        rest = &rest[end..];
        if let Some(trimmed) = url.strip_suffix(',') {
            out.push((trimmed.trim_end_matches(','), ""));
            continue;
        }
        let mut depth = 0usize;
        let mut stop = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    stop = i;
                    break;
                }
                _ => {}
            }
        }
        out.push((url, rest[..stop].trim()));
        rest = &rest[stop..];
    }
}

/// Judge the `content` of `<meta http-equiv=refresh>`: a delay, then the
/// URL to go to, if any. A refresh of the page itself stays; one that
/// would take the reader out of umbra without asking goes.
pub fn judge_refresh(raw: &str) -> Verdict {
    let Some(text) = decode_entities(raw) else {
        return Verdict::Drop;
    };
    let s = text.trim_start();
    let delay_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let delay = &s[..delay_end];
    let mut rest = s[delay_end..].trim_start();
    rest = rest.strip_prefix([';', ',']).unwrap_or(rest).trim_start();
    if rest.is_empty() {
        return Verdict::Keep;
    }
    // `get`, not an index: the third byte may fall inside a character.
    if let Some(after) = rest
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("url"))
        .and_then(|_| rest.get(3..))
    {
        if let Some(value) = after.trim_start().strip_prefix('=') {
            rest = value.trim_start();
        }
    }
    let url = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let inner = &rest[1..];
            &inner[..inner.find(q).unwrap_or(inner.len())]
        }
        _ => rest,
    };
    match judge(url, Use::Load, false) {
        Verdict::Keep => Verdict::Keep,
        Verdict::Replace(to) => Verdict::Replace(format!("{delay}; url={to}")),
        Verdict::Drop => Verdict::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_that_stay_on_the_origin_are_kept() {
        for r in [
            "page.html",
            "../img/a.png",
            "/status",
            "#top",
            "",
            "a/b:c",
            "?q=1",
        ] {
            assert_eq!(judge(r, Use::Load, true), Verdict::Keep, "{r}");
        }
        assert_eq!(
            judge(" umbra:chk:K/a.html ", Use::Follow, true),
            Verdict::Replace("/umbra:chk:K/a.html".into())
        );
    }

    #[test]
    fn every_spelling_of_the_open_web_leaves_or_goes() {
        let ways = [
            "http://example.org/",
            "HTTPS://example.org/",
            "//example.org/",
            "/\\example.org/",
            "\\\\example.org/",
            " \t\nhttp://example.org/",
            "ht\ttp://example.org/",
            "&#104;ttp://example.org/",
            "&#x2F;&#x2F;example.org/",
            "&#47&#47example.org",
            "javascript:alert(1)",
            "JaVaScRiPt&colon;alert(1)",
            "data:text/html,<b>",
            "mailto:a@example.org",
            "ftp://example.org/",
            "1x:y",
        ];
        for w in ways {
            let followed = judge(w, Use::Follow, true);
            match &followed {
                Verdict::Replace(to) => assert!(to.starts_with("/leave?url="), "{w}: {to}"),
                Verdict::Drop => assert!(w.contains("&colon;"), "{w}"),
                Verdict::Keep => panic!("{w} kept"),
            }
            assert_eq!(judge(w, Use::Load, true), Verdict::Drop, "{w}");
        }
        assert_eq!(
            judge("http://example.org/a b", Use::Follow, false),
            Verdict::Replace("/leave?url=http%3A%2F%2Fexample.org%2Fa%20b".into())
        );
    }

    #[test]
    fn data_pictures_stay_and_other_data_goes() {
        let png = "data:image/png;base64,AAAA";
        assert_eq!(judge(png, Use::Picture, true), Verdict::Keep);
        assert_eq!(judge(png, Use::Load, true), Verdict::Drop);
    }

    #[test]
    fn character_references_decode_as_a_browser_decodes_them() {
        assert_eq!(
            decode_entities("a&amp;b&lt;&#65;&#x42;&#0;").as_deref(),
            Some("a&b<AB\u{FFFD}")
        );
        assert_eq!(
            decode_entities("&#99999999999;").as_deref(),
            Some("\u{FFFD}")
        );
        assert_eq!(decode_entities("a & b").as_deref(), Some("a & b"));
        assert_eq!(decode_entities("&sol;"), None);
        assert_eq!(decode_entities("&#;"), None);
    }

    #[test]
    fn a_srcset_goes_whole_if_one_picture_would_leave() {
        assert_eq!(judge_srcset("a.png 1x, b.png 2x"), Verdict::Keep);
        assert_eq!(
            judge_srcset("a.png 1x, http://example.org/b.png 2x"),
            Verdict::Drop
        );
        assert_eq!(
            judge_srcset("umbra:chk:K/a.png 100w,b.png"),
            Verdict::Replace("/umbra:chk:K/a.png 100w, b.png".into())
        );
        assert_eq!(judge_srcset("a.png, //example.org/b.png"), Verdict::Drop);
        // One URL, commas and all, up to white space: a path here.
        assert_eq!(judge_srcset("a.png,//example.org/b.png"), Verdict::Keep);
    }

    #[test]
    fn a_refresh_stays_in_umbra_or_goes() {
        assert_eq!(judge_refresh("5"), Verdict::Keep);
        assert_eq!(judge_refresh("0; url=two.html"), Verdict::Keep);
        assert_eq!(judge_refresh("0;URL='http://example.org/'"), Verdict::Drop);
        assert_eq!(judge_refresh("1, //example.org"), Verdict::Drop);
        // A character of several bytes where "url" would end is not cut
        // in the middle: no "url=" there, so all of it is the URL.
        for url in [
            "u\u{feff}rl=http://example.org/",
            "\u{e9}\u{e9}",
            "\u{e9}//example.org/",
            "UR\u{e9}",
        ] {
            assert_eq!(
                judge_refresh(&format!("0; {url}")),
                judge(url, Use::Load, false),
                "{url}"
            );
        }
        assert_eq!(
            judge_refresh("2; url=umbra:chk:K"),
            Verdict::Replace("2; url=/umbra:chk:K".into())
        );
    }
}
