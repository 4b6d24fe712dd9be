//! The fuzz target bodies. Compiled into the cargo-fuzz targets and, through
//! `#[path]`, into `tests/fuzz_corpus.rs`, so every corpus file is replayed
//! with the same checks by a plain `cargo test`.

use umbra::crypto::{respond, ClientCircuit, ClientHandshake, Identity, LayerKeys, RelayLayer};
use umbra::wire::{
    decode_frame, encode_frame, Cell, NodeDescriptor, NodeId, PeerMessage, RelayMessage, CELL_LEN,
    ONION_LEN,
};

/// Every parser on arbitrary bytes: no panic, and whatever parses encodes
/// back to the bytes it came from.
pub fn wire(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            // Exact-length cells, so the fuzzer explores bodies, and the
            // raw input, so it explores the length check.
            let _ = Cell::decode(input);
            let mut cell = input.to_vec();
            cell.resize(CELL_LEN, 0);
            if let Ok(c) = Cell::decode(&cell) {
                assert_eq!(c.encode().expect("a parsed cell encodes"), cell);
            }
        }
        1 => {
            if let Ok(m) = PeerMessage::decode(input) {
                assert_eq!(m.encode().expect("a parsed message encodes"), input);
            }
        }
        2 => {
            if let Ok(m) = RelayMessage::decode(input) {
                let bytes = m.encode().expect("a parsed relay message encodes");
                assert_eq!(&input[..bytes.len()], &bytes[..]);
                assert_eq!(RelayMessage::decode(&bytes).as_ref(), Ok(&m));
            }
        }
        3 => {
            // A stream of frames, as a link would read it.
            let mut rest = input;
            while let Ok(Some((frame, used))) = decode_frame(rest) {
                assert_eq!(
                    encode_frame(&frame).expect("a parsed frame encodes"),
                    rest[..used]
                );
                rest = &rest[used..];
            }
        }
        _ => {
            if let Ok(d) = NodeDescriptor::decode(input) {
                assert_eq!(d.encode().expect("a parsed descriptor encodes"), input);
                let _ = umbra::crypto::verify_descriptor(&d);
            }
        }
    }
}

/// Onion layers and handshakes with arbitrary keys and bytes: no panic, and
/// no layer ever accepts bytes it did not seal.
pub fn onion(data: &[u8]) {
    if data.len() < 1 + 96 {
        return;
    }
    let (head, rest) = data.split_at(1 + 96);
    let mode = head[0];
    let mut key_bytes = [0u8; 96];
    key_bytes.copy_from_slice(&head[1..]);
    let keys = LayerKeys::from_bytes(&key_bytes);
    let mut onion = Box::new([0u8; ONION_LEN]);
    let n = rest.len().min(ONION_LEN);
    onion[..n].copy_from_slice(&rest[..n]);

    match mode % 5 {
        0 => {
            let mut relay = RelayLayer::new(&keys);
            // Forging a tag by chance is a 2^-106 event: treat success as a
            // finding.
            assert!(relay.peel_forward(&mut onion).is_err());
        }
        1 => {
            // A one-hop circuit whose relay wraps arbitrary bytes: the
            // client accepts exactly when the 16 bytes the relay dropped
            // were the zeros an exit leaves there.
            let dropped_zero = onion[ONION_LEN - 16..].iter().all(|&b| b == 0);
            let mut relay = RelayLayer::new(&keys);
            relay
                .wrap_backward(&mut onion)
                .expect("wrapping never fails");
            let mut client = ClientCircuit::new();
            client.add_hop(&keys).expect("one hop fits");
            let ok = client.unwrap_backward(&mut onion).is_ok();
            assert_eq!(ok, dropped_zero);
        }
        2 => {
            let hops = usize::from(mode / 5 % 8) + 1;
            let mut client = ClientCircuit::new();
            let mut k = key_bytes;
            for _ in 0..hops {
                k[0] = k[0].wrapping_add(1);
                client.add_hop(&LayerKeys::from_bytes(&k)).expect("fits");
            }
            assert!(client.unwrap_backward(&mut onion).is_err());
        }
        3 => {
            // A relay answering an arbitrary client message.
            let relay = Identity::from_secret_bytes(&{
                let mut s = [0u8; 64];
                s.copy_from_slice(&key_bytes[..64]);
                s
            });
            let _ = respond(
                &mut rand::rngs::OsRng,
                &relay,
                None,
                &rest[..rest.len().min(200)],
            );
            // And one naming it properly, with an arbitrary ephemeral key.
            let mut msg = [0u8; 96];
            msg[..32].copy_from_slice(&relay.id().0);
            msg[32..64].copy_from_slice(&relay.onion_key());
            let x = rest.len().min(32);
            msg[64..64 + x].copy_from_slice(&rest[..x]);
            let _ = respond(&mut rand::rngs::OsRng, &relay, None, &msg);
        }
        _ => {
            // A client checking an arbitrary relay reply.
            let mut onion_key = [0u8; 32];
            onion_key.copy_from_slice(&key_bytes[..32]);
            let (state, _) =
                ClientHandshake::start(&mut rand::rngs::OsRng, NodeId([1; 32]), onion_key);
            let reply = &rest[..rest.len().min(64)];
            assert!(state.finish(reply).is_err(), "forged a handshake reply");
        }
    }
}

