//! SEV-SNP launch measurement against published input/digest pairs: the OVMF test images the
//! `sev` crate ships in its package and the digests its own tests state for them. The images are
//! read from the local cargo registry at run time, never copied into this repository.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, clippy::expect_used)] // reason: tests fail loudly on purpose

use std::path::PathBuf;

use reference_values::measure::{snp_launch_measurement, MeasureError, SnpLaunchInputs};

/// `tests/measurement` inside the registry copy of sev 8.0.0, or `None` after `skipped: ...`.
fn sev_test_inputs() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registry = cargo_home.join("registry/src");
    let found = std::fs::read_dir(&registry).ok().and_then(|dirs| {
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("sev-8.0.0/tests/measurement"))
            .find(|p| p.join("ovmf_AmdSev_suffix.bin").is_file())
    });
    if found.is_none() {
        println!("skipped: sev-8.0.0 test inputs not found under {}", registry.display());
    }
    found
}

fn inputs(ovmf: PathBuf, vcpus: u32, guest_features: u64) -> SnpLaunchInputs {
    SnpLaunchInputs {
        ovmf,
        kernel: None,
        initrd: None,
        append: None,
        vcpus,
        vcpu_type: "EPYC-v4".into(),
        guest_features,
    }
}

#[test]
fn matches_published_digests_for_sev_crate_test_images() {
    let Some(dir) = sev_test_inputs() else { return };
    let amd_sev = dir.join("ovmf_AmdSev_suffix.bin");
    let null = PathBuf::from("/dev/null");

    let no_kernel = inputs(amd_sev.clone(), 1, 0x1);
    let with_cmdline = SnpLaunchInputs {
        kernel: Some(null.clone()),
        initrd: Some(null.clone()),
        append: Some("console=ttyS0 loglevel=7".into()),
        ..inputs(amd_sev.clone(), 1, 0x21)
    };
    let four_vcpus = SnpLaunchInputs {
        kernel: Some(null.clone()),
        initrd: Some(null),
        ..inputs(amd_sev, 4, 0x1)
    };
    let ovmf_x64 = inputs(dir.join("ovmf_OvmfX64_suffix.bin"), 1, 0x1);

    let cases = [
        (no_kernel, "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        (with_cmdline, "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        (four_vcpus, "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
        (ovmf_x64, "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"),
    ];
    for (input, digest) in cases {
        assert_eq!(snp_launch_measurement(&input).unwrap().to_hex(), digest, "{input:?}");
    }
}

#[test]
fn rejects_bad_inputs_with_specific_errors() {
    let ovmf = PathBuf::from("/nonexistent/ovmf.fd");
    assert_eq!(
        snp_launch_measurement(&inputs(ovmf.clone(), 0, 1)).unwrap_err(),
        MeasureError::NoVcpus
    );
    let mut bad_type = inputs(ovmf.clone(), 1, 1);
    bad_type.vcpu_type = "EPYC-v99".into();
    assert_eq!(
        snp_launch_measurement(&bad_type).unwrap_err(),
        MeasureError::VcpuType("EPYC-v99".into())
    );
    let mut initrd_only = inputs(ovmf.clone(), 1, 1);
    initrd_only.initrd = Some("/dev/null".into());
    assert_eq!(snp_launch_measurement(&initrd_only).unwrap_err(), MeasureError::NeedsKernel);
    assert!(matches!(
        snp_launch_measurement(&inputs(ovmf, 1, 1)),
        Err(MeasureError::Calculation(_))
    ));
}

#[test]
fn rejects_firmware_without_sev_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.fd");
    std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
    assert!(matches!(
        snp_launch_measurement(&inputs(path, 1, 1)),
        Err(MeasureError::Calculation(_))
    ));
}

#[test]
fn reports_truncated_firmware_as_malformed_instead_of_panicking() {
    let Some(src) = sev_test_inputs() else { return };
    let image = std::fs::read(src.join("ovmf_AmdSev_suffix.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.fd");
    std::fs::write(&path, &image[..10]).unwrap();
    assert_eq!(
        snp_launch_measurement(&inputs(path, 1, 1)).unwrap_err(),
        MeasureError::MalformedFirmware
    );
}
