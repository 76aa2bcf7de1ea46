#!/bin/sh
# Installs fleetlet on this device: the binary for its arch, a config, the systemd unit; then runs fleetlet doctor.
#
#   curl -fsSLO https://<your-server>/fleetlet/install.sh
#   sudo sh install.sh --url 'https://<your-server>/fleetlet/fleetlet-linux-%ARCH%.xz' --sha256 <hex> \
#     --broker mqtts://broker.example.com:8883 --ca ./fleet-ca.crt --server https://k3s.example.com:6443
#
# With --hub and --enrol-token-file the device needs no certificate by hand: it makes its own key at its first
# start and the hub issues its certificate (add them to the line above: --hub https://hub.example.com
# --enrol-token-file ./enrol-token).
#
# With --server and no token given, it asks for the k3s token on the terminal without showing it (nothing lands
# in shell history or ps), and writes it to /etc/fleetlet/k3s-token (mode 0600). The device gets the AGENT token
# (K10<hash>::node:... from the server's /var/lib/rancher/k3s/server/agent-token) or a bootstrap token from
# `k3s token create --ttl 24h`: never the server token, which makes whoever reads this device cluster admin.
#
# Options (or the environment variable after each):
#   --binary FILE      a fleetlet binary already on this device             FLEETLET_BINARY
#   --url URL          where to download it; %ARCH% becomes x64, arm64 or armv7  FLEETLET_URL
#   --sha256 HEX       its sha256, 64 hex characters (required with --url; from SHA256SUMS)  FLEETLET_SHA256
#   --gz-sha256 HEX    sha256 of the .gz beside an .xz URL, taken instead when this device has no xz
#                      (package xz-utils)                                   FLEETLET_GZ_SHA256
#   --broker URL       mqtts://host:8883                                    FLEETLET_BROKER_URL
#   --ca FILE          CA certificate of the broker (the fleet CA)          FLEETLET_BROKER_CA
#   --ca-file FILE     the same as --ca
#   --hub URL          the hub that issues this device its certificate, https://  FLEETLET_HUB_URL
#   --enrol-token-file FILE  the fleet's bootstrap (enrolment) token: the device makes its own key and
#                      enrols with the hub at its first start; needs --hub and --ca   FLEETLET_ENROL_TOKEN_FILE
#   --server URL       k3s server, https://host:6443 (omit to run without k3s)  K3S_URL
#   --token-file FILE  file holding the k3s agent token (for automation)    K3S_TOKEN_FILE
#                      never as an argument (arguments are visible in ps); K3S_TOKEN=... works but stays in
#                      shell history
#   --name NAME        a name for this device shown to operators            FLEETLET_DEVICE_NAME
#   --root DIR         install under DIR instead of / (images, tests)       FLEETLET_ROOT
#   --no-start         do not enable and start the service
set -eu

BINARY=${FLEETLET_BINARY:-}
URL=${FLEETLET_URL:-}
SHA256=${FLEETLET_SHA256:-}
GZ_SHA256=${FLEETLET_GZ_SHA256:-}
BROKER=${FLEETLET_BROKER_URL:-}
CA=${FLEETLET_BROKER_CA:-}
SERVER=${K3S_URL:-}
TOKEN_FILE=${K3S_TOKEN_FILE:-}
HUB=${FLEETLET_HUB_URL:-}
ENROL_TOKEN_FILE=${FLEETLET_ENROL_TOKEN_FILE:-}
NAME=${FLEETLET_DEVICE_NAME:-}
ROOT=${FLEETLET_ROOT:-/}
START=yes

fatal() {
  echo "install.sh: $*" >&2
  exit 1
}

need_value() {
  [ "$#" -ge 2 ] || fatal "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --binary) need_value "$@"; BINARY=$2; shift 2 ;;
    --url) need_value "$@"; URL=$2; shift 2 ;;
    --sha256) need_value "$@"; SHA256=$2; shift 2 ;;
    --gz-sha256) need_value "$@"; GZ_SHA256=$2; shift 2 ;;
    --broker) need_value "$@"; BROKER=$2; shift 2 ;;
    --ca|--ca-file) need_value "$@"; CA=$2; shift 2 ;;
    --hub) need_value "$@"; HUB=$2; shift 2 ;;
    --enrol-token-file) need_value "$@"; ENROL_TOKEN_FILE=$2; shift 2 ;;
    --server) need_value "$@"; SERVER=$2; shift 2 ;;
    --token-file) need_value "$@"; TOKEN_FILE=$2; shift 2 ;;
    --token|--token=*) fatal "the token is never an argument (ps shows arguments to everyone): use --token-file FILE, or leave it out to be asked on the terminal" ;;
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --root) need_value "$@"; ROOT=$2; shift 2 ;;
    --no-start) START=no; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) fatal "unknown option $1 (see --help)" ;;
  esac
done

