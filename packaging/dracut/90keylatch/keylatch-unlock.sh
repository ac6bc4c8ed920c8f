#!/bin/sh
# Keylatch dracut hook (initqueue/online): attests this VM to its Keylatch broker and opens
# the root disk with the released key (`keylatch-agent unlock-luks`, configured by
# /etc/keylatch/agent.toml). On failure the boot stops with the agent's reason (the broker's
# refusal) on the console: `die` ends in dracut's emergency shell, or a halt with rd.shell=0.
# Boot with `rd.neednet=1 ip=dhcp root=/dev/mapper/cryptroot` (or the configured name).

type die >/dev/null 2>&1 || . /lib/dracut-lib.sh

# The online hook runs once per interface that comes up: unlock once.
[ -e /tmp/keylatch-unlocked ] && exit 0

for m in dm_crypt configfs tsm sev-guest tdx-guest; do
    modprobe -q "$m" 2>/dev/null
done
grep -q " /sys/kernel/config " /proc/mounts || mount -t configfs none /sys/kernel/config 2>/dev/null

/usr/bin/keylatch-agent unlock-luks && { : > /tmp/keylatch-unlocked; exit 0; }
rc=$?
die "keylatch: the disk key was not released (keylatch-agent exit $rc, reason above); not booting"
