/**
 * The systemd unit fleetlet installs (packaging/fleetlet.service is a copy, kept equal by a test). It lives in
 * the code because the single binary writes it: `fleetlet provision` and install.sh need no other file.
 */
export const UNIT_NAME = 'fleetlet.service';

export const SYSTEMD_UNIT = `# fleetlet: the k3s edge fleet agent. It starts, supervises and adopts \`k3s agent\` itself, so this unit replaces
# k3s-agent.service on a fleetlet device.
[Unit]
Description=fleetlet edge fleet agent
Wants=network-online.target
After=network-online.target time-sync.target
Conflicts=k3s-agent.service
# Restart=always must never give up on an unattended device.
StartLimitIntervalSec=0

[Service]
Type=notify
# READY/WATCHDOG come from \`systemd-notify --pid=<fleetlet>\`, a child process.
NotifyAccess=all
ExecStart=/usr/local/bin/fleetlet agent --config /etc/fleetlet/config.yaml
# One malloc arena: glibc's per-thread arenas (V8's GC threads) kept 10-12 MiB more RSS after a drain of a large
# backlog (docs/benchmarks.md, "Memory while draining"). The agent's few threads do not contend for it.
Environment=MALLOC_ARENA_MAX=1
Restart=always
RestartSec=5s
TimeoutStartSec=120s
WatchdogSec=60s
# Only fleetlet is signalled on stop or restart: k3s and the container shims stay up across a stop or restart of
# fleetlet, and the next fleetlet adopts the running k3s. Stopping k3s is explicit: \`fleetlet k3s stop\` (one SIGTERM).
KillMode=process
# Room for a command under way to save its step before systemd gives up.
TimeoutStopSec=90s
# k3s manages cgroups below this unit and runs many processes and files, as in k3s's own unit.
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
TasksMax=infinity
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
# Before every start: if a self-update is on trial and the new binary did not confirm itself, put the previous
# binary back. Plain sh, so the revert never depends on the new binary working; the agent writes the script.
ExecStartPre=-/bin/sh /var/lib/fleetlet/upgrade-guard.sh /var/lib/fleetlet/agent-upgrade.state
StateDirectory=fleetlet
StateDirectoryMode=0700
# /run/fleetlet (tmpfs, the default runtimeDir): status samples wait there instead of on the SD card. Kept across
# restarts of fleetlet (a restart loses no sample); gone with a reboot, after a clean stop committed it to disk.
RuntimeDirectory=fleetlet
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
CacheDirectory=fleetlet
CacheDirectoryMode=0700
ConfigurationDirectory=fleetlet
ConfigurationDirectoryMode=0750
# Hardening stops where k3s starts: everything below is inherited by k3s, containerd and every container.
# ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices and ReadOnlyPaths put the service in its own mount
# namespace, which hides kubelet's volume mounts from the host; NoNewPrivileges, SystemCallFilter,
# RestrictRealtime, ProtectClock, LockPersonality and MemoryDenyWriteExecute are seccomp or prctl settings that
# every container would inherit; CapabilityBoundingSet would cap every container. None of them is set here.
# What is left: no core dumps that could hold secrets, and a low OOM score so the agent outlives its workloads.
LimitCORE=0
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
`;
