#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| freezeframe_fuzz::bolt(data));
