#![no_main]
//! A peer's certificate, as the QUIC handshake hands it to the verifiers.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::certificate(data));
