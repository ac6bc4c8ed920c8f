#!/bin/bash
# Keylatch dracut module (installed by the keylatch-agent package as
# /usr/lib/dracut/modules.d/90keylatch): the same as the initramfs-tools hook and local-top
# script. Puts keylatch-agent, cryptsetup, /etc/keylatch/agent.toml and the files it names,
# and the TEE and dm-crypt modules into the initramfs; keylatch-unlock.sh opens the disk once
# the network is up. Included only when asked for (`dracut --add keylatch`).

check() {
    require_binaries "${KEYLATCH_AGENT_BIN:-/usr/bin/keylatch-agent}" cryptsetup || return 1
    return 255
}

depends() {
    echo network crypt
}

installkernel() {
    hostonly='' instmods dm_crypt xts algif_skcipher af_alg configfs tsm sev-guest tdx-guest
}

install() {
    local config="${KEYLATCH_AGENT_CONFIG:-/etc/keylatch/agent.toml}"
    local agent="${KEYLATCH_AGENT_BIN:-/usr/bin/keylatch-agent}"
    local files f g
    # The agent checks the configuration as unlock-luks reads it at boot and lists the files
    # it names: a configuration that cannot work fails the build, not the boot.
    if ! files=$("$agent" --config "$config" check-config); then
        derror "keylatch: $agent check-config rejected $config"
        return 1
    fi
    inst_binary "$agent" /usr/bin/keylatch-agent
    inst_multiple cryptsetup
    inst_simple "$config" /etc/keylatch/agent.toml
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ -d "$f" ]; then
            for g in "$f"/*; do [ -f "$g" ] && inst_simple "$g"; done
        else
            inst_simple "$f"
        fi
    done <<< "$files"
    inst_hook initqueue/online 60 "$moddir/keylatch-unlock.sh"
}
