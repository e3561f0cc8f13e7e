#!/usr/bin/env bash
# Makes samples/rootfs.ext4: a small ext4 root filesystem (4 MiB, 4 KiB blocks) built from a tiny tree with
# `mkfs.ext4 -d`, with fixed UUID, hash seed and timestamps so that re-running it gives the same bytes.
# Needs e2fsprogs >= 1.43 (Debian: e2fsprogs).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
mkdir -p "$root"/{etc,usr/bin,usr/lib,usr/share/doc/sample,var/lib}
printf 'sample-rootfs\n' > "$root/etc/hostname"
printf 'NAME="dm-verity sample rootfs"\nID=sample\nVERSION_ID=1\n' > "$root/usr/lib/os-release"
ln -s ../usr/lib/os-release "$root/etc/os-release"
printf '#!/bin/sh\necho hello from a verity-protected rootfs\n' > "$root/usr/bin/hello"
chmod 755 "$root/usr/bin/hello"
# Some incompressible content spanning many blocks, so corruption demos hit real file data.
head -c 1048576 /dev/zero | openssl enc -aes-128-ctr -nosalt -K 00112233445566778899aabbccddeeff -iv 0 2>/dev/null \
  > "$root/usr/lib/libsample.so"
seq 1 20000 > "$root/usr/share/doc/sample/numbers.txt"
find "$root" -exec touch -h -d @1700000000 {} +
rm -f rootfs.ext4
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -t ext4 -b 4096 -L rootfs -N 128 -O ^has_journal \
  -U 6d1e2ad9-3b8f-4f0e-9a36-2f4f8f6b3c11 -E hash_seed=0b9c4a0e-5d8e-4d43-8f0b-8a1a2b3c4d5e,root_owner=0:0 \
  -d "$root" rootfs.ext4 4M
sha256sum rootfs.ext4
