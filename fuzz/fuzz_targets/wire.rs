#![no_main]
//! Every wire parser on arbitrary bytes.

#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::wire(data));
