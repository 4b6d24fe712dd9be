//! Documents: one block, or many blocks under a manifest, erasure coded.
//!
//! A document's *root* is one block's plaintext:
//!
//! ```text
//! inline:            01 | ctype_len u8 | ctype | data
//! manifest, direct:  02 | ctype_len u8 | ctype | total_len u64 | nseg u32
//!                       | nseg × (k u16 | m u16) | (Σ k+m) × key[64]
//! manifest, nested:  03 | ctype_len u8 | ctype | total_len u64 | nseg u32
//!                       | nseg × (k u16 | m u16) | list key[64] | list_len u64
//! ```
//!
//! A key is a CHK's routing key and decryption key (64 bytes). The data is
//! cut into [`BLOCK_PAYLOAD`]-byte chunks, grouped into segments of
//! [`SEGMENT_DATA_BLOCKS`] chunks (the last holds the rest, so a document
//! can be encoded as it arrives, [`Encoder`]); each segment of `k` chunks gets `m =
//! ceil(k / 2)` parity chunks from a Reed-Solomon code (the
//! `reed-solomon-simd` crate: O(n log n) encoding and decoding, any shard
//! count a document needs, maintained), and every chunk becomes a CHK
//! block. Any `k` of a segment's `k + m` blocks rebuild it, so a document
//! survives the loss of up to `m` blocks in every segment. When the key
//! list does not fit in the root, it is itself stored as a document (the
//! nested form) and the root points to it; that recursion shrinks the list
//! about 500-fold per level.

use super::{chk_encode, ChkKey, KeyError, BLOCK_PAYLOAD};
use crate::wire::RoutingKey;

/// Data chunks per segment, at most.
pub const SEGMENT_DATA_BLOCKS: usize = 64;
/// Longest content type, in bytes.
pub const MAX_CONTENT_TYPE: usize = 255;
/// Content type of a nested key list.
const KEY_LIST_TYPE: &str = "application/x-umbra-key-list";

const TAG_INLINE: u8 = 1;
const TAG_DIRECT: u8 = 2;
const TAG_NESTED: u8 = 3;
const KEY_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("content type longer than {MAX_CONTENT_TYPE} bytes")]
    ContentType,
    #[error("the document's root block is malformed")]
    BadRoot,
    #[error(
        "segment {segment} cannot be rebuilt: {have} of its {total} blocks found, {need} needed"
    )]
    Unrecoverable {
        segment: usize,
        have: usize,
        need: usize,
        total: usize,
    },
    #[error("erasure coding: {0}")]
    Erasure(String),
    #[error("block: {0}")]
    Block(#[from] KeyError),
    #[error("key lists nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("a block of the document is shorter than its manifest says")]
    ShortBlock,
}

/// Key lists nested in key lists, at most: each level shrinks a list some
/// 500-fold, so a document of any size this format can describe needs
/// two; a root chain deeper than this is made to waste fetches.
pub const MAX_NESTING: usize = 3;

/// One segment: `data` chunks and `parity` chunks, and their keys in that
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub data: usize,
    pub parity: usize,
    pub keys: Vec<ChkKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub content_type: String,
    pub total_len: u64,
    pub segments: Vec<Segment>,
}

/// A decoded root block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    Inline {
        content_type: String,
        data: Vec<u8>,
    },
    Manifest(Manifest),
    /// The key list lives in another document: fetch it, then call
    /// [`split_key_list`] and fill in the segments' keys.
    Nested {
        manifest: Manifest,
        list: ChkKey,
        list_len: u64,
    },
}

/// Everything an insert must store: the root's plaintext (stored as a CHK,
/// or inside an SSK) and the CHK blocks under it.
#[derive(Debug, Clone)]
pub struct EncodedDocument {
    pub root: Vec<u8>,
    pub blocks: Vec<(ChkKey, Vec<u8>)>,
    /// Which of `blocks` are roots of nested key lists: like the root,
    /// single blocks the document cannot do without.
    pub lists: Vec<ChkKey>,
}

fn write_ctype(out: &mut Vec<u8>, ctype: &str) -> Result<(), DocError> {
    let len = u8::try_from(ctype.len()).map_err(|_| DocError::ContentType)?;
    out.push(len);
    out.extend_from_slice(ctype.as_bytes());
    Ok(())
}

