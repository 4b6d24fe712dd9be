#![no_main]
//! The configuration file: any text parses and validates to a typed error.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::config(data));
