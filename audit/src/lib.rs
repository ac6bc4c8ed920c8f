//! Keylatch's tamper-evident audit log, independent of storage and transport.
pub mod entry;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod checkpoint;
pub mod schedule;
pub mod export;
pub mod auditor;
pub mod query;
pub mod retention;