/// Selector bytes of the user target.
pub const USER_SOCKS: u8 = 0;
pub const USER_URI: u8 = 1;
pub const USER_PATH: u8 = 2;
pub const USER_ROOT: u8 = 3;

/// What a local application or a user hands the node: a SOCKS handshake,
/// a URI, a percent-encoded path or query, a document root. No panic, no
/// hang; a handshake that opens a stream said so last; a URI that parses
/// prints back to itself.
pub fn user(data: &[u8]) {
    use umbra::gateway::url;
    use umbra::keys::{decode_root, Uri};

    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        USER_SOCKS => {
            // The pure handshake, no runtime: the bytes whole, and cut in
            // pieces of the size the first byte says. However the bytes
            // arrive, the answer is the same.
            let Some((&size, input)) = input.split_first() else {
                return;
            };
            let whole = umbra::socks::run_pieces([input]);
            let pieces = input.chunks(usize::from(size % 16) + 1);
            assert_eq!(umbra::socks::run_pieces(pieces), whole);
            if let (written, Some(Ok(_))) = &whole {
                assert!(written.ends_with(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
            }
        }
        USER_URI => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Ok(uri) = text.parse::<Uri>() {
                let printed = uri.to_string();
                let again: Uri = printed.parse().expect("a printed URI parses");
                assert_eq!(again.to_string(), printed);
            }
            // A URI with a file name: printed and read back the same.
            if let Ok(link) = text.parse::<umbra::keys::Link>() {
                let printed = link.to_string();
                let again: umbra::keys::Link = printed.parse().expect("a printed link parses");
                assert_eq!(again.to_string(), printed);
                assert_eq!(again.name, link.name);
            }
        }
        USER_PATH => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            if let Some(decoded) = url::percent_decode(text) {
                let encoded = url::percent_encode_path(&decoded);
                assert_eq!(url::percent_decode(&encoded).as_deref(), Some(&*decoded));
            }
            let _ = url::form_value(text, "uri");
            let _ = url::host_allowed(text);
            let _ = url::origin_matches(Some(text), Some(text));
        }
        _ => {
            let _ = decode_root(input);
        }
    }
}

/// The first `n` bytes of `rest` (fewer at its end), moving past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (a, b) = rest.split_at(n.min(rest.len()));
    *rest = b;
    a
}

