//! TLS for links: a self-signed certificate for the node's Ed25519
//! identity, and verifiers that accept exactly that kind of certificate
//! and read the node id out of it.
//!
//! There is no certificate authority: a node is its key. What the TLS 1.3
//! handshake proves is that the peer holds the private key of the Ed25519
//! public key in its certificate; the node id is the SHA-256 of that key.
//! The dialer additionally checks that the id is the one it meant to reach.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::Error;
use crate::crypto::{node_id, Identity};
use crate::wire::NodeId;

/// The application protocol name: links only talk to umbra nodes.
pub const ALPN: &[u8] = b"umbra/1";
/// The protocol of a reachability probe (`link::reach`): one nonce, then
/// the connection closes. Never a link.
pub const PROBE_ALPN: &[u8] = b"umbra-probe/1";

/// DER of an Ed25519 SubjectPublicKeyInfo, up to the key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate and key this node presents.
pub fn certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Error> {
    let pkcs8 = identity
        .signing_key_pkcs8()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let key_der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key_der, &rcgen::PKCS_ED25519)
        .map_err(|e| Error::Tls(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["umbra".to_string()])
        .map_err(|e| Error::Tls(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key_der)))
}

/// The node id a certificate speaks for, if it is an Ed25519 certificate.
pub fn peer_id(cert: &CertificateDer<'_>) -> Option<NodeId> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = ee.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: &[u8; 32] = key.try_into().ok()?;
    Some(node_id(key))
}

fn tls13_only() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// The only signature scheme either side accepts.
const ED25519_ONLY: [SignatureScheme; 1] = [SignatureScheme::ED25519];

/// The TLS 1.3 CertificateVerify check both verifiers share: the peer
/// signed the handshake with the key in its certificate.
fn verify_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// Dialer side: accept the server's certificate if it is Ed25519 and, when
/// we know whom we are calling, if it hashes to that id.
#[derive(Debug)]
pub struct ServerVerifier {
    pub expected: Option<NodeId>,
    pub provider: Arc<CryptoProvider>,
    /// Set when the peer turned out to be another node than `expected`, so
    /// the dialer can report exactly that.
    pub mismatch: Arc<AtomicBool>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = peer_id(end_entity).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        match self.expected {
            Some(want) if want != id => {
                self.mismatch.store(true, Ordering::Relaxed);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls13_only())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

/// Acceptor side: every peer must present an Ed25519 certificate; any key
/// is welcome (the node id is read from it after the handshake).
#[derive(Debug)]
pub struct ClientVerifier {
    pub provider: Arc<CryptoProvider>,
    /// Peers refused for their certificate, for the node's count of
    /// misbehaving peers.
    pub rejected: Arc<AtomicUsize>,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match peer_id(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls13_only())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ED25519_ONLY.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_certificate_speaks_for_the_identity() {
        let id = Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(3));
        let (cert, _) = certificate(&id).unwrap();
        assert_eq!(peer_id(&cert), Some(id.id()));
        assert_eq!(
            peer_id(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
