//! `keylatch-agent`: the small program in a confidential VM's initramfs that proves what the VM
//! is and gets its disk key, or fails clearly.
//!
//! - [`evidence`]: where hardware evidence comes from (configfs-tsm, `/dev/sev-guest`, an
//!   Azure vTPM, the simulator), behind one [`evidence::EvidenceSource`] trait, and
//!   [`evidence::detect`];
//! - [`config`]: the settings file `/etc/keylatch/agent.toml`, env and flag overrides;
//! - [`client`]: the KBS 0.4.0 client (auth → attest → resource, bearer-token reuse, one
//!   re-handshake per 401), [`fetch_resource`] for one-shot use;
//! - [`http`]: HTTPS with only the broker's CA trusted (rustls, aws-lc-rs provider, no OpenSSL);
//! - [`retry`]: exponential backoff with jitter inside a deadline;
//! - [`sink`]: where a released key goes (stdout, a new 0600 file, `cryptsetup open` on stdin);
//! - [`fuzzing`]: entry points for the fuzz targets in `fuzz/`.
//!
//! Key material stays in `Zeroizing` buffers, never in argv, files other than the one the
//! operator names, logs or error messages.

pub mod client;
pub mod config;
pub mod error;
pub mod evidence;
pub mod fuzzing;
pub mod http;
pub mod retry;
pub mod sink;

pub use client::{fetch_resource, AgentConfig, Client, ResourcePath};
pub use error::{AgentError, ExitCode};
