//! The gateway's failure codes: each failure a client can act on has its
//! own HTTP status and `X-Umbra-Error` code.

use hyper::StatusCode;

use crate::client::{ClientError, ReadError};
use crate::keys::DocError;
use crate::node::RequestError;

/// Why a request failed, in a form scripts can rely on: the
/// `X-Umbra-Error` header's value and the error lines of a progress
/// answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedUri,
    InsertUri,
    DataNotFound,
    RouteNotFound,
    Timeout,
    Rejected,
    Retracted,
    BadDocument,
    Circuit,
    Stopped,
    TooLarge,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RangeNotSatisfiable,
}

impl ErrorCode {
    pub(super) const ALL: [ErrorCode; 16] = [
        ErrorCode::MalformedUri,
        ErrorCode::InsertUri,
        ErrorCode::DataNotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::Timeout,
        ErrorCode::Rejected,
        ErrorCode::Retracted,
        ErrorCode::BadDocument,
        ErrorCode::Circuit,
        ErrorCode::Stopped,
        ErrorCode::TooLarge,
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RangeNotSatisfiable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedUri => "malformed-uri",
            ErrorCode::InsertUri => "insert-uri",
            ErrorCode::DataNotFound => "data-not-found",
            ErrorCode::RouteNotFound => "route-not-found",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Rejected => "rejected",
            ErrorCode::Retracted => "retracted",
            ErrorCode::BadDocument => "bad-document",
            ErrorCode::Circuit => "circuit",
            ErrorCode::Stopped => "stopped",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::RangeNotSatisfiable => "range-not-satisfiable",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedUri | ErrorCode::InsertUri | ErrorCode::BadRequest => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::DataNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Retracted => StatusCode::GONE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::BadDocument => StatusCode::BAD_GATEWAY,
            ErrorCode::RouteNotFound
            | ErrorCode::Rejected
            | ErrorCode::Circuit
            | ErrorCode::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    /// The code for a failed insert or fetch.
    pub fn of(e: &ClientError) -> ErrorCode {
        match e {
            ClientError::Request(r) => match r {
                RequestError::DataNotFound => ErrorCode::DataNotFound,
                RequestError::RouteNotFound => ErrorCode::RouteNotFound,
                RequestError::Timeout => ErrorCode::Timeout,
                RequestError::Rejected => ErrorCode::Rejected,
                RequestError::BadBlock => ErrorCode::BadDocument,
                RequestError::Circuit(_) => ErrorCode::Circuit,
                RequestError::Stopped => ErrorCode::Stopped,
            },
            ClientError::Retracted { .. } => ErrorCode::Retracted,
            ClientError::Document(DocError::ContentType) => ErrorCode::BadRequest,
            ClientError::Document(_) => ErrorCode::BadDocument,
            ClientError::InsertUri => ErrorCode::InsertUri,
            ClientError::TooLarge { .. } => ErrorCode::TooLarge,
            ClientError::Busy => ErrorCode::Rejected,
            ClientError::Read(ReadError::Io(_)) => ErrorCode::BadRequest,
            ClientError::Read(ReadError::Timeout(_)) => ErrorCode::Timeout,
            ClientError::Read(ReadError::TooLong(_)) => ErrorCode::TooLarge,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
