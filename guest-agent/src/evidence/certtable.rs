//! The SEV-SNP certificate table the host hands out with an extended report (configfs-tsm
//! `auxblob`, GHCB extended guest request): entries of `{GUID (16 bytes), offset (u32 LE),
//! length (u32 LE)}` ended by an all-zero entry, offsets counted from the table's start.
//! GUIDs (AMD GHCB specification, "certificate table"; same as the `sev` crate's):

/// VCEK `63da758d-e664-4564-adc5-f4b93be8accd`.
pub const VCEK_GUID: [u8; 16] =
    guid(0x63da_758d, 0xe664, 0x4564, [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd]);
/// VLEK `a8074bc2-a25a-483e-aae6-39c045a0b8a1`.
pub const VLEK_GUID: [u8; 16] =
    guid(0xa807_4bc2, 0xa25a, 0x483e, [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1]);
/// ASK `4ab7b379-bbac-4fe4-a02f-05aef327c782`.
pub const ASK_GUID: [u8; 16] =
    guid(0x4ab7_b379, 0xbbac, 0x4fe4, [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82]);
/// ARK `c0b406a4-a803-4952-9743-3fb6014cd0ae`.
pub const ARK_GUID: [u8; 16] =
    guid(0xc0b4_06a4, 0xa803, 0x4952, [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae]);

const ENTRY_LEN: usize = 24;

/// The GUID's bytes in the table: the textual form's bytes in order (as the `sev` crate and the
/// kernel lay them out).
const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_be_bytes();
    let b = b.to_be_bytes();
    let c = c.to_be_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// One certificate from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    pub guid: [u8; 16],
    pub data: Vec<u8>,
}

/// Parses a certificate table; `None` when it is malformed (bad offsets, no terminator).
#[must_use]
pub fn parse(table: &[u8]) -> Option<Vec<CertEntry>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let entry = table.get(at..at.checked_add(ENTRY_LEN)?)?;
        let guid: [u8; 16] = entry.get(..16)?.try_into().ok()?;
        let offset = u32::from_le_bytes(entry.get(16..20)?.try_into().ok()?) as usize;
        let length = u32::from_le_bytes(entry.get(20..24)?.try_into().ok()?) as usize;
        if guid == [0; 16] && offset == 0 && length == 0 {
            return Some(out);
        }
        let data = table.get(offset..offset.checked_add(length)?)?.to_vec();
        out.push(CertEntry { guid, data });
        at += ENTRY_LEN;
    }
}

/// Builds a table (for tests and the fake kernel).
#[must_use]
pub fn build(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let header = (entries.len() + 1) * ENTRY_LEN;
    let mut table = Vec::new();
    let mut blobs = Vec::new();
    for (g, data) in entries {
        table.extend_from_slice(g);
        table.extend_from_slice(&((header + blobs.len()) as u32).to_le_bytes());
        table.extend_from_slice(&(data.len() as u32).to_le_bytes());
        blobs.extend_from_slice(data);
    }
    table.extend_from_slice(&[0u8; ENTRY_LEN]);
    table.extend_from_slice(&blobs);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_match_their_text_form() {
        assert_eq!(hex::encode(VCEK_GUID), "63da758de6644564adc5f4b93be8accd");
        assert_eq!(hex::encode(VLEK_GUID), "a8074bc2a25a483eaae639c045a0b8a1");
        assert_eq!(hex::encode(ASK_GUID), "4ab7b379bbac4fe4a02f05aef327c782");
        assert_eq!(hex::encode(ARK_GUID), "c0b406a4a803495297433fb6014cd0ae");
    }

    #[test]
    fn parses_what_it_builds_and_rejects_truncation() {
        let t = build(&[(VCEK_GUID, b"vcek"), (ASK_GUID, b"ask!")]);
        let parsed = parse(&t).unwrap();
        assert_eq!(
            parsed,
            vec![
                CertEntry { guid: VCEK_GUID, data: b"vcek".to_vec() },
                CertEntry { guid: ASK_GUID, data: b"ask!".to_vec() },
            ]
        );
        for n in 0..t.len() {
            assert_eq!(parse(&t[..n]), None, "prefix {n}");
        }
    }
}
