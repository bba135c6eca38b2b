//! The whole stack fed a sequence of arbitrary frames with simulated time
//! advancing between them: a TCP listener with connections that read and
//! write, a UDP socket, and the DHCP client (on a second stack).
//! This variant repairs IPv4, ICMP, UDP and TCP checksums, so that the
//! fuzzer reaches what lies past them.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run_frames(data, true));
