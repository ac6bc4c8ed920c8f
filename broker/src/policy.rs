//! Release policies: which attested guests may receive a resource. Deny by default: a policy
//! allows when at least one of its `rules` holds, and a rule holds when every condition in it
//! holds:
//!
//! - `tees`: the evidence's TEE is listed (`snp`, `tdx`, `az-snp-vtpm`, `az-tdx-vtpm`; the
//!   unsigned `sample` only when named);
//! - `allow_simulated` (default false): simulated evidence needs it;
//! - `allow_debug` (default false): a debug guest (`snp.policy.debug` or
//!   `tdx.td_attributes.debug`) needs it — the only way to release to a debug guest;
//! - `bundles`: every named reference-value bundle appraised the evidence as accepted;
//! - `claims`: constraints on claim paths (`snp.reported_tcb.microcode`, `tdx.rtmr[2]`), each
//!   with at least one of `equals`, `in`, `all_in`, `min`, `max`. `all_in` is for list claims:
//!   every element must be listed (`tdx.advisory_ids` `all_in ["INTEL-SA-00615"]` allows those
//!   advisories and no others; an empty claim list passes).
//!
//! A denial lists why each rule failed. A policy's digest is SHA-256 over its canonical JSON
//! (RFC 8785), so the same policy written in TOML or JSON has one digest.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A release policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// One way to be allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A label for denials and audit; defaults to `rule <n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tees: Vec<String>,
    #[serde(default)]
    pub allow_simulated: bool,
    #[serde(default)]
    pub allow_debug: bool,
    #[serde(default)]
    pub bundles: Vec<String>,
    #[serde(default)]
    pub claims: Vec<ClaimConstraint>,
}

/// A constraint on one claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimConstraint {
    /// Dotted path into the evidence claims; `[i]` indexes arrays.
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The claim is a list and every element of it is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_in: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// A policy that does not parse or makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("release policy: {0}")]
pub struct PolicyError(pub String);

/// The outcome of evaluating a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the named rule.
    Allow { rule: String },
    /// Denied; one reason line per rule.
    Deny { reasons: Vec<String> },
}

/// What the policy is evaluated over: the verified token's claims.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Normalized evidence claims (`verifier::Claims` as JSON).
    pub evidence: &'a Value,
    /// The `appraisals` array of the token.
    pub appraisals: &'a Value,
}

impl Policy {
    /// Parses JSON or TOML (JSON when the text starts with `{`).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PolicyError(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?
        };
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.tees.is_empty() {
                return Err(PolicyError(format!("rule {}: tees is empty", i + 1)));
            }
            if let Some(t) = rule.tees.iter().find(|t| verifier::Tee::from_name(t).is_none()) {
                return Err(PolicyError(format!("rule {}: unknown tee {t:?}", i + 1)));
            }
            for c in &rule.claims {
                let set = [
                    c.equals.is_some(),
                    c.one_of.is_some(),
                    c.all_in.is_some(),
                    c.min.is_some(),
                    c.max.is_some(),
                ];
                if set.iter().filter(|s| **s).count() == 0 {
                    return Err(PolicyError(format!(
                        "rule {}: claim {:?} needs equals, in, all_in, min or max",
                        i + 1,
                        c.claim
                    )));
                }
            }
        }
        Ok(())
    }

    /// Canonical JSON (RFC 8785) of the policy: what is stored and digested.
    pub fn canonical_json(&self) -> Result<String, PolicyError> {
        let v = serde_json::to_value(self).map_err(|e| PolicyError(e.to_string()))?;
        keylatch_wire::jcs::canonicalize(&v).map_err(|e| PolicyError(e.to_string()))
    }

    /// Hex SHA-256 of [`Policy::canonical_json`].
    pub fn digest(&self) -> Result<String, PolicyError> {
        Ok(hex::encode(Sha256::digest(self.canonical_json()?.as_bytes())))
    }

    /// Evaluates the policy; deny unless a rule holds.
    #[must_use]
    pub fn evaluate(&self, subject: Subject<'_>) -> Decision {
        if self.rules.is_empty() {
            return Decision::Deny { reasons: vec!["policy has no rules".into()] };
        }
        let mut reasons = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let name = rule.name.clone().unwrap_or_else(|| format!("rule {}", i + 1));
            match rule.check(subject) {
                Ok(()) => return Decision::Allow { rule: name },
                Err(why) => reasons.push(format!("{name}: {}", why.join("; "))),
            }
        }
        Decision::Deny { reasons }
    }
}

