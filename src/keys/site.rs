//! Sites: a folder of documents published as one, so that relative links
//! between its pages work (after Freenet's freesite manifests).
//!
//! A site is a document of content type [`SITE_TYPE`] whose bytes list
//! its files, one a line, after a header line:
//!
//! ```text
//! umbra-site 1
//! <path> TAB <content-hash URI> TAB <content type>
//! ```
//!
//! Paths are sorted and unique, `/`-separated segments that are valid
//! file names ([`check_file_name`]); the content type may be empty (the
//! path's extension then says it). Each file is a content-hash document
//! of its own, so a file that did not change between two versions of a
//! site keeps its key and its blocks.

use std::collections::BTreeMap;

use super::uri::{check_file_name, Uri};

/// The content type of a site's file list.
pub const SITE_TYPE: &str = "application/x-umbra-site";
/// The first line of a file list.
const HEADER: &str = "umbra-site 1";
/// The most files a site lists.
pub const MAX_SITE_FILES: usize = 10_000;
/// The longest file list, in bytes.
pub const MAX_SITE_BYTES: u64 = 4 << 20;
/// The longest path inside a site, in bytes.
pub const MAX_PATH: usize = 1024;
/// The page a site's folder shows.
pub const INDEX: &str = "index.html";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("a site's file list is larger than {MAX_SITE_BYTES} bytes")]
    TooLarge,
    #[error("a site lists more than {MAX_SITE_FILES} files")]
    TooManyFiles,
    #[error("a site's file list is not version 1 of the format")]
    Header,
    #[error("line {0} of a site's file list is malformed")]
    Line(usize),
    #[error("line {0} of a site's file list repeats a path or breaks its order")]
    Order(usize),
    #[error("{0:?} is not a valid path inside a site")]
    BadPath(String),
    #[error("a site lists only content-hash documents")]
    NotChk,
    #[error("{0:?} is not a content type a site's file list can carry")]
    BadType(String),
}

/// One file of a site.
#[derive(Debug, Clone)]
pub struct SiteFile {
    pub uri: Uri,
    /// Empty: the path's extension says.
    pub content_type: String,
}

/// A site's files by path.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub files: BTreeMap<String, SiteFile>,
}

/// Whether `path` names a file inside a site: segments that are valid file
/// names, joined by `/`.
pub fn check_path(path: &str) -> Result<(), SiteError> {
    let bad = || SiteError::BadPath(path.chars().take(80).collect());
    if path.len() > MAX_PATH || path.split('/').any(|s| check_file_name(s).is_err()) {
        return Err(bad());
    }
    Ok(())
}

impl Site {
    /// Add a file; a path already listed is replaced.
    pub fn insert(&mut self, path: &str, file: SiteFile) -> Result<(), SiteError> {
        check_path(path)?;
        if !matches!(file.uri, Uri::Chk(_)) {
            return Err(SiteError::NotChk);
        }
        if file.content_type.contains(['\t', '\n']) {
            return Err(SiteError::BadType(
                file.content_type.chars().take(80).collect(),
            ));
        }
        if !self.files.contains_key(path) && self.files.len() >= MAX_SITE_FILES {
            return Err(SiteError::TooManyFiles);
        }
        self.files.insert(path.to_string(), file);
        Ok(())
    }

    /// The file a request for `path` inside the site means: the path
    /// itself, or the index page of a folder (`""`, `docs/`).
    pub fn lookup(&self, path: &str) -> Option<(&str, &SiteFile)> {
        let path = if path.is_empty() || path.ends_with('/') {
            format!("{path}{INDEX}")
        } else {
            path.to_string()
        };
        self.files
            .get_key_value(&path)
            .map(|(p, f)| (p.as_str(), f))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{HEADER}\n");
        for (path, f) in &self.files {
            out.push_str(&format!("{path}\t{}\t{}\n", f.uri, f.content_type));
        }
        out.into_bytes()
    }