detect_arch() {
  machine=${FLEETLET_ARCH:-$(uname -m)}
  case "$machine" in
    x86_64|amd64|x64) echo x64 ;;
    aarch64|arm64) echo arm64 ;;
    armv7*|armhf) echo armv7 ;;
    armv6*) fatal "armv6 (Raspberry Pi Zero/1) is not supported: Node.js has no armv6 runtime" ;;
    *) fatal "unsupported architecture $machine" ;;
  esac
}

# Values go into YAML between double quotes: refuse anything that could break out of them.
NEWLINE='
'
check_value() {
  case "$2" in
    *\"*|*\\*|*"$NEWLINE"*) fatal "$1 contains a quote, backslash or newline" ;;
  esac
}

# Echo off while the token is typed; on a terminal only, so that piped input is never silently taken for a token.
ask_token() {
  # Echo goes off before the prompt shows: a token typed as soon as the prompt appears is not shown either.
  stty -echo
  trap 'stty echo; exit 130' INT TERM
  printf 'k3s agent token for %s (typing is not shown): ' "$SERVER" >&2
  IFS= read -r TOKEN || true
  stty echo
  trap - INT TERM
  echo >&2
}

download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fatal "neither curl nor wget is installed"
  fi
}

ARCH=$(detect_arch)
# fleetlet reads FLEETLET_* variables as configuration (and refuses unknown ones): the inputs of this script
# must not reach it. K3S_TOKEN is kept in TOKEN until it is written to its file.
TOKEN=${K3S_TOKEN:-}
unset FLEETLET_BINARY FLEETLET_URL FLEETLET_SHA256 FLEETLET_GZ_SHA256 FLEETLET_BROKER_URL FLEETLET_BROKER_CA FLEETLET_DEVICE_NAME \
  FLEETLET_ROOT FLEETLET_ARCH K3S_TOKEN K3S_TOKEN_FILE K3S_URL FLEETLET_HUB_URL FLEETLET_ENROL_TOKEN_FILE
[ -n "$BROKER" ] || fatal "give the broker: --broker mqtts://host:8883"
for pair in "broker:$BROKER" "server:$SERVER" "name:$NAME" "hub:$HUB"; do check_value "${pair%%:*}" "${pair#*:}"; done
if [ -n "$HUB" ] || [ -n "$ENROL_TOKEN_FILE" ]; then
  # The token is copied by fleetlet provision (0600); only its path is ever an argument.
  [ -n "$ENROL_TOKEN_FILE" ] || fatal "--hub needs --enrol-token-file FILE (the fleet's bootstrap token)"
  [ -n "$HUB" ] || fatal "--enrol-token-file needs --hub https://<hub>"
  [ -n "$CA" ] || fatal "enrolment needs --ca-file FILE: the fleet CA that signs the hub and the device certificates"
  case "$HUB" in https://*) ;; *) fatal "--hub must be an https:// URL (the bootstrap token crosses it)" ;; esac
  if [ ! -f "$ENROL_TOKEN_FILE" ] || [ ! -r "$ENROL_TOKEN_FILE" ]; then fatal "cannot read the enrolment token file $ENROL_TOKEN_FILE"; fi
fi
# Each goes into a sha256sum check list: anything but one hash could add lines of its own.
check_sha256() {
  [ -n "$2" ] || return 0
  case "$2" in *[!0-9a-fA-F]*) fatal "$1 must be 64 hex characters (the hash from SHA256SUMS); it has other characters" ;; esac
  [ "${#2}" -eq 64 ] || fatal "$1 must be 64 hex characters (the hash from SHA256SUMS); it has ${#2}"
}
check_sha256 --sha256 "$SHA256"
check_sha256 --gz-sha256 "$GZ_SHA256"
if [ -n "$SERVER" ]; then
  # read is a shell builtin: the token never becomes an argument of another process.
  if [ -z "$TOKEN" ] && [ -n "$TOKEN_FILE" ]; then
    if [ ! -f "$TOKEN_FILE" ] || [ ! -r "$TOKEN_FILE" ]; then fatal "cannot read the token file $TOKEN_FILE"; fi
    IFS= read -r TOKEN < "$TOKEN_FILE" || true
  elif [ -z "$TOKEN" ] && [ -t 0 ]; then
    ask_token
  fi
  [ -n "$TOKEN" ] || fatal "k3s needs a join token (the agent token): --token-file FILE, or run on a terminal to be asked"
  case "$TOKEN" in
    K10*::server:*) echo "install.sh: warning: this is the k3s SERVER token: whoever reads it from this device administers the whole cluster; give devices the agent token (see packaging/cloud/k3s-server/config.yaml)" >&2 ;;
  esac
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM

