//! URIs: the one text form of every key a user handles.
//!
//! ```text
//! umbra:chk:<base32: routing key 32 | decryption key 32 | checksum 4>
//! umbra:ssk:<base32: public key 32 | checksum 4>/<document name>
//! umbra:ssk-insert:<base32: private key 32 | checksum 4>/<document name>
//! umbra:ksk:<keyword>
//! ```
//!
//! A content-hash or request URI may be followed by a path ([`Link`]):
//! the file name its document was inserted under,
//! `umbra:chk:KEY/report.pdf`, or for a site ([`super::site`]) the path of
//! one of its files, `umbra:chk:KEY/css/style.css` or
//! `umbra:ssk:KEY/NAME/css/style.css` (`KEY/` alone: its index page; a
//! signed key's name therefore holds no `/`). The path
//! is outside the checksum and the key, so anyone can change it and the
//! document stays the same; for a single document it tells a browser what
//! the bytes are and what to save them as.
//!
//! Base32 is RFC 4648 without padding, written in lower case and read in
//! either case. The checksum is the first 4 bytes of SHA-256 over a context
//! string, the kind, the key bytes and the name, so a mistyped URI is
//! reported as such (with odds of 1 in 4 billion of slipping through) and
//! never sent into the network. Keyword URIs carry no checksum: the keyword
//! *is* the key, and any keyword is valid.

use sha2::{Digest, Sha256};

use super::{ksk, ChkKey, SskInsertKey, SskRequestKey};
use crate::wire::RoutingKey;

const SCHEME: &str = "umbra:";
const CHECKSUM_CONTEXT: &[u8] = b"umbra uri v1\0";
/// Longest document name or keyword, in bytes.
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("not an umbra URI (it must start with \"umbra:\")")]
    NotUmbra,
    #[error("unknown key kind {0:?} (expected chk, ssk, ssk-insert or ksk)")]
    UnknownKind(String),
    #[error("the key is not valid base32")]
    BadEncoding,
    #[error("the key has the wrong length")]
    WrongLength,
    #[error("the checksum does not match: the URI is mistyped or damaged")]
    Checksum,
    #[error("a signed-subspace URI needs a document name after '/'")]
    MissingName,
    #[error("the name or keyword is empty, too long or contains control characters (or, for a signed key's name, a '/')")]
    BadName,
    #[error("a file name must be one path segment, not empty, \".\" or \"..\", without control characters, at most 255 bytes")]
    BadFileName,
    #[error("a path after a URI must be file names joined by '/', at most 1024 bytes")]
    BadPath,
    #[error("only a content-hash or signed-subspace URI (umbra:chk:..., umbra:ssk:...) is followed by a path")]
    NameOnSignedKey,
}

/// A parsed URI.
#[derive(Debug, Clone)]
pub enum Uri {
    Chk(ChkKey),
    Ssk(SskRequestKey),
    SskInsert(SskInsertKey),
    Ksk(String),
}