    /// Read a file list, refusing anything [`Site::encode`] would not
    /// write.
    pub fn decode(bytes: &[u8]) -> Result<Site, SiteError> {
        if bytes.len() as u64 > MAX_SITE_BYTES {
            return Err(SiteError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SiteError::Line(1))?;
        let body = text
            .strip_prefix(HEADER)
            .and_then(|t| t.strip_prefix('\n'))
            .ok_or(SiteError::Header)?;
        let mut site = Site::default();
        let mut last: Option<&str> = None;
        for (i, line) in body.split_terminator('\n').enumerate() {
            let n = i + 2;
            let mut fields = line.split('\t');
            let (Some(path), Some(uri), Some(content_type), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(SiteError::Line(n));
            };
            if last.is_some_and(|l| l >= path) {
                return Err(SiteError::Order(n));
            }
            last = Some(path);
            let uri: Uri = uri.parse().map_err(|_| SiteError::Line(n))?;
            if content_type.len() > super::MAX_CONTENT_TYPE
                || content_type.chars().any(char::is_control)
            {
                return Err(SiteError::Line(n));
            }
            site.insert(
                path,
                SiteFile {
                    uri,
                    content_type: content_type.to_string(),
                },
            )?;
        }
        if !body.is_empty() && !body.ends_with('\n') {
            return Err(SiteError::Line(body.split('\n').count() + 1));
        }
        Ok(site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::chk_encode;

    fn chk(data: &[u8]) -> Uri {
        Uri::Chk(chk_encode(data).unwrap().0)
    }

    #[test]
    fn a_site_lists_its_files_and_reads_back_the_same() {
        let mut site = Site::default();
        for (path, ctype) in [
            ("index.html", ""),
            ("css/style.css", "text/css"),
            ("docs/index.html", ""),
            ("img/a b.png", ""),
        ] {
            site.insert(
                path,
                SiteFile {
                    uri: chk(path.as_bytes()),
                    content_type: ctype.into(),
                },
            )
            .unwrap();
        }
        let bytes = site.encode();
        let back = Site::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.lookup("").unwrap().0, "index.html");
        assert_eq!(back.lookup("docs/").unwrap().0, "docs/index.html");
        assert_eq!(
            back.lookup("css/style.css").unwrap().1.content_type,
            "text/css"
        );
        assert!(back.lookup("css/").is_none());
        assert!(back.lookup("missing.html").is_none());
    }

    #[test]
    fn a_malformed_file_list_is_refused_with_its_line() {
        let uri = chk(b"x").to_string();
        let cases: Vec<(String, SiteError)> = vec![
            ("umbra-site 2\n".into(), SiteError::Header),
            (format!("umbra-site 1\na\t{uri}\n"), SiteError::Line(2)),
            (
                format!("umbra-site 1\nb\t{uri}\t\na\t{uri}\t\n"),
                SiteError::Order(3),
            ),
            (
                format!("umbra-site 1\na\t{uri}\t\na\t{uri}\t\n"),
                SiteError::Order(3),
            ),
            (
                format!("umbra-site 1\n../a\t{uri}\t\n"),
                SiteError::BadPath("../a".into()),
            ),
            (
                format!("umbra-site 1\na//b\t{uri}\t\n"),
                SiteError::BadPath("a//b".into()),
            ),
            (
                "umbra-site 1\na\tumbra:ksk:word\t\n".into(),
                SiteError::NotChk,
            ),
            (format!("umbra-site 1\na\t{uri}\t"), SiteError::Line(2)),
        ];
        for (text, want) in cases {
            assert_eq!(Site::decode(text.as_bytes()).unwrap_err(), want, "{text:?}");
        }
        let big = vec![b'a'; MAX_SITE_BYTES as usize + 1];
        assert_eq!(Site::decode(&big).unwrap_err(), SiteError::TooLarge);
    }

    #[test]
    fn a_content_type_that_would_break_the_list_is_refused_by_name() {
        let mut site = Site::default();
        let file = SiteFile {
            uri: chk(b"x"),
            content_type: "text/html\na\tumbra:chk:x".into(),
        };
        assert_eq!(
            site.insert("index.html", file).unwrap_err(),
            SiteError::BadType("text/html\na\tumbra:chk:x".into())
        );
        assert!(site.files.is_empty());
    }
}
