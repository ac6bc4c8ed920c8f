//! Real virtual machines for the boot test: the host's Debian kernel, an initramfs built by
//! `mkinitramfs` with the SHIPPED Keylatch hook and local-top script (`packaging/`), and
//! `qemu-system-x86_64 -accel tcg` (never KVM, which hangs on these machines) with user-mode
//! networking under `restrict=on`, whose only way out is a `guestfwd` from 10.0.2.100:8443 to
//! the broker on the host's 127.0.0.1 (socat, one connection per guest connection).
//!
//! The initramfs configuration directory is the test's own: a short module list (NIC, disk,
//! ext4, entropy) instead of the host's, and test-only scripts that act on the opened mapping
//! (`keylatch_e2e=format|check` on the kernel command line) and, when the boot stops, report
//! which device-mapper mappings exist before powering off. Unlocking is the shipped scripts'
//! job alone. A [`Boot`] kills QEMU on every path (timeout, error, drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::Outcome;

/// The address and port the guest reaches the broker at (`guestfwd`).
pub const GUEST_BROKER: &str = "10.0.2.100:8443";
/// Upper bound on one boot (a hang guard: a boot takes tens of seconds under TCG).
pub const BOOT_GUARD: Duration = Duration::from_secs(240);
/// The mapping the shipped agent configuration opens (`/dev/mapper/cryptroot`).
pub const MAPPING: &str = "cryptroot";

/// Modules the test VM needs besides what the Keylatch hook adds: its NIC, its disk, the
/// filesystem the test writes, and a virtio RNG so the agent's getrandom does not wait.
const MODULES: &str = "e1000\nvirtio_pci\nvirtio_blk\nvirtio_rng\next4\n";

const INITRAMFS_CONF: &str =
    "MODULES=list\nBUSYBOX=y\nCOMPRESS=zstd\nCOMPRESSLEVEL=1\nKEYMAP=n\nFSTYPE=auto\nRUNSIZE=10%\n";

/// Test-only local-top script, after the shipped `keylatch`: with `keylatch_e2e=format` it
/// makes a filesystem inside the opened mapping and writes the marker given as
/// `keylatch_e2e_marker=`; with `keylatch_e2e=check` it mounts it and prints the marker. Then
/// it powers the VM off.
const E2E_LOCAL_TOP: &str = r#"#!/bin/sh
PREREQ="keylatch"
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
mode=
marker=
for x in $(cat /proc/cmdline); do
	case "$x" in
	keylatch_e2e=*) mode="${x#keylatch_e2e=}" ;;
	keylatch_e2e_marker=*) marker="${x#keylatch_e2e_marker=}" ;;
	esac
done
[ -n "$mode" ] || exit 0
modprobe ext4
mkdir -p /mnt/e2e
dev="/dev/mapper/cryptroot"
if [ "$mode" = format ]; then
	mke2fs -q -b 4096 "$dev" && mount -t ext4 "$dev" /mnt/e2e && echo "$marker" > /mnt/e2e/marker &&
		umount /mnt/e2e && echo "keylatch-e2e: formatted"
else
	mount -t ext4 -o ro "$dev" /mnt/e2e && echo "keylatch-e2e: marker: $(cat /mnt/e2e/marker)" &&
		umount /mnt/e2e
fi
echo "keylatch-e2e: powering off"
poweroff -f
"#;

/// Test-only panic script: initramfs-tools runs it when the boot stops (no `panic=` on the
/// command line), before the rescue shell. It lists the device-mapper mappings, then powers off.
const E2E_PANIC: &str = r#"#!/bin/sh
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
echo "keylatch-e2e: mappings: [$(ls /dev/mapper 2>/dev/null | grep -vx control | tr '\n' ' ')]"
poweroff -f
"#;

/// What booting needs on this host.
#[derive(Debug, Clone)]
pub struct Host {
    pub qemu: PathBuf,
    pub mkinitramfs: PathBuf,
    /// `/boot/vmlinuz-VERSION`.
    pub kernel: PathBuf,
    /// `VERSION`, whose modules are in `/lib/modules/VERSION`.
    pub kernel_version: String,
}

impl Host {
    /// The host's QEMU, initramfs-tools, socat and Debian kernel; `Ok(None)` after printing
    /// `skipped: ...` when one is missing, an error instead under `CI=true`.
    pub fn find() -> anyhow::Result<Option<Self>> {
        let hint = "(apt-get install qemu-system-x86 linux-image-amd64 initramfs-tools busybox \
                    socat; scripts/test.sh does)";
        let found = (|| {
            let qemu = on_path("qemu-system-x86_64")?;
            let mkinitramfs = on_path("mkinitramfs")?;
            on_path("socat")?;
            let (kernel, kernel_version) = debian_kernel()?;
            Some(Self { qemu, mkinitramfs, kernel, kernel_version })
        })();
        match found {
            Some(host) => Ok(Some(host)),
            None => crate::prerequisite_missing(&format!(
                "no QEMU, mkinitramfs, socat or /boot/vmlinuz-* {hint}"
            ))
            .map(|()| None),
        }
    }