if [ -n "$URL" ]; then
  [ -n "$SHA256" ] || fatal "--url needs --sha256 (the line for this file in SHA256SUMS)"
  URL=$(printf '%s' "$URL" | sed "s/%ARCH%/$ARCH/g")
  # Releases are .xz (a third smaller); a device without xz takes the .gz published beside it.
  case "$URL" in
    *.xz)
      if ! command -v xz >/dev/null 2>&1; then
        [ -n "$GZ_SHA256" ] || fatal "$URL is xz-compressed and xz is not installed: apt-get install xz-utils, or give --gz-sha256 (the hash of the .gz in SHA256SUMS) to take the .gz instead"
        URL="${URL%.xz}.gz"
        SHA256=$GZ_SHA256
        echo "xz is not installed: taking the .gz instead"
      fi ;;
  esac
  echo "downloading $URL"
  download "$URL" "$WORK/download"
  echo "$SHA256  $WORK/download" | sha256sum -c - >/dev/null 2>&1 || fatal "sha256 of $URL does not match $SHA256"
  case "$URL" in
    *.xz) xz -dc "$WORK/download" > "$WORK/fleetlet" || fatal "$URL is not a valid .xz file" ;;
    *.gz) gunzip -c "$WORK/download" > "$WORK/fleetlet" ;;
    *) mv "$WORK/download" "$WORK/fleetlet" ;;
  esac
elif [ -n "$BINARY" ]; then
  [ -f "$BINARY" ] || fatal "no such file: $BINARY"
  if [ -n "$SHA256" ]; then
    echo "$SHA256  $BINARY" | sha256sum -c - >/dev/null 2>&1 || fatal "sha256 of $BINARY does not match $SHA256"
  fi
  cp "$BINARY" "$WORK/fleetlet"
else
  fatal "give the binary: --binary FILE, or --url URL --sha256 HEX"
fi
chmod 0755 "$WORK/fleetlet"
"$WORK/fleetlet" --version >/dev/null 2>&1 || fatal "the fleetlet binary does not run on this $ARCH device"

ETC="$ROOT/etc/fleetlet"
mkdir -p "$ETC"
chmod 0750 "$ETC"
umask 077
if [ -n "$SERVER" ]; then
  # printf is a shell builtin: the token never becomes an argument of another process.
  printf '%s\n' "$TOKEN" > "$ETC/k3s-token.new"
  chmod 0600 "$ETC/k3s-token.new"
  mv "$ETC/k3s-token.new" "$ETC/k3s-token"
fi

TRUST_ARGS=""
CA_LINE=""
if [ -n "$CA" ]; then
  [ -f "$CA" ] || fatal "no such file: $CA"
  CA_NAME=$(basename "$CA")
  check_value ca "$CA_NAME"
  TRUST_ARGS="--trust-anchor"
  CA_LINE="  tls:
    caFile: \"/etc/fleetlet/trust/$CA_NAME\""
fi

{
  echo "# Written by install.sh. Every key: fleetlet config schema; check it with: fleetlet config check"
  [ -z "$NAME" ] || printf 'device:\n  name: "%s"\n' "$NAME"
  printf 'broker:\n  url: "%s"\n' "$BROKER"
  [ -z "$CA_LINE" ] || echo "$CA_LINE"
  if [ -n "$SERVER" ]; then
    printf 'k3s:\n  serverUrl: "%s"\n  tokenFile: /etc/fleetlet/k3s-token\n' "$SERVER"
  else
    printf 'k3s:\n  enabled: false\n'
  fi
} > "$WORK/config.yaml"
umask 022

# The binary writes itself, the config, the CA, the enrolment token and the unit: the same code that provisions
# factory images.
if [ -n "$HUB" ]; then
  "$WORK/fleetlet" provision --root "$ROOT" --arch "$ARCH" --binary "$WORK/fleetlet" --config "$WORK/config.yaml" --trust-anchor "$CA" --allow-identity \
    --enrol-token-file "$ENROL_TOKEN_FILE" --hub "$HUB" --ca-file "$CA"
elif [ -n "$TRUST_ARGS" ]; then
  "$WORK/fleetlet" provision --root "$ROOT" --arch "$ARCH" --binary "$WORK/fleetlet" --config "$WORK/config.yaml" --trust-anchor "$CA" --allow-identity
else
  "$WORK/fleetlet" provision --root "$ROOT" --arch "$ARCH" --binary "$WORK/fleetlet" --config "$WORK/config.yaml" --allow-identity
fi

if [ "$START" = yes ] && [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable fleetlet.service
  # restart, not start: a re-run (an upgrade) must run the new binary. k3s stays up: a restart of fleetlet never
  # stops it (KillMode=process), and the new fleetlet adopts it.
  systemctl restart fleetlet.service
  echo "fleetlet.service started; logs: journalctl -u fleetlet -f"
  if [ -n "$HUB" ]; then
    # Give the first enrolment a minute, so that doctor checks the certificate the device got, not its absence.
    echo "enrolling with $HUB ..."
    waited=0
    while [ ! -f /var/lib/fleetlet/enrolment/current/device.pem ] && [ "$waited" -lt 60 ]; do sleep 2; waited=$((waited + 2)); done
  fi
else
  echo "not starting the service (root $ROOT, --no-start, or no systemd)"
fi

echo "checking this device:"
if "$ROOT/usr/local/bin/fleetlet" doctor --root "$ROOT" --config "$ETC/config.yaml"; then
  echo "fleetlet is installed and the device is ready."
else
  echo "fleetlet is installed; fix what doctor reports above (the service keeps retrying meanwhile)."
fi