impl Rule {
    /// Every failed condition of this rule, or `Ok`.
    fn check(&self, s: Subject<'_>) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        let tee = s.evidence.get("tee").and_then(Value::as_str).unwrap_or("");
        if !self.tees.iter().any(|t| t == tee) {
            why.push(format!("tee {tee} not in {:?}", self.tees));
        }
        let simulated = s.evidence.get("simulated").and_then(Value::as_bool).unwrap_or(true);
        if simulated && !self.allow_simulated {
            why.push("evidence is simulated and the rule does not allow_simulated".into());
        }
        if is_debug(s.evidence) && !self.allow_debug {
            why.push("guest runs in debug mode and the rule does not allow_debug".into());
        }
        for name in &self.bundles {
            why.extend(bundle_failure(s.appraisals, name));
        }
        for c in &self.claims {
            if let Err(e) = c.check(s.evidence) {
                why.push(e);
            }
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }
}

/// Whether the claims say the guest is debuggable (memory readable by the host).
#[must_use]
pub fn is_debug(evidence: &Value) -> bool {
    let snp = lookup(evidence, "snp.policy.debug").and_then(Value::as_bool);
    let tdx = lookup(evidence, "tdx.td_attributes.debug").and_then(Value::as_bool);
    snp == Some(true) || tdx == Some(true)
}

fn bundle_failure(appraisals: &Value, name: &str) -> Option<String> {
    let found = appraisals.as_array().and_then(|list| {
        list.iter().find(|a| a.get("bundle").and_then(Value::as_str) == Some(name))
    });
    let Some(a) = found else {
        return Some(format!("bundle {name:?} not appraised (not configured)"));
    };
    let mismatches = a.get("mismatches").and_then(Value::as_array).cloned().unwrap_or_default();
    if mismatches.is_empty() {
        return None;
    }
    let list: Vec<String> = mismatches
        .iter()
        .map(|m| {
            let f = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            format!("{} expected {} got {}", f("field"), f("expected"), f("actual"))
        })
        .collect();
    Some(format!("bundle {name:?} mismatches: {}", list.join(", ")))
}

impl ClaimConstraint {
    fn check(&self, evidence: &Value) -> Result<(), String> {
        let Some(actual) = lookup(evidence, &self.claim) else {
            return Err(format!("claim {} absent", self.claim));
        };
        let show = |v: &Value| v.to_string();
        if let Some(want) = &self.equals {
            if actual != want {
                return Err(format!("{} expected {} got {}", self.claim, show(want), show(actual)));
            }
        }
        if let Some(set) = &self.one_of {
            if !set.contains(actual) {
                let set: Vec<String> = set.iter().map(show).collect();
                return Err(format!(
                    "{} expected one of [{}] got {}",
                    self.claim,
                    set.join(", "),
                    show(actual)
                ));
            }
        }
        if let Some(set) = &self.all_in {
            let Some(items) = actual.as_array() else {
                return Err(format!("{} is not a list: {}", self.claim, show(actual)));
            };
            let extra: Vec<String> = items.iter().filter(|i| !set.contains(i)).map(show).collect();
            if !extra.is_empty() {
                let set: Vec<String> = set.iter().map(show).collect();
                return Err(format!(
                    "{} expected only [{}] got [{}] not allowed",
                    self.claim,
                    set.join(", "),
                    extra.join(", ")
                ));
            }
        }
        if self.min.is_some() || self.max.is_some() {
            let Some(n) = actual.as_i64() else {
                return Err(format!("{} is not an integer: {}", self.claim, show(actual)));
            };
            if let Some(min) = self.min.filter(|m| n < *m) {
                return Err(format!("{} expected >= {min} got {n}", self.claim));
            }
            if let Some(max) = self.max.filter(|m| n > *m) {
                return Err(format!("{} expected <= {max} got {n}", self.claim));
            }
        }
        Ok(())
    }
}

/// Follows `a.b[2].c` through JSON objects and arrays.
#[must_use]
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(i) => (part.get(..i)?, part.get(i..)?),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        let mut rest = indices;
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let idx: usize = r.get(..end)?.parse().ok()?;
            cur = cur.get(idx)?;
            rest = r.get(end + 1..)?;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn evidence(debug: bool, simulated: bool) -> Value {
        json!({"tee": "snp", "simulated": simulated,
               "snp": {"policy": {"debug": debug}, "reported_tcb": {"microcode": 20}},
               "tdx": null, "list": [1, {"x": 7}]})
    }

