#!/usr/bin/env bash
# Compare this host with tuning/sysctl.conf and the limits ringftpd wants; print what differs.
# Read-only: it changes nothing. Exit status 0 when everything matches, 1 otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
differ=0

note() { printf '%-34s %-24s %s\n' "$1" "$2" "$3"; }
note "setting" "this host" "wanted"

# sysctl values: numbers must be at least the wanted value (ranges and the io_uring switch must match).
trim() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }
while IFS='=' read -r key want; do
  case "$key" in \#*|"") continue ;; esac
  key=$(echo "$key" | trim); want=$(echo "$want" | trim)
  path=/proc/sys/$(echo "$key" | tr . /)
  if [ ! -r "$path" ]; then note "$key" "(absent)" "$want"; continue; fi
  have=$(tr -s '\t ' '  ' < "$path" | trim)
  ok=1
  case "$key" in
    kernel.io_uring_disabled|net.ipv4.ip_local_port_range) [ "$have" = "$want" ] || ok=0 ;;
    net.ipv4.tcp_wmem|net.ipv4.tcp_rmem)
      [ "$(echo "$have" | awk '{print $3}')" -ge "$(echo "$want" | awk '{print $3}')" ] || ok=0 ;;
    *) [ "$have" -ge "$want" ] 2>/dev/null || ok=0 ;;
  esac
  if [ $ok = 0 ]; then note "$key" "$have" "$want"; differ=1; fi
done < "$here/sysctl.conf"

# Per-process limits of the shell running this check (systemd units set their own: see ringftpd.service).
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$nofile" -lt 65536 ]; then note "ulimit -n (nofile)" "$nofile" ">= 65536"; differ=1; fi
memlock=$(ulimit -l)
if [ "$memlock" != unlimited ] && [ "$memlock" -lt 65536 ]; then note "ulimit -l (memlock KiB)" "$memlock" ">= 65536"; differ=1; fi

# Transparent huge pages: "madvise" or "never" avoids compaction stalls on the shard threads.
thp=/sys/kernel/mm/transparent_hugepage/enabled
if [ -r $thp ] && grep -q '\[always\]' $thp; then note "transparent_hugepage" "always" "madvise or never"; differ=1; fi

# Shards default to one per online CPU; the IRQs of the NIC should be spread over the same CPUs.
cpus=$(nproc)
if command -v ethtool >/dev/null 2>&1; then
  for dev in $(ls /sys/class/net | grep -v '^lo$'); do
    q=$(ls -d /sys/class/net/"$dev"/queues/rx-* 2>/dev/null | wc -l)
    [ "$q" -gt 0 ] && [ "$q" -lt "$cpus" ] && note "$dev rx queues" "$q" ">= $cpus (or --shards $q)"
  done
fi

if [ $differ = 0 ]; then echo "host matches tuning/sysctl.conf"; fi
exit $differ
