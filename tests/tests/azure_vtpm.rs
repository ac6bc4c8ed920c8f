//! An Azure confidential VM end to end, on a software TPM: `swtpm` (started here, on TCP) is
//! provisioned with tpm2-tools the way Azure provisions a confidential VM's vTPM — an RSA
//! attestation key persisted at 0x81000003, and an HCL report in NV index 0x01400001 whose
//! runtime data carries that key and whose SEV-SNP report is minted by the broker's simulation
//! PKI. A stub instance metadata service hands out the VCEK. Then the real `keylatch-agent`
//! detects `az-snp-vtpm` and gets the disk key from a real `keylatch serve`, speaking TPM 2.0
//! commands to swtpm. When the attestation key was replaced after the HCL report was made, the
//! broker refuses the quote; when a PCR the policy pins was extended, the policy denies.
//!
//! Needs `swtpm` and tpm2-tools (Debian: swtpm, swtpm-tools, tpm2-tools; scripts/test.sh
//! installs them); without them each test prints `skipped: ...` (an error under `CI=true`).

// reason: shared test bodies fail loudly; clippy.toml relaxes this only inside #[test] fns.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use e2e::{bins, Broker, BrokerDir, Outcome, DISK_KEY};
use rand_core::OsRng;
use verifier::azure::AkPublicKey;
use verifier::claims::SnpProduct;
use verifier::sim::azure::{mint_snp_hcl_report, SimHcl};
use verifier::sim::snp::SimSnpReport;
use verifier::sim::SimPki;

/// The HCL report's NV index and the attestation key's handle on an Azure vTPM.
const HCL_NV_INDEX: &str = "0x01400001";
const AK_HANDLE: &str = "0x81000003";

/// A policy that releases to simulated Azure SEV-SNP guests whose PCR 23 was never extended
/// (all zero, as after TPM2_Startup).
const ALLOW_SIMULATED_AZURE: &str = "[[rules]]\nname = \"azure\"\ntees = [\"az-snp-vtpm\"]\n\
    allow_simulated = true\nclaims = [{ claim = \"azure.pcrs.23\", equals = \"\
    0000000000000000000000000000000000000000000000000000000000000000\" }]\n";

/// A running `swtpm socket` on 127.0.0.1 with its state in a temporary directory; killed on
/// drop.
struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A port free at the time of asking whose successor is free too: tpm2-tools' swtpm TCTI
/// finds the control channel at the server port + 1.
fn free_port_pair() -> anyhow::Result<(u16, u16)> {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        let Some(next) = port.checked_add(1) else { continue };
        if TcpListener::bind(("127.0.0.1", next)).is_ok() {
            return Ok((port, next));
        }
    }
    bail!("no two consecutive free ports on 127.0.0.1")
}

