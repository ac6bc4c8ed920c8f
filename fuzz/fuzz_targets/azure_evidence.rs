#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier::fuzzing::azure_evidence(data));
