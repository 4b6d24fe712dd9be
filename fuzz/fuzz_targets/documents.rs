#![no_main]
//! Document roots, manifests and nested manifests as a fetch reads them,
//! documents encoded and read back, blocks checked against keys.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::documents(data));