impl Swtpm {
    /// Starts swtpm (already started up: `startup-clear`), or `None` after printing why not.
    fn start() -> anyhow::Result<Option<Self>> {
        for tool in ["swtpm", "tpm2_createak", "tpm2_nvdefine"] {
            if !on_path(tool) {
                e2e::prerequisite_missing(&format!("{tool} is not installed (swtpm, tpm2-tools)"))?;
                return Ok(None);
            }
        }
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("state"))?;
        let (port, ctrl) = free_port_pair()?;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", dir.path().join("state").display()))
            .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
            .args(["--ctrl", &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1")])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting swtpm")?;
        let tpm = Self { child, dir, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("swtpm did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(tpm))
    }

    /// The agent's `--tpm`.
    fn agent_tpm(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// `tpm2_TOOL ARGS...` against this TPM, in its directory; must succeed; its stdout.
    fn tpm2(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out: Output = Command::new(format!("tpm2_{tool}"))
            .args(args)
            .env("TPM2TOOLS_TCTI", format!("swtpm:host=127.0.0.1,port={}", self.port))
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running tpm2_{tool}"))?;
        let out = Outcome::from(out).success(&format!("tpm2_{tool} {}", args.join(" ")))?;
        // swtpm has no resource manager: free what the tool left loaded.
        for flag in ["-t", "-s"] {
            Command::new("tpm2_flushcontext")
                .arg(flag)
                .env("TPM2TOOLS_TCTI", format!("swtpm:host=127.0.0.1,port={}", self.port))
                .output()
                .context("running tpm2_flushcontext")?;
        }
        Ok(out.stdout_text())
    }

    /// As Azure does: an endorsement key, an RSA-2048 attestation key under it (restricted,
    /// RSASSA with SHA-256), persisted at 0x81000003. Returns its public key.
    fn provision_ak(&self) -> anyhow::Result<AkPublicKey> {
        self.tpm2("createek", &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"])?;
        self.tpm2(
            "createak",
            &["-C", "ek.ctx", "-c", "ak.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa"],
        )?;
        self.tpm2("evictcontrol", &["-C", "o", "-c", "ak.ctx", AK_HANDLE])?;
        let public = self.tpm2("readpublic", &["-c", AK_HANDLE])?;
        let field = |name: &str| {
            public
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .with_context(|| format!("no {name} in tpm2_readpublic's output:\n{public}"))
        };
        let modulus = hex::decode(field("rsa:")?)?;
        let exponent: u32 = field("exponent:")?.parse()?;
        let exponent = exponent.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        Ok(AkPublicKey { modulus, exponent })
    }

    /// Replaces the key at 0x81000003 with a new attestation key.
    fn replace_ak(&self) -> anyhow::Result<()> {
        self.tpm2("evictcontrol", &["-C", "o", "-c", AK_HANDLE])?;
        self.tpm2(
            "createak",
            &["-C", "ek.ctx", "-c", "ak2.ctx", "-G", "rsa", "-g", "sha256", "-s", "rsassa"],
        )?;
        self.tpm2("evictcontrol", &["-C", "o", "-c", "ak2.ctx", AK_HANDLE])?;
        Ok(())
    }

    /// Defines NV index 0x01400001 (owner read/write) holding `report`. Azure's index is 2600
    /// bytes; libtpms caps an NV index at 2048, so the report goes in without the zero padding
    /// after its runtime data (a verifier takes padding of any length, none included).
    fn write_hcl_report(&self, report: &[u8]) -> anyhow::Result<()> {
        let end = report.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let file = self.dir.path().join("hcl.bin");
        std::fs::write(&file, report.get(..end).context("empty HCL report")?)?;
        let size = end.to_string();
        self.tpm2(
            "nvdefine",
            &[
                HCL_NV_INDEX,
                "-C",
                "o",
                "-s",
                &size,
                "-a",
                "ownerread|ownerwrite|authread|authwrite",
            ],
        )?;
        self.tpm2("nvwrite", &[HCL_NV_INDEX, "-C", "o", "-i", file.to_str().context("path")?])?;
        Ok(())
    }
}

/// A stub instance metadata service on 127.0.0.1 that serves `vcek` (DER) as Azure's THIM
/// endpoint does (`{"vcekCert": PEM, ...}`, only with the `Metadata: true` header) and 404
/// otherwise. Returns its base URL; the thread lives as long as the test process.
fn imds_serving(vcek: &[u8]) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let b64 = base64::engine::general_purpose::STANDARD.encode(vcek);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line)?);
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let body = serde_json::json!({ "vcekCert": pem, "certificateChain": "" }).to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer_imds(stream, &body);
        }
    });
    Ok(url)
}

fn answer_imds(stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_ascii_lowercase());
    }
    let wanted =
        head.first().is_some_and(|l| l.starts_with("get /metadata/thim/amd/certification "))
            && head.iter().any(|l| l == "metadata: true");
    let (status, body) = if wanted { ("200 OK", body) } else { ("404 Not Found", "") };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// An Azure SEV-SNP guest: swtpm provisioned with an AK and an HCL report minted by the
/// broker's simulation PKI for it, and the IMDS stub with its VCEK. `None`: skipped.
struct AzureGuest {
    tpm: Swtpm,
    imds: String,
}

impl AzureGuest {
    fn provision(sim_pki: &Path) -> anyhow::Result<Option<Self>> {
        let Some(tpm) = Swtpm::start()? else { return Ok(None) };
        let ak = tpm.provision_ak()?;
        let pki = SimPki::from_files(|name| std::fs::read(sim_pki.join(name)).ok())
            .map_err(|e| anyhow::anyhow!("loading the broker's simulation PKI: {e}"))?;
        let report = SimSnpReport::for_product(SnpProduct::Genoa);
        let (hcl, vcek) = mint_snp_hcl_report(&pki.amd, &report, &SimHcl::new(ak), &mut OsRng)
            .map_err(|e| anyhow::anyhow!("minting the HCL report: {e}"))?;
        tpm.write_hcl_report(&hcl)?;
        let imds = imds_serving(&vcek)?;
        Ok(Some(Self { tpm, imds }))
    }

