//! The user's side, driven by real clients: curl through the SOCKS proxy,
//! headless Chromium through the proxy and at the gateway, the `umbra`
//! command line, and a raw SOCKS client that misbehaves. Each test runs a
//! local test network of real nodes over QUIC on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use umbra::client::{self, Target};
use umbra::gateway::remote::{self, exit};
use umbra::gateway::{ErrorCode, GatewayError};
use umbra::keys::{chk_encode, Uri};
use umbra::testnet::{self, Testnet};

const UMBRA: &str = env!("CARGO_BIN_EXE_umbra");
const READY: Duration = Duration::from_secs(60);
/// No client run here may take longer than this.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// A test network of four nodes (a three-relay circuit and its client),
/// the first with its proxy and gateway on free ports.
async fn network(handshake_ms: u64) -> Testnet {
    network_with(handshake_ms, umbra::node::Limits::default()).await
}

/// [`network`] with these limits on every node.
async fn network_with(handshake_ms: u64, limits: umbra::node::Limits) -> Testnet {
    let mut settings = testnet::Settings::new(4);
    settings.template.limits = limits;
    settings.socks = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    settings.template.socks_handshake_ms = handshake_ms;
    let net = Testnet::start(settings).await.expect("test network starts");
    net.wait_ready(READY).await.expect("test network ready");
    net
}

fn socks_of(net: &Testnet) -> SocketAddr {
    net.entry().socks.expect("the entry node has a proxy")
}

fn gateway_of(net: &Testnet) -> String {
    format!(
        "http://{}",
        net.entry().http.expect("the entry node has a gateway")
    )
}

/// Run a program to its end, within [`CLIENT_LIMIT`].
async fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (.ci/run installs it)"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input).await.expect("write stdin");
        drop(pipe);
    }
    tokio::time::timeout(CLIENT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not finish within {CLIENT_LIMIT:?}"))
        .expect("wait for the program")
}

/// curl through the proxy with `--socks5-hostname`; extra arguments
/// first.
async fn curl(socks: SocketAddr, args: &[&str]) -> Output {
    let proxy = socks.to_string();
    let mut all = vec!["-sS", "--max-time", "90", "--socks5-hostname", &proxy];
    all.extend_from_slice(args);
    run("curl", &all, None).await
}

/// The HTTP status curl got through the proxy.
async fn status_code(socks: SocketAddr, args: &[&str]) -> String {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    text(&curl(socks, &all).await.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_inserts_and_fetches_through_the_socks_proxy() {
    let net = network(10_000).await;
    let socks = socks_of(&net);
    let dir = tempfile::tempdir().unwrap();

    // A document of several blocks, inserted with PUT and fetched back.
    let data = random(300_000);
    let file = dir.path().join("doc.bin");
    std::fs::write(&file, &data).unwrap();
    let upload = format!("@{}", file.display());
    let put = curl(
        socks,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/x-test",
            "--data-binary",
            &upload,
            "-w",
            "%{http_code}",
            "http://doc.umbra/",
        ],
    )
    .await;
    assert!(put.status.success(), "curl put: {}", text(&put.stderr));
    let out = text(&put.stdout);
    let (uri, code) = out.trim_end().rsplit_once('\n').expect("URI and status");
    assert_eq!(code, "201", "{out}");
    assert!(matches!(uri.parse::<Uri>(), Ok(Uri::Chk(_))), "{uri}");

    let got = dir.path().join("got.bin");
    let got_arg = got.display().to_string();
    let url = format!("http://doc.umbra/{uri}");
    let get = curl(
        socks,
        &["-o", &got_arg, "-w", "%{http_code} %{content_type}", &url],
    )
    .await;
    assert!(get.status.success(), "curl get: {}", text(&get.stderr));
    assert_eq!(text(&get.stdout), "200 application/x-test");
    assert_eq!(std::fs::read(&got).unwrap(), data, "bytes differ");

    // HEAD answers from the root; a range gets only its bytes, 206, with
    // where they sit; a range past the end is refused, 416.
    let head = curl(socks, &["-I", &url]).await;
    let head = text(&head.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 300000\r\n"), "{head}");
    assert!(head.contains("accept-ranges: bytes\r\n"), "{head}");
    let part = curl(
        socks,
        &["-D", "-", "-o", &got_arg, "-r", "100000-200099", &url],
    )
    .await;
    let head = text(&part.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert!(
        head.contains("content-range: bytes 100000-200099/300000\r\n"),
        "{head}"
    );
    assert!(std::fs::read(&got).unwrap() == data[100_000..200_100]);
    let tail = curl(socks, &["-o", &got_arg, "-r", "-1000", &url]).await;
    assert!(tail.status.success(), "{}", text(&tail.stderr));
    assert!(std::fs::read(&got).unwrap() == data[299_000..]);
    let past = curl(
        socks,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-r",
            "300000-",
            &url,
        ],
    )
    .await;
    assert_eq!(text(&past.stdout), "416");

    // `curl -T` puts to /NAME: the URI carries the name, which sets the
    // type and the name a download is saved under.
    let report = random(70_000);
    let pdf = dir.path().join("report.pdf");
    std::fs::write(&pdf, &report).unwrap();
    let pdf_arg = pdf.display().to_string();
    let put = curl(
        socks,
        &["-T", &pdf_arg, "-w", "\n%{http_code}", "http://doc.umbra/"],
    )
    .await;
    assert!(put.status.success(), "curl -T: {}", text(&put.stderr));
    let out = text(&put.stdout);
    let (named, code) = out.trim_end().rsplit_once('\n').expect("URI and status");
    let named = named.trim();
    assert_eq!(code, "201", "{out}");
    let link: umbra::keys::Link = named.parse().expect("a URI with a file name");
    assert_eq!(link.name.as_deref(), Some("report.pdf"), "{named}");
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let saved_arg = saved.display().to_string();
    let url = format!("http://doc.umbra/{named}");
    // As a browser would: the name from Content-Disposition (a PDF is
    // saved, not shown: its links would lead out of umbra unfiltered).
    let get = curl(
        socks,
        &["-D", "-", "-O", "-J", "--output-dir", &saved_arg, &url],
    )
    .await;
    assert!(get.status.success(), "curl -OJ: {}", text(&get.stderr));
    let head = text(&get.stdout).to_ascii_lowercase();
    assert!(head.contains("content-type: application/pdf\r\n"), "{head}");
    assert!(
        head.contains("content-disposition: attachment; filename=\"report.pdf\""),
        "{head}"
    );
    assert_eq!(std::fs::read(saved.join("report.pdf")).unwrap(), report);
    // A name outside ASCII, percent-encoded in the path, comes back whole
    // in the UTF-8 form of the header; text is served as UTF-8.
    let put = curl(
        socks,
        &["-T", &pdf_arg, "http://doc.umbra/r%C3%A9sum%C3%A9%201.txt"],
    )
    .await;
    let named = text(&put.stdout).trim().to_string();
    assert!(named.ends_with("/résumé 1.txt"), "{named}");
    let encoded = format!(
        "http://doc.umbra/{}",
        named.replace("résumé 1.txt", "r%C3%A9sum%C3%A9%201.txt")
    );
    let head = text(&curl(socks, &["-I", &encoded]).await.stdout).to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; charset=utf-8\r\n"),
        "{head}"
    );
    assert!(
        head.contains("filename*=utf-8''r%c3%a9sum%c3%a9%201.txt"),
        "{head}"
    );
    // A name that is not one segment is refused, and nothing is inserted.
    let code = status_code(socks, &["-T", &pdf_arg, "http://doc.umbra/a/..%2F"]).await;
    assert_eq!(code, "400");

    // POST works the same; credentials choose a circuit of their own.
    let built = net.entry().status().await.unwrap().circuits_built;
    let proxy = format!("socks5h://alice:secret@{socks}");
    let post = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "90",
            "-x",
            &proxy,
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "posted through an isolated circuit",
            "http://any-name.umbra/",
        ],
        None,
    )
    .await;
    assert!(post.status.success(), "curl post: {}", text(&post.stderr));
    let uri = text(&post.stdout).trim().to_string();
    let fetched = curl(socks, &[&format!("http://doc.umbra/{uri}")]).await;
    assert_eq!(text(&fetched.stdout), "posted through an isolated circuit");
    let after = net.entry().status().await.unwrap().circuits_built;
    assert!(
        after > built,
        "new credentials must get a new circuit ({built} built before, {after} after)"
    );

    // Under the same (no) credentials, each .umbra name has circuits of
    // its own, and keeps using them.
    let circuits = || async { net.entry().status().await.unwrap().circuits_built };
    let start = circuits().await;
    for (name, built) in [("one", 1), ("two", 2), ("one", 2)] {
        let got = curl(socks, &[&format!("http://{name}.umbra/{uri}")]).await;
        assert_eq!(text(&got.stdout), "posted through an isolated circuit");
        assert_eq!(
            circuits().await - start,
            built,
            "after a fetch on {name}.umbra"
        );
    }

    // The gateway's upload form takes a multipart file.
    let form_file = format!("file=@{}", file.display());
    let form = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "90",
            "-F",
            &form_file,
            "-F",
            "content_type=application/x-form",
            &format!("{}/", gateway_of(&net)),
        ],
        None,
    )
    .await;
    let page = text(&form.stdout);
    let start = page.find("<code>").expect("the page shows the URI") + 6;
    let end = start + page[start..].find("</code>").unwrap();
    let link: umbra::keys::Link = page[start..end].parse().expect("a URI");
    // Under the name the form gave the file.
    assert_eq!(link.name.as_deref(), Some("doc.bin"));
    let doc = client::fetch(&net.entry().client(), &link.uri)
        .await
        .unwrap();
    assert_eq!(doc.content_type, "application/x-form");
    assert_eq!(doc.data, data);
    net.shutdown().await;
}

