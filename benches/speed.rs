//! Fetch speed as an application sees it, beside the limit of the path:
//! curl through the entry node's SOCKS proxy on an 8-node network, and
//! the same bytes on one direct QUIC stream between two endpoints, both
//! over links with the same emulated one-way delay (`link::Emulation`,
//! inside the process: this kernel has no netem).
//!
//! For each delay per link (0, 10, 30 and 80 ms; `UMBRA_SPEED_DELAYS=0,30`
//! for others; `UMBRA_SPEED_LOSS=0.1` for random loss, in percent, on
//! every link), a fresh network; each document inserted once, fetched
//! once to warm the circuit, then fetched `UMBRA_SPEED_REPS` times (5):
//! medians of curl's time to first byte and total time. The direct stream
//! is measured the same way on one warm connection with quinn's default
//! windows.
//!
//! `cargo bench --bench speed` measures; under `cargo test` it runs once,
//! small, at no delay, to keep itself working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{median, ms, random};
use umbra::client::{self, Target};
use umbra::link::{self, Emulation};
use umbra::testnet::{self, Testnet};

fn mb_s(len: usize, d: Duration) -> f64 {
    len as f64 / d.as_secs_f64() / 1e6
}

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|x| x.trim().parse().expect("a list of numbers"))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// First byte and whole transfer, medians.
#[derive(Clone, Copy)]
struct Timing {
    first: Duration,
    total: Duration,
}

fn medians(runs: Vec<Timing>) -> Timing {
    Timing {
        first: median(runs.iter().map(|t| t.first).collect()),
        total: median(runs.iter().map(|t| t.total).collect()),
    }
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(measuring));
}

async fn run(measuring: bool) {
    let delays = if measuring {
        env_list("UMBRA_SPEED_DELAYS", &[0, 10, 30, 80])
    } else {
        vec![0]
    };
    let reps = if measuring {
        env_list("UMBRA_SPEED_REPS", &[5])[0] as usize
    } else {
        1
    };
    // Random loss on every link, in percent (`UMBRA_SPEED_LOSS=1`).
    let loss_ppm = std::env::var("UMBRA_SPEED_LOSS")
        .map(|v| (v.parse::<f64>().expect("a percentage") * 10_000.0) as u32)
        .unwrap_or(0);
    if loss_ppm > 0 {
        println!("every link loses {} per million datagrams", loss_ppm);
    }
    let sizes: &[usize] = if measuring {
        &[50 << 10, 10 << 20]
    } else {
        &[50 << 10]
    };
    println!(
        "| delay per link | size | direct: first byte | direct: MB/s | SOCKS: first byte | SOCKS: MB/s | SOCKS / direct |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &delay in &delays {
        let emu = (delay > 0 || loss_ppm > 0).then(|| Emulation {
            loss_ppm,
            ..Emulation::delay(Duration::from_millis(delay))
        });
        let direct = Direct::start(emu).await;
        let mut settings = testnet::Settings::new(8);
        settings.socks = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        settings.template.emulate = emu;
        let net = Testnet::start(settings).await.expect("test network");
        net.wait_ready(Duration::from_secs(180))
            .await
            .expect("ready");
        let socks = net.entry().socks.expect("a proxy");
        for &len in sizes {
            let d = direct.measure(len, reps).await;
            let u = through_socks(&net, socks, len, reps).await;
            println!(
                "| {delay} ms | {} | {:.1} ms | {:.1} | {:.1} ms | {:.1} | {:.2} |",
                if len >= 1 << 20 {
                    format!("{} MiB", len >> 20)
                } else {
                    format!("{} KiB", len >> 10)
                },
                ms(d.first),
                mb_s(len, d.total),
                ms(u.first),
                mb_s(len, u.total),
                d.total.as_secs_f64() / u.total.as_secs_f64(),
            );
        }
        net.shutdown().await;
    }
}

/// A document of `len` random bytes inserted through the entry node,
/// then fetched with curl through its proxy: once to warm, then `reps`
/// times.
async fn through_socks(net: &Testnet, socks: SocketAddr, len: usize, reps: usize) -> Timing {
    let data = random(len);
    let uri = client::insert(
        &net.entry().client(),
        "application/octet-stream",
        &data,
        Target::Chk,
    )
    .await
    .expect("insert")
    .to_string();
    let url = format!("http://doc.umbra/{uri}");
    let mut runs = Vec::new();
    for i in 0..=reps {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "--socks5-hostname"])
            .arg(socks.to_string())
            .args([
                "-w",
                "%{http_code} %{size_download} %{time_starttransfer} %{time_total}",
            ])
            .arg(&url)
            .output()
            .await
            .expect("curl runs (scripts/test installs it)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let f: Vec<&str> = text.split_whitespace().collect();
        assert!(
            out.status.success() && f.len() == 4 && f[0] == "200",
            "curl failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            f[1].parse::<usize>().expect("a size"),
            len,
            "whole document"
        );
        let secs = |s: &str| Duration::from_secs_f64(s.parse().expect("seconds"));
        if i > 0 {
            eprintln!("  SOCKS, {len} bytes: {} s", f[3]);
            runs.push(Timing {
                first: secs(f[2]),
                total: secs(f[3]),
            });
        }
    }
    medians(runs)
}

/// Two QUIC endpoints on loopback over the same emulated path: the
/// client asks for a length, the server writes that many bytes on the
/// same stream.
struct Direct {
    conn: quinn::Connection,
    _client: quinn::Endpoint,
    _server: quinn::Endpoint,
}

impl Direct {
    async fn start(emu: Option<Emulation>) -> Direct {
        let runtime = quinn::default_runtime().expect("tokio");
        let bind = || std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let server_cfg =
            quinn::ServerConfig::with_single_cert(vec![der.clone()], key).expect("server config");
        let server = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server_cfg),
            link::udp_socket(bind(), emu).expect("socket"),
            runtime.clone(),
        )
        .expect("server");
        let addr = server.local_addr().expect("addr");
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let mut len = [0u8; 8];
                            if recv.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let body = vec![0x5a; u64::from_be_bytes(len) as usize];
                            let _ = send.write_all(&body).await;
                            let _ = send.finish();
                            let _ = send.stopped().await;
                        });
                    }
                });
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client_cfg =
            quinn::ClientConfig::with_root_certificates(Arc::new(roots)).expect("client config");
        let mut client = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            link::udp_socket(bind(), emu).expect("socket"),
            runtime,
        )
        .expect("client");
        client.set_default_client_config(client_cfg);
        let conn = client
            .connect(addr, "localhost")
            .expect("connect")
            .await
            .expect("connected");
        Direct {
            conn,
            _client: client,
            _server: server,
        }
    }

    async fn fetch(&self, len: usize) -> Timing {
        let start = Instant::now();
        let (mut send, mut recv) = self.conn.open_bi().await.expect("stream");
        send.write_all(&(len as u64).to_be_bytes())
            .await
            .expect("ask");
        let mut got = 0;
        let mut first = None;
        let mut buf = vec![0u8; 64 << 10];
        while let Some(n) = recv.read(&mut buf).await.expect("read") {
            first.get_or_insert_with(|| start.elapsed());
            got += n;
        }
        assert_eq!(got, len, "the whole transfer");
        Timing {
            first: first.unwrap_or_default(),
            total: start.elapsed(),
        }
    }

    async fn measure(&self, len: usize, reps: usize) -> Timing {
        self.fetch(len).await;
        let mut runs = Vec::new();
        for _ in 0..reps {
            runs.push(self.fetch(len).await);
        }
        medians(runs)
    }
}
