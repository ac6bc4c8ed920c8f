//! Who is calling the admin API: [`Role`]s (separation of duties), the authenticated
//! [`Principal`] ([`authenticate`]), and bearer tokens — minted here (32 random bytes, shown
//! once), stored only as their SHA-256, looked up by that hash and compared (hash against hash)
//! in constant time, revocable, with an optional expiry.
//!
//! [`authenticate`] answers 401 `admin-unauthenticated` for a missing, malformed, unknown,
//! revoked or expired token and records the refusal through [`crate::decision::record_admin`];
//! operations then call [`Principal::require`] (403 `forbidden` for the wrong role) and
//! [`Principal::may_access`] (resource-path scope).

use std::fmt;

use base64::Engine as _;
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::decision::{record_admin, AdminRecord};
use crate::error::{ApiError, ErrorKind};
use crate::state::Broker;
use crate::store::AdminToken;

/// What a principal may do. Each role owns one duty; none includes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Admin tokens and broker configuration.
    Admin,
    /// Resources (key material) and their release policies.
    KeyCustodian,
    /// Reference-value bundles.
    PolicyAuthor,
    /// Read-only: audit log, resource and policy metadata, bundle list.
    Auditor,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Admin, Role::KeyCustodian, Role::PolicyAuthor, Role::Auditor];

    /// The stable name (`admin`, `key-custodian`, `policy-author`, `auditor`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::KeyCustodian => "key-custodian",
            Self::PolicyAuthor => "policy-author",
            Self::Auditor => "auditor",
        }
    }

    /// Whether tokens of this role may be scoped to resource-path prefixes.
    #[must_use]
    pub fn scopable(self) -> bool {
        matches!(self, Self::KeyCustodian | Self::Auditor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown role {s:?} (admin, key-custodian, policy-author, auditor)")
        })
    }
}

/// An authenticated caller of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token id (`tok_...`), never the token.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Resource-path prefixes this principal is confined to; empty = everything.
    pub prefixes: Vec<String>,
}

impl Principal {
    /// 403 (ErrorKind for wrong role) unless self.role is one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("role {} may not do this (needs {})", self.role, wanted.join(" or ")),
        ))
    }

    /// Whether a resource path is inside this principal's prefixes (no prefixes = everything).
    /// A prefix ending in `/` matches paths starting with it; a prefix without one matches
    /// that exact path and paths below it (`repo` matches `repo/x`, never `repo2/x`).
    #[must_use]
    pub fn may_access(&self, path: &str) -> bool {
        self.prefixes.is_empty()
            || self.prefixes.iter().any(|p| {
                if p.ends_with('/') {
                    path.starts_with(p.as_str())
                } else {
                    path == p
                        || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/'))
                }
            })
    }

    /// 403 `forbidden` unless [`Principal::may_access`] `path`.
    pub fn require_path(&self, path: &str) -> Result<(), ApiError> {
        if self.may_access(path) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Forbidden,
                format!("{path} is outside this token's prefixes"),
            ))
        }
    }
}

/// The prefix every admin token starts with (easy to spot in leaked-secret scanners).
pub const TOKEN_PREFIX: &str = "klt_";
/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// A freshly minted token: the secret (shown once) and its stored form.
#[derive(Debug)]
pub struct NewToken {
    /// `klt_` + unpadded base64url of 32 random bytes. Zeroized on drop.
    pub secret: Zeroizing<String>,
    pub record: AdminToken,
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    pub prefixes: Vec<String>,
    /// Days until expiry; `None` = no expiry.
    pub expires_in_days: Option<u32>,
    /// Who asked (a principal name, or `cli`).
    pub created_by: String,
}

/// Mints a token for `req` at `now` (Unix seconds). Does not store it.
pub fn mint(req: &TokenRequest, now: i64) -> Result<NewToken, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "token name must be 1-128 printable characters",
        ));
    }
    if !req.prefixes.is_empty() && !req.role.scopable() {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            format!(
                "role {} cannot be scoped to prefixes (only key-custodian and auditor)",
                req.role
            ),
        ));
    }
    for p in &req.prefixes {
        if p.is_empty() || p.starts_with('/') || p.contains("..") || p.chars().any(char::is_control)
        {
            return Err(ApiError::new(ErrorKind::BadRequest, format!("bad prefix {p:?}")));
        }
    }
    let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
    OsRng.fill_bytes(raw.as_mut());
    let secret = Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref())
    ));
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    let expires =
        req.expires_in_days.map(|d| now.saturating_add(i64::from(d).saturating_mul(86_400)));
    Ok(NewToken {
        record: AdminToken {
            id: format!("tok_{}", hex::encode(id)),
            hash: token_hash(&secret),
            name: name.to_owned(),
            role: req.role.as_str().to_owned(),
            prefixes: req.prefixes.clone(),
            created: now,
            expires,
            revoked: None,
            created_by: req.created_by.clone(),
        },
        secret,
    })
}

