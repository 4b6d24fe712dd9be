#![no_main]
//! What users and local applications hand the node: SOCKS handshakes,
//! URIs, percent-encoded paths, document roots.

#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::user(data));
