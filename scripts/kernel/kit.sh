#!/usr/bin/env bash
# Builds (once, cached) what test/kernel/kernel.test.ts needs to check our output against the Linux kernel's
# dm-verity: Debian's kernel (vmlinuz + modules), a small initramfs (busybox-static, dmsetup with its shared
# libraries, the dm-verity / virtio modules, scripts/kernel/init.sh as /init) and qemu-system-x86_64 on the host.
# Everything comes from Debian packages through apt. Nothing is installed into the host's /boot.
#
#   bash scripts/kernel/kit.sh            # build or reuse .cache/kernel-kit/
#   KERNEL_KIT_DIR=/some/dir bash ...     # somewhere else
#   KERNEL_KIT_REFRESH=1 bash ...         # download again (e.g. after a Debian kernel update)
#
# Output: $KIT/vmlinuz, $KIT/initramfs.cpio.gz and $KIT/kit.json (paths and package versions, read by the test).
set -euo pipefail

say() { printf 'kit: %s\n' "$*" >&2; }
die() { printf 'kit: ERROR: %s\n' "$*" >&2; exit 1; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KIT="${KERNEL_KIT_DIR:-$ROOT/.cache/kernel-kit}"
INIT_SRC="$HERE/init.sh"
META_PKG=linux-image-amd64
# Modules the guest loads (with everything modules.dep says they need), when the kernel builds them as modules.
WANTED_MODULES=(virtio_pci virtio_blk dm-mod dm-bufio dm-verity sha512_generic)

[ -f "$INIT_SRC" ] || die "missing $INIT_SRC"
mkdir -p "$KIT"

# The initramfs depends on this script and on init.sh: a change to either rebuilds it (downloads are kept).
recipe_sum="$(cat "$0" "$INIT_SRC" | sha256sum | cut -c1-16)"
if [ -z "${KERNEL_KIT_REFRESH:-}" ] && [ -f "$KIT/kit.json" ] && [ -f "$KIT/vmlinuz" ] && [ -f "$KIT/initramfs.cpio.gz" ] \
  && grep -q "\"recipe\": \"$recipe_sum\"" "$KIT/kit.json" && command -v qemu-system-x86_64 >/dev/null; then
  say "up to date: $KIT (KERNEL_KIT_REFRESH=1 to rebuild)"
  exit 0
fi

command -v apt-get >/dev/null && command -v apt-cache >/dev/null && command -v dpkg-deb >/dev/null \
  || die "apt-get / apt-cache / dpkg-deb not found: the kernel kit needs a Debian (bookworm) host with apt"

apt_updated=
apt_update_once() {
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed (is a Debian mirror reachable?)"
    apt_updated=1
  fi
}

host_install() { # host_install <command> <package>
  if ! command -v "$1" >/dev/null; then
    [ "$(id -u)" = 0 ] || die "$1 is missing and installing $2 needs root: apt-get install -y --no-install-recommends $2"
    say "installing $2 on the host (for $1)"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2 \
      || die "apt-get install $2 failed"
  fi
}
host_install qemu-system-x86_64 qemu-system-x86
host_install dmsetup dmsetup
host_install ldd libc-bin

# The kernel package the metapackage points at (linux-image-6.1.0-NN-amd64).
kernel_pkg() { apt-cache depends "$META_PKG" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
KPKG="$(kernel_pkg)"
if [ -z "$KPKG" ]; then apt_update_once; KPKG="$(kernel_pkg)"; fi
[ -n "$KPKG" ] || die "apt-cache cannot resolve $META_PKG to a kernel package"
KPKG_VERSION="$(apt-cache show "$KPKG" | awk '/^Version:/ { print $2; exit }')"
META_VERSION="$(apt-cache show "$META_PKG" | awk '/^Version:/ { print $2; exit }')"
BB_VERSION="$(apt-cache show busybox-static | awk '/^Version:/ { print $2; exit }')"
say "kernel package: $KPKG $KPKG_VERSION (via $META_PKG $META_VERSION); busybox-static $BB_VERSION"

DEBS="$KIT/debs"
mkdir -p "$DEBS"
chmod 0777 "$DEBS" # lets apt's _apt user write there (otherwise apt warns and downloads as root)
fetch_deb() { # fetch_deb <package> <version> -> path of the .deb
  local f
  f="$(ls "$DEBS"/"$1"_*.deb 2>/dev/null | grep -F "_$(printf '%s' "$2" | sed 's/:/%3a/')_" | head -n1 || true)"
  if [ -z "$f" ] || [ -n "${KERNEL_KIT_REFRESH:-}" ]; then
    say "apt-get download $1=$2"
    (cd "$DEBS" && apt-get download -qq "$1=$2" >&2) || { apt_update_once; (cd "$DEBS" && apt-get download -qq "$1=$2" >&2); } \
      || die "apt-get download $1=$2 failed"
    f="$(ls -t "$DEBS"/"$1"_*.deb | head -n1)"
  else
    say "cached: $(basename "$f")"
  fi
  printf '%s\n' "$f"
}
KDEB="$(fetch_deb "$KPKG" "$KPKG_VERSION")"
BBDEB="$(fetch_deb busybox-static "$BB_VERSION")"

KROOT="$KIT/kernel-root"
BBROOT="$KIT/busybox-root"
if [ ! -f "$KROOT/.from" ] || [ "$(cat "$KROOT/.from")" != "$(basename "$KDEB")" ]; then
  say "unpacking $(basename "$KDEB") into $KROOT"
  rm -rf "$KROOT"; mkdir -p "$KROOT"
  dpkg-deb -x "$KDEB" "$KROOT"
  basename "$KDEB" >"$KROOT/.from"
fi
if [ ! -f "$BBROOT/.from" ] || [ "$(cat "$BBROOT/.from")" != "$(basename "$BBDEB")" ]; then
  say "unpacking $(basename "$BBDEB") into $BBROOT"
  rm -rf "$BBROOT"; mkdir -p "$BBROOT"
  dpkg-deb -x "$BBDEB" "$BBROOT"
  basename "$BBDEB" >"$BBROOT/.from"
fi
BB="$BBROOT/bin/busybox"
[ -x "$BB" ] || die "busybox-static did not contain bin/busybox"

KREL="$(ls "$KROOT/lib/modules" | head -n1)"
[ -n "$KREL" ] || die "no lib/modules/<release> in $KDEB"
VMLINUZ_SRC="$KROOT/boot/vmlinuz-$KREL"
[ -f "$VMLINUZ_SRC" ] || die "no boot/vmlinuz-$KREL in $KDEB"
MODDIR="$KROOT/lib/modules/$KREL"
CONFIG="$KROOT/boot/config-$KREL"

# The package ships no modules.dep (depmod runs at install time): make one with busybox's depmod.
if [ ! -s "$MODDIR/modules.dep" ]; then
  say "depmod (busybox) for $KREL"
  "$BB" depmod -b "$KROOT" "$KREL"
fi

# --- initramfs tree ---
STAGE="$KIT/initramfs-root"
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,tmp,modules}
cp "$BB" "$STAGE/bin/busybox"
ln -s busybox "$STAGE/bin/sh"
cp "$INIT_SRC" "$STAGE/init"
chmod 0755 "$STAGE/init"

# dmsetup and the shared libraries ldd names, at the same paths.
DMSETUP="$(command -v dmsetup)"
cp "$DMSETUP" "$STAGE/sbin/dmsetup"
for lib in $(ldd "$DMSETUP" | awk '/=>/ { print $3; next } $1 ~ /^\// { print $1 }'); do
  [ -f "$lib" ] || continue
  mkdir -p "$STAGE$(dirname "$lib")"
  cp -L "$lib" "$STAGE$lib"
done
DMSETUP_VERSION="$(dpkg-query -W -f='${Version}' dmsetup 2>/dev/null || echo unknown)"

# Modules in load order: each module after everything modules.dep lists for it.
declare -A seen=()
order=()
add_module() { # add_module <path relative to MODDIR>
  local rel="$1" dep deps
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  deps="$(awk -v m="$rel:" '$1 == m { $1 = ""; print; exit }' "$MODDIR/modules.dep")"
  for dep in $deps; do add_module "$dep"; done
  order+=("$rel")
}
for m in "${WANTED_MODULES[@]}"; do
  alt="${m//-/_}"
  rel="$(awk -F: -v a="/$m.ko" -v b="/$alt.ko" '{ n = $1; sub(/\.(xz|zst|gz)$/, "", n) } n ~ (a "$") || n ~ (b "$") { print $1; exit }' "$MODDIR/modules.dep")"
  if [ -z "$rel" ]; then
    if grep -qE "/($m|$alt)\.ko" "$MODDIR/modules.builtin"; then say "module $m is built in"; continue; fi
    die "module $m is neither in modules.dep nor built in ($KREL)"
  fi
  add_module "$rel"
done
: >"$STAGE/modules/load.list"
for rel in "${order[@]}"; do
  base="$(basename "$rel")"
  case "$base" in
    *.ko.xz) xz -dc "$MODDIR/$rel" >"$STAGE/modules/${base%.xz}"; base="${base%.xz}" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$rel" >"$STAGE/modules/${base%.zst}"; base="${base%.zst}" ;;
    *.ko.gz) gzip -dc "$MODDIR/$rel" >"$STAGE/modules/${base%.gz}"; base="${base%.gz}" ;;
    *) cp "$MODDIR/$rel" "$STAGE/modules/$base" ;;
  esac
  echo "$base" >>"$STAGE/modules/load.list"
