#![no_main]
//! What the gateway parses of HTTP requests: paths, queries, forms, the
//! headers that say where a request comes from.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::http(data));
