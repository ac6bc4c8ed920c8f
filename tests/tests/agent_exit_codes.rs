//! The agent's documented exit codes, as an initramfs script sees them from the real binaries:
//! 3 when the broker cannot be reached before `--deadline`, 2 when the broker refuses the
//! attestation (evidence signed by a simulation PKI the broker does not trust).

use e2e::broker::free_port;
use e2e::{AgentTarget, BrokerDir, Tee, ALLOW_SIMULATED, DISK_KEY};

#[test]
fn exits_3_when_no_broker_answers_before_the_deadline() {
    let dir = BrokerDir::soft().unwrap();
    let nobody = free_port().unwrap();
    let target = AgentTarget {
        url: format!("https://{nobody}"),
        ca: dir.ca(),
        sim_pki: dir.sim_pki(),
        deadline_s: 1,
    };

    let out = target.get_resource(Tee::Snp, DISK_KEY).unwrap();

    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.starts_with("error: broker unreachable within 1 s: "), "{}", out.stderr);
    assert!(out.stderr.contains("onnection refused"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);
    assert!(out.stdout.is_empty());
}

#[test]
fn exits_2_when_the_broker_refuses_evidence_from_a_foreign_simulation_pki() {
    let dir = BrokerDir::soft().unwrap();
    dir.resource_put(DISK_KEY, &e2e::random_key().unwrap()).unwrap();
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED).unwrap();
    let broker = dir.start().unwrap();
    let foreign = e2e::foreign_sim_pki(&dir.path().join("foreign-pki")).unwrap();
    let trusted = broker.target().get_resource(Tee::Snp, DISK_KEY).unwrap();
    assert_eq!(trusted.code, Some(0), "control: {}", trusted.stderr);

    let target = AgentTarget { sim_pki: foreign, ..broker.target() };
    let snp = target.get_resource(Tee::Snp, DISK_KEY).unwrap();
    let tdx = target.get_resource(Tee::Tdx, DISK_KEY).unwrap();

    assert_eq!((snp.code, tdx.code), (Some(2), Some(2)), "{}{}", snp.stderr, tdx.stderr);
    assert_eq!(
        [snp.stderr.as_str(), tdx.stderr.as_str()],
        [
            "error: attest: evidence-invalid: chain: no trusted ASK/ASVK that issued the signer \
             certificate applies\n",
            // Not signed by the broker's simulation PKI, the quote is taken for hardware, and
            // this broker has no Intel collateral: refused all the same.
            "error: attest: evidence-invalid: collateral: missing TDX collateral \
             (tdx_collateral is not configured)\n",
        ]
    );
    assert!(snp.stdout.is_empty() && tdx.stdout.is_empty());
}