done
say "modules: $(tr '\n' ' ' <"$STAGE/modules/load.list")"

cat >"$STAGE/kit-versions" <<EOF
kernel_package=$KPKG $KPKG_VERSION
kernel_release=$KREL
busybox=$BB_VERSION
dmsetup=$DMSETUP_VERSION
EOF

say "packing initramfs (newc, gzip)"
(cd "$STAGE" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc 2>/dev/null | gzip -9n) >"$KIT/initramfs.cpio.gz.tmp"
mv "$KIT/initramfs.cpio.gz.tmp" "$KIT/initramfs.cpio.gz"
cp "$VMLINUZ_SRC" "$KIT/vmlinuz"

QEMU_VERSION="$(qemu-system-x86_64 --version | head -n1)"
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cat >"$KIT/kit.json.tmp" <<EOF
{
  "recipe": "$recipe_sum",
  "kernelPackage": "$(json_str "$KPKG")",
  "kernelPackageVersion": "$(json_str "$KPKG_VERSION")",
  "metaPackageVersion": "$(json_str "$META_VERSION")",
  "kernelRelease": "$(json_str "$KREL")",
  "busyboxVersion": "$(json_str "$BB_VERSION")",
  "dmsetupVersion": "$(json_str "$DMSETUP_VERSION")",
  "qemu": "$(json_str "$(command -v qemu-system-x86_64)")",
  "qemuVersion": "$(json_str "$QEMU_VERSION")",
  "vmlinuz": "$(json_str "$KIT/vmlinuz")",
  "initramfs": "$(json_str "$KIT/initramfs.cpio.gz")",
  "dmVerityBuiltin": $(grep -q '^CONFIG_DM_VERITY=y' "$CONFIG" && echo true || echo false)
}
EOF
mv "$KIT/kit.json.tmp" "$KIT/kit.json"
say "ready: $KIT ($KPKG $KPKG_VERSION, initramfs $(du -h "$KIT/initramfs.cpio.gz" | cut -f1))"