/// A relay's circuit state machine fed arbitrary operations from two
/// peers: raw cells, relay messages sealed on a real circuit the harness
/// built through it (so the exit's logic is reached), routed outcomes of
/// any size, links going down and up, time passing. No panic, and the
/// relay's state stays within its bounds whatever the peers do.
pub fn circuits(data: &[u8]) {
    use std::time::{Duration, Instant};
    use umbra::circuit::{Action, Circuits, Settings, MAX_RELAY_CIRCUITS};
    use umbra::crypto::ClientCircuit as Client;
    use umbra::route::Outcome;
    use umbra::wire::{CircId, CreateBody, HandshakeType, RELAY_BODY_MAX};

    let identity = Identity::from_secret_bytes(&[7; 64]);
    let relay_id = identity.id();
    let onion_key = identity.onion_key();
    let mut relay = Circuits::new(identity, Settings::default(), [0; 32]);
    let peers = [NodeId([1; 32]), NodeId([2; 32])];
    let mut now = Instant::now();
    relay.link_up(peers[0], false, now);
    relay.link_up(peers[1], true, now);

    // A real one-hop circuit from the first peer, so that sealed relay
    // messages reach the exit.
    let circ = CircId(CircId::DIALER_BIT | 1);
    let (hs, msg) = ClientHandshake::start(&mut rand::rngs::OsRng, relay_id, onion_key);
    relay.handle_cell(
        peers[0],
        Cell::Create {
            circ,
            body: CreateBody {
                handshake: HandshakeType::NTOR_X25519,
                data: msg.to_vec(),
            },
        },
        now,
    );
    let mut client = Client::new();
    let mut routes = Vec::new();
    let drain = |relay: &mut Circuits,
                 client: &mut Client,
                 hs: &mut Option<ClientHandshake>,
                 routes: &mut Vec<umbra::token::Token>| {
        while let Some(a) = relay.poll_action() {
            match a {
                Action::Send {
                    cell: Cell::Created { body, .. },
                    ..
                } => {
                    if let Some(h) = hs.take() {
                        let keys = h.finish(&body.data).expect("the relay's own reply");
                        client.add_hop(&keys).expect("one hop fits");
                    }
                }
                Action::Send {
                    cell: Cell::Relay { mut onion, .. },
                    to,
                } if to == peers[0] => {
                    // The client reads what comes back (or gives up on a
                    // circuit that broke).
                    let _ = client.unwrap_backward(&mut onion);
                }
                Action::Route { token, .. } => routes.push(token),
                _ => {}
            }
        }
    };
    let mut hs = Some(hs);
    drain(&mut relay, &mut client, &mut hs, &mut routes);

    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let peer = peers[usize::from(op >> 7)];
        match op % 5 {
            0 => {
                let mut cell = take(&mut rest, CELL_LEN).to_vec();
                cell.resize(CELL_LEN, 0);
                if let Ok(c) = Cell::decode(&cell) {
                    relay.handle_cell(peer, c, now);
                }
            }
            1 => {
                let len = take(&mut rest, 1)
                    .first()
                    .map_or(0, |&b| usize::from(b) * 4);
                let body = take(&mut rest, len);
                if let Ok(m) = RelayMessage::decode(body) {
                    if let Ok(payload) = m.encode_payload() {
                        if let Ok(onion) = client.wrap_forward(&mut rand::rngs::OsRng, &payload) {
                            let cell = if op & 0x40 != 0 {
                                Cell::RelayEarly { circ, onion }
                            } else {
                                Cell::Relay { circ, onion }
                            };
                            relay.handle_cell(peers[0], cell, now);
                        }
                    }
                }
            }
            2 => {
                // A routed request ends: found (a block of any size up to
                // the largest), or not.
                let b = take(&mut rest, 2);
                if let Some(token) = routes.pop() {
                    let size = usize::from(b.first().copied().unwrap_or(0)) * RELAY_BODY_MAX / 2;
                    let outcome = match b.get(1).copied().unwrap_or(0) % 3 {
                        0 => Outcome::Found(vec![0x5a; size.min(umbra::wire::MAX_BLOCK_LEN)]),
                        1 => Outcome::DataNotFound,
                        _ => Outcome::Timeout,
                    };
                    relay.route_done(token, outcome, now);
                }
            }
            3 => {
                let secs = take(&mut rest, 1).first().copied().unwrap_or(0);
                now += Duration::from_secs(u64::from(secs));
                if relay.poll_timeout().is_some_and(|t| t <= now) {
                    relay.handle_timeout(now);
                }
            }
            _ => {
                if op & 0x40 != 0 {
                    relay.link_down(peer, now);
                } else {
                    relay.link_up(peer, peer == peers[1], now);
                }
            }
        }
        drain(&mut relay, &mut client, &mut hs, &mut routes);
        let stats = relay.stats();
        assert!(stats.relaying <= MAX_RELAY_CIRCUITS);
        assert!(
            relay.exit_queued() <= Settings::default().exit_unread + umbra::wire::MAX_BLOCK_LEN
        );
    }
}

