//! The agent's one error type and the documented exit codes it maps to. Messages are one line,
//! carry the broker's `type` and `detail` when there is one, and never contain key material.

use keylatch_wire::ErrorBody;

/// Process exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Ok = 0,
    /// The broker's policy denied the resource (403) or it does not exist (404).
    Denied = 1,
    /// The broker refused the attestation or the protocol exchange.
    AttestationRefused = 2,
    /// The broker stayed unreachable (connection errors, 5xx) until the deadline.
    Unreachable = 3,
    /// Local failure: no TEE, bad arguments, evidence collection, cryptsetup, output file.
    Local = 4,
}

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No TEE was found and no simulator was asked for. Never falls back to unsigned evidence.
    #[error("no TEE: {0}")]
    NoTee(String),
    /// Collecting evidence from the TEE failed.
    #[error("evidence: {0}")]
    Evidence(String),
    /// A local problem: arguments, files, configuration.
    #[error("{0}")]
    Local(String),
    /// The broker denied the resource.
    #[error("{what}: {}", broker(*.status, .body.as_ref()))]
    Denied { what: &'static str, status: u16, body: Option<ErrorBody> },
    /// The broker refused the handshake or the evidence.
    #[error("{what}: {}", broker(*.status, .body.as_ref()))]
    Refused { what: &'static str, status: u16, body: Option<ErrorBody> },
    /// The broker answered something this client cannot use.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A transient failure: connection error or 5xx. Retried until the deadline.
    #[error("{what}: {reason}")]
    Transient { what: &'static str, reason: String },
    /// The deadline passed while the broker was unreachable; `last` is the last transient error.
    #[error("broker unreachable within {seconds} s: {last}")]
    Unreachable { seconds: u64, last: String },
    /// `cryptsetup` failed or could not be run.
    #[error("cryptsetup: {0}")]
    Cryptsetup(String),
}

fn broker(status: u16, body: Option<&ErrorBody>) -> String {
    match body {
        Some(b) => format!("{}: {}", b.error_type, b.detail),
        None => format!("HTTP {status} without an error body"),
    }
}

impl AgentError {
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Denied { .. } => ExitCode::Denied,
            Self::Refused { .. } | Self::Protocol(_) => ExitCode::AttestationRefused,
            Self::Transient { .. } | Self::Unreachable { .. } => ExitCode::Unreachable,
            Self::NoTee(_) | Self::Evidence(_) | Self::Local(_) | Self::Cryptsetup(_) => {
                ExitCode::Local
            }
        }
    }

    /// Whether a retry may help (connection errors and 5xx).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

impl From<keylatch_wire::WireError> for AgentError {
    fn from(e: keylatch_wire::WireError) -> Self {
        Self::Protocol(e.to_string())
    }
}
