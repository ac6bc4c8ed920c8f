//! The stored side of resource lifecycle: a resource's [`ResourceState`], its cryptoperiod
//! ([`ResourceLifecycle`]), and what a new version changes ([`LifecycleUpdate`]). The rules
//! (who may do what, in which state) live in `crate::custody`; the store only makes each change
//! atomic and refuses to touch a destroyed resource.

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceState {
    /// Released to guests whose evidence its policy allows.
    Active,
    /// Never released until enabled again.
    Disabled,
    /// Every version removed; final.
    Destroyed,
}

impl ResourceState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Destroyed => "destroyed",
        }
    }

    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Active, Self::Disabled, Self::Destroyed].into_iter().find(|v| v.as_str() == s)
    }
}

/// One resource's lifecycle row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceLifecycle {
    pub path: String,
    pub state: ResourceState,
    /// Unix seconds by which the current version should be rotated.
    pub rotate_by: Option<i64>,
    /// When set, every new version gets `rotate_by = created + cryptoperiod_days`.
    pub cryptoperiod_days: Option<u32>,
    /// Unix seconds: first version, last change, destruction.
    pub created: i64,
    pub updated: i64,
    pub destroyed: Option<i64>,
}

/// The cryptoperiod a new version (or `set_rotate_by`) leaves on the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LifecycleUpdate {
    pub rotate_by: Option<i64>,
    pub cryptoperiod_days: Option<u32>,
}