/// Selector bytes of the documents target.
pub const DOC_ROOT: u8 = 0;
pub const DOC_ENCODE: u8 = 1;
pub const DOC_BLOCK: u8 = 2;

/// The document layer: roots, manifests and nested manifests as a fetch
/// reads them off the network, documents encoded and read back, blocks
/// checked against keys. No panic and no allocation a valid document
/// could not need; whatever is encoded decodes to itself.
pub fn documents(data: &[u8]) {
    use umbra::keys::{chk_decode, decode_root, encode_document, fill_keys, split_key_list, Root};
    use umbra::wire::RoutingKey;

    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        DOC_ROOT => {
            // A root, and after it (for a nested one) what its key list
            // fetched from elsewhere would hold.
            let cut = usize::from(input.first().copied().unwrap_or(0)) * 8;
            let (root, list) = input.split_at(cut.min(input.len()));
            match decode_root(root) {
                Ok(Root::Manifest(m)) => {
                    let keys: usize = m.segments.iter().map(|s| s.keys.len()).sum();
                    let want: usize = m.segments.iter().map(|s| s.data + s.parity).sum();
                    assert_eq!(keys, want);
                }
                Ok(Root::Nested { manifest, .. }) => {
                    if let Ok(keys) = split_key_list(list) {
                        let _ = fill_keys(manifest, keys);
                    }
                }
                _ => {}
            }
        }
        DOC_ENCODE => {
            let Some((&n, rest)) = input.split_first() else {
                return;
            };
            let (ctype, body) = rest.split_at(usize::from(n % 40).min(rest.len()));
            let Ok(ctype) = std::str::from_utf8(ctype) else {
                return;
            };
            let Ok(doc) = encode_document(ctype, body) else {
                return;
            };
            match decode_root(&doc.root).expect("an encoded root decodes") {
                Root::Inline { content_type, data } => {
                    assert_eq!((content_type.as_str(), &data[..]), (ctype, body));
                }
                Root::Manifest(m) => {
                    assert_eq!(m.total_len, body.len() as u64);
                    for (key, block) in &doc.blocks {
                        chk_decode(key, block).expect("a block decodes under its key");
                    }
                }
                Root::Nested { .. } => {}
            }
        }
        _ => {
            if input.len() < 64 {
                return;
            }
            let (k, block) = input.split_at(64);
            let mut routing = [0u8; 32];
            let mut decrypt = [0u8; 32];
            routing.copy_from_slice(&k[..32]);
            decrypt.copy_from_slice(&k[32..]);
            let key = umbra::keys::ChkKey {
                routing: RoutingKey(routing),
                decrypt,
            };
            assert!(
                chk_decode(&key, block).is_err()
                    || umbra::keys::chk_routing_key(block) == key.routing,
                "a block decoded under a key it does not hash to"
            );
            let _ = umbra::keys::ssk_verify(&RoutingKey(routing), block);
            let _ = umbra::keys::ssk_version(block);
        }
    }
}

/// A node descriptor as a peer sends it: parsed, printed back to the same
/// bytes, its signature, puzzle and freshness checked at an arbitrary
/// time, never a panic.
pub fn descriptor(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (clock, input) = data.split_at(8);
    let mut c = [0u8; 8];
    c.copy_from_slice(clock);
    let unix = u64::from_be_bytes(c);
    if let Ok(d) = NodeDescriptor::decode(input) {
        assert_eq!(d.encode().expect("a parsed descriptor encodes"), input);
        let verified = umbra::crypto::verify_descriptor(&d);
        if let Ok(id) = verified {
            assert_eq!(id, umbra::crypto::node_id(&d.identity));
        }
        let _ = umbra::crypto::descriptor_fresh(&d, unix);
        let _ = umbra::crypto::puzzle_bits(&d.identity);
    }
}

