//! Reachability probes, the dialling side: a short connection of its own
//! protocol from a fresh socket, to show a node that others can reach it
//! (`reach` has the reasoning; [`Endpoint::complete`] the receiving side).

use std::net::SocketAddr;

use super::{
    certificate, client_config, close, connect_error, transport, Config, Error, PROBE_ALPN,
};
use crate::crypto::Identity;
use crate::wire::NodeId;

/// Dial `target` as a reachability probe for the node `expected`: from a
/// fresh socket (so that no NAT or firewall on the target's side has seen
/// this flow), under a throwaway identity (so the probe links to nothing),
/// presenting `nonce`. Succeeds once the target has read the nonce.
pub async fn probe(
    target: SocketAddr,
    expected: NodeId,
    nonce: [u8; 16],
    cfg: &Config,
) -> Result<(), Error> {
    let throwaway = Identity::generate(&mut rand::rngs::OsRng);
    let (cert, key) = certificate(&throwaway)?;
    let (client, mismatch) = client_config(
        &cert,
        &key,
        Some(expected),
        PROBE_ALPN,
        transport(cfg, true)?,
    )?;
    let bind: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).map_err(|e| Error::Io(e.to_string()))?;
    let runtime = quinn::default_runtime().ok_or_else(|| Error::Io("no async runtime".into()))?;
    let ep = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(|e| Error::Io(e.to_string()))?;
    let run = async {
        let conn = ep
            .connect_with(client, target, "umbra")
            .map_err(|e| Error::Connect(e.to_string()))?
            .await
            .map_err(|e| connect_error(&mismatch, e))?;
        let (mut send, _recv) = conn
            .open_bi()
            .await
            .map_err(|e| Error::Connect(e.to_string()))?;
        send.write_all(&nonce).await.map_err(|_| Error::Closed)?;
        send.finish().map_err(|_| Error::Closed)?;
        // The target closes once it has the nonce.
        conn.closed().await;
        Ok(())
    };
    let r = tokio::time::timeout(cfg.handshake_timeout, run)
        .await
        .map_err(|_| Error::Timeout)
        .and_then(|r| r);
    ep.close(close::NORMAL, b"");
    r
}
