#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier::fuzzing::tdx_event_log(data));
