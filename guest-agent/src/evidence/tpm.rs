//! A TPM 2.0 client that speaks the raw command protocol (TCG TPM 2.0 Library, Part 3) over a
//! byte stream: the kernel's resource-managed device `/dev/tpmrm0` in a guest, or a TCP socket
//! to `swtpm socket --server type=tcp,...` in tests. This module owns marshalling the few
//! commands the Azure vTPM evidence needs and parsing their responses:
//!
//! - `TPM2_NV_ReadPublic` (the size of an NV index, and whether it exists);
//! - `TPM2_NV_Read` with owner authorization (the HCL report);
//! - `TPM2_Quote` by a persistent key (the quote over the PCRs);
//! - `TPM2_PCR_Read` (the PCR values the quote covers).
//!
//! It is written by hand because the Rust TSS crates (`tss-esapi`) link the C tpm2-tss library,
//! which an initramfs would then have to carry. Authorization is the empty password only
//! (`TPM_RS_PW`), which is how Azure's vTPM provisions the owner hierarchy, the HCL report NV
//! index and the attestation key. Responses are parsed with bounds checks and fail closed:
//! every error names the command and, for a TPM refusal, its response code.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// The device read when nothing else is configured.
pub const DEFAULT_DEVICE: &str = "/dev/tpmrm0";
/// The largest command or response exchanged (the Linux TPM driver's buffer size).
pub const MAX_RESPONSE: usize = 4096;
/// Bytes of NV data asked for per `TPM2_NV_Read`: at or under every TPM's
/// `TPM_PT_NV_BUFFER_MAX` (the PC Client profile's minimum is 512).
const NV_CHUNK: u16 = 512;
/// Largest NV index read (the HCL report is 2600 bytes).
const MAX_NV_SIZE: u16 = 8192;
/// How long a TCP TPM may take to answer one command.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_RS_PW: u32 = 0x4000_0009;
const TPM_RH_OWNER: u32 = 0x4000_0001;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_RSASSA: u16 = 0x0014;
/// TPM_ALG_SHA256.
pub const TPM_ALG_SHA256: u16 = 0x000B;
const SHA256_LEN: usize = 32;
/// PCRs 0 to 23: three bytes of selection bitmap.
const PCR_SELECT_BYTES: usize = 3;
const PCR_COUNT: u8 = 24;
/// The largest PCR selection bitmap read back (64 PCRs; TPMs have 24 or 32).
const MAX_PCR_SELECT_BYTES: usize = 8;

const TPM_CC_NV_READ: u32 = 0x0000_014E;
const TPM_CC_QUOTE: u32 = 0x0000_0158;
const TPM_CC_NV_READ_PUBLIC: u32 = 0x0000_0169;
const TPM_CC_PCR_READ: u32 = 0x0000_017E;

/// TPM_RC_YIELDED, TPM_RC_TESTING, TPM_RC_RETRY: the command was not started; send it again.
const RETRY_CODES: [u32; 3] = [0x908, 0x90A, 0x922];
const RETRY_ATTEMPTS: u32 = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// TPM_RC_HANDLE (format 1, without the handle/parameter number bits).
const TPM_RC_HANDLE: u32 = 0x08B;
/// Format-1 response codes carry this bit; the low 6 bits and bit 7 are the error.
const RC_FMT1: u32 = 0x080;

/// Where the TPM is: `tcp:HOST:PORT` (a swtpm server socket) or a device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmPath {
    Device(PathBuf),
    Tcp(String),
}

impl TpmPath {
    /// `tcp:HOST:PORT`, or anything else as a device path.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("tcp:") {
            Some(addr) => Self::Tcp(addr.to_owned()),
            None => Self::Device(PathBuf::from(s)),
        }
    }

    /// Whether there is anything to talk to: the device exists (a TCP TPM is always tried).
    #[must_use]
    pub fn present(&self) -> bool {
        match self {
            Self::Device(p) => p.exists(),
            Self::Tcp(_) => true,
        }
    }
}

impl Default for TpmPath {
    fn default() -> Self {
        Self::Device(PathBuf::from(DEFAULT_DEVICE))
    }
}

