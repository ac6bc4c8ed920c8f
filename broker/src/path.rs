//! Resource paths, `<repo>/<type>/<tag>` as KBS names them: the one syntax check every caller
//! (protocol, admin operations, custody, commands) applies before a path reaches the store.

use crate::error::{ApiError, ErrorKind};

/// Checks one path segment: `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*`, and never `..` anywhere.
#[must_use]
pub fn valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    first
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.contains("..")
}

/// Validates `repo/type/tag`.
pub fn parse_path(path: &str) -> Result<String, ApiError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() == 3 && parts.iter().all(|p| valid_segment(p)) {
        Ok(parts.join("/"))
    } else {
        Err(ApiError::new(
            ErrorKind::BadRequest,
            "resource path must be <repo>/<type>/<tag>, each [A-Za-z0-9_-][A-Za-z0-9_.-]* without ..",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kbs_segments_and_refuses_traversal() {
        assert_eq!(parse_path("default/key/vm-1.v2").unwrap(), "default/key/vm-1.v2");
        for bad in
            ["a/b", "a/b/c/d", "a/../c", "a/b/..", "a/b/.c", "a/b/x..y", "a//c", "a/b/c d", ""]
        {
            assert_eq!(parse_path(bad).unwrap_err().kind, ErrorKind::BadRequest, "{bad}");
        }
    }
}