    /// Builds an initramfs at `out` with `mkinitramfs`: the shipped Keylatch hook and
    /// local-top script from `packaging/`, the test's module list and scripts, and the agent
    /// `agent` configured by `config` (as the hook's `KEYLATCH_AGENT_BIN`/`_CONFIG`).
    pub fn initramfs(
        &self,
        work: &Path,
        agent: &Path,
        config: &Path,
        out: &Path,
    ) -> anyhow::Result<Duration> {
        let conf = work.join(format!(
            "initramfs-conf-{}",
            out.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
        ));
        let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/initramfs-tools");
        write(&conf.join("initramfs.conf"), INITRAMFS_CONF, 0o644)?;
        write(&conf.join("modules"), MODULES, 0o644)?;
        for shipped in ["hooks/keylatch", "scripts/local-top/keylatch"] {
            let text = std::fs::read_to_string(packaging.join(shipped))
                .with_context(|| format!("reading packaging/initramfs-tools/{shipped}"))?;
            write(&conf.join(shipped), &text, 0o755)?;
        }
        write(&conf.join("scripts/local-top/keylatch-e2e"), E2E_LOCAL_TOP, 0o755)?;
        write(&conf.join("scripts/panic/keylatch-e2e"), E2E_PANIC, 0o755)?;
        let started = Instant::now();
        let built = Command::new(&self.mkinitramfs)
            .arg("-d")
            .arg(&conf)
            .arg("-o")
            .arg(out)
            .arg(&self.kernel_version)
            .env("KEYLATCH_AGENT_BIN", agent)
            .env("KEYLATCH_AGENT_CONFIG", config)
            .output()
            .context("running mkinitramfs")?;
        Outcome::from(built).success("mkinitramfs")?;
        Ok(started.elapsed())
    }

    /// Boots `initrd` with `disk` as `/dev/vda` and `cmdline`, the broker on the host's
    /// `broker_port` reachable at [`GUEST_BROKER`]; returns once QEMU exits (the VM powered off
    /// or rebooted) with the console output and the boot's duration. Killed after
    /// [`BOOT_GUARD`].
    pub fn boot(
        &self,
        initrd: &Path,
        disk: &Path,
        cmdline: &str,
        broker_port: u16,
        console: &Path,
    ) -> anyhow::Result<Boot> {
        let out = std::fs::File::create(console)
            .with_context(|| format!("creating {}", console.display()))?;
        let err = out.try_clone()?;
        let netdev = format!(
            "user,id=n0,restrict=on,guestfwd=tcp:{GUEST_BROKER}-cmd:socat - TCP:127.0.0.1:{broker_port}"
        );
        let started = Instant::now();
        let child = Command::new(&self.qemu)
            .args(["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-kernel"])
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(initrd)
            .args([
                "-append",
                &format!("console=ttyS0 ip=dhcp root=/dev/mapper/{MAPPING} {cmdline}"),
            ])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", disk.display()))
            .args(["-netdev", &netdev, "-device", "e1000,netdev=n0"])
            .args(["-object", "rng-random,id=rng0,filename=/dev/urandom"])
            .args(["-device", "virtio-rng-pci,rng=rng0"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        let mut running = Running(child);
        loop {
            if let Some(status) = running.0.try_wait()? {
                let console = std::fs::read_to_string(console).unwrap_or_default();
                return Ok(Boot { console, duration: started.elapsed(), qemu_exit: status.code() });
            }
            if started.elapsed() > BOOT_GUARD {
                drop(running);
                let console = std::fs::read_to_string(console).unwrap_or_default();
                bail!("the VM did not power off within {BOOT_GUARD:?}; console:\n{console}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A finished boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Everything on the serial console (firmware, kernel, initramfs).
    pub console: String,
    pub duration: Duration,
    pub qemu_exit: Option<i32>,
}

impl Boot {
    /// The console lines the test-only scripts printed (`keylatch-e2e: ...`), and the
    /// Keylatch lines (the agent's `error: ...`, the local-top script's `keylatch: ...`).
    #[must_use]
    pub fn keylatch_lines(&self) -> Vec<String> {
        self.console
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| {
                l.starts_with("keylatch") || l.starts_with("error: ") || l.contains("keylatch:")
            })
            .map(str::to_owned)
            .collect()
    }
}

/// QEMU, killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A copy of the agent binary without symbols (as the package ships it), or the binary
/// itself when `strip` is missing.
pub fn stripped_agent(work: &Path) -> anyhow::Result<PathBuf> {
    let agent = crate::bins::path(crate::bins::AGENT)?;
    let out = work.join("keylatch-agent");
    let stripped = Command::new("strip").arg("-o").arg(&out).arg(&agent).status();
    if stripped.is_ok_and(|s| s.success()) {
        Ok(out)
    } else {
        Ok(agent)
    }
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The newest `/boot/vmlinuz-VERSION` whose modules are installed.
fn debian_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            Path::new("/lib/modules").join(&version).is_dir().then(|| (e.path(), version))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}
