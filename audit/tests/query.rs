//! Queries over an export and their table and JSON renderings.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)] // reason: tests fail loudly on purpose

mod common;

use keylatch_audit::entry::{
    Actor, AdminIdentity, AuditEntry, Decision, EntryKind, ResourceRef, VmIdentity,
};
use keylatch_audit::export::{entry_line, LogExport};
use keylatch_audit::query::{query, render_json, render_table, QueryFilter};
use time::macros::datetime;

fn vm(chip: &str) -> Actor {
    Actor::Vm(VmIdentity {
        tee: "snp".into(),
        simulated: false,
        chip_id: Some(chip.into()),
        ..VmIdentity::default()
    })
}

fn export() -> LogExport {
    let base = common::allowed_release(
        datetime!(2025-03-01 12:00:00 UTC),
        "r0".into(),
        vm("AA11"),
        ResourceRef { path: "default/disk/db".into(), version: Some(2) },
    );
    let entries = [
        base.clone(),
        AuditEntry {
            time: datetime!(2025-03-02 08:30:00 UTC),
            request_id: "r1".into(),
            kind: EntryKind::Denial,
            actor: vm("bb22"),
            decision: Decision::Deny,
            reasons: vec!["measurement mismatch".into(), "tcb too old".into()],
            ..base.clone()
        },
        AuditEntry {
            time: datetime!(2025-03-03 00:00:00 UTC),
            request_id: "r2".into(),
            kind: EntryKind::Admin,
            actor: Actor::Admin(AdminIdentity {
                principal: "alice".into(),
                role: "key-custodian".into(),
            }),
            resource: Some(ResourceRef { path: "default/disk/web".into(), version: None }),
            ..base.clone()
        },
    ];
    let jsonl: Vec<u8> =
        entries.iter().enumerate().flat_map(|(i, e)| entry_line(i as u64, e).unwrap()).collect();
    LogExport::from_files(None, &jsonl, vec![], &[]).unwrap()
}

fn indices(export: &LogExport, f: &QueryFilter) -> Vec<u64> {
    query(export, f).iter().map(|e| e.index).collect()
}

#[test]
fn filters_by_resource_time_and_chip() {
    let x = export();
    let by_resource =
        QueryFilter { resource: Some("default/disk/db".into()), ..QueryFilter::default() };
    assert_eq!(indices(&x, &by_resource), vec![0, 1]);
    let since =
        QueryFilter { since: Some(datetime!(2025-03-02 08:30:00 UTC)), ..QueryFilter::default() };
    assert_eq!(indices(&x, &since), vec![1, 2]);
    let window = QueryFilter {
        since: Some(datetime!(2025-03-01 00:00:00 UTC)),
        until: Some(datetime!(2025-03-02 08:30:00 UTC)),
        ..QueryFilter::default()
    };
    assert_eq!(indices(&x, &window), vec![0]);
    let chip = QueryFilter { chip_id: Some("aa11".into()), ..QueryFilter::default() };
    assert_eq!(indices(&x, &chip), vec![0]);
    let both = QueryFilter {
        resource: Some("default/disk/db".into()),
        chip_id: Some("BB22".into()),
        ..QueryFilter::default()
    };
    assert_eq!(indices(&x, &both), vec![1]);
    assert_eq!(indices(&x, &QueryFilter::default()), vec![0, 1, 2]);
}

#[test]
fn table_has_aligned_columns() {
    let x = export();
    let all = query(&x, &QueryFilter::default());
    let expected = "\
INDEX  TIME                  KIND     RESOURCE          VERSION  DECISION  ACTOR                       REASONS
0      2025-03-01T12:00:00Z  release  default/disk/db   2        allow     snp:chip=AA11
1      2025-03-02T08:30:00Z  denial   default/disk/db   2        deny      snp:chip=bb22               measurement mismatch; tcb too old
2      2025-03-03T00:00:00Z  admin    default/disk/web  -        allow     admin:alice(key-custodian)
";
    assert_eq!(render_table(&all), expected);
}

#[test]
fn json_output_lists_index_and_entry() {
    let x = export();
    let one = query(&x, &QueryFilter { chip_id: Some("bb22".into()), ..QueryFilter::default() });
    let v: serde_json::Value = serde_json::from_str(&render_json(&one).unwrap()).unwrap();
    assert_eq!(v[0]["index"], 1);
    assert_eq!(v[0]["entry"]["request_id"], "r1");
    assert_eq!(v[0]["entry"]["reasons"][1], "tcb too old");
    assert_eq!(v.as_array().unwrap().len(), 1);
}
