#![no_main]
//! The files of a node's data dir: guards, onion keys, identity, datastore.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::files(data));