fn checksum(kind: &str, key: &[u8], name: &str) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(CHECKSUM_CONTEXT);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(key);
    h.update([0]);
    h.update(name.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn encode(kind: &str, key: &[u8], name: &str) -> String {
    let mut bytes = key.to_vec();
    bytes.extend_from_slice(&checksum(kind, key, name));
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

fn decode<const N: usize>(kind: &str, text: &str, name: &str) -> Result<[u8; N], UriError> {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| UriError::BadEncoding)?;
    if bytes.len() != N + 4 {
        return Err(UriError::WrongLength);
    }
    let (key, sum) = bytes.split_at(N);
    if sum != checksum(kind, key, name) {
        return Err(UriError::Checksum);
    }
    key.try_into().map_err(|_| UriError::WrongLength)
}

fn check_name(name: &str, allow_empty: bool) -> Result<(), UriError> {
    if (name.is_empty() && !allow_empty)
        || name.len() > MAX_NAME
        || name.chars().any(char::is_control)
    {
        return Err(UriError::BadName);
    }
    Ok(())
}

impl Uri {
    /// The routing key of the block the URI names first.
    pub fn routing_key(&self) -> RoutingKey {
        match self {
            Uri::Chk(k) => k.routing,
            Uri::Ssk(k) => k.routing(),
            Uri::SskInsert(k) => k.request_key().routing(),
            Uri::Ksk(w) => ksk(w).request_key().routing(),
        }
    }

    /// The URI someone needs to fetch what this one names (an insert URI
    /// gives its request URI; the others are their own).
    pub fn request_uri(&self) -> Uri {
        match self {
            Uri::SskInsert(k) => Uri::Ssk(k.request_key()),
            other => other.clone(),
        }
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uri::Chk(k) => {
                let mut key = k.routing.0.to_vec();
                key.extend_from_slice(&k.decrypt);
                write!(f, "{SCHEME}chk:{}", encode("chk", &key, ""))
            }
            Uri::Ssk(k) => write!(
                f,
                "{SCHEME}ssk:{}/{}",
                encode("ssk", &k.public, &k.name),
                k.name
            ),
            Uri::SskInsert(k) => write!(
                f,
                "{SCHEME}ssk-insert:{}/{}",
                encode("ssk-insert", &k.seed()[..], &k.name),
                k.name
            ),
            Uri::Ksk(w) => write!(f, "{SCHEME}ksk:{w}"),
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Uri, UriError> {
        let rest = s.trim().strip_prefix(SCHEME).ok_or(UriError::NotUmbra)?;
        let (kind, body) = rest
            .split_once(':')
            .ok_or(UriError::UnknownKind(rest.into()))?;
        match kind {
            "chk" => {
                let key: [u8; 64] = decode("chk", body, "")?;
                let mut routing = [0u8; 32];
                let mut decrypt = [0u8; 32];
                routing.copy_from_slice(&key[..32]);
                decrypt.copy_from_slice(&key[32..]);
                Ok(Uri::Chk(ChkKey {
                    routing: RoutingKey(routing),
                    decrypt,
                }))
            }
            "ssk" | "ssk-insert" => {
                let (key, name) = body.split_once('/').ok_or(UriError::MissingName)?;
                check_name(name, false)?;
                if name.contains('/') {
                    // What follows a name's `/` is a path inside it.
                    return Err(UriError::BadName);
                }
                let key: [u8; 32] = decode(kind, key, name)?;
                if kind == "ssk" {
                    Ok(Uri::Ssk(SskRequestKey {
                        public: key,
                        name: name.to_string(),
                    }))
                } else {
                    Ok(Uri::SskInsert(SskInsertKey::from_seed(&key, name)))
                }
            }
            "ksk" => {
                check_name(body, false)?;
                Ok(Uri::Ksk(body.to_string()))
            }
            other => Err(UriError::UnknownKind(other.into())),
        }
    }
}

/// A URI and the path that may follow a content-hash key.
#[derive(Debug, Clone)]
pub struct Link {
    pub uri: Uri,
    /// What follows the key's `/`, if anything: a file name, a path inside
    /// a site, empty or ending in `/` for a folder's index page.
    pub name: Option<String>,
}

/// Whether `name` may follow a content-hash key: one path segment a file
/// system and a browser take as a file name.
pub fn check_file_name(name: &str) -> Result<(), UriError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_NAME
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(UriError::BadFileName);
    }
    Ok(())
}

impl Link {
    /// `uri` and the path `name` after it: a content-hash or a request
    /// URI only (a keyword may hold `/` itself).
    pub fn new(uri: Uri, name: Option<String>) -> Result<Link, UriError> {
        if let Some(n) = &name {
            if !matches!(uri, Uri::Chk(_) | Uri::Ssk(_)) {
                return Err(UriError::NameOnSignedKey);
            }
            let folder = n.strip_suffix('/').unwrap_or(n);
            if !folder.is_empty() && super::site::check_path(folder).is_err() {
                return Err(UriError::BadPath);
            }
        }
        Ok(Link { uri, name })
    }

    /// The file name the path ends in, if it ends in one.
    pub fn file_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|n| n.rsplit('/').next())
            .filter(|n| !n.is_empty())
    }
}

impl From<Uri> for Link {
    fn from(uri: Uri) -> Link {
        Link { uri, name: None }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.uri),
            None => write!(f, "{}", self.uri),
        }
    }
}

