#!/bin/sh
# Captures the /proc and /sys files telemetry reads from this machine into test/fixtures/proc/<name>/, laid out
# as they are below / so the sampler can read the copy through its root directory. A second /proc/stat, taken a
# second later, lands in <name>/stat.later for the CPU-percentage tests.
#   usage: scripts/capture-proc-fixtures.sh <name>
set -eu
name="${1:?usage: $0 <fixture name>}"
case "$name" in */* | .*) echo "fixture name must be a plain word" >&2; exit 64 ;; esac
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/test/fixtures/proc/$name"
rm -rf "$out"
mkdir -p "$out"

copy() {
  # cat rather than cp: procfs and sysfs report a size of 0 or 4096 whatever the content.
  [ -r "$1" ] || return 0
  mkdir -p "$out$(dirname "$1")"
  cat "$1" > "$out$1" 2>/dev/null || rm -f "$out$1"
}

for file in /proc/stat /proc/loadavg /proc/meminfo /proc/net/dev /proc/uptime /proc/cpuinfo \
  /proc/device-tree/model /proc/device-tree/serial-number \
  /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq \
  /sys/devices/platform/soc/soc:firmware/get_throttled; do
  copy "$file"
done
for zone in /sys/class/thermal/thermal_zone*; do
  [ -d "$zone" ] || continue
  copy "$zone/type"
  copy "$zone/temp"
done
sleep 1
cat /proc/stat > "$out/stat.later"
echo "captured $(find "$out" -type f | wc -l) files into test/fixtures/proc/$name"
