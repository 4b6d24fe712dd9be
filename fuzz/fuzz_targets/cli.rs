#![no_main]
//! The command line's arguments, and the URIs and addresses they carry.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::cli(data));
