//! Keylatch's tamper-evident audit log, independent of storage and transport.
pub mod entry;
pub mod jcs;
pub mod merkle;
pub mod note;
