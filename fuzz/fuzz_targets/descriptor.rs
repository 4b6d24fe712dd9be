#![no_main]
//! Node descriptors as peers send them: parsed, printed, checked.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::descriptor(data));