impl fmt::Display for TpmPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// A failed TPM command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The transport failed (open, write, read).
    #[error("{command}: {tpm}: {source}")]
    Io { command: &'static str, tpm: String, source: std::io::Error },
    /// The TPM refused the command.
    #[error("{command}: TPM response code {rc:#010x} ({})", rc_name(*.rc))]
    Rc { command: &'static str, rc: u32 },
    /// The response is not what the command returns.
    #[error("{command}: malformed response: {what}")]
    Malformed { command: &'static str, what: &'static str },
    /// The response is well formed but not usable (wrong algorithm, missing PCRs).
    #[error("{command}: {what}")]
    Unexpected { command: &'static str, what: String },
}

impl TpmError {
    /// Whether the TPM said the handle does not exist (an NV index or key not defined).
    #[must_use]
    pub fn is_missing_handle(&self) -> bool {
        matches!(self, Self::Rc { rc, .. } if rc & RC_FMT1 != 0 && rc & 0xBF == TPM_RC_HANDLE)
    }
}

/// A short name for the response codes the commands here can meet.
fn rc_name(rc: u32) -> &'static str {
    if rc & RC_FMT1 != 0 {
        return match rc & 0xBF {
            0x084 => "TPM_RC_VALUE",
            0x08B => "TPM_RC_HANDLE: not defined",
            0x08E => "TPM_RC_AUTH_FAIL",
            0x092 => "TPM_RC_SCHEME",
            0x095 => "TPM_RC_SIZE",
            0x09A => "TPM_RC_KEY",
            _ => "see TPM 2.0 Part 2, TPM_RC",
        };
    }
    match rc {
        0x100 => "TPM_RC_INITIALIZE: TPM2_Startup was not run",
        0x101 => "TPM_RC_FAILURE",
        0x143 => "TPM_RC_COMMAND_CODE",
        0x149 => "TPM_RC_NV_AUTHORIZATION",
        0x14A => "TPM_RC_NV_UNINITIALIZED: never written",
        0x14C => "TPM_RC_NV_LOCKED",
        0x14E => "TPM_RC_NV_RANGE",
        0x908 => "TPM_RC_YIELDED",
        0x90A => "TPM_RC_TESTING",
        0x922 => "TPM_RC_RETRY",
        _ => "see TPM 2.0 Part 2, TPM_RC",
    }
}

fn malformed(command: &'static str, what: &'static str) -> TpmError {
    TpmError::Malformed { command, what }
}

/// A bounds-checked big-endian cursor over a response.
struct Cursor<'a> {
    rest: &'a [u8],
    command: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(command: &'static str, bytes: &'a [u8]) -> Self {
        Self { rest: bytes, command }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmError> {
        if n > self.rest.len() {
            return Err(malformed(self.command, what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TpmError> {
        let bytes = self.take(N, what)?;
        bytes.try_into().map_err(|_| malformed(self.command, what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TpmError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TpmError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TpmError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A TPM2B: a u16 size, then that many bytes.
    fn tpm2b(&mut self, what: &'static str) -> Result<&'a [u8], TpmError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    fn end(&self, what: &'static str) -> Result<(), TpmError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed(self.command, what))
        }
    }
}

/// A command being marshalled: header, handles, an optional password session, parameters.
struct Command {
    code: u32,
    handles: Vec<u32>,
    password_session: bool,
    params: Vec<u8>,
}

impl Command {
    fn new(code: u32, handles: &[u32], password_session: bool) -> Self {
        Self { code, handles: handles.to_vec(), password_session, params: Vec::new() }
    }

    fn u16(mut self, v: u16) -> Self {
        self.params.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(mut self, v: &[u8]) -> Self {
        self.params.extend_from_slice(v);
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for h in &self.handles {
            body.extend_from_slice(&h.to_be_bytes());
        }
        if self.password_session {
            // authorizationSize, then TPMS_AUTH_COMMAND: TPM_RS_PW, an empty nonce,
            // attributes 0, an empty password.
            body.extend_from_slice(&9u32.to_be_bytes());
            body.extend_from_slice(&TPM_RS_PW.to_be_bytes());
            body.extend_from_slice(&[0, 0, 0, 0, 0]);
        }
        body.extend_from_slice(&self.params);
        let tag = if self.password_session { TPM_ST_SESSIONS } else { TPM_ST_NO_SESSIONS };
        let size = 10 + body.len();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Checks a response's header and returns its parameter area: the response code must be
/// success, the size must be the length, and with sessions the parameter size must fit (the
/// session area after it is not read: a password session returns nothing to check).
pub fn response_params<'a>(
    command: &'static str,
    sessions: bool,
    response: &'a [u8],
) -> Result<&'a [u8], TpmError> {
    let mut c = Cursor::new(command, response);
    let tag = c.u16("header tag")?;
    let size = c.u32("header size")?;
    let rc = c.u32("header response code")?;
    if usize::try_from(size).ok() != Some(response.len()) {
        return Err(malformed(command, "header size is not the response length"));
    }
    if rc != 0 {
        return Err(TpmError::Rc { command, rc });
    }
    let expected = if sessions { TPM_ST_SESSIONS } else { TPM_ST_NO_SESSIONS };
    if tag != expected {
        return Err(malformed(command, "response tag does not match the command's"));
    }
    if !sessions {
        return Ok(c.rest);
    }
    let n = c.u32("parameter size")?;
    let n = usize::try_from(n).map_err(|_| malformed(command, "parameter size"))?;
    c.take(n, "parameter size beyond the response")
}

/// The public area of an NV index (the parts used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvPublic {
    pub index: u32,
    pub attributes: u32,
    pub size: u16,
}

/// `TPM2_NV_ReadPublic`'s parameters: TPM2B_NV_PUBLIC, TPM2B_NAME.
pub fn parse_nv_read_public(params: &[u8]) -> Result<NvPublic, TpmError> {
    const CMD: &str = "TPM2_NV_ReadPublic";
    let mut c = Cursor::new(CMD, params);
    let mut public = Cursor::new(CMD, c.tpm2b("nvPublic")?);
    let index = public.u32("nvPublic.nvIndex")?;
    let _name_alg = public.u16("nvPublic.nameAlg")?;
    let attributes = public.u32("nvPublic.attributes")?;
    let _policy = public.tpm2b("nvPublic.authPolicy")?;
    let size = public.u16("nvPublic.dataSize")?;
    public.end("bytes after nvPublic.dataSize")?;
    let _name = c.tpm2b("nvName")?;
    c.end("bytes after nvName")?;
    Ok(NvPublic { index, attributes, size })
}

/// `TPM2_NV_Read`'s parameters: TPM2B_MAX_NV_BUFFER.
pub fn parse_nv_read(params: &[u8]) -> Result<&[u8], TpmError> {
    let mut c = Cursor::new("TPM2_NV_Read", params);
    let data = c.tpm2b("data")?;
    c.end("bytes after data")?;
    Ok(data)
}

/// What `TPM2_Quote` returns: the marshalled TPMS_ATTEST and the raw RSASSA signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
}

/// `TPM2_Quote`'s parameters: TPM2B_ATTEST, TPMT_SIGNATURE. Only RSASSA with SHA-256 is
/// accepted: that is what Azure's attestation key signs with and what a verifier checks.
pub fn parse_quote(params: &[u8]) -> Result<Quote, TpmError> {
    const CMD: &str = "TPM2_Quote";
    let mut c = Cursor::new(CMD, params);
    let message = c.tpm2b("quoted")?.to_vec();
    let sig_alg = c.u16("signature.sigAlg")?;
    let hash = c.u16("signature.hash")?;
    if (sig_alg, hash) != (TPM_ALG_RSASSA, TPM_ALG_SHA256) {
        return Err(TpmError::Unexpected {
            command: CMD,
            what: format!(
                "signature algorithm {sig_alg:#06x} hash {hash:#06x}, expected RSASSA (0x0014) \
                 with SHA-256 (0x000b)"
            ),
        });
    }
    let signature = c.tpm2b("signature.sig")?.to_vec();
    c.end("bytes after the signature")?;
    Ok(Quote { message, signature })
}

/// What one `TPM2_PCR_Read` returned: the SHA-256 PCR indices it read (ascending) and their
/// values in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValues {
    pub indices: Vec<u8>,
    pub values: Vec<[u8; SHA256_LEN]>,
}

/// `TPM2_PCR_Read`'s parameters: pcrUpdateCounter, TPML_PCR_SELECTION, TPML_DIGEST. Only a
/// SHA-256 bank (or none) may be in the selection; the digests must match it one for one.
pub fn parse_pcr_read(params: &[u8]) -> Result<PcrValues, TpmError> {
    const CMD: &str = "TPM2_PCR_Read";
    let mut c = Cursor::new(CMD, params);
    let _update_counter = c.u32("pcrUpdateCounter")?;
    let banks = c.u32("pcrSelectionOut.count")?;
    if banks > 1 {
        return Err(malformed(CMD, "more than the one PCR bank asked for"));
    }
    let mut indices = Vec::new();
    for _ in 0..banks {
        let hash = c.u16("pcrSelectionOut.hash")?;
        let n = c.u8("pcrSelectionOut.sizeofSelect")?;
        if usize::from(n) > MAX_PCR_SELECT_BYTES {
            return Err(malformed(CMD, "a PCR selection bitmap over 8 bytes"));
        }
        let bitmap = c.take(usize::from(n), "pcrSelectionOut.pcrSelect")?;
        if hash != TPM_ALG_SHA256 {
            return Err(malformed(CMD, "a PCR bank other than the SHA-256 one asked for"));
        }
        for (byte_index, byte) in (0..MAX_PCR_SELECT_BYTES as u8).zip(bitmap) {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    indices.push(byte_index * 8 + bit);
                }
            }
        }
    }
    let count = c.u32("pcrValues.count")?;
    if usize::try_from(count).ok() != Some(indices.len()) {
        return Err(malformed(CMD, "digest count is not the selection's PCR count"));
    }
    let mut values = Vec::with_capacity(indices.len());
    for _ in 0..count {
        let digest = c.tpm2b("pcrValues.digest")?;
        let value: [u8; SHA256_LEN] =
            digest.try_into().map_err(|_| malformed(CMD, "a SHA-256 PCR value not 32 bytes"))?;
        values.push(value);
    }
    c.end("bytes after pcrValues")?;
    Ok(PcrValues { indices, values })
}

/// A TPML_PCR_SELECTION of one SHA-256 bank with `pcrs` selected.
fn sha256_selection(pcrs: &[u8]) -> Vec<u8> {
    let mut bitmap = [0u8; PCR_SELECT_BYTES];
    for pcr in pcrs {
        if let Some(byte) = bitmap.get_mut(usize::from(pcr / 8)) {
            *byte |= 1 << (pcr % 8);
        }
    }
    let mut out = Vec::with_capacity(10);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    out.push(PCR_SELECT_BYTES as u8);
    out.extend_from_slice(&bitmap);
    out
}

enum Stream {
    Device(std::fs::File),
    Tcp(TcpStream),
}

/// An open connection to a TPM.
pub struct Tpm {
    stream: Stream,
    path: TpmPath,
}

impl fmt::Debug for Tpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tpm").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Tpm {
    /// Opens the device (read and write) or connects to the TCP TPM.
    pub fn open(path: &TpmPath) -> Result<Self, TpmError> {
        let io = |source| TpmError::Io { command: "open", tpm: path.to_string(), source };
        let stream = match path {
            TpmPath::Device(p) => Stream::Device(
                std::fs::OpenOptions::new().read(true).write(true).open(p).map_err(io)?,
            ),
            TpmPath::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str()).map_err(io)?;
                s.set_read_timeout(Some(TCP_TIMEOUT)).map_err(io)?;
                s.set_write_timeout(Some(TCP_TIMEOUT)).map_err(io)?;
                Stream::Tcp(s)
            }
        };
        Ok(Self { stream, path: path.clone() })
    }

    /// Sends one command and returns its whole response (header included, at most
    /// [`MAX_RESPONSE`] bytes).
    fn transact(&mut self, command: &'static str, cmd: &[u8]) -> Result<Vec<u8>, TpmError> {
        let tpm = self.path.to_string();
        let io = |source| TpmError::Io { command, tpm: tpm.clone(), source };
        match &mut self.stream {
            Stream::Device(f) => {
                // The kernel takes a whole command per write and hands back a whole response
                // per read.
                f.write_all(cmd).map_err(io)?;
                let mut buf = vec![0u8; MAX_RESPONSE];
                let n = f.read(&mut buf).map_err(io)?;
                buf.truncate(n);
                Ok(buf)
            }
            Stream::Tcp(s) => {
                s.write_all(cmd).map_err(io)?;
                let mut header = [0u8; 10];
                s.read_exact(&mut header).map_err(io)?;
                let mut h = Cursor::new(command, &header);
                let _tag = h.u16("header tag")?;
                let size = usize::try_from(h.u32("header size")?).unwrap_or(usize::MAX);
                if !(header.len()..=MAX_RESPONSE).contains(&size) {
                    return Err(malformed(command, "response size out of range"));
                }
                let mut out = header.to_vec();
                out.resize(size, 0);
                s.read_exact(out.get_mut(header.len()..).unwrap_or_default()).map_err(io)?;
                Ok(out)
            }
        }
    }

    /// Runs `cmd`, sending it again while the TPM answers that it could not start it yet
    /// (`TPM_RC_RETRY`, `TPM_RC_YIELDED`, `TPM_RC_TESTING`), as TSS stacks do.
    fn run(&mut self, name: &'static str, cmd: &Command) -> Result<Vec<u8>, TpmError> {
        let bytes = cmd.to_bytes();
        let mut attempt = 0;
        loop {
            let response = self.transact(name, &bytes)?;
            match response_params(name, cmd.password_session, &response) {
                Ok(params) => return Ok(params.to_vec()),
                Err(TpmError::Rc { rc, .. })
                    if RETRY_CODES.contains(&rc) && attempt < RETRY_ATTEMPTS =>
                {
                    attempt += 1;
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `TPM2_NV_ReadPublic` of `index`.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmError> {
        const CMD: &str = "TPM2_NV_ReadPublic";
        let params = self.run(CMD, &Command::new(TPM_CC_NV_READ_PUBLIC, &[index], false))?;
        let public = parse_nv_read_public(&params)?;
        if public.index != index {
            return Err(malformed(CMD, "the public area names another index"));
        }
        Ok(public)
    }

    /// The whole of NV index `index`, read with owner authorization in chunks.
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        const CMD: &str = "TPM2_NV_Read";
        let size = self.nv_read_public(index)?.size;
        if size > MAX_NV_SIZE {
            return Err(TpmError::Unexpected {
                command: CMD,
                what: format!("NV index {index:#010x} holds {size} bytes, over {MAX_NV_SIZE}"),
            });
        }
        let mut out = Vec::with_capacity(usize::from(size));
        let mut offset = 0u16;
        while offset < size {
            let n = NV_CHUNK.min(size - offset);
            let cmd = Command::new(TPM_CC_NV_READ, &[TPM_RH_OWNER, index], true).u16(n).u16(offset);
            let params = self.run(CMD, &cmd)?;
            let data = parse_nv_read(&params)?;
            if data.len() != usize::from(n) {
                return Err(malformed(CMD, "returned another length than asked for"));
            }
            out.extend_from_slice(data);
            offset += n;
        }
        Ok(out)
    }

    /// `TPM2_Quote` by the persistent key `key` over SHA-256 PCRs `pcrs`, with
    /// `qualifying_data` as extraData and the key's own signing scheme.
    pub fn quote(
        &mut self,
        key: u32,
        qualifying_data: &[u8],
        pcrs: &[u8],
    ) -> Result<Quote, TpmError> {
        const CMD: &str = "TPM2_Quote";
        let len = u16::try_from(qualifying_data.len())
            .map_err(|_| malformed(CMD, "qualifying data too long"))?;
        let cmd = Command::new(TPM_CC_QUOTE, &[key], true)
            .u16(len)
            .bytes(qualifying_data)
            .u16(TPM_ALG_NULL)
            .bytes(&sha256_selection(pcrs));
        parse_quote(&self.run(CMD, &cmd)?)
    }

    /// The SHA-256 values of PCRs 0 to 23, in index order (`TPM2_PCR_Read` returns at most
    /// eight per call, so this asks until every one has come back).
    pub fn pcr_read_all_sha256(&mut self) -> Result<Vec<[u8; SHA256_LEN]>, TpmError> {
        const CMD: &str = "TPM2_PCR_Read";
        let mut values: Vec<Option<[u8; SHA256_LEN]>> = vec![None; usize::from(PCR_COUNT)];
        loop {
            let wanted: Vec<u8> = (0..PCR_COUNT)
                .filter(|i| values.get(usize::from(*i)).is_some_and(Option::is_none))
                .collect();
            if wanted.is_empty() {
                break;
            }
            let cmd = Command::new(TPM_CC_PCR_READ, &[], false).bytes(&sha256_selection(&wanted));
            let read = parse_pcr_read(&self.run(CMD, &cmd)?)?;
            if read.indices.is_empty() {
                return Err(TpmError::Unexpected {
                    command: CMD,
                    what: "the TPM returned no SHA-256 PCRs (is the SHA-256 bank allocated?)"
                        .into(),
                });
            }
            for (index, value) in read.indices.iter().zip(read.values) {
                match values.get_mut(usize::from(*index)) {
                    Some(slot @ None) => *slot = Some(value),
                    _ => return Err(malformed(CMD, "a PCR that was not asked for")),
                }
            }
        }
        Ok(values.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(tag: u16, rc: u32, body: &[u8]) -> Vec<u8> {
        let mut out = tag.to_be_bytes().to_vec();
        out.extend_from_slice(&u32::try_from(10 + body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&rc.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn marshals_nv_read_with_a_password_session_as_part_3_lays_it_out() {
        let cmd =
            Command::new(TPM_CC_NV_READ, &[TPM_RH_OWNER, 0x0140_0001], true).u16(512).u16(1024);
        let bytes = cmd.to_bytes();
        assert_eq!(
            hex::encode(bytes),
            "8002 00000023 0000014e 40000001 01400001 00000009 40000009 0000 00 0000 0200 0400"
                .replace(' ', "")
        );
    }

    #[test]
    fn response_header_errors_name_the_command_and_code() {
        let r = response(TPM_ST_NO_SESSIONS, 0x18B, &[]);
        let e = response_params("TPM2_NV_ReadPublic", false, &r).unwrap_err();
        assert!(e.is_missing_handle());
        assert_eq!(
            e.to_string(),
            "TPM2_NV_ReadPublic: TPM response code 0x0000018b (TPM_RC_HANDLE: not defined)"
        );
        let mut r = response(TPM_ST_NO_SESSIONS, 0, &[1, 2]);
        r.push(0);
        assert!(matches!(
            response_params("TPM2_PCR_Read", false, &r),
            Err(TpmError::Malformed { what: "header size is not the response length", .. })
        ));
        let r = response(TPM_ST_SESSIONS, 0, &[0, 0, 0, 9, 1]);
        assert!(response_params("TPM2_Quote", true, &r).is_err());
    }

    #[test]
    fn every_truncated_prefix_of_a_pcr_read_fails() {
        let mut p = vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0x0B, 3, 0b0000_0101, 0, 0, 0, 0, 0, 2];
        for v in [1u8, 2] {
            p.extend_from_slice(&[0, 32]);
            p.extend_from_slice(&[v; 32]);
        }
        let read = parse_pcr_read(&p).unwrap();
        assert_eq!(read.indices, vec![0, 2]);
        assert_eq!(read.values, vec![[1; 32], [2; 32]]);
        for n in 0..p.len() {
            assert!(parse_pcr_read(&p[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn an_oversized_pcr_selection_bitmap_is_refused_not_walked() {
        let mut p = vec![0, 0, 0, 7, 0, 0, 0, 1, 0, 0x0B, 255];
        p.extend_from_slice(&[0xff; 255]);
        p.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            parse_pcr_read(&p),
            Err(TpmError::Malformed { what: "a PCR selection bitmap over 8 bytes", .. })
        ));
    }

    #[test]
    fn quote_with_another_signature_scheme_is_refused() {
        let mut p = vec![0, 2, 0xAA, 0xBB, 0, 0x16, 0, 0x0B, 0, 1, 0];
        let e = parse_quote(&p).unwrap_err().to_string();
        assert!(e.starts_with("TPM2_Quote: signature algorithm 0x0016"), "{e}");
        p[5] = 0x14;
        assert_eq!(
            parse_quote(&p).unwrap(),
            Quote { message: vec![0xAA, 0xBB], signature: vec![0] }
        );
    }
}
