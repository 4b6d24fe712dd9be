//! The local HTTP gateway. Today it serves the node's status at
//! `GET /status` as JSON (the format is documented in README.md and stable
//! for scripts); the document interface joins it later. It listens on
//! localhost by default and is for the node's owner only.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Command, Status};

/// Largest status reply a client will read.
const MAX_REPLY: usize = 1 << 20;

pub async fn serve(
    listener: TcpListener,
    node: mpsc::Sender<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let node = node.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, node.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    node: mpsc::Sender<Command>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET || req.uri().path() != "/status" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".into(),
        ));
    }
    let (tx, rx) = oneshot::channel();
    if node.send(Command::Status(tx)).await.is_err() {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "node is shutting down\n".into(),
        ));
    }
    Ok(match rx.await {
        Ok(status) => match serde_json::to_string_pretty(&status) {
            Ok(json) => reply(StatusCode::OK, "application/json", json + "\n"),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string(),
            ),
        },
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "node is shutting down\n".into(),
        ),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad gateway URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    #[error("cannot reach the node at {0}: {1}")]
    Unreachable(String, String),
    #[error("the gateway answered {0}")]
    Status(StatusCode),
    #[error("the gateway's answer is not a status: {0}")]
    BadReply(String),
}

/// Ask the node behind `gateway` (for example `http://127.0.0.1:8080`) for
/// its status.
pub async fn fetch_status(gateway: &str) -> Result<Status, ClientError> {
    let uri: hyper::Uri = gateway
        .parse()
        .map_err(|_| ClientError::BadUrl(gateway.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClientError::BadUrl(gateway.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::BadUrl(gateway.into()))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = format!("{}:{port}", authority.host());
    let unreachable =
        |e: &dyn std::fmt::Display| ClientError::Unreachable(addr.clone(), e.to_string());
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = Request::get("/status")
        .header(hyper::header::HOST, authority.as_str())
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    if resp.status() != StatusCode::OK {
        return Err(ClientError::Status(resp.status()));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_REPLY)
        .collect()
        .await
        .map_err(|e| ClientError::BadReply(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| ClientError::BadReply(e.to_string()))
}

/// Bind the gateway's listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