impl std::str::FromStr for Link {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Link, UriError> {
        let s = s.trim();
        let kind = |k: &str| s.get(..k.len()).is_some_and(|p| p.eq_ignore_ascii_case(k));
        if kind("umbra:chk:") {
            if let Some((key, path)) = s.split_once('/') {
                return Link::new(key.parse()?, Some(path.to_string()));
            }
        } else if kind("umbra:ssk:") {
            // umbra:ssk:KEY/NAME/PATH: the name is one segment.
            if let Some((key, rest)) = s.split_once('/') {
                if let Some((name, path)) = rest.split_once('/') {
                    let uri = format!("{key}/{name}").parse()?;
                    return Link::new(uri, Some(path.to_string()));
                }
            }
        }
        Ok(Link::from(s.parse::<Uri>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::chk_encode;
    use rand::SeedableRng;

    #[test]
    fn every_kind_round_trips() {
        let (chk, _) = chk_encode(b"doc").unwrap();
        let insert = SskInsertKey::generate(&mut rand::rngs::StdRng::seed_from_u64(1), "blog");
        for uri in [
            Uri::Chk(chk),
            Uri::Ssk(insert.request_key()),
            Uri::SskInsert(insert.clone()),
            Uri::Ksk("umbra news".into()),
        ] {
            let text = uri.to_string();
            let back: Uri = text.parse().unwrap();
            assert_eq!(back.to_string(), text);
            assert_eq!(back.routing_key(), uri.routing_key());
            // Case does not matter in the key part.
            if let Uri::Chk(_) = uri {
                assert_eq!(
                    text.to_uppercase()
                        .replace("UMBRA:CHK:", "umbra:chk:")
                        .parse::<Uri>()
                        .unwrap()
                        .to_string(),
                    text
                );
            }
        }
        assert_eq!(
            Uri::SskInsert(insert.clone()).request_uri().to_string(),
            Uri::Ssk(insert.request_key()).to_string()
        );
    }

    #[test]
    fn a_content_hash_uri_carries_a_file_name_outside_its_key() {
        let (chk, _) = chk_encode(b"doc").unwrap();
        let bare = Uri::Chk(chk).to_string();
        let link: Link = format!("{bare}/report 2.pdf").parse().unwrap();
        assert_eq!(link.name.as_deref(), Some("report 2.pdf"));
        assert_eq!(link.file_name(), Some("report 2.pdf"));
        assert_eq!(link.uri.to_string(), bare);
        assert_eq!(link.to_string(), format!("{bare}/report 2.pdf"));
        // Without a name, a link is its URI; signed URIs keep their names.
        let plain: Link = bare.parse().unwrap();
        assert!(plain.name.is_none());
        let insert = SskInsertKey::generate(&mut rand::rngs::StdRng::seed_from_u64(3), "blog");
        let ssk = Uri::Ssk(insert.request_key()).to_string();
        let signed: Link = ssk.parse().unwrap();
        assert!(signed.name.is_none());
        assert_eq!(signed.to_string(), ssk);
        // A request URI is followed by a path after its name.
        let page: Link = format!("{ssk}/css/a.css").parse().unwrap();
        assert_eq!(page.uri.to_string(), ssk);
        assert_eq!(page.name.as_deref(), Some("css/a.css"));
        assert_eq!(page.to_string(), format!("{ssk}/css/a.css"));
        // A signed key's name holds no '/'.
        let slashed = SskInsertKey::generate(&mut rand::rngs::StdRng::seed_from_u64(4), "a/b");
        assert_eq!(
            Uri::SskInsert(slashed)
                .to_string()
                .parse::<Uri>()
                .unwrap_err(),
            UriError::BadName
        );
        // A path inside a site, and a folder's index.
        for (path, file) in [("css/a.css", Some("a.css")), ("", None), ("docs/", None)] {
            let link: Link = format!("{bare}/{path}").parse().unwrap();
            assert_eq!(link.name.as_deref(), Some(path));
            assert_eq!(link.file_name(), file);
            assert_eq!(link.to_string(), format!("{bare}/{path}"));
        }
        for bad in [".", "..", "a//b", "../a", "a\\b", "a\nb", &"x".repeat(256)] {
            assert_eq!(
                format!("{bare}/{bad}").parse::<Link>().unwrap_err(),
                UriError::BadPath,
                "{bad:?}"
            );
        }
        assert_eq!(
            Link::new(Uri::Ksk("k".into()), Some("a.txt".into())).unwrap_err(),
            UriError::NameOnSignedKey
        );
        // A mistyped key is still reported as such.
        let typo = format!("{}x/a.txt", &bare[..bare.len() - 1]);
        assert!(typo.parse::<Link>().is_err());
    }

    #[test]
    fn a_mistyped_uri_is_reported_as_such() {
        let (chk, _) = chk_encode(b"doc").unwrap();
        let text = Uri::Chk(chk).to_string();
        // Change one character of the key.
        let i = text.len() - 20;
        let c = if &text[i..=i] == "a" { "b" } else { "a" };
        let typo = format!("{}{}{}", &text[..i], c, &text[i + 1..]);
        assert_eq!(typo.parse::<Uri>().unwrap_err(), UriError::Checksum);
        assert_eq!(
            text[..text.len() - 1].parse::<Uri>().unwrap_err(),
            UriError::BadEncoding
        );
        // Eight characters are five whole bytes: valid base32, short key.
        assert_eq!(
            text[..text.len() - 8].parse::<Uri>().unwrap_err(),
            UriError::WrongLength
        );
        assert_eq!("http://x".parse::<Uri>().unwrap_err(), UriError::NotUmbra);
        assert_eq!(
            "umbra:xyz:abc".parse::<Uri>().unwrap_err(),
            UriError::UnknownKind("xyz".into())
        );
        assert_eq!(
            "umbra:chk:!!".parse::<Uri>().unwrap_err(),
            UriError::BadEncoding
        );
        let insert = SskInsertKey::generate(&mut rand::rngs::StdRng::seed_from_u64(2), "a");
        let ssk = Uri::Ssk(insert.request_key()).to_string();
        // The name is covered by the checksum too.
        assert_eq!(
            format!("{}b", &ssk[..ssk.len() - 1])
                .parse::<Uri>()
                .unwrap_err(),
            UriError::Checksum
        );
        assert_eq!(
            ssk[..ssk.len() - 1].parse::<Uri>().unwrap_err(),
            UriError::BadName
        );
        assert_eq!(
            ssk[..ssk.len() - 2].parse::<Uri>().unwrap_err(),
            UriError::MissingName
        );
    }
}