/// How every test runs Chromium: headless, as Debian packages it.
const HEADLESS: [&str; 5] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
];

/// Headless Chromium, run to its end.
async fn chromium(profile: &Path, args: &[&str]) -> String {
    let profile = format!("--user-data-dir={}", profile.display());
    let mut all = HEADLESS.to_vec();
    all.push(&profile);
    all.extend_from_slice(args);
    let out = run("chromium", &all, None).await;
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Headless Chromium left open on `url` (a test page that reports what
/// it sees), with one more switch; killed when dropped.
fn open_in_chromium(profile: &Path, switch: &str, url: &str) -> tokio::process::Child {
    let profile = format!("--user-data-dir={}", profile.display());
    tokio::process::Command::new("chromium")
        .args(HEADLESS)
        .args([switch, &profile, url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts (scripts/test installs it)")
}

fn title(dom: &str) -> Option<&str> {
    let start = dom.find("<title>")? + 7;
    let end = start + dom[start..].find("</title>")?;
    Some(&dom[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_opens_a_stored_page_through_the_proxy_and_the_gateway() {
    let net = network(10_000).await;
    let socks = socks_of(&net);
    let gateway = gateway_of(&net);
    let profile = tempfile::tempdir().unwrap();

    // Stands in for the open web: an HTML document that names it must not
    // make the browser connect to it.
    let (outside, hits, server) = open_web().await;
    let outside_url = format!("http://{outside}/pixel.png");
    let hits = move || hits.load(std::sync::atomic::Ordering::SeqCst);
    let page = format!(
        "<!doctype html><html><head><title>Stored in umbra</title>\
         <link rel=\"stylesheet\" href=\"{outside_url}\"></head>\
         <body><h1>hello</h1><img src=\"{outside_url}\"></body></html>"
    );
    let uri = client::insert(
        &net.entry().client(),
        "text/html; charset=utf-8",
        page.as_bytes(),
        Target::Chk,
    )
    .await
    .unwrap();

    let proxy = format!("--proxy-server=socks5://{socks}");
    let dom = chromium(
        profile.path(),
        &[&proxy, "--dump-dom", &format!("http://doc.umbra/{uri}")],
    )
    .await;
    assert_eq!(title(&dom), Some("Stored in umbra"), "{dom}");

    let dom = chromium(profile.path(), &["--dump-dom", &format!("{gateway}/{uri}")]).await;
    assert_eq!(title(&dom), Some("Stored in umbra"), "{dom}");
    let index = chromium(profile.path(), &["--dump-dom", &format!("{gateway}/")]).await;
    assert_eq!(title(&index), Some("umbra"), "{index}");
    assert!(
        index.contains("name=\"file\""),
        "the index has an upload form"
    );

    // The browser has finished both loads of the page: had either asked
    // for the outside image or style sheet, the server would have counted
    // it.
    assert_eq!(
        hits(),
        0,
        "a stored page made the browser connect outside umbra"
    );
    // The same page from a file does connect: the policy, not chance,
    // kept the stored one in.
    open_from_file(profile.path(), &page).await;
    assert!(
        hits() > 0,
        "control: the page outside umbra loads its image"
    );
    server.abort();
    net.shutdown().await;
}

/// Serve `page` as HTML to every connection on a port of its own: a site
/// of the open web, another origin than the gateway's.
async fn other_site(page: String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let _ = s.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_cannot_make_the_node_fetch() {
    let net = network(10_000).await;
    let gateway = gateway_of(&net);
    let profile = tempfile::tempdir().unwrap();
    let page = "<!doctype html><html><head><title>Stored in umbra</title></head>\
                <body>a document</body></html>";
    let uri = client::insert(
        &net.entry().client(),
        "text/html; charset=utf-8",
        page.as_bytes(),
        Target::Chk,
    )
    .await
    .unwrap();
    let doc = format!("{gateway}/{uri}");
    let built = || async { net.entry().status().await.unwrap().circuits_built };

    // Every way a page can make the browser ask without the user: an
    // image, a frame, a script's fetch, a form sent by script.
    let (site, server) = other_site(format!(
        "<!doctype html><html><head><title>elsewhere</title></head><body>\
         <img src=\"{doc}\"><iframe src=\"{doc}\"></iframe>\
         <form id=f method=get action=\"{gateway}/\"><input name=uri value=\"{uri}\"></form>\
         <script>fetch(\"{doc}\", {{mode: \"no-cors\"}}).catch(() => {{}});</script>\
         </body></html>"
    ))
    .await;
    let before = built().await;
    let dom = chromium(
        profile.path(),
        &["--virtual-time-budget=5000", "--dump-dom", &site],
    )
    .await;
    assert_eq!(title(&dom), Some("elsewhere"), "{dom}");
    // A fetch by the gateway would have needed a circuit for its own
    // isolation, built for the first request of the gateway's origin.
    assert_eq!(
        built().await,
        before,
        "a page of another site made the node build a circuit to fetch"
    );
    server.abort();

    // A link on that site, followed: the user lands on the refusal page,
    // which offers the document from the gateway's own origin.
    let (site, server) = other_site(format!(
        "<!doctype html><html><head><title>elsewhere</title></head><body>\
         <script>location.href = \"{doc}\";</script></body></html>"
    ))
    .await;
    let dom = chromium(
        profile.path(),
        &["--virtual-time-budget=5000", "--dump-dom", &site],
    )
    .await;
    assert_eq!(title(&dom), Some("umbra: refused"), "{dom}");
    assert!(dom.contains(&format!("href=\"/{uri}\"")), "{dom}");
    assert_eq!(built().await, before);
    server.abort();

    // Control: typed by the user, the same address is fetched, on a
    // circuit the node builds for it; the count above would have moved.
    let dom = chromium(profile.path(), &["--dump-dom", &doc]).await;
    assert_eq!(title(&dom), Some("Stored in umbra"), "{dom}");
    assert!(built().await > before, "the control fetch built no circuit");
    net.shutdown().await;
}

/// Send a raw SOCKS5 CONNECT (no authentication) and return the reply
/// code.
async fn socks_connect(socks: SocketAddr, atyp: u8, addr: &[u8], port: u16) -> u8 {
    let mut s = TcpStream::connect(socks).await.unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, atyp];
    req.extend_from_slice(addr);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 12];
    tokio::time::timeout(CLIENT_LIMIT, s.read_exact(&mut reply))
        .await
        .expect("the proxy answers")
        .expect("a whole reply");
    assert_eq!(reply[..3], [5, 0, 5], "method selection and version");
    reply[3]
}

fn domain(name: &str) -> Vec<u8> {
    let mut v = vec![u8::try_from(name.len()).unwrap()];
    v.extend_from_slice(name.as_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_every_other_destination_and_dials_nothing() {
    let net = network(10_000).await;
    let socks = socks_of(&net);
    // A server on this machine: if the proxy dialled anything asked of it,
    // this is where the connection would land.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let port = target.local_addr().unwrap().port();
    const NOT_ALLOWED: u8 = 0x02;

    assert_eq!(
        socks_connect(socks, 1, &[127, 0, 0, 1], port).await,
        NOT_ALLOWED
    );
    let mut v6 = [0u8; 16];
    v6[15] = 1;
    assert_eq!(socks_connect(socks, 4, &v6, port).await, NOT_ALLOWED);
    for name in ["localhost", "example.com", "umbra", "doc.umbra.example.com"] {
        assert_eq!(
            socks_connect(socks, 3, &domain(name), port).await,
            NOT_ALLOWED,
            "{name}"
        );
    }
    assert_eq!(socks_connect(socks, 3, &domain("doc.umbra"), 80).await, 0);
    assert_eq!(
        socks_connect(socks, 9, &[], port).await,
        0x08,
        "address type"
    );

    let out = curl(socks, &["http://example.com/"]).await;
    assert_eq!(
        out.status.code(),
        Some(97),
        "curl's code for a refused proxy connection"
    );
    let out = curl(socks, &[&format!("http://127.0.0.1:{port}/")]).await;
    assert_eq!(out.status.code(), Some(97));

    assert!(
        target.accept().is_err(),
        "the proxy connected somewhere other than umbra"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_node_keeps_serving() {
    let net = network(500).await;
    let socks = socks_of(&net);
    let uri = client::insert(
        &net.entry().client(),
        "text/plain",
        b"still here",
        Target::Chk,
    )
    .await
    .unwrap();
    let read_all = |mut s: TcpStream| async move {
        let mut out = Vec::new();
        tokio::time::timeout(CLIENT_LIMIT, s.read_to_end(&mut out))
            .await
            .expect("the proxy closes the connection")
            .expect("read");
        out
    };

    // Garbage: an HTTP request sent to the SOCKS port gets a word back.
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    let answer = text(&read_all(s).await);
    assert!(answer.starts_with("HTTP/1.0 501"), "{answer}");
    assert!(answer.contains("SOCKS5 proxy"), "{answer}");
    // Random bytes: the connection closes.
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[0x17, 0x03, 0x01, 0xff, 0x00]).await.unwrap();
    assert!(read_all(s).await.is_empty());

    // A handshake cut short, then silence: closed at the handshake
    // deadline (half a second here).
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 2, 0]).await.unwrap();
    assert!(read_all(s).await.is_empty());
    // Cut short by the client closing: closed at once.
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 1, 0, 5, 1, 0, 3, 9, b'd', b'o'])
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_all(s).await, [5, 0]);

    // An oversized request head: 431, from the HTTP library.
    let big = format!("X-Padding: {}", "a".repeat(umbra::gateway::MAX_HEAD * 2));
    assert_eq!(
        status_code(socks, &["-H", &big, "http://doc.umbra/"]).await,
        "431"
    );

    // Malformed URIs: 400 with the reason and a typed code.
    for bad in [
        "umbra:chk:not-base32!",
        "umbra:chk:aaaa",
        "umbra:nope:x",
        "umbra:ssk:%ff",
    ] {
        let out = curl(socks, &["-i", &format!("http://doc.umbra/{bad}")]).await;
        let answer = text(&out.stdout);
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(
            answer.contains("x-umbra-error: malformed-uri"),
            "{bad}: {answer}"
        );
        assert!(
            answer.contains("malformed URI") || answer.contains("percent"),
            "{bad}: {answer}"
        );
    }
    // Not a URI at all: 404 pointing at the right form.
    assert_eq!(
        status_code(socks, &["http://doc.umbra/favicon.ico"]).await,
        "404"
    );

    // After all that, the proxy still serves.
    let out = curl(socks, &[&format!("http://doc.umbra/{uri}")]).await;
    assert_eq!(text(&out.stdout), "still here");
    net.shutdown().await;
}

/// A `w` × `h` picture of pure red, as PNG.
fn red_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    let data: Vec<u8> = [255u8, 0, 0].repeat((w * h) as usize);
    writer.write_image_data(&data).expect("png data");
    writer.finish().expect("png end");
    out
}

/// A PNG's width and its pixels as RGB, row by row.
fn rgb(png_bytes: &[u8]) -> (usize, Vec<[u8; 3]>) {
    let mut decoder = png::Decoder::new(png_bytes);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    assert!(step >= 3, "a colour screenshot, not {:?}", info.color_type);
    let pixels = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, pixels)
}

/// `umbra put DIR` inserts a folder as one site: each file a document of
/// its own, and a list of them by path. Served under `URI/`, its pages'
/// relative links lead to its other files, down into folders and back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_goes_in_as_a_site_whose_relative_links_work() {
    let net = network(10_000).await;
    let socks = socks_of(&net);
    let gateway = gateway_of(&net);
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    let picture = red_png(60, 60);
    let files: [(&str, &[u8]); 6] = [
        (
            "index.html",
            b"<!doctype html><html><head><title>home</title>\
              <link rel=\"stylesheet\" href=\"css/style.css\">\
              <meta http-equiv=\"refresh\" content=\"0; url=sub/page3.html\"></head>\
              <body><a href=\"page2.html\">two</a><img src=\"img/pic.png\"></body></html>",
        ),
        (
            "page2.html",
            b"<!doctype html><html><head><title>two</title></head><body>page two</body></html>",
        ),
        (
            "sub/page3.html",
            b"<!doctype html><html><head><title>three</title>\
              <meta http-equiv=\"refresh\" content=\"0; url=../page2.html\"></head>\
              <body>page three</body></html>",
        ),
        (
            "sub/look.html",
            b"<!doctype html><html><head><title>look</title>\
              <link rel=\"stylesheet\" href=\"../css/style.css\"></head>\
              <body><img src=\"../img/pic.png\" width=\"100\" height=\"100\"></body></html>",
        ),
        (
            "css/style.css",
            b"body { margin: 0; background: #123456 } img { display: block }",
        ),
        ("img/pic.png", &picture),
    ];
    for (path, bytes) in &files {
        let at = site.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, bytes).unwrap();
    }
    let site_arg = site.display().to_string();
    let put = run(UMBRA, &["put", "--gateway", &gateway, &site_arg], None).await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let uri = text(&put.stdout).trim().to_string();
    assert!(uri.starts_with("umbra:chk:") && uri.ends_with('/'), "{uri}");

    // Every file by its path, with the type its name says.
    for (path, bytes) in &files {
        let got = curl(
            socks,
            &[
                "-w",
                "\n%{http_code} %{content_type}",
                &format!("http://doc.umbra/{uri}{path}"),
            ],
        )
        .await;
        let out = got.stdout;
        let split = out.iter().rposition(|&b| b == b'\n').unwrap();
        assert_eq!(&out[..split], *bytes, "{path}");
        let tail = text(&out[split + 1..]);
        let want = umbra::gateway::content_type_of(path).unwrap();
        assert_eq!(tail, format!("200 {want}"), "{path}");
    }
    // The folder is its index page; the site without its slash is sent
    // there, where relative links resolve inside it; a path it does not
    // list is not found.
    let index = curl(socks, &[&format!("http://doc.umbra/{uri}")]).await;
    assert_eq!(index.stdout, files[0].1);
    let bare = uri.trim_end_matches('/');
    let moved = curl(
        socks,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("http://doc.umbra/{bare}"),
        ],
    )
    .await;
    assert_eq!(text(&moved.stdout), format!("303 http://doc.umbra/{uri}"));
    let missing = status_code(socks, &[&format!("http://doc.umbra/{uri}nope.html")]).await;
    assert_eq!(missing, "404");

    // A browser through the proxy follows the relative links: from the
    // index into sub/, and from there back up to page2.html.
    let profile = tempfile::tempdir().unwrap();
    let proxy = format!("--proxy-server=socks5://{socks}");
    let dom = chromium(
        profile.path(),
        &[
            &proxy,
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("http://doc.umbra/{uri}"),
        ],
    )
    .await;
    assert_eq!(title(&dom), Some("two"), "{dom}");
    // And loads what a page in a folder names up from it: the style sheet
    // paints the page, the picture shows, as its screenshot has them.
    let shot = profile.path().join("shot.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    chromium(
        profile.path(),
        &[
            &proxy,
            "--virtual-time-budget=10000",
            "--window-size=400,300",
            "--hide-scrollbars",
            &shot_arg,
            &format!("http://doc.umbra/{uri}sub/look.html"),
        ],
    )
    .await;
    let (width, pixels) = rgb(&std::fs::read(&shot).expect("a screenshot"));
    let at = |x: usize, y: usize| pixels[y * width + x];
    assert_eq!(at(20, 20), [255, 0, 0], "the picture, loaded from ../img/");
    assert_eq!(
        at(300, 200),
        [0x12, 0x34, 0x56],
        "the style sheet's background"
    );

    // The command line fetches one file of the site.
    let get = run(
        UMBRA,
        &["get", "--gateway", &gateway, &format!("{uri}img/pic.png")],
        None,
    )
    .await;
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(get.stdout, picture);
    // And the site named without a path: its index page.
    let bare = uri.trim_end_matches('/');
    let get = run(UMBRA, &["get", "--gateway", &gateway, bare], None).await;
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(get.stdout, files[0].1);

    // Under a signed key, a site is updated in place: its second version
    // replaces the first under the same request URI.
    let keys = run(UMBRA, &["keygen", "--name", "blog"], None).await;
    let keys = text(&keys.stdout);
    let key_of = |label: &str| {
        keys.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|k| k.trim().to_string())
            .expect("keygen prints both URIs")
    };
    let (insert, request) = (key_of("insert URI:"), key_of("request URI:"));
    let publish = || async {
        let put = run(
            UMBRA,
            &["put", "--gateway", &gateway, "--ssk", &insert, &site_arg],
            None,
        )
        .await;
        assert!(put.status.success(), "{}", text(&put.stderr));
        text(&put.stdout).trim().to_string()
    };
    // Each version's list of files, as the node finds the newest.
    let list = || async {
        let uri: Uri = request.parse().unwrap();
        let doc = client::fetch(&net.entry().client(), &uri).await.unwrap();
        assert_eq!(doc.content_type, umbra::keys::site::SITE_TYPE);
        umbra::keys::site::Site::decode(&doc.data).unwrap().files
    };
    assert_eq!(publish().await, format!("{request}/"));
    let first = list().await;
    let page2 = format!("http://doc.umbra/{request}/page2.html");
    assert_eq!(curl(socks, &[&page2]).await.stdout, files[1].1);
    std::fs::write(site.join("page2.html"), b"page two, second version").unwrap();
    assert_eq!(publish().await, format!("{request}/"));
    // The files that did not change are the same documents, block for
    // block (their content-hash URIs are equal): only the changed page
    // and the list are new.
    let second = list().await;
    assert_eq!(first.len(), files.len());
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, file) in &first {
        let same = second[path].uri.to_string() == file.uri.to_string();
        assert_eq!(same, path != "page2.html", "{path}");
    }
    let head = curl(socks, &["-D", "-", &page2]).await;
    let answer = text(&head.stdout);
    assert!(answer.ends_with("page two, second version"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-umbra-version: 2\r\n"),
        "{answer}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_puts_and_gets_and_exits_with_typed_codes() {
    let net = network(10_000).await;
    let gateway = gateway_of(&net);
    let dir = tempfile::tempdir().unwrap();
    let umbra = |args: Vec<String>, stdin: Option<Vec<u8>>| {
        let gateway = gateway.clone();
        async move {
            let mut all: Vec<String> = args;
            if all[0] != "keygen" {
                all.insert(1, "--gateway".into());
                all.insert(2, gateway);
            }
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            run(UMBRA, &refs, stdin.as_deref()).await
        }
    };
    let s = |x: &str| x.to_string();

    // A file of several blocks: the URI alone on stdout, the same bytes back.
    let data = random(200_000);
    let file = dir.path().join("doc.bin");
    std::fs::write(&file, &data).unwrap();
    let put = umbra(vec![s("put"), file.display().to_string()], None).await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let stdout = text(&put.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout holds the URI and nothing else"
    );
    let uri = stdout.trim().to_string();
    // The URI carries the file's name, outside its key.
    let link: umbra::keys::Link = uri.parse().expect("a URI with a file name");
    assert!(matches!(link.uri, Uri::Chk(_)), "{uri}");
    assert_eq!(link.name.as_deref(), Some("doc.bin"), "{uri}");
    let out = dir.path().join("out.bin");
    let get = umbra(
        vec![s("get"), uri.clone(), s("-o"), out.display().to_string()],
        None,
    )
    .await;
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Standard input in, standard output out.
    let put = umbra(vec![s("put"), s("-")], Some(b"from stdin".to_vec())).await;
    let uri = text(&put.stdout).trim().to_string();
    let get = umbra(vec![s("get"), uri], None).await;
    assert_eq!(get.stdout, b"from stdin");

    // A signed subspace: the newest version wins.
    let keys = umbra(vec![s("keygen"), s("--name"), s("blog")], None).await;
    let keys = text(&keys.stdout);
    let field = |label: &str| {
        keys.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .expect("keygen prints both URIs")
    };
    let (insert, request) = (field("insert URI:"), field("request URI:"));
    for text in ["first", "second"] {
        let put = umbra(
            vec![s("put"), s("--ssk"), insert.clone(), s("-")],
            Some(text.into()),
        )
        .await;
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&put.stdout).trim(), request);
    }
    let get = umbra(vec![s("get"), request], None).await;
    assert_eq!(get.stdout, b"second");

    // Typed failures.
    let get = umbra(vec![s("get"), s("umbra:chk:garbage")], None).await;
    assert_eq!(get.status.code(), Some(i32::from(exit::MALFORMED_URI)));
    assert!(
        text(&get.stderr).contains("malformed URI"),
        "{}",
        text(&get.stderr)
    );
    let (absent, _) = chk_encode(b"a block that was never inserted").unwrap();
    let get = umbra(vec![s("get"), Uri::Chk(absent).to_string()], None).await;
    assert_eq!(
        get.status.code(),
        Some(i32::from(exit::DATA_NOT_FOUND)),
        "{}",
        text(&get.stderr)
    );
    assert!(text(&get.stderr).contains("data not found"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = run(UMBRA, &["status", "--gateway", &nowhere], None).await;
    assert_eq!(out.status.code(), Some(i32::from(exit::UNREACHABLE)));
    let out = run(
        UMBRA,
        &["get", "--gateway", &nowhere, &Uri::Chk(absent).to_string()],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(i32::from(exit::UNREACHABLE)));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_holds_no_more_documents_than_its_budget_nor_a_body_longer_than_its_time() {
    // 1 MiB: a document takes twice its size while it is cut into blocks
    // or rebuilt from them.
    let net = network_with(
        10_000,
        umbra::node::Limits {
            document_bytes: 1 << 20,
            body_secs: 2,
            ..Default::default()
        },
    )
    .await;
    let gateway = gateway_of(&net);
    let too_large = |r: Result<String, GatewayError>, what: &str| match r {
        Err(GatewayError::Failed {
            code: ErrorCode::TooLarge,
            ..
        }) => {}
        other => panic!("{what}: {other:?}"),
    };

    // Under the budget: in and out.
    let small = random(200 << 10);
    let uri = remote::put(
        &gateway,
        "application/octet-stream",
        std::io::Cursor::new(small.clone()),
        Some(small.len() as u64),
        None,
        |_| {},
    )
    .await
    .expect("a small insert");
    let mut got = Vec::new();
    remote::get(&gateway, &uri, |_| {}, &mut got)
        .await
        .expect("a small fetch");
    assert_eq!(got, small);

    // An insert over it is refused, typed, before a block is stored.
    let big = random(600 << 10);
    let before = net.entry().client().status().await.unwrap().blocks_stored;
    too_large(
        remote::put(
            &gateway,
            "application/octet-stream",
            std::io::Cursor::new(big.clone()),
            Some(big.len() as u64),
            None,
            |_| {},
        )
        .await,
        "an insert over the budget",
    );
    assert_eq!(
        net.entry().client().status().await.unwrap().blocks_stored,
        before,
        "a refused insert stored nothing here"
    );

    // A fetch over it: the library (no budget) inserts the document, and
    // the gateway and the proxy refuse to hold it, typed, once its root
    // says how large it is.
    let uri = client::insert(
        &net.entry().client(),
        "application/octet-stream",
        &big,
        Target::Chk,
    )
    .await
    .expect("the library inserts it")
    .to_string();
    too_large(
        remote::get(&gateway, &uri, |_| {}, &mut Vec::new())
            .await
            .map(|_| String::new()),
        "a fetch over the budget",
    );
    let socks = socks_of(&net);
    let out = curl(
        socks,
        &[
            "-o",
            "/dev/null",
            "-D",
            "-",
            &format!("http://doc.umbra/{uri}"),
        ],
    )
    .await;
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("x-umbra-error: too-large"), "{head}");

    // A body that trickles in holds its connection only `body_secs`.
    let trickle = async {
        let addr = net.entry().http.expect("a gateway");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nten bytes."
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // The answer comes while the client still owes most of its body.
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        text(&answer).to_ascii_lowercase()
    };
    let head = tokio::time::timeout(Duration::from_secs(30), trickle)
        .await
        .expect("a trickled body is answered once its time is up");
    assert!(head.starts_with("http/1.1 504"), "{head}");
    assert!(head.contains("x-umbra-error: timeout"), "{head}");

    // And the node keeps serving what fits.
    let mut got = Vec::new();
    remote::get(
        &gateway,
        &uri_small(&small, &gateway).await,
        |_| {},
        &mut got,
    )
    .await
    .expect("a small fetch after the refusals");
    assert_eq!(got, small);
    net.shutdown().await;
}

/// Insert `data` through the gateway and return its URI.
async fn uri_small(data: &[u8], gateway: &str) -> String {
    remote::put(
        gateway,
        "application/octet-stream",
        std::io::Cursor::new(data.to_vec()),
        Some(data.len() as u64),
        None,
        |_| {},
    )
    .await
    .expect("insert")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_breaks_off_half_way_is_never_taken_for_whole() {
    // Three segments; the last one loses more blocks than its code can
    // spare, everywhere, after the first two could already be sent.
    let net = network(10_000).await;
    let gateway = gateway_of(&net);
    let data = random(5 << 20);
    let node = net.entry().client();
    let uri = client::insert(&node, "application/octet-stream", &data, Target::Chk)
        .await
        .expect("inserted");
    let Uri::Chk(root_key) = &uri else {
        unreachable!()
    };
    let root = node
        .direct()
        .get_block(umbra::wire::KeyKind::CHK, root_key.routing)
        .await
        .unwrap();
    let root = umbra::keys::chk_decode(root_key, &root).unwrap();
    let umbra::keys::Root::Manifest(m) = umbra::keys::decode_root(&root).unwrap() else {
        panic!("a 5 MiB document has a direct manifest");
    };
    assert_eq!(m.segments.len(), 3);
    // Every block on every node (five copies asked, four nodes) before
    // any is taken away, so that no replication brings one back.
    let blocks: u64 = m
        .segments
        .iter()
        .map(|s| (s.data + s.parity) as u64)
        .sum::<u64>()
        + 1
        + u64::from(umbra::keys::ROOT_COPIES);
    let placed = async {
        loop {
            let mut all = true;
            for n in net.nodes() {
                all &= n.status().await.unwrap().blocks_stored == blocks;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), placed)
        .await
        .expect("every block on every node within a minute");
    let last = &m.segments[2];
    // Taken away until two searches, half a second apart, find none of
    // them: a replica push already on its way can bring one back.
    let forget = async {
        let mut clean = 0;
        while clean < 2 {
            for k in &last.keys[..=last.parity] {
                for n in net.nodes() {
                    n.forget_block(umbra::wire::KeyKind::CHK, k.routing)
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut found = false;
            for k in &last.keys[..=last.parity] {
                found |= node
                    .direct()
                    .get_block(umbra::wire::KeyKind::CHK, k.routing)
                    .await
                    .is_ok();
            }
            clean = if found { 0 } else { clean + 1 };
        }
    };
    tokio::time::timeout(Duration::from_secs(30), forget)
        .await
        .expect("the blocks stay gone");

    // curl: the head says 5 MiB, the connection ends short of it, and
    // curl says so.
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.bin");
    let out = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "90",
            "-o",
            got.to_str().unwrap(),
            &format!("{gateway}/{uri}"),
        ],
        None,
    )
    .await;
    let len = std::fs::metadata(&got).map_or(0, |m| m.len());
    assert!(
        !out.status.success(),
        "curl took a broken document for whole ({len} bytes): {}",
        text(&out.stderr)
    );
    let len = std::fs::metadata(&got).map_or(0, |m| m.len());
    assert!(len < data.len() as u64, "{len} bytes");
    assert!(std::fs::read(&got).unwrap() == data[..len as usize]);

    // The command line: the typed failure, naming the segment, and no
    // file under the name asked for (nor its part).
    let out_file = dir.path().join("doc.bin");
    let get = run(
        UMBRA,
        &[
            "get",
            "--gateway",
            &gateway,
            "-o",
            out_file.to_str().unwrap(),
            &uri.to_string(),
        ],
        None,
    )
    .await;
    assert_eq!(get.status.code(), Some(i32::from(exit::FAILURE)));
    assert!(
        text(&get.stderr).contains("segment 2 cannot be rebuilt"),
        "{}",
        text(&get.stderr)
    );
    assert!(!out_file.exists());
    assert!(!dir.path().join("doc.bin.part").exists());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_of_unknown_length_is_streamed_and_held_to_the_insert_limit() {
    let net = network_with(
        10_000,
        umbra::node::Limits {
            insert_bytes: 3 << 20,
            ..Default::default()
        },
    )
    .await;
    let gateway = gateway_of(&net);
    let dir = tempfile::tempdir().unwrap();
    let put_chunked = |data: &[u8], chunked: bool| {
        let file = dir.path().join(if chunked { "c.bin" } else { "l.bin" });
        std::fs::write(&file, data).unwrap();
        let gateway = gateway.clone();
        async move {
            let upload = format!("@{}", file.display());
            let mut args = vec![
                "-sS",
                "--max-time",
                "90",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &upload,
                "-w",
                "\n%{http_code}",
            ];
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            let url = format!("{gateway}/");
            args.push(&url);
            let out = run("curl", &args, None).await;
            let out = text(&out.stdout);
            let (body, code) = out.trim_end().rsplit_once('\n').expect("body and status");
            (code.to_string(), body.trim().to_string())
        }
    };

    // Without a length: streamed in, the same URI the length would give
    // (the encoding does not depend on knowing it), the bytes back.
    let data = random(5 << 19);
    let (code, uri) = put_chunked(&data, true).await;
    assert_eq!(code, "201", "{uri}");
    let (code, again) = put_chunked(&data, false).await;
    assert_eq!((code.as_str(), &again), ("201", &uri));
    let doc = client::fetch(&net.entry().client(), &uri.parse().unwrap())
        .await
        .unwrap();
    assert!(doc.data == data);

    // Over the limit: refused at once with a length, once the limit is
    // passed without one.
    let big = random(4 << 20);
    for chunked in [false, true] {
        let (code, body) = put_chunked(&big, chunked).await;
        assert_eq!(code, "413", "chunked {chunked}: {body}");
        assert!(body.contains("limited to 3145728 bytes"), "{body}");
    }

    // The command line streams standard input the same way.
    let put = run(
        UMBRA,
        &["put", "--gateway", &gateway, "-"],
        Some(data.as_slice()),
    )
    .await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    assert_eq!(text(&put.stdout).trim(), uri);
    net.shutdown().await;
}

/// What the browser asked of the gateway through [`front`]: each request's
/// path, its `Range` header and the status the gateway answered.
#[derive(Debug, Clone)]
struct Asked {
    path: String,
    range: Option<String>,
    status: String,
}

/// A front for the gateway on a port of its own, the way a site's page
/// and its video share an origin: `/page` is `page` (a test page, with
/// script, which stored documents may not have), `/report?...` is
/// recorded in `reports`, everything else goes to the gateway one request
/// per connection and is recorded in `asked`.
async fn front(
    gateway: SocketAddr,
    page: String,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Asked>>>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
    let log = asked.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (page, log, tx) = (page.clone(), log.clone(), tx.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                    if s.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                if path == "/page" {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    return;
                }
                if let Some(q) = path.strip_prefix("/report?") {
                    let _ = tx.send(q.to_string());
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let range = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("range:"))
                    .map(|l| l[6..].trim().to_string());
                // One request per connection: the gateway closes after
                // answering, and so does the front.
                let forward: String = head
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .take_while(|l| !l.is_empty())
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
                    + "Connection: close\r\n\r\n";
                let Ok(mut g) = TcpStream::connect(gateway).await else {
                    return;
                };
                if g.write_all(forward.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 64 << 10];
                let mut status = None;
                loop {
                    let n = match g.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if status.is_none() {
                        let line = String::from_utf8_lossy(&buf[..n]);
                        status = line.split(' ').nth(1).map(str::to_string);
                        log.lock().unwrap().push(Asked {
                            path: path.clone(),
                            range: range.clone(),
                            status: status.clone().unwrap_or_default(),
                        });
                    }
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, asked, reports, server)
}

/// A video stored in umbra plays in Chromium's `<video>` element, and a
/// seek to near its end is served by a range request from the middle of
/// the document, not by reading it from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_a_stored_video_and_seeks_in_it() {
    // 40 s of VP8 at 2 Mbit/s with a key frame each second: some 10 MB,
    // five segments.
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.webm");
    let made = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc=duration=40:size=320x240:rate=25,noise=alls=30:allf=t")
        .args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"])
        .args(["-b:v", "2M", "-g", "25"])
        .arg(&video)
        .output()
        .await
        .expect("ffmpeg makes the test video (scripts/test installs it)");
    assert!(made.status.success(), "ffmpeg: {}", text(&made.stderr));
    let bytes = std::fs::read(&video).unwrap();
    assert!(bytes.len() > 6 << 20, "a video of {} bytes", bytes.len());

    let net = network(10_000).await;
    let uri = client::insert(&net.entry().client(), "video/webm", &bytes, Target::Chk)
        .await
        .unwrap();
    let page = format!(
        "<!doctype html><html><head><title>video</title></head><body>\
         <video id=v muted preload=metadata src=\"/{uri}\"></video><script>\
         const v = document.getElementById('v'); let seeked = false;\
         const say = (s) => fetch('/report?' + encodeURIComponent(s));\
         v.onloadedmetadata = () => {{ say('duration ' + v.duration); v.currentTime = 36; }};\
         v.onseeked = () => {{ seeked = true; say('seeked ' + v.currentTime);\
           v.play().catch((e) => say('play failed ' + e)); }};\
         v.ontimeupdate = () => {{ if (seeked && v.currentTime > 36.5) {{\
           v.ontimeupdate = null; say('played ' + v.currentTime); }} }};\
         v.onerror = () => say('error ' + (v.error && v.error.code));\
         </script></body></html>"
    );
    let gateway = net.entry().http.expect("the entry node has a gateway");
    let (url, asked, mut reports, server) = front(gateway, page).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = open_in_chromium(
        profile.path(),
        "--autoplay-policy=no-user-gesture-required",
        &format!("{url}/page"),
    );

    // What the page says, until it has played past the seek or failed.
    let mut said = Vec::new();
    let played = tokio::time::timeout(CLIENT_LIMIT, async {
        while let Some(r) = reports.recv().await {
            let r = umbra::gateway::url::percent_decode(&r).unwrap_or(r);
            said.push(r.clone());
            if r.starts_with("played") || r.starts_with("error") || r.starts_with("play failed") {
                return r;
            }
        }
        String::new()
    })
    .await;
    let _ = browser.kill().await;
    server.abort();
    let asked = asked.lock().unwrap().clone();
    let played = played.unwrap_or_else(|_| {
        panic!("the video did not play past the seek: the page said {said:?}; asked {asked:?}")
    });
    let at: f64 = played
        .strip_prefix("played ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{played}; the page said {said:?}; asked {asked:?}"));
    assert!(at > 36.5, "{played}");
    let duration = said
        .iter()
        .find_map(|s| s.strip_prefix("duration ")?.parse::<f64>().ok());
    assert!(
        duration.is_some_and(|d| (39.5..40.5).contains(&d)),
        "the whole length known from the first answers: {said:?}"
    );

    // The seek was a range request from well into the document, answered
    // with part of it.
    let video_path = format!("/{uri}");
    let from_middle = asked.iter().any(|a| {
        a.path == video_path
            && a.status == "206"
            && a.range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<usize>().ok())
                .is_some_and(|start| start > bytes.len() / 2)
    });
    assert!(
        from_middle,
        "no range request from the second half: {asked:?}"
    );
    net.shutdown().await;
}

/// Open `page` in Chromium from a file, outside umbra: the control that
/// shows a page's references really reach out when nothing stops them.
async fn open_from_file(profile: &Path, page: &str) {
    let file = profile.join("page.html");
    std::fs::write(&file, page).unwrap();
    chromium(
        profile,
        &["--dump-dom", &format!("file://{}", file.display())],
    )
    .await;
}

/// Stands in for the open web: a server on a port of its own that counts
/// every connection a browser makes to it and answers each with a 404.
async fn open_web() -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (addr, hits, server)
}

/// A stored page that tries every way out of umbra there is. Through the
/// gateway, Chromium connects to nothing outside umbra; every link and
/// form it follows out stops at the warning page, which names where it
/// leads; the links and pictures inside the site still work. The same
/// page opened from a file does connect out: the filter, not the page's
/// failings, kept it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_tries_every_way_out_reaches_only_the_warning_page() {
    let (outside, hits, web) = open_web().await;
    let out = format!("http://{outside}");
    let trap = format!(
        r##"<!doctype html><html><head><title>trap</title>
<base href="{out}/">
<meta http-equiv="refresh" content="1; url={out}/refresh">
<link rel="stylesheet" href="{out}/s.css">
<link rel="preconnect" href="{out}">
<link rel="prefetch" href="{out}/prefetch">
<link rel="icon" href="{out}/favicon.ico">
<style>@import url({out}/i.css); body {{ background: url('{out}/b.png') }}</style>
<script src="{out}/s.js"></script>
<script>fetch("{out}/f")</script>
</head><body onload="fetch('{out}/onload')">
<a id="a" href="{out}/a" ping="{out}/ping">a link</a>
<a id="in" href="two.html">in</a>
<img usemap="#m" src="pic.png" width="20" height="20">
<map name="m"><area id="area" shape="rect" coords="0,0,10,10" href="{out}/area"></map>
<img src="{out}/i.png" srcset="{out}/i2.png 2x">
<img id="pic" src="pic.png">
<div style="background-image: url({out}/d.png); width: 10px; height: 10px">x</div>
<form id="form" action="{out}/form" method="post"><input name="q" value="typed"></form>
<iframe src="{out}/frame"></iframe>
<object data="{out}/o"></object><embed src="{out}/e">
<video poster="{out}/p.png" src="{out}/v.webm"></video>
<svg width="20" height="20"><a id="svga" href="{out}/svga"><rect width="10" height="10"/></a>
<image href="{out}/svgi.png" width="5" height="5"/></svg>
</body></html>"##
    );
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("trap.html"), &trap).unwrap();
    std::fs::write(
        site.join("two.html"),
        "<!doctype html><title>two</title><p>inside</p>",
    )
    .unwrap();
    std::fs::write(site.join("pic.png"), red_png(8, 8)).unwrap();

    let net = network(10_000).await;
    let gateway = net.entry().http.expect("the entry node has a gateway");
    let put = run(
        UMBRA,
        &[
            "put",
            "--gateway",
            &gateway_of(&net),
            &site.display().to_string(),
        ],
        None,
    )
    .await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let uri = text(&put.stdout).trim().to_string();

    // What the gateway serves names the open web nowhere a browser
    // could reach it from by itself.
    let served = curl(
        socks_of(&net),
        &[&format!("http://doc.umbra/{uri}trap.html")],
    )
    .await;
    let served = text(&served.stdout);
    let bare = outside.to_string();
    let reachable: Vec<_> = served
        .match_indices(&bare)
        .map(|(at, _)| &served[at.saturating_sub(40)..at])
        .filter(|before| !before.ends_with("name=\"url\" value=\"http://"))
        .collect();
    assert!(reachable.is_empty(), "{reachable:?} in\n{served}");

    // A test page beside the site, on the same origin, opens the stored
    // page in a window of its own and follows each way out in turn, as a
    // reader's click would, then reports where the window went. (Links
    // out of umbra open in the whole window, never in a frame.)
    let harness = format!(
        r#"<!doctype html><html><body><script>
const trap = "/{uri}trap.html";
const say = (s) => fetch("/report?" + encodeURIComponent(s));
const ways = ["a", "area", "svga", "form", "in"];
const w = window.open(trap, "trap");
let next = 0, onTrap = true, seen = null;
const timer = setInterval(() => {{
  let d, here;
  try {{ d = w.document; here = w.location.href; }}
  catch (e) {{ clearInterval(timer); say("lost " + (ways[next - 1] || "trap")); return; }}
  if (here === "about:blank" || here === seen || d.readyState !== "complete") return;
  seen = here;
  if (onTrap) {{
    if (next === 0) {{
      const pic = d.getElementById("pic");
      say("pic " + (pic ? pic.naturalWidth : -1));
    }}
    if (next === ways.length) {{ clearInterval(timer); say("done"); return; }}
    const el = d.getElementById(ways[next]);
    next += 1;
    onTrap = false;
    if (!el) {{ clearInterval(timer); say("missing " + ways[next - 1]); return; }}
    if (ways[next - 1] === "form") el.submit();
    else el.dispatchEvent(new MouseEvent("click", {{ bubbles: true, cancelable: true }}));
  }} else {{
    const named = d.getElementById("destination");
    say(ways[next - 1] + " " + w.location.pathname + w.location.search + " " +
        (named ? named.textContent : "-"));
    onTrap = true;
    w.location.href = trap;
  }}
}}, 100);
</script></body></html>"#
    );
    let (url, _asked, mut reports, front_server) = front(gateway, harness).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = open_in_chromium(
        profile.path(),
        "--disable-popup-blocking",
        &format!("{url}/page"),
    );
    let mut said = Vec::new();
    let finished = tokio::time::timeout(CLIENT_LIMIT, async {
        while let Some(r) = reports.recv().await {
            let r = umbra::gateway::url::percent_decode(&r).unwrap_or(r);
            let end = r == "done" || r.starts_with("lost") || r.starts_with("missing");
            said.push(r);
            if end {
                return;
            }
        }
    })
    .await;
    let _ = browser.kill().await;
    front_server.abort();
    assert!(finished.is_ok(), "the test page did not finish: {said:?}");
    assert_eq!(said.last().map(String::as_str), Some("done"), "{said:?}");
    assert!(
        said.iter()
            .any(|s| s.starts_with("pic ") && s != "pic 0" && s != "pic -1"),
        "the site's own picture did not load: {said:?}"
    );
    // A form's fields come along to the warning page (and go no further).
    for (way, path, fields) in [
        ("a", "/a", ""),
        ("area", "/area", ""),
        ("svga", "/svga", ""),
        ("form", "/form", "&q=typed"),
    ] {
        let destination = format!("{out}{path}");
        let warned = format!(
            "{way} /leave?url={}{fields} {destination}",
            umbra::gateway::url::percent_encode_query(&destination)
        );
        assert!(
            said.iter().any(|s| s.starts_with(&warned)),
            "{way} did not stop at the warning page naming {destination}: {said:?}"
        );
    }
    assert!(
        said.iter()
            .any(|s| s.starts_with(&format!("in /{uri}two.html"))),
        "the link inside the site: {said:?}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the browser connected outside umbra: {said:?}"
    );

    // The control: the same page from a file reaches the open web.
    open_from_file(profile.path(), &trap).await;
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "control: the page outside umbra connects out"
    );
    web.abort();
    net.shutdown().await;
}

