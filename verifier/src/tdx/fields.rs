//! Field decoders shared by the structures of Intel's collateral JSON (TCB info, QE identity)
//! and by the fetch planning: RFC 3339 dates, fixed-length hex, TCB status names. Every
//! failure is a [`Reason`] naming the field.

use crate::claims::TcbStatus;
use crate::error::Reason;

/// Parses an RFC 3339 date from collateral JSON into Unix seconds.
pub(super) fn parse_date(what: &'static str, s: &str) -> Result<i64, Reason> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| Reason::Malformed { what })
}

/// Decodes exactly `N` bytes of hex (either case).
pub(super) fn hex_array<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], Reason> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| Reason::Malformed { what })?;
    Ok(out)
}

/// Parses a TCB status name and checks it is one `allowed` in this structure.
pub(super) fn parse_status(
    what: &'static str,
    name: &str,
    allowed: &[TcbStatus],
) -> Result<TcbStatus, Reason> {
    TcbStatus::from_name(name)
        .filter(|s| allowed.contains(s))
        .ok_or(Reason::InvalidValue { what, why: "TCB status not allowed in this structure" })
}
