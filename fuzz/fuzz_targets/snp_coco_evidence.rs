#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| verifier::fuzzing::snp_coco_evidence(data));
