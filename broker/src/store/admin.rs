//! The admin API's share of the store, [`AdminStore`] (a supertrait of [`super::Store`]): admin
//! bearer tokens (their hashes only), published reference-value bundles with their history, and
//! the resource and policy metadata queries the admin API lists. Tables: migration 0002.

use super::StoreFuture;

/// One admin token as stored: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// `tok_` + 16 hex digits; public, names the token in lists and revocation.
    pub id: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub name: String,
    /// `admin`, `key-custodian`, `policy-author`, `auditor`.
    pub role: String,
    /// Resource-path prefixes; empty = all.
    pub prefixes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    /// The principal name that created it (`cli` for `keylatch token create`).
    pub created_by: String,
}

/// One accepted version of a reference-value bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBundle {
    pub name: String,
    pub version: u64,
    /// The COSE_Sign bytes as published.
    pub signed: Vec<u8>,
    /// Hex SHA-256 of the canonical payload.
    pub digest: String,
    /// The bundle's own expiry, Unix seconds.
    pub expires: i64,
    /// Who published it (principal name, or `config` for files imported at start).
    pub publisher: String,
    /// Unix seconds.
    pub published: i64,
}

/// Metadata of one stored resource version (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceVersionMeta {
    pub path: String,
    pub version: u64,
    pub enabled: bool,
    pub created: i64,
}

/// Metadata of one stored policy version (without its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionMeta {
    pub path: String,
    pub version: u64,
    pub digest: String,
    pub created: i64,
}

/// Store operations of the admin API.
pub trait AdminStore {
    /// Inserts a token; `Conflict` if its id or hash exists.
    fn create_admin_token<'a>(&'a self, token: &'a AdminToken) -> StoreFuture<'a, ()>;

    /// The token whose hash is `hash`.
    fn admin_token_by_hash<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<AdminToken>>;

    /// Every token, oldest first.
    fn list_admin_tokens(&self) -> StoreFuture<'_, Vec<AdminToken>>;

    /// Marks token `id` revoked at `now`; `false` when no unrevoked token has that id.
    fn revoke_admin_token<'a>(&'a self, id: &'a str, now: i64) -> StoreFuture<'a, bool>;

    /// Inserts an accepted bundle version; `Conflict` if `(name, version)` exists.
    fn put_bundle<'a>(&'a self, bundle: &'a StoredBundle) -> StoreFuture<'a, ()>;

    /// Every stored version of `name`, newest first.
    fn bundle_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<StoredBundle>>;

    /// The newest version of every stored bundle name.
    fn current_bundles(&self) -> StoreFuture<'_, Vec<StoredBundle>>;

    /// Every resource version's metadata, by path then version.
    fn list_resource_versions(&self) -> StoreFuture<'_, Vec<ResourceVersionMeta>>;

    /// Every policy version's metadata, by path then version.
    fn list_policy_versions(&self) -> StoreFuture<'_, Vec<PolicyVersionMeta>>;

    /// One policy version (`None` = the newest).
    fn get_policy_version<'a>(
        &'a self,
        path: &'a str,
        version: Option<u64>,
    ) -> StoreFuture<'a, Option<super::StoredPolicy>>;
}
