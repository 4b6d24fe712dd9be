#![no_main]
//! The SOCKS5 handshake alone, whole and in pieces (the user target's SOCKS
//! part, with the fuzzer's whole attention).
#[path = "bodies.rs"]
#[allow(dead_code)]
mod bodies;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut v = vec![bodies::USER_SOCKS];
    v.extend_from_slice(data);
    bodies::user(&v)
});
