//! Keylatch's tamper-evident audit log, independent of storage and transport.
pub mod auditor;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod query;
pub mod retention;
pub mod schedule;