/// Hex SHA-256 of a token: what the store holds and is searched by.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equality of two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a presented token against the store at `now`: the principal, or why not (401).
pub async fn authenticate_token(
    state: &Broker,
    token: &str,
    now: i64,
) -> Result<Principal, ApiError> {
    let unauth = |d: &str| ApiError::new(ErrorKind::AdminUnauthenticated, d);
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Err(unauth("not an admin token"));
    }
    let hash = token_hash(token);
    let found =
        state.store.admin_token_by_hash(&hash).await.map_err(|e| crate::error::store_error(&e))?;
    // The lookup is by hash; the comparison that decides is of hashes, in constant time, so
    // neither timing nor a collation quirk of the database can stand in for equality.
    let Some(record) = found.filter(|r| constant_time_eq(r.hash.as_bytes(), hash.as_bytes()))
    else {
        return Err(unauth("unknown token"));
    };
    if record.revoked.is_some() {
        return Err(unauth("token revoked"));
    }
    if record.expires.is_some_and(|e| now >= e) {
        return Err(unauth("token expired"));
    }
    let role =
        record.role.parse::<Role>().map_err(|e| ApiError::internal("admin token role", &e))?;
    Ok(Principal { id: record.id, name: record.name, role, prefixes: record.prefixes })
}

/// What an admin API request presented as its credentials.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// No `Authorization` header.
    Nothing,
    /// An `Authorization` header of another scheme than Bearer.
    NotBearer,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
}

/// Authenticates an admin API request to `method path` from `client` at `now` (Unix seconds):
/// the principal, or 401 `admin-unauthenticated`, in which case the refusal is recorded
/// (principal `-`, operation `<METHOD> authenticate`).
pub async fn authenticate(
    state: &Broker,
    presented: Presented<'_>,
    method: &str,
    path: &str,
    client: Option<&str>,
    now: i64,
) -> Result<Principal, ApiError> {
    let outcome = match presented {
        Presented::Nothing => {
            Err(ApiError::new(ErrorKind::AdminUnauthenticated, "no Authorization header"))
        }
        Presented::NotBearer => Err(ApiError::new(
            ErrorKind::AdminUnauthenticated,
            "Authorization is not a Bearer token",
        )),
        Presented::Bearer(token) => authenticate_token(state, token, now).await,
    };
    match outcome {
        Ok(p) => Ok(p),
        Err(err) => {
            let operation = format!("{method} authenticate");
            record_admin(
                &state.audit,
                &AdminRecord {
                    principal: "-",
                    role: "-",
                    operation: &operation,
                    target: Some(path),
                    version: None,
                    allowed: false,
                    outcome: err.kind.type_id(),
                    detail: &err.detail,
                    client,
                },
            )
            .await?;
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // reason: tests

    use super::*;

    fn principal(prefixes: &[&str]) -> Principal {
        Principal {
            id: "tok_1".into(),
            name: "t".into(),
            role: Role::KeyCustodian,
            prefixes: prefixes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(principal(&[]).may_access("anything/at/all"));
        let p = principal(&["tenant-a/"]);
        assert!(p.may_access("tenant-a/disk/vm1"));
        assert!(!p.may_access("tenant-ab/disk/vm1"));
        let p = principal(&["tenant-a"]);
        assert!(p.may_access("tenant-a/disk/vm1"));
        assert!(!p.may_access("tenant-ab/disk/vm1"));
    }

    #[test]
    fn wrong_role_is_forbidden() {
        let p = principal(&[]);
        assert_eq!(p.require(&[Role::Admin]).unwrap_err().kind, ErrorKind::Forbidden);
        assert!(p.require(&[Role::Admin, Role::KeyCustodian]).is_ok());
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
    }

    #[test]
    fn minted_tokens_hash_to_their_record() {
        let req = TokenRequest {
            name: "n".into(),
            role: Role::Auditor,
            prefixes: vec!["a/".into()],
            expires_in_days: Some(1),
            created_by: "cli".into(),
        };
        let t = mint(&req, 100).unwrap();
        assert!(t.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(t.secret.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(t.record.hash, token_hash(&t.secret));
        assert_eq!(t.record.expires, Some(100 + 86_400));
        let admin = TokenRequest { role: Role::Admin, ..req };
        assert_eq!(mint(&admin, 0).unwrap_err().kind, ErrorKind::BadRequest);
    }
}
