//! TDX.
