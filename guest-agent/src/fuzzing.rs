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
