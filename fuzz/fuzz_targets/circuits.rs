#![no_main]
//! A relay's circuit state machine fed arbitrary cells, sealed relay
//! messages, routed outcomes, link changes and time.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::circuits(data));
