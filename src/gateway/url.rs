//! The few pieces of URL handling the interface needs: URIs in paths are
//! percent-encoded, the fetch form sends a query, and the gateway checks
//! the names it is addressed by.

use std::net::IpAddr;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Decode a percent-encoded path; `None` if an escape is broken or the
/// result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

/// Encode a URI for a path: letters, digits and `-._~:/@!$&'()*+,;=`
/// stay, every other byte is escaped.
pub fn percent_encode_path(s: &str) -> String {
    encode_but(s, b"-._~:/@!$&'()*+,;=")
}

/// Escape every byte of `s` but letters, digits and `keep`.
fn encode_but(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as one path segment: a `/` in it is escaped too.
pub fn percent_encode_segment(s: &str) -> String {
    percent_encode_path(s).replace('/', "%2F")
}

/// `s` as a query value: every byte but letters, digits and `-._~` is
/// escaped, so the value holds no `:`, `/`, `&` or `=` of its own.
pub fn percent_encode_query(s: &str) -> String {
    encode_but(s, b"-._~")
}

/// The value of `name` in a form-encoded query.
pub fn form_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (decode(k, true)? == name).then(|| decode(v, true))?
    })
}

/// The host of a `Host` header value or an origin's authority, without
/// the port.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Whether the gateway answers to this `Host`: an IP address or
/// `localhost`. A page of the open web that gets a name of its own to
/// resolve to 127.0.0.1 (DNS rebinding) is refused, so it cannot read
/// what the gateway serves.
pub fn host_allowed(host: &str) -> bool {
    let h = host_of(host.trim()).to_ascii_lowercase();
    h.parse::<IpAddr>().is_ok() || h == "localhost" || h.ends_with(".localhost")
}

/// Whether a write may go ahead: a request without `Origin` (curl, the
/// command line) or one whose origin is the host it was sent to. A page
/// from elsewhere cannot insert through the user's node.
pub fn origin_matches(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host.trim()))
}

/// The origin (`http://host[:port]`) a `Referer` names, if it is an
/// `http` URL.
fn referer_authority(referer: &str) -> Option<&str> {
    let rest = referer.trim().strip_prefix("http://")?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(""))
}

/// What a browser says of where a request comes from: `Sec-Fetch-Site`,
/// `Origin`, `Referer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Provenance<'a> {
    pub fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub referer: Option<&'a str>,
}

/// Why a request must be refused as one a page of another site made, or
/// `None` when it came from the interface's own pages, was typed by the
/// user, or came from a program that is not a browser (which sends none
/// of these headers). Every header present must agree: a browser that
/// sends `Sec-Fetch-Site` is believed first, and an `Origin` or `Referer`
/// naming another host refuses the request whatever else it says.
pub fn cross_site(p: Provenance<'_>, host: Option<&str>) -> Option<&'static str> {
    if let Some(site) = p.fetch_site {
        let site = site.trim();
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Some("the request came from another site");
        }
    }
    if p.origin.is_some() && !origin_matches(p.origin, host) {
        return Some("the request came from another origin");
    }
    if let Some(referer) = p.referer {
        let same = match (referer_authority(referer), host) {
            (Some(a), Some(h)) => a.eq_ignore_ascii_case(h.trim()),
            _ => false,
        };
        if !same {
            return Some("the request came from a page of another origin");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decoding_takes_escapes_and_refuses_broken_ones() {
        assert_eq!(
            percent_decode("umbra:ksk:a%20b").as_deref(),
            Some("umbra:ksk:a b")
        );
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%e2%98%83").as_deref(), Some("\u{2603}"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn form_values_decode_plus_as_space() {
        let q = "x=1&uri=umbra%3Aksk%3Amy+words&y";
        assert_eq!(form_value(q, "uri").as_deref(), Some("umbra:ksk:my words"));
        assert_eq!(form_value(q, "z"), None);
        assert_eq!(form_value(q, "y"), None);
    }

    #[test]
    fn the_gateway_answers_to_addresses_and_localhost_only() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:80",
            "[::1]:8080",
            "10.0.0.2",
            "LocalHost",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.nip.io", "doc.umbra", ""] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn writes_need_a_matching_origin_when_one_is_given() {
        assert!(origin_matches(None, Some("127.0.0.1:8080")));
        assert!(origin_matches(
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        ));
        assert!(!origin_matches(
            Some("http://evil.example"),
            Some("127.0.0.1:8080")
        ));
        assert!(!origin_matches(Some("null"), Some("127.0.0.1:8080")));
        assert!(!origin_matches(Some("http://127.0.0.1:8080"), None));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(s in "\\PC*") {
            let encoded = percent_encode_path(&s);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(percent_decode(&encoded), Some(s));
        }

        #[test]
        fn a_query_value_round_trips_alone(s in "\\PC*") {
            let encoded = percent_encode_query(&s);
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            let query = format!("url={encoded}&q=1");
            prop_assert_eq!(form_value(&query, "url"), Some(s));
        }

        #[test]
        fn decoding_never_panics(s in "\\PC*") {
            let _ = percent_decode(&s);
            let _ = form_value(&s, "uri");
            let _ = host_allowed(&s);
        }
    }

    #[test]
    fn requests_from_other_sites_are_refused() {
        let host = Some("127.0.0.1:8080");
        let p = |fetch_site, origin, referer| Provenance {
            fetch_site,
            origin,
            referer,
        };
        // Typed, from the interface's own pages, or from curl.
        assert_eq!(cross_site(p(None, None, None), host), None);
        assert_eq!(cross_site(p(Some("none"), None, None), host), None);
        assert_eq!(
            cross_site(
                p(
                    Some("same-origin"),
                    Some("http://127.0.0.1:8080"),
                    Some("http://127.0.0.1:8080/umbra:chk:x")
                ),
                host
            ),
            None
        );
        // From elsewhere, whichever header says so.
        for bad in [
            p(Some("cross-site"), None, None),
            p(Some("same-site"), None, None),
            p(Some("something-new"), None, None),
            p(None, Some("http://evil.example"), None),
            p(None, Some("null"), None),
            p(None, Some("http://127.0.0.1:8081"), None),
            p(None, None, Some("http://evil.example/page")),
            p(None, None, Some("https://127.0.0.1:8080/")),
            p(None, None, Some("http://127.0.0.1:80800/")),
            p(Some("same-origin"), Some("http://evil.example"), None),
            p(Some("none"), None, Some("http://evil.example/")),
        ] {
            assert!(cross_site(bad, host).is_some(), "{bad:?}");
        }
        // A browser header without a Host to compare it with.
        assert!(cross_site(p(None, Some("http://127.0.0.1:8080"), None), None).is_some());
    }
}