    #[test]
    fn looks_up_dotted_and_indexed_paths() {
        let e = evidence(false, false);
        assert_eq!(lookup(&e, "snp.reported_tcb.microcode"), Some(&json!(20)));
        assert_eq!(lookup(&e, "list[1].x"), Some(&json!(7)));
        assert_eq!(lookup(&e, "list[2]"), None);
        assert_eq!(lookup(&e, "snp.nope"), None);
    }

    #[test]
    fn denies_debug_guest_unless_rule_allows_debug() {
        let p = Policy::parse("[[rules]]\ntees = [\"snp\"]\n").unwrap();
        let e = evidence(true, false);
        let a = json!([]);
        let Decision::Deny { reasons } = p.evaluate(Subject { evidence: &e, appraisals: &a })
        else {
            panic!("allowed a debug guest")
        };
        assert_eq!(
            reasons,
            vec!["rule 1: guest runs in debug mode and the rule does not allow_debug".to_owned()]
        );
        let p = Policy::parse("[[rules]]\ntees = [\"snp\"]\nallow_debug = true\n").unwrap();
        assert_eq!(
            p.evaluate(Subject { evidence: &e, appraisals: &a }),
            Decision::Allow { rule: "rule 1".into() }
        );
    }

    #[test]
    fn claim_constraints_and_bundles_name_what_failed() {
        let p = Policy::parse(
            r#"{"rules":[{"name":"prod","tees":["snp"],"bundles":["web"],
                "claims":[{"claim":"snp.reported_tcb.microcode","min":21}]}]}"#,
        )
        .unwrap();
        let e = evidence(false, false);
        let a = json!([{"bundle":"web","version":3,"mismatches":[
            {"field":"snp.measurement","expected":"one of [aa]","actual":"bb"}]}]);
        assert_eq!(
            p.evaluate(Subject { evidence: &e, appraisals: &a }),
            Decision::Deny {
                reasons: vec!["prod: bundle \"web\" mismatches: snp.measurement expected one of [aa] got bb; snp.reported_tcb.microcode expected >= 21 got 20".into()]
            }
        );
    }

    #[test]
    fn tdx_tcb_constraints_name_the_rule_that_failed() {
        let p = Policy::parse(
            r#"[[rules]]
name = "tdx-prod"
tees = ["tdx"]
[[rules.claims]]
claim = "tdx.tcb_evaluation_data_number"
min = 18
[[rules.claims]]
claim = "tdx.tcb_status"
in = ["UpToDate", "SWHardeningNeeded"]
[[rules.claims]]
claim = "tdx.advisory_ids"
all_in = ["INTEL-SA-00615"]
"#,
        )
        .unwrap();
        let a = json!([]);
        let e = json!({"tee": "tdx", "simulated": false, "tdx": {
            "td_attributes": {"debug": false}, "tcb_evaluation_data_number": 17,
            "tcb_status": "OutOfDate", "advisory_ids": ["INTEL-SA-00615", "INTEL-SA-00837"]}});
        assert_eq!(
            p.evaluate(Subject { evidence: &e, appraisals: &a }),
            Decision::Deny {
                reasons: vec!["tdx-prod: tdx.tcb_evaluation_data_number expected >= 18 got 17; \
                    tdx.tcb_status expected one of [\"UpToDate\", \"SWHardeningNeeded\"] got \"OutOfDate\"; \
                    tdx.advisory_ids expected only [\"INTEL-SA-00615\"] got [\"INTEL-SA-00837\"] not allowed"
                    .into()]
            }
        );
        let e = json!({"tee": "tdx", "simulated": false, "tdx": {
            "td_attributes": {"debug": false}, "tcb_evaluation_data_number": 18,
            "tcb_status": "SWHardeningNeeded", "advisory_ids": ["INTEL-SA-00615"]}});
        assert_eq!(
            p.evaluate(Subject { evidence: &e, appraisals: &a }),
            Decision::Allow { rule: "tdx-prod".into() }
        );
    }

    #[test]
    fn same_policy_in_toml_and_json_has_one_digest() {
        let t = Policy::parse("[[rules]]\ntees = [\"tdx\"]\nallow_simulated = true\n").unwrap();
        let j = Policy::parse(r#"{"rules":[{"allow_simulated":true,"tees":["tdx"]}]}"#).unwrap();
        assert_eq!(t.digest().unwrap(), j.digest().unwrap());
        assert!(Policy::parse("[[rules]]\ntees = []\n").is_err());
        assert!(Policy::parse("[[rules]]\ntees = [\"snp\"]\nbogus = 1\n").is_err());
    }
}
