#![no_main]
//! Onion layers and handshakes with arbitrary keys and bytes.

#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::onion(data));
