#!/usr/bin/env bash
# Run a command under another Linux kernel in QEMU (TCG; this host's KVM cannot run stock
# kernels): `bash tests/kernel/run-in-kernel.sh CMD [ARGS...]`, as root; the exit status is
# CMD's (125: no guest ran: the kernel package could not be fetched, or the guest wrote no
# status; 124: timed out). The guest mounts the host's / over virtio-9p, chroots into it and
# runs CMD in the current directory with the current environment. TMPDIR in the guest is a
# fresh ext4 file system on a virtio disk (mounted in the job's directory, so the host's /tmp,
# where a checkout may live, stays visible), so page-cache behaviour (posix_fadvise DONTNEED,
# RWF_NOWAIT) of temporary files is that of a real block device.
#
# Default kernel: Debian bookworm's 6.1 (no cachestat, Landlock ABI 2). KMX_KVER picks another
# linux-image-*-amd64 that apt knows; KMX_CACHE (/var/tmp/kernel-matrix) keeps the unpacked
# kernel and the initramfs (one per module list); the guest has kernel TLS (tls, AES-GCM,
# ChaCha20-Poly1305 loaded at boot); KMX_TIMEOUT (1800 s), KMX_MEM (2048 MiB), KMX_SMP (nproc),
# KMX_TMP_MB (2048: size of the guest's TMPDIR), KMX_CONSOLE=1 shows the boot log.
# Needs qemu-system-x86, busybox-static, cpio and kmod (installed with apt-get when missing).
set -euo pipefail

kver=${KMX_KVER:-6.1.0-57-amd64}
cache=${KMX_CACHE:-/var/tmp/kernel-matrix}/$kver
((EUID == 0)) || { echo "run-in-kernel: needs root" >&2; exit 2; }
(($#)) || { echo "usage: run-in-kernel.sh CMD [ARGS...]" >&2; exit 2; }
missing=()
for t in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio depmod:kmod mkfs.ext4:e2fsprogs; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The modules /init loads (with their dependencies): virtio, 9p and ext4 for the file systems,
# then kernel TLS and the AEADs it offloads (AES-GCM through aesni/ghash, ChaCha20-Poly1305),
# loaded up front because the guest has no modprobe to load them on demand.
modules=(virtio_pci virtio_blk 9pnet_virtio 9p ext4
    tls gcm ctr ghash_generic ghash_clmulni_intel aesni_intel
    chacha20poly1305 chacha_x86_64 chacha_generic poly1305_x86_64 poly1305_generic seqiv echainiv)
# The initramfs is named by a hash of the module list and of the /init below, so a change to
# either builds a new one (the kernel itself is unpacked once per version).
# shellcheck disable=SC2016
initrd=$cache/initrd-$({ echo "${modules[*]}"; sed -n '/^    cat >"$init\/init"/,/^INIT$/p' "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12).cpio.gz
if [[ ! -f $cache/vmlinuz ]]; then
    rm -rf "$cache" && mkdir -p "$cache"
    (cd "$cache" && apt-get download -qq "linux-image-$kver" >/dev/null) || {
        echo "run-in-kernel: cannot download linux-image-$kver" >&2
        rm -rf "$cache"
        exit 125
    }
    dpkg -x "$cache"/linux-image-*.deb "$cache/root"
    depmod -b "$cache/root" "$kver"
    cp "$cache/root/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
fi
if [[ ! -f $initrd ]]; then
    init=$(mktemp -d "$cache/initramfs.XXXXXX")
    mkdir -p "$init"/{bin,dev,proc,sys,host,mods}
    cp "$(command -v busybox)" "$init/bin/busybox"
    for applet in $("$init/bin/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$init/bin/$applet"
    done
    : >"$init/mods/order"
    for m in "${modules[@]}"; do
        modprobe -d "$cache/root" -S "$kver" --show-depends "$m" | while read -r cmd path _; do
            [[ $cmd == insmod ]] || continue
            name=$(basename "$path")
            grep -qx "$name" "$init/mods/order" && continue
            case $name in
            *.xz) xz -dc "$path" >"$init/mods/${name%.xz}"; name=${name%.xz} ;;
            *) cp "$path" "$init/mods/$name" ;;
            esac
            grep -qx "$name" "$init/mods/order" || echo "$name" >>"$init/mods/order"
        done
    done
    cat >"$init/init" <<'INIT'
#!/bin/busybox sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
job=$(sed -n 's/.*kmx.job=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
mkdir -p "/host$job/scratch"
mount -t ext4 /dev/vda "/host$job/scratch" && chmod 1777 "/host$job/scratch"
ip link set lo up
chroot /host /bin/bash "$job/run.sh" >/dev/ttyS1 2>/dev/ttyS2
echo $? >/host/$job/rc
umount "/host$job/scratch"
sync
poweroff -f
INIT
    chmod +x "$init/init"
    (cd "$init" && find . | cpio -o -H newc --quiet | gzip -1 >"$initrd.tmp")
    mv "$initrd.tmp" "$initrd"
    rm -rf "$init"
fi

job=$(mktemp -d /var/tmp/kmx-job.XXXXXX)
trap 'rm -rf "$job"' EXIT
{
    echo "cd $(printf %q "$(pwd -P)") || exit 125"
    export -p
    echo "export TMPDIR=$job/scratch"
    printf '%q ' "$@"
    echo
} >"$job/run.sh"
truncate -s "${KMX_TMP_MB:-2048}M" "$job/tmp.img"
mkfs.ext4 -q -F "$job/tmp.img"
console=$job/console.log
status=0
timeout "${KMX_TIMEOUT:-1800}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -M pc \
    -nodefaults -display none -monitor none -no-reboot -m "${KMX_MEM:-2048}" \
    -smp "${KMX_SMP:-$(nproc)}" -kernel "$cache/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 kmx.job=$job" \
    -serial "file:$console" -serial "file:$job/out.log" -serial "file:$job/err.log" \
    -drive "file=$job/tmp.img,if=virtio,format=raw" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,id=hostroot,multidevs=remap \
    -nic none || status=$?
cat "$job/out.log"
cat "$job/err.log" >&2
[[ ${KMX_CONSOLE:-} == 1 ]] && cat "$console" >&2
if ((status == 124)); then
    echo "run-in-kernel: timed out" >&2
    exit 124
fi
if [[ ! -s $job/rc ]]; then
    echo "run-in-kernel: the guest wrote no status; its console:" >&2
    tail -40 "$console" >&2
    exit 125
fi
exit "$(cat "$job/rc")"
