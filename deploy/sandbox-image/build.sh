#!/usr/bin/env bash
# Builds the default sandbox image from Debian's packages, without a registry.
#
#   build.sh LOCAL_IMAGE [ALIAS]
#
# LOCAL_IMAGE (e.g. cloud-sandbox/python:3.11-slim) is built with debootstrap
# and `docker import` unless it already exists. ALIAS (e.g. python:3.11-slim)
# is then tagged to it only when no image of that name exists, so a real
# pulled image is never shadowed. See README.md beside this file.
#
# Environment:
#   DEBIAN_MIRROR  mirror URL; default: read from the machine's apt sources
#   DEBIAN_SUITE   default bookworm (Python 3.11)
#   EXTRA_PACKAGES comma-separated packages added to the default set
set -euo pipefail

LOCAL_IMAGE=${1:?usage: build.sh LOCAL_IMAGE [ALIAS]}
ALIAS=${2:-}
SUITE=${DEBIAN_SUITE:-bookworm}
PACKAGES="python3,python-is-python3,bash,coreutils,findutils,grep,sed,gawk,tar,gzip,procps,ca-certificates"
[ -n "${EXTRA_PACKAGES:-}" ] && PACKAGES="$PACKAGES,$EXTRA_PACKAGES"
SANDBOX_UID=1000
# Bumped whenever the image's layout changes, so an older build is replaced.
# 2: /workspace is mode 1777 (a tmpfs mounted there takes that mode).
IMAGE_REV=2
REV_LABEL=org.cloud-sandbox.image-rev
SOURCE_LABEL=org.opencontainers.image.source

log() { printf 'sandbox-image: %s\n' "$*"; }
die() { printf 'sandbox-image: error: %s\n' "$*" >&2; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
label_of() { docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null; }

# tag_alias points ALIAS at LOCAL_IMAGE unless ALIAS names an image already.
tag_alias() {
	if [ -z "$ALIAS" ] || [ "$ALIAS" = "$LOCAL_IMAGE" ]; then
		return
	fi
	if image_exists "$ALIAS"; then
		if [ "$(docker image inspect --format '{{.Id}}' "$ALIAS")" = "$(docker image inspect --format '{{.Id}}' "$LOCAL_IMAGE")" ]; then
			log "$ALIAS already points to $LOCAL_IMAGE"
		elif [ "$(label_of "$ALIAS" "$SOURCE_LABEL")" = cloud-sandbox/deploy/sandbox-image ]; then
			docker tag "$LOCAL_IMAGE" "$ALIAS"
			log "re-tagged $ALIAS (an older build of ours) -> $LOCAL_IMAGE"
		else
			log "$ALIAS exists locally; left as it is (not shadowed by $LOCAL_IMAGE)"
		fi
	else
		docker tag "$LOCAL_IMAGE" "$ALIAS"
		log "tagged $ALIAS -> $LOCAL_IMAGE"
	fi
}

# debian_mirror prints the first enabled deb URI that serves $SUITE, from
# one-line sources.list files and deb822 .sources files.
debian_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($(i+1) == suite) { print $i; exit }
			}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v suite="$SUITE" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uris != "") {
					split(uris, u, " "); print u[1]; found = 1
				}
				types = ""; uris = ""; suites = ""; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); if (found) exit; next }
			{
				key = tolower($1); sub(/:$/, "", key)
				val = $0; sub(/^[^:]*:[ \t]*/, "", val)
				if (key == "types") types = val
				else if (key == "uris") uris = val
				else if (key == "suites") suites = val
				else if (key == "enabled") enabled = tolower(val)
			}
			END { if (!found) flush() }' "$f"
	done
}

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon"

# Serialise concurrent builds (parallel test packages call this script).
exec 9>"${TMPDIR:-/tmp}/cloud-sandbox-image.lock"
flock -w 600 9 || die "timed out waiting for another build of $LOCAL_IMAGE"

if image_exists "$LOCAL_IMAGE" && [ "$(label_of "$LOCAL_IMAGE" "$REV_LABEL")" = "$IMAGE_REV" ]; then
	log "$LOCAL_IMAGE exists; nothing to build"
	tag_alias
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building $LOCAL_IMAGE needs root (debootstrap); run as root or build it once with sudo"
start=$(date +%s)

if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap debian-archive-keyring >/dev/null
fi

MIRROR=${DEBIAN_MIRROR:-$(debian_mirror | head -n1)}
[ -n "$MIRROR" ] || die "no apt source for suite $SUITE in /etc/apt; set DEBIAN_MIRROR to a Debian mirror URL"

ROOT=$(mktemp -d "${TMPDIR:-/var/tmp}/cloud-sandbox-rootfs.XXXXXX")
trap 'rm -rf --one-file-system "$ROOT"' EXIT

KEYRING=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && KEYRING=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

log "debootstrap $SUITE from $MIRROR (packages: $PACKAGES)"
if ! debootstrap --variant=minbase "${KEYRING[@]}" --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1; then
	tail -n 30 "$ROOT.log" >&2
	rm -f "$ROOT.log"
	die "debootstrap failed"
fi
rm -f "$ROOT.log"

# The non-root user every sandbox runs as; its home is the workspace.
chroot "$ROOT" groupadd --gid "$SANDBOX_UID" sandbox
chroot "$ROOT" useradd --uid "$SANDBOX_UID" --gid "$SANDBOX_UID" --home-dir /workspace --no-create-home --shell /bin/bash sandbox

# Mount points: the driver mounts tmpfs on /workspace and /tmp, the agent's
# socket directory on /run/sandbox and the agent binary under /.sandbox.
mkdir -p "$ROOT/workspace" "$ROOT/tmp" "$ROOT/run/sandbox" "$ROOT/.sandbox"
# runc gives a tmpfs mounted on an existing directory that directory's mode,
# and Nomad's tmpfs mounts take no uid: 1777 lets the sandbox user write to
# /workspace under both drivers (Docker's tmpfs also gets uid=1000).
chown "$SANDBOX_UID:$SANDBOX_UID" "$ROOT/workspace"
chmod 1777 "$ROOT/workspace" "$ROOT/tmp"

# Trim what a sandbox never needs.
rm -rf "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
	"$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/* "$ROOT"/var/cache/debconf/*-old \
	"$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* \
	"$ROOT"/usr/share/locale/* "$ROOT"/usr/share/lintian "$ROOT"/tmp/*
find "$ROOT/usr/lib" -name '__pycache__' -type d -prune -exec rm -rf {} +

log "importing into Docker as $LOCAL_IMAGE"
tar --numeric-owner -C "$ROOT" -c . | docker import \
	--change 'USER 1000:1000' \
	--change 'WORKDIR /workspace' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'ENV HOME=/workspace' \
	--change 'CMD ["python3"]' \
	--change "LABEL $SOURCE_LABEL=cloud-sandbox/deploy/sandbox-image $REV_LABEL=$IMAGE_REV" \
	--message "debootstrap $SUITE minbase + $PACKAGES" \
	- "$LOCAL_IMAGE" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$LOCAL_IMAGE")
log "built $LOCAL_IMAGE ($((size / 1024 / 1024)) MB) in $(($(date +%s) - start)) s"
tag_alias
