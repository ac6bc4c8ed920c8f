//! Entry points for the fuzz targets in `fuzz/`: each feeds arbitrary bytes to a parser of data
//! the agent receives and must never panic on.

use crate::evidence::tpm;

/// Every TPM response parser on `data`: as a whole response (header check) and as the
/// parameter area of each command this agent sends.
pub fn tpm_response(data: &[u8]) {
    for sessions in [false, true] {
        let _ = tpm::response_params("fuzz", sessions, data);
    }
    let _ = tpm::parse_nv_read_public(data);
    let _ = tpm::parse_nv_read(data);
    let _ = tpm::parse_quote(data);
    let _ = tpm::parse_pcr_read(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm_response_parsers_survive_every_prefix_and_byte_flip_of_a_response() {
        let mut pcr_read = vec![0x80, 0x01, 0, 0, 0, 0x3e, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1];
        pcr_read.extend_from_slice(&[0, 0x0b, 3, 1, 0, 0, 0, 0, 0, 1, 0, 0x20]);
        pcr_read.extend_from_slice(&[0x30; 32]);
        for n in 0..=pcr_read.len() {
            tpm_response(&pcr_read[..n]);
            tpm_response(&pcr_read[10.min(n)..n]);
        }
        for i in 0..pcr_read.len() {
            let mut flipped = pcr_read.clone();
            flipped[i] ^= 0xff;
            tpm_response(&flipped);
        }
    }
}
