#!/usr/bin/env bash
# Makes the Dockerfile's base images, debian:12 and debian:12-slim, from Debian's archive when no registry can
# be reached: `debootstrap --variant=minbase bookworm`, imported into podman's storage as
# docker.io/library/debian:12 and docker.io/library/debian:12-slim (the names `FROM debian:12` resolves to).
# Only a missing tag is made; an existing one is left alone. Needs root, podman and debootstrap.
#
#   make-base-images.sh                 the mirror is the one apt uses on this machine (its bookworm source)
#   make-base-images.sh --mirror URL    another Debian mirror (e.g. http://deb.debian.org/debian)
#   make-base-images.sh --force         remake both tags even when they exist
#
# What differs from Docker Hub's images (which debuerreotype also makes with minbase): these are built here,
# today, from the mirror given; they take debuerreotype's apt settings (no package cache files, no
# translations: without them each `apt-get update` leaves tens of MB of /var/cache/apt/*.bin in its layer) but
# none of its other tweaks. -slim is the same tree with
# /usr/share/{man,info,locale} emptied, only copyright files left in /usr/share/doc, and Docker Hub's dpkg
# path-excludes in /etc/dpkg/dpkg.cfg.d/docker, so that later `apt-get install`s leave those out too.
#
# Exit status: 0 both images present, 1 a step failed, 2 cannot run here (not root, a tool missing, bad flag).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
refuse() { echo "make-base-images.sh: $*" >&2; exit 2; }

mirror=
force=0
while [ $# -gt 0 ]; do
  case $1 in
    --mirror) mirror=${2:?--mirror needs a URL}; shift 2 ;;
    --mirror=*) mirror=${1#*=}; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) refuse "unknown argument '$1' (see --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || refuse "it must run as root (debootstrap and podman's storage)"
for tool in podman debootstrap tar; do
  command -v "$tool" >/dev/null || refuse "'$tool' is missing (Debian package: $tool)"
done

# apt_source SUITE: the first URI apt uses for SUITE, from sources.list (one-line form) or *.sources (deb822).
apt_source() {
  local suite=$1
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == s) print $i }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      # one stanza per paragraph: print its URIs when its Suites list SUITE and its Types list deb
      awk -v s="$suite" 'BEGIN { RS = "" } {
          uris = ""; deb = 0; hit = 0
          n = split($0, lines, "\n")
          for (k = 1; k <= n; k++) {
            if (lines[k] ~ /^URIs:/) { uris = lines[k]; sub(/^URIs:[ \t]*/, "", uris) }
            if (lines[k] ~ /^Types:/ && lines[k] ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
            if (lines[k] ~ /^Suites:/) { m = split(lines[k], w, /[ \t]+/); for (j = 2; j <= m; j++) if (w[j] == s) hit = 1 }
          }
          if (deb && hit && uris != "") { split(uris, u, /[ \t]+/); print u[1] }
        }' "$f"
    done
  } | head -n 1
}

if [ -z "$mirror" ]; then
  mirror=$(apt_source bookworm)
  [ -n "$mirror" ] || refuse "apt has no bookworm source in /etc/apt/sources.list{,.d}: give --mirror URL"
fi
security=$(apt_source bookworm-security)

full=docker.io/library/debian:12
slim=docker.io/library/debian:12-slim
want=()
for tag in "$full" "$slim"; do
  if [ "$force" -eq 1 ] || ! podman image exists "$tag"; then want+=("$tag"); fi
done
if [ ${#want[@]} -eq 0 ]; then
  echo "make-base-images.sh: $full and $slim are already present (--force remakes them)"
  exit 0
fi

work=$(mktemp -d /tmp/pp-debian-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
echo "== debootstrap --variant=minbase bookworm from $mirror (log: $work/debootstrap.log while it runs)"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  echo "make-base-images.sh: debootstrap failed" >&2
  exit 1
fi

# The image's apt sources: the same archive (and security archive, when apt has one here) the tree came from.
{
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
  printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  if [ -n "$security" ]; then
    printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
  fi
} >"$root/etc/apt/sources.list.d/debian.sources"
rm -f "$root/etc/apt/sources.list"
# Docker Hub's apt settings for images (debuerreotype's): apt keeps no binary cache or downloaded packages
# in a layer, and fetches no translations.
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
# What a container image has no use for: downloaded packages, package lists, the build host's name.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"

# An imported tree has no image config: give it Docker Hub's PATH and CMD.
import() {  # import TAG
  tar --numeric-owner -C "$root" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm $mirror" - "$1" >/dev/null
  echo "== $1: $(podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1e6}')"
}

if [[ " ${want[*]} " == *" $full "* ]]; then import "$full"; fi
if [[ " ${want[*]} " == *" $slim "* ]]; then
  # Docker Hub's -slim: no documentation, manual pages or translations, now or in what apt installs later.
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
CFG
  import "$slim"
fi