    /// `keylatch-agent SUBCOMMAND --tpm tcp:... --azure-imds URL ARGS...`, no simulator.
    fn agent(&self, subcommand: &str, args: &[&str]) -> anyhow::Result<Outcome> {
        let out = Command::new(bins::path(bins::AGENT)?)
            .arg(subcommand)
            .args(["--tpm", &self.tpm.agent_tpm(), "--azure-imds", &self.imds])
            .args(args)
            .env_remove("KEYLATCH_AGENT_CONFIG")
            .output()
            .context("running keylatch-agent")?;
        Ok(out.into())
    }

    fn get_resource(&self, broker: &Broker) -> anyhow::Result<Outcome> {
        let target = broker.target();
        self.agent(
            "get-resource",
            &[
                &format!("kbs:///{DISK_KEY}"),
                "--url",
                &target.url,
                "--ca",
                target.ca.to_str().context("CA path")?,
                "--deadline",
                "10",
            ],
        )
    }
}

/// A soft-keystore broker holding `key` at [`DISK_KEY`] for simulated Azure SNP guests.
fn broker_with(key: &[u8]) -> anyhow::Result<(BrokerDir, Broker)> {
    let dir = BrokerDir::soft()?;
    dir.resource_put(DISK_KEY, key)?;
    dir.policy_set(DISK_KEY, ALLOW_SIMULATED_AZURE)?;
    let broker = dir.start()?;
    Ok((dir, broker))
}

#[test]
fn azure_snp_vtpm_guest_is_detected_and_gets_the_disk_key_through_swtpm() {
    let key = e2e::random_key().unwrap();
    let (dir, broker) = broker_with(&key).unwrap();
    let Some(guest) = AzureGuest::provision(&dir.sim_pki()).unwrap() else { return };

    let detect = guest.agent("detect", &[]).unwrap();
    assert_eq!(detect.code, Some(0), "{}", detect.stderr);
    assert_eq!(
        detect.stdout_text(),
        format!(
            "az-snp-vtpm: Azure vTPM at {}: HCL report in NV index 0x01400001, attestation key \
             0x81000003, IMDS {}\n",
            guest.tpm.agent_tpm(),
            guest.imds
        )
    );

    let out = guest.get_resource(&broker).unwrap();
    assert_eq!(out.code, Some(0), "{}\nbroker:\n{}", out.stderr, broker.log());
    assert_eq!(out.stdout, key);
    assert_eq!(out.stderr, "");
}

#[test]
fn azure_quote_by_an_attestation_key_replaced_after_the_hcl_report_is_refused() {
    let key = e2e::random_key().unwrap();
    let (dir, broker) = broker_with(&key).unwrap();
    let Some(guest) = AzureGuest::provision(&dir.sim_pki()).unwrap() else { return };
    guest.tpm.replace_ak().unwrap();

    let out = guest.get_resource(&broker).unwrap();

    assert_eq!(out.code, Some(2), "{}\nbroker:\n{}", out.stderr, broker.log());
    assert!(out.stdout.is_empty());
    assert_eq!(
        out.stderr,
        "error: attest: evidence-invalid: tpm-quote: TPM quote (attestation key) signature does \
         not verify\n",
        "broker:\n{}",
        broker.log()
    );
}

#[test]
fn azure_guest_whose_pcr_23_was_extended_is_denied_by_the_policy_that_pins_it() {
    let key = e2e::random_key().unwrap();
    let (dir, broker) = broker_with(&key).unwrap();
    let Some(guest) = AzureGuest::provision(&dir.sim_pki()).unwrap() else { return };
    guest.tpm.tpm2("pcrextend", &[&format!("23:sha256={}", "ab".repeat(32))]).unwrap();

    let out = guest.get_resource(&broker).unwrap();

    assert_eq!(out.code, Some(1), "{}\nbroker:\n{}", out.stderr, broker.log());
    assert!(out.stdout.is_empty());
    // PCR 23 = SHA-256(32 zero bytes || 32 bytes of 0xab).
    assert_eq!(
        out.stderr,
        "error: resource: policy-denied: policy v1 denies default/disk-key/vm-1: azure: \
         azure.pcrs.23 expected \"0000000000000000000000000000000000000000000000000000000000000000\" \
         got \"debb3e7acfff6dd18d501042273629f0b79cb206bb8c24f59f62ddb80849403b\"\n"
    );
}