/// The configuration file: any text is parsed and validated to a typed
/// error or a configuration, never a panic; one that validates can be
/// printed and read back to one that validates too.
pub fn config(data: &[u8]) {
    use umbra::node::Config;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::parse(text) {
        if cfg.validate().is_ok() {
            let printed = toml::to_string(&cfg).expect("a configuration prints");
            let again = Config::parse(&printed).expect("a printed configuration parses");
            again.validate().expect("and validates");
        }
    }
}

/// What the gateway itself parses of an HTTP request (hyper parses the
/// protocol): percent-encoded paths and queries, form values, the Host,
/// Origin, Referer and Sec-Fetch-Site headers, the Range header; and the
/// escaping of what it prints back into a page. No panic; escaped text
/// opens no markup; a range served lies within the document.
pub fn http(data: &[u8]) {
    use umbra::gateway::page::escape;
    use umbra::gateway::url::{self, Provenance};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(5, '\n');
    let path = parts.next().unwrap_or("");
    let host = parts.next();
    let origin = parts.next();
    let referer = parts.next();
    let site = parts.next();
    if let Some(decoded) = url::percent_decode(path) {
        let encoded = url::percent_encode_path(&decoded);
        assert_eq!(url::percent_decode(&encoded).as_deref(), Some(&*decoded));
    }
    let _ = url::form_value(path, "uri");
    let _ = host.map(url::host_allowed);
    let p = Provenance {
        fetch_site: site,
        origin,
        referer,
    };
    let refused = url::cross_site(p, host);
    if site.is_none() && origin.is_none() && referer.is_none() {
        assert!(
            refused.is_none(),
            "a request naming no other site is not refused"
        );
    }
    let escaped = escape(text);
    assert!(!escaped.contains(['<', '>', '"', '\'']));
    // The path line as a Range header, for a document whose length the
    // other lines' sizes make up.
    use umbra::gateway::range::{parse, Asked};
    let len = text.len().saturating_sub(path.len()) as u64 * 1_000_003;
    if let Asked::Part(r) = parse(path, len) {
        assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
    }
}

/// The gateway's filter of what a browser shows: any bytes as HTML, as
/// SVG and as CSS give filtered bytes or a typed error, never a panic;
/// a style sheet filtered twice is filtered once.
pub fn filter(data: &[u8]) {
    use umbra::gateway::filter::{css, filter_bytes, refs, Kind};
    for kind in [Kind::of("text/html"), Kind::Svg, Kind::Css] {
        let _ = filter_bytes(&kind, data);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let once = css::filter(text);
    assert_eq!(
        css::filter(&once),
        once,
        "filtering changed a filtered sheet"
    );
    for line in text.lines() {
        let _ = refs::judge_srcset(line);
        let _ = refs::judge_refresh(line);
    }
}

/// Which file of the data dir [`files`] reads.
pub const FILE_GUARDS: u8 = 0;
pub const FILE_ONION: u8 = 1;
pub const FILE_IDENTITY: u8 = 2;
pub const FILE_STORE: u8 = 3;

/// The files a node reads from its data dir at start: the guard list,
/// the onion keys, the identity and the datastore. Each is input like any
/// other (a damaged disk, another program's file): a typed error or a
/// value that writes back out, never a panic.
pub fn files(data: &[u8]) {
    use umbra::circuit::guards::Guards;
    use umbra::node::core::onion::OnionKeys;
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        FILE_GUARDS => {
            if let Ok(g) = Guards::decode(input) {
                Guards::decode(&g.encode()).expect("a guard list read back decodes");
            }
        }
        FILE_ONION => {
            if let Ok(k) = OnionKeys::decode(input) {
                OnionKeys::decode(&k.encode()).expect("onion keys read back decode");
            }
        }
        FILE_IDENTITY => {
            if let Ok(secret) = <&[u8; 64]>::try_from(input) {
                let id = Identity::from_secret_bytes(secret);
                assert_eq!(&id.secret_bytes()[..], input);
                let _ = umbra::crypto::puzzle_bits(&id.identity_key());
            }
        }
        _ => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let path = dir.path().join("store.redb");
            std::fs::write(&path, input).expect("the file written");
            // redb can panic on a damaged file, and `Store::open` turns
            // that into a typed error; libFuzzer's panic hook would abort
            // at the panic before it is caught, so it stands aside here.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let opened = umbra::store::Store::open(
                &path,
                umbra::store::Limits::default(),
                umbra::keys::verify_block,
                umbra::keys::supersedes,
            );
            std::panic::set_hook(hook);
            if let Ok(store) = opened {
                let _ = store.stats();
            }
        }
    }
}

