//! Python's `jwcrypto`, the independent JOSE implementation that the JWE tests of
//! `keylatch-wire` and `keylatch-server` check this project's JWEs against (test-only: the
//! product uses no non-Rust crypto). Found, installed or skipped the same way for both.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Decrypts `{"pem": PKCS#8 private key, "jwe": flattened JWE}` from stdin; prints the payload
/// as hex.
pub const DECRYPT: &str = r#"
import sys, json
from jwcrypto import jwk, jwe
d = json.load(sys.stdin)
key = jwk.JWK.from_pem(d["pem"].encode())
t = jwe.JWE()
t.deserialize(json.dumps(d["jwe"]), key=key)
print(t.payload.hex())
"#;

/// Runs `script` with `python3 -c`, `stdin` on its standard input: its standard output, or its
/// standard error when it fails.
///
/// # Errors
/// When python3 cannot be run or the script fails.
pub fn python(script: &str, stdin: &str) -> Result<String, String> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().ok_or("no stdin")?.write_all(stdin.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        String::from_utf8(out.stdout).map_err(|e| e.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Whether `jwcrypto` can be imported, after trying `pip install` once; when it cannot, prints
/// `skipped: python3 jwcrypto not available and could not be installed`, so that the caller's
/// test returns early.
#[must_use]
pub fn available() -> bool {
    if python("import jwcrypto", "").is_ok() {
        return true;
    }
    // The outcome is the import below, whatever pip says.
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "jwcrypto"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if python("import jwcrypto", "").is_ok() {
        return true;
    }
    println!("skipped: python3 jwcrypto not available and could not be installed");
    false
}
