//! A node with its front doors: the HTTP gateway and the SOCKS5 proxy. The
//! node knows nothing of them; this module starts the node, then the doors
//! on top of its client API, and stops the doors before the node. `umbra
//! node` and `umbra testnet` run daemons.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::{self, Config, NodeHandle};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Node(#[from] node::Error),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("SOCKS proxy: {0}")]
    Socks(String),
}

/// A running node and its front doors. It derefs to the node's handle.
pub struct Daemon {
    node: NodeHandle,
    /// Where the gateway and the proxy listen, if they run.
    pub http: Option<SocketAddr>,
    pub socks: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
}

impl std::ops::Deref for Daemon {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.node
    }
}

/// A local TCP listener and the address it got.
async fn listen_local(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, local))
}

impl Daemon {
    /// Start the node of `cfg`, then the gateway (`cfg.http`) and the proxy
    /// (`cfg.socks`) if asked for.
    pub async fn start(cfg: Config) -> Result<Daemon, Error> {
        let socks_settings = crate::socks::Settings {
            handshake_timeout: std::time::Duration::from_millis(cfg.socks_handshake_ms),
            max_sessions: cfg.limits.socks_clients,
        };
        let gateway_clients = cfg.limits.gateway_clients;
        // One budget for the gateway's and the proxy's documents together.
        let doors = crate::gateway::Local {
            budget: crate::client::Budget::new(cfg.limits.document_bytes),
            body_timeout: std::time::Duration::from_secs(cfg.limits.body_secs),
            insert_limit: cfg.limits.insert_bytes,
            session: Default::default(),
        };
        let (http_addr, socks_addr) = (cfg.http, cfg.socks);
        // Bind the doors first: a port in use fails the start before the
        // node joins anything.
        let http = match http_addr {
            Some(a) => Some(listen_local(a).await.map_err(Error::Gateway)?),
            None => None,
        };
        let socks = match socks_addr {
            Some(a) => Some(listen_local(a).await.map_err(Error::Socks)?),
            None => None,
        };
        let node = node::start(cfg).await?;
        let (shutdown, rx) = watch::channel(false);
        let http = http.map(|(listener, local)| {
            tokio::spawn(crate::gateway::serve(
                listener,
                node.client(),
                gateway_clients,
                doors.clone(),
                rx.clone(),
            ));
            local
        });
        let socks = socks.map(|(listener, local)| {
            tokio::spawn(crate::socks::serve(
                listener,
                node.client(),
                socks_settings,
                doors.clone(),
                rx.clone(),
            ));
            local
        });
        Ok(Daemon {
            node,
            http,
            socks,
            shutdown,
        })
    }

    /// Close the doors, then leave the ring gracefully.
    pub async fn leave(self) {
        let _ = self.shutdown.send(true);
        self.node.leave().await;
    }

    /// Close the doors, then stop the node at once, as a crash would.
    pub async fn crash(self) {
        let _ = self.shutdown.send(true);
        self.node.crash().await;
    }
}