fn parity_for(data: usize) -> usize {
    data.div_ceil(2)
}

/// Data bytes in a full segment.
pub const SEGMENT_BYTES: usize = SEGMENT_DATA_BLOCKS * BLOCK_PAYLOAD;

/// Encode a document held whole in memory: [`Encoder`] fed at once.
pub fn encode_document(content_type: &str, data: &[u8]) -> Result<EncodedDocument, DocError> {
    let mut e = Encoder::new(content_type)?;
    let mut blocks = e.push(data)?;
    let mut rest = e.finish()?;
    blocks.append(&mut rest.blocks);
    rest.blocks = blocks;
    Ok(rest)
}

/// A document encoded as its bytes arrive, a segment at a time: every
/// segment holds [`SEGMENT_DATA_BLOCKS`] chunks but the last two, which
/// share what is left evenly (so that no segment is left with a chunk or
/// two and the weak code of a small one). The encoding does not depend on
/// knowing the length in advance: the same bytes give the same blocks and
/// the same URI however they are fed, and memory stays at two segments.
pub struct Encoder {
    content_type: String,
    /// Bytes not yet in a segment: at most two segments' worth, more than
    /// one once a segment went out.
    pending: Vec<u8>,
    segments: Vec<Segment>,
    total: u64,
}

impl Encoder {
    pub fn new(content_type: &str) -> Result<Encoder, DocError> {
        if content_type.len() > MAX_CONTENT_TYPE {
            return Err(DocError::ContentType);
        }
        Ok(Encoder {
            content_type: content_type.to_string(),
            pending: Vec::new(),
            segments: Vec::new(),
            total: 0,
        })
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Feed the next bytes; returns the blocks of every segment they
    /// completed. A full segment goes out only once more than another
    /// full one follows it: the last two are cut at the end.
    pub fn push(&mut self, mut data: &[u8]) -> Result<Vec<(ChkKey, Vec<u8>)>, DocError> {
        self.total = self.total.saturating_add(data.len() as u64);
        let mut blocks = Vec::new();
        while !data.is_empty() {
            if self.pending.len() == 2 * SEGMENT_BYTES {
                let full: Vec<u8> = self.pending.drain(..SEGMENT_BYTES).collect();
                blocks.extend(self.segment(&full)?);
            }
            let take = (2 * SEGMENT_BYTES - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(blocks)
    }

    /// Cut `data` (at most a segment) into chunks, add parity, encrypt.
    fn segment(&mut self, data: &[u8]) -> Result<Vec<(ChkKey, Vec<u8>)>, DocError> {
        // Reed-Solomon needs equal shards: pad the last chunk.
        let shards: Vec<Vec<u8>> = data
            .chunks(BLOCK_PAYLOAD)
            .map(|c| {
                let mut s = c.to_vec();
                s.resize(BLOCK_PAYLOAD, 0);
                s
            })
            .collect();
        let k = shards.len();
        let m = parity_for(k);
        let parity = reed_solomon_simd::encode(k, m, &shards)
            .map_err(|e| DocError::Erasure(e.to_string()))?;
        let mut keys = Vec::with_capacity(k + m);
        let mut blocks = Vec::with_capacity(k + m);
        for shard in shards.iter().chain(parity.iter()) {
            let (key, block) = chk_encode(shard)?;
            keys.push(key);
            blocks.push((key, block));
        }
        self.segments.push(Segment {
            data: k,
            parity: m,
            keys,
        });
        Ok(blocks)
    }

    /// The end of the document: the last segment's blocks, the key list's
    /// if it needs a document of its own, and the root.
    pub fn finish(mut self) -> Result<EncodedDocument, DocError> {
        let mut root = vec![TAG_INLINE];
        write_ctype(&mut root, &self.content_type)?;
        if self.segments.is_empty() && root.len() + self.pending.len() <= BLOCK_PAYLOAD {
            root.extend_from_slice(&self.pending);
            return Ok(EncodedDocument {
                root,
                blocks: Vec::new(),
                lists: Vec::new(),
            });
        }
        let last = std::mem::take(&mut self.pending);
        let chunks = last.len().div_ceil(BLOCK_PAYLOAD);
        let mut blocks = Vec::new();
        if chunks > SEGMENT_DATA_BLOCKS {
            let cut = chunks.div_ceil(2) * BLOCK_PAYLOAD;
            blocks.extend(self.segment(&last[..cut])?);
            blocks.extend(self.segment(&last[cut..])?);
        } else if chunks > 0 {
            blocks.extend(self.segment(&last)?);
        }
        let segments = self.segments;

        let mut header = Vec::new();
        write_ctype(&mut header, &self.content_type)?;
        header.extend_from_slice(&self.total.to_be_bytes());
        let nseg = u32::try_from(segments.len()).map_err(|_| DocError::BadRoot)?;
        header.extend_from_slice(&nseg.to_be_bytes());
        for s in &segments {
            for v in [s.data, s.parity] {
                let v = u16::try_from(v).map_err(|_| DocError::BadRoot)?;
                header.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut key_list =
            Vec::with_capacity(segments.iter().map(|s| s.keys.len() * KEY_LEN).sum());
        for s in &segments {
            for k in &s.keys {
                key_list.extend_from_slice(&k.routing.0);
                key_list.extend_from_slice(&k.decrypt);
            }
        }
        let mut root = Vec::new();
        let mut lists = Vec::new();
        if 1 + header.len() + key_list.len() <= BLOCK_PAYLOAD {
            root.push(TAG_DIRECT);
            root.extend_from_slice(&header);
            root.extend_from_slice(&key_list);
        } else {
            let nested = encode_document(KEY_LIST_TYPE, &key_list)?;
            let (list_key, list_block) = chk_encode(&nested.root)?;
            blocks.extend(nested.blocks);
            blocks.push((list_key, list_block));
            lists.extend(nested.lists);
            lists.push(list_key);
            root.push(TAG_NESTED);
            root.extend_from_slice(&header);
            root.extend_from_slice(&list_key.routing.0);
            root.extend_from_slice(&list_key.decrypt);
            let list_len = u64::try_from(key_list.len()).map_err(|_| DocError::BadRoot)?;
            root.extend_from_slice(&list_len.to_be_bytes());
        }
        Ok(EncodedDocument {
            root,
            blocks,
            lists,
        })
    }
}

/// A cursor over a root block; every read is checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DocError> {
        if n > self.0.len() {
            return Err(DocError::BadRoot);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DocError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, DocError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Result<usize, DocError> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| DocError::BadRoot)?;
        usize::try_from(u32::from_be_bytes(b)).map_err(|_| DocError::BadRoot)
    }
    fn u64(&mut self) -> Result<u64, DocError> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| DocError::BadRoot)?;
        Ok(u64::from_be_bytes(b))
    }
    fn key(&mut self) -> Result<ChkKey, DocError> {
        let b = self.take(KEY_LEN)?;
        let mut routing = [0u8; 32];
        let mut decrypt = [0u8; 32];
        routing.copy_from_slice(&b[..32]);
        decrypt.copy_from_slice(&b[32..]);
        Ok(ChkKey {
            routing: RoutingKey(routing),
            decrypt,
        })
    }
}

/// Parse a root block's plaintext. Every count is checked against what a
/// valid document could hold before anything is allocated by it.
pub fn decode_root(plain: &[u8]) -> Result<Root, DocError> {
    let mut c = Cursor(plain);
    let tag = c.u8()?;
    let ctype_len = usize::from(c.u8()?);
    let content_type =
        String::from_utf8(c.take(ctype_len)?.to_vec()).map_err(|_| DocError::BadRoot)?;
    if tag == TAG_INLINE {
        return Ok(Root::Inline {
            content_type,
            data: c.0.to_vec(),
        });
    }
    if tag != TAG_DIRECT && tag != TAG_NESTED {
        return Err(DocError::BadRoot);
    }
    let total_len = c.u64()?;
    let nseg = c.u32()?;
    // Each segment header is 4 bytes: the root cannot name more.
    if nseg == 0 || nseg > c.0.len() / 4 {
        return Err(DocError::BadRoot);
    }
    let mut segments = Vec::with_capacity(nseg);
    let mut total_keys = 0usize;
    let mut chunks = 0u64;
    for _ in 0..nseg {
        let (data, parity) = (c.u16()?, c.u16()?);
        if data == 0 || data > SEGMENT_DATA_BLOCKS || parity != parity_for(data) {
            return Err(DocError::BadRoot);
        }
        total_keys += data + parity;
        chunks += u64::try_from(data).map_err(|_| DocError::BadRoot)?;
        segments.push(Segment {
            data,
            parity,
            keys: Vec::new(),
        });
    }
    // The chunk count must be the one total_len implies.
    let payload = u64::try_from(BLOCK_PAYLOAD).map_err(|_| DocError::BadRoot)?;
    if chunks != total_len.div_ceil(payload) {
        return Err(DocError::BadRoot);
    }
    let manifest = Manifest {
        content_type,
        total_len,
        segments,
    };
    if tag == TAG_NESTED {
        let list = c.key()?;
        let list_len = c.u64()?;
        if !c.0.is_empty() || Some(list_len) != u64::try_from(total_keys * KEY_LEN).ok() {
            return Err(DocError::BadRoot);
        }
        return Ok(Root::Nested {
            manifest,
            list,
            list_len,
        });
    }
    if c.0.len() != total_keys * KEY_LEN {
        return Err(DocError::BadRoot);
    }
    let keys = split_key_list(c.0)?;
    Ok(Root::Manifest(fill_keys(manifest, keys)?))
}

/// Parse a key list (64-byte keys back to back).
pub fn split_key_list(bytes: &[u8]) -> Result<Vec<ChkKey>, DocError> {
    if bytes.len() % KEY_LEN != 0 {
        return Err(DocError::BadRoot);
    }
    let mut c = Cursor(bytes);
    (0..bytes.len() / KEY_LEN).map(|_| c.key()).collect()
}

/// Hand the keys of a key list out to the segments, in order.
pub fn fill_keys(mut manifest: Manifest, keys: Vec<ChkKey>) -> Result<Manifest, DocError> {
    let want: usize = manifest.segments.iter().map(|s| s.data + s.parity).sum();
    if keys.len() != want {
        return Err(DocError::BadRoot);
    }
    let mut it = keys.into_iter();
    for s in &mut manifest.segments {
        s.keys = it.by_ref().take(s.data + s.parity).collect();
    }
    Ok(manifest)
}

impl Segment {
    /// Rebuild the segment's data chunks from the blocks that arrived
    /// (`found[i]` is chunk `i`'s plaintext, data first, then parity).
    pub fn rebuild(
        &self,
        index: usize,
        found: &[Option<Vec<u8>>],
    ) -> Result<Vec<Vec<u8>>, DocError> {
        let have = found.iter().filter(|f| f.is_some()).count();
        if have < self.data {
            return Err(DocError::Unrecoverable {
                segment: index,
                have,
                need: self.data,
                total: self.data + self.parity,
            });
        }
        if found[..self.data].iter().all(Option::is_some) {
            return Ok(found[..self.data].iter().flatten().cloned().collect());
        }
        let originals = found[..self.data]
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)));
        let recovery = found[self.data..]
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)));
        let restored = reed_solomon_simd::decode(self.data, self.parity, originals, recovery)
            .map_err(|e| DocError::Erasure(e.to_string()))?;
        (0..self.data)
            .map(|i| {
                found[i]
                    .clone()
                    .or_else(|| restored.get(&i).cloned())
                    .ok_or(DocError::Erasure("a chunk was not restored".into()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::chk_decode;
    use std::collections::HashMap;

    fn fetch_all(doc: &EncodedDocument) -> HashMap<ChkKey, Vec<u8>> {
        doc.blocks
            .iter()
            .map(|(k, b)| (*k, chk_decode(k, b).unwrap()))
            .collect()
    }

    fn reassemble(
        root: &[u8],
        store: &HashMap<ChkKey, Vec<u8>>,
        lost: &[ChkKey],
    ) -> Result<(String, Vec<u8>), DocError> {
        let m = match decode_root(root)? {
            Root::Inline { content_type, data } => return Ok((content_type, data)),
            Root::Manifest(m) => m,
            Root::Nested { manifest, list, .. } => {
                let (_, list_bytes) = reassemble(&store[&list], store, &[])?;
                fill_keys(manifest, split_key_list(&list_bytes)?)?
            }
        };
        let mut out = Vec::new();
        for (i, s) in m.segments.iter().enumerate() {
            let found: Vec<Option<Vec<u8>>> = s
                .keys
                .iter()
                .map(|k| (!lost.contains(k)).then(|| store[k].clone()))
                .collect();
            for chunk in s.rebuild(i, &found)? {
                out.extend(chunk);
            }
        }
        out.truncate(usize::try_from(m.total_len).unwrap());
        Ok((m.content_type, out))
    }

    #[test]
    fn small_documents_are_inline() {
        let doc = encode_document("text/plain", b"short").unwrap();
        assert!(doc.blocks.is_empty());
        assert_eq!(
            decode_root(&doc.root).unwrap(),
            Root::Inline {
                content_type: "text/plain".into(),
                data: b"short".to_vec()
            }
        );
    }

    #[test]
    fn a_large_document_survives_the_loss_its_code_allows_and_no_more() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 1000) as u8)
            .collect();
        let doc = encode_document("application/octet-stream", &data).unwrap();
        let store = fetch_all(&doc);
        let Root::Manifest(m) = decode_root(&doc.root).unwrap() else {
            panic!("expected a direct manifest");
        };
        assert_eq!(m.segments.len(), 2);
        // Lose every parity block's worth in each segment: data blocks first.
        let mut lost = Vec::new();
        for s in &m.segments {
            lost.extend(s.keys[..s.parity].iter().copied());
        }
        assert_eq!(reassemble(&doc.root, &store, &lost).unwrap().1, data);
        // One more in the first segment, and it fails, naming the segment.
        lost.push(m.segments[0].keys[m.segments[0].parity]);
        assert_eq!(
            reassemble(&doc.root, &store, &lost).unwrap_err(),
            DocError::Unrecoverable {
                segment: 0,
                have: m.segments[0].data - 1,
                need: m.segments[0].data,
                total: m.segments[0].data + m.segments[0].parity
            }
        );
    }

    #[test]
    fn very_large_documents_nest_their_key_list() {
        // Enough blocks that the keys no longer fit in the root.
        let data = vec![0x42u8; 20 * 1024 * 1024];
        let doc = encode_document("application/octet-stream", &data).unwrap();
        assert!(matches!(
            decode_root(&doc.root).unwrap(),
            Root::Nested { .. }
        ));
        let store = fetch_all(&doc);
        assert_eq!(reassemble(&doc.root, &store, &[]).unwrap().1, data);
    }

    #[test]
    fn an_encoder_fed_in_pieces_gives_the_same_document_as_one_fed_whole() {
        let data: Vec<u8> = (0..2 * SEGMENT_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let whole = encode_document("a/b", &data).unwrap();
        for piece in [1 << 20, 4096, SEGMENT_BYTES, SEGMENT_BYTES + 1, 77_777] {
            let mut e = Encoder::new("a/b").unwrap();
            let mut blocks = Vec::new();
            for c in data.chunks(piece) {
                let out = e.push(c).unwrap();
                // Never more than a segment's blocks at once.
                assert!(out.len() <= SEGMENT_DATA_BLOCKS * 3 / 2, "{piece}");
                blocks.extend(out);
            }
            let mut end = e.finish().unwrap();
            blocks.append(&mut end.blocks);
            assert_eq!(end.root, whole.root, "{piece}");
            assert!(blocks == whole.blocks, "{piece}");
        }
        // Full segments, then the last two share the rest; a whole number
        // of segments leaves them full.
        let sizes = |data: &[u8]| -> Vec<usize> {
            let Root::Manifest(m) = decode_root(&encode_document("", data).unwrap().root).unwrap()
            else {
                panic!("a direct manifest");
            };
            m.segments.iter().map(|s| s.data).collect()
        };
        assert_eq!(sizes(&data), vec![64, 33, 32]);
        assert_eq!(sizes(&vec![7u8; 2 * SEGMENT_BYTES]), vec![64, 64]);
        assert_eq!(
            sizes(&vec![7u8; 3 * SEGMENT_BYTES + 1]),
            vec![64, 64, 33, 32]
        );
        assert_eq!(sizes(&vec![7u8; 40 * BLOCK_PAYLOAD]), vec![40]);
    }

    #[test]
    fn malformed_roots_are_refused() {
        assert_eq!(decode_root(&[]), Err(DocError::BadRoot));
        assert_eq!(decode_root(&[9, 0]), Err(DocError::BadRoot));
        // A manifest claiming 2^32-1 segments with no bytes behind it.
        let mut r = vec![TAG_DIRECT, 0];
        r.extend_from_slice(&1_000_000u64.to_be_bytes());
        r.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_root(&r), Err(DocError::BadRoot));
    }
}