/// Poll `url` on the gateway with curl until its answer satisfies `done`,
/// within [`CLIENT_LIMIT`]; the last answer.
async fn await_page(url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + CLIENT_LIMIT;
    loop {
        let page = text(&run("curl", &["-sS", url], None).await.stdout);
        if done(&page) {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {CLIENT_LIMIT:?}; the page says\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The blocks done a transfers page shows.
fn blocks_done(page: &str) -> Option<u64> {
    let at = page.find("<progress value=\"")? + 17;
    page[at..].split('"').next()?.parse().ok()
}

/// The gateway's own page, read in Chromium as a user reads it: a
/// transfer in progress with a bar that moves, the documents this
/// session inserted, a followed signed site with its newest version, and
/// a drawing of the node's place in the network that is really drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_page_shows_transfers_inserts_followed_sites_and_the_node() {
    let net = network(10_000).await;
    let gateway = gateway_of(&net);
    let dir = tempfile::tempdir().unwrap();

    // An insert by a tool: the page lists it.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"notes for the page").unwrap();
    let put = run(
        "curl",
        &[
            "-sS",
            "-T",
            &notes.display().to_string(),
            &format!("{gateway}/"),
        ],
        None,
    )
    .await;
    let inserted = text(&put.stdout).trim().to_string();
    assert!(inserted.ends_with("/notes.txt"), "{inserted}");

    // A folder through the page's folder form, sent as a browser sends a
    // chosen folder: one `site` part per file, named FOLDER/PATH.
    let page_file = dir.path().join("i.html");
    let sheet_file = dir.path().join("s.css");
    let page_bytes =
        "<!doctype html><title>folder</title><link rel=\"stylesheet\" href=\"css/s.css\">";
    std::fs::write(&page_file, page_bytes).unwrap();
    std::fs::write(&sheet_file, "body { color: #123456 }").unwrap();
    let up = run(
        "curl",
        &[
            "-sS",
            "-F",
            &format!("site=@{};filename=blog/index.html", page_file.display()),
            "-F",
            &format!("site=@{};filename=blog/css/s.css", sheet_file.display()),
            &format!("{gateway}/"),
        ],
        None,
    )
    .await;
    let answer = text(&up.stdout);
    let folder = answer
        .split("<code>")
        .nth(1)
        .and_then(|t| t.split("</code>").next())
        .unwrap_or_else(|| panic!("no URI in {answer}"))
        .to_string();
    assert!(
        folder.starts_with("umbra:chk:") && folder.ends_with('/'),
        "{folder}"
    );
    for (path, want) in [("", page_bytes), ("css/s.css", "body { color: #123456 }")] {
        let got = run("curl", &["-sS", &format!("{gateway}/{folder}{path}")], None).await;
        assert_eq!(text(&got.stdout), want, "{path}");
    }

    // A signed site, followed through the page's form.
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "<!doctype html><title>s</title>").unwrap();
    let keys = text(&run(UMBRA, &["keygen", "--name", "news"], None).await.stdout);
    let key_of = |label: &str| {
        keys.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|k| k.trim().to_string())
            .expect("keygen prints both URIs")
    };
    let (insert, request) = (key_of("insert URI:"), key_of("request URI:"));
    let site_arg = site.display().to_string();
    let put = run(
        UMBRA,
        &["put", "--gateway", &gateway, "--ssk", &insert, &site_arg],
        None,
    )
    .await;
    assert!(put.status.success(), "{}", text(&put.stderr));
    let follow = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-urlencode",
            &format!("uri={request}"),
            &format!("{gateway}/_/follow"),
        ],
        None,
    )
    .await;
    assert_eq!(text(&follow.stdout), "303");
    await_page(&format!("{gateway}/"), "the site's version", |p| {
        p.contains("newest version: 1")
    })
    .await;

    // A fetch read slowly, so that it is in progress while the page is
    // read (long enough that what the sockets buffer cannot end it); its
    // bar moves as it goes.
    let big = random(24 << 20);
    let uri = client::insert(
        &net.entry().client(),
        "application/octet-stream",
        &big,
        Target::Chk,
    )
    .await
    .unwrap();
    let mut slow = tokio::process::Command::new("curl")
        .args(["-sS", "--limit-rate", "100k", "-o", "/dev/null"])
        .arg(format!("{gateway}/{uri}"))
        .kill_on_drop(true)
        .spawn()
        .expect("curl starts");
    let transfers = format!("{gateway}/_/transfers");
    let first = await_page(&transfers, "the fetch in progress", |p| {
        p.contains(&uri.to_string()) && blocks_done(p).is_some()
    })
    .await;
    let before = blocks_done(&first).unwrap();
    await_page(&transfers, "the bar moving", |p| {
        blocks_done(p).is_some_and(|done| done > before)
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let frame = chromium(profile.path(), &["--dump-dom", &transfers]).await;
    assert!(frame.contains("class=\"transfer\""), "{frame}");
    assert!(frame.contains("fetching"), "{frame}");
    assert!(frame.contains(&uri.to_string()), "{frame}");
    assert!(frame.contains("<progress value="), "{frame}");

    // The page itself.
    let page = chromium(profile.path(), &["--dump-dom", &format!("{gateway}/")]).await;
    let section = |id: &str| {
        let at = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in\n{page}"));
        page[at..].split("</ul>").next().unwrap().to_string()
    };
    assert!(section("inserted").contains(&inserted), "{page}");
    assert!(section("inserted").contains(&folder), "{page}");
    assert!(page.contains("webkitdirectory"), "the folder form");
    let followed = section("followed");
    assert!(followed.contains(&request), "{followed}");
    assert!(followed.contains("newest version: 1"), "{followed}");
    assert!(page.contains("<iframe title=\"transfers in progress\" src=\"/_/transfers\""));
    let picture = page[page.find("<svg id=\"place\"").expect("the picture")..]
        .split("</svg>")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(picture.matches("class=\"me\"").count(), 1, "{picture}");
    assert!(picture.contains("class=\"predecessor\""), "{picture}");
    assert!(
        picture.matches("class=\"successor\"").count() >= 2,
        "{picture}"
    );
    assert!(
        picture.matches("class=\"finger\"").count() >= 1,
        "{picture}"
    );
    let relays: usize = picture
        .split("id=\"relays\"")
        .nth(1)
        .and_then(|t| t.split('>').nth(1))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("how many relays the node knows");
    assert!(relays >= 3, "{picture}");

    // Drawn, not only written: the screenshot has the ring's colours.
    let shot = profile.path().join("page.png");
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=900,3000",
            &format!("{gateway}/"),
        ],
    )
    .await;
    let (_, pixels) = rgb(&std::fs::read(&shot).expect("the screenshot"));
    let count = |c: [u8; 3]| pixels.iter().filter(|p| **p == c).count();
    assert!(count([0x3a, 0x9a, 0x5b]) > 100, "no successors drawn");
    assert!(count([0xd0, 0x8a, 0x2c]) > 50, "no predecessor drawn");
    let white = count([255, 255, 255]);
    assert!(white < pixels.len(), "a blank page");

    // The session's lists, as the file the page offers.
    let list = text(
        &run("curl", &["-sS", &format!("{gateway}/_/session.txt")], None)
            .await
            .stdout,
    );
    assert!(
        list.contains(&inserted) && list.contains(&request),
        "{list}"
    );

    // The transfer leaves the page when its reader goes.
    let _ = slow.kill().await;
    await_page(&transfers, "the fetch gone", |p| p.contains("id=\"idle\"")).await;
    net.shutdown().await;
}