/// The command line: arguments of any bytes (a NUL between two) parse to
/// a command or to clap's error, never a panic; a node's flags put over
/// the defaults validate or fail with a typed error; the URIs and the
/// gateway addresses `put`, `get` and `status` take parse or are refused,
/// and a URI that parses prints back to itself.
pub fn cli(data: &[u8]) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use umbra::cli::{Cli, Command};
    use umbra::gateway::remote::Gateway;
    use umbra::keys::Uri;

    let args =
        std::iter::once(OsStr::new("umbra")).chain(data.split(|&b| b == 0).map(OsStr::from_bytes));
    let Ok(cli) = Cli::parse_from_args(args) else {
        return;
    };
    let uri = |text: &str| {
        if let Ok(uri) = text.parse::<Uri>() {
            let printed = uri.to_string();
            let again: Uri = printed.parse().expect("a printed URI parses");
            assert_eq!(again.to_string(), printed);
        }
    };
    let gateway = |text: &str| {
        if let Ok(g) = Gateway::parse(text) {
            assert!(!g.addr.is_empty() && !g.authority.is_empty());
        }
    };
    match cli.command {
        // A file named by --config is the config target's input.
        Command::Node(args) if args.config.is_none() => {
            let _ = args.apply(umbra::node::Config::default()).validate();
        }
        Command::Put {
            ssk, gateway: g, ..
        } => {
            if let Some(text) = ssk {
                uri(&text);
            }
            gateway(&g);
        }
        Command::Get {
            uri: u, gateway: g, ..
        } => {
            uri(&u);
            gateway(&g);
        }
        Command::Status { gateway: g, .. } => gateway(&g),
        _ => {}
    }
}

/// A peer's certificate as the QUIC handshake hands it over, put to both
/// verifiers: never a panic; the acceptor takes exactly the certificates
/// that speak for a node id, and the dialer only the one that speaks for
/// the node it called (and says so when it was another).
pub fn certificate(data: &[u8]) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::danger::ClientCertVerifier;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use umbra::link::tls::{provider, ClientVerifier, ServerVerifier};

    let Some((&selector, der)) = data.split_first() else {
        return;
    };
    let cert = CertificateDer::from(der);
    let id = umbra::link::peer_id(&cert);
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000));
    // Calling any node, the node this certificate speaks for, or another.
    let expected = match selector % 3 {
        0 => None,
        1 => id,
        _ => Some(NodeId([selector; 32])),
    };
    let mismatch = Arc::new(AtomicBool::new(false));
    let dialer = ServerVerifier {
        expected,
        provider: provider(),
        mismatch: mismatch.clone(),
    };
    let name = ServerName::try_from("umbra").expect("a valid name");
    let ok = dialer
        .verify_server_cert(&cert, &[], &name, &[], now)
        .is_ok();
    let called = expected.is_none() || expected == id;
    assert_eq!(ok, id.is_some() && called);
    assert_eq!(mismatch.load(Ordering::Relaxed), id.is_some() && !called);
    let rejected = Arc::new(AtomicUsize::new(0));
    let acceptor = ClientVerifier {
        provider: provider(),
        rejected: rejected.clone(),
    };
    let ok = acceptor.verify_client_cert(&cert, &[], now).is_ok();
    assert_eq!(ok, id.is_some());
    assert_eq!(rejected.load(Ordering::Relaxed), usize::from(id.is_none()));
}
