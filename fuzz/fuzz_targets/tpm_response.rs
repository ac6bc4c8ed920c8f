#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keylatch_agent::fuzzing::tpm_response(data));
