#![no_main]
//! The gateway's filter of HTML, SVG and CSS, fed any bytes.
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::filter(data));
