#!/bin/sh
# Rebuilds the fuzz seed images in test/fixtures/fuzz (see its README.md). Needs the built CLI (npm run build),
# mkfs.ext4, sgdisk, qemu-img, qemu-io, zip and gzip. Deterministic except for ext4's and qemu's own GUIDs/timestamps.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$repo/test/fixtures/fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
verity() { node "$repo/dist/cli/main.js" "$@"; }

# Data: a 512 KiB ext4 filesystem (128 blocks of 4 KiB). Hash: its tree with a superblock, fixed salt and UUID.
dd if=/dev/zero of=data.img bs=4096 count=128 status=none
mkfs.ext4 -q -F -b 4096 -N 16 -m 0 -O ^has_journal -E root_owner=0:0 -U 0f0e0d0c-0b0a-0908-0706-050403020100 \
  -L fuzz data.img
verity format data.img hash.img --salt 5a5a5a5a5a5a5a5a --uuid 12345678-9abc-def0-1234-56789abcdef0 \
  --root-hash-file roothash --engine node-crypto --no-progress >/dev/null
root=$(cat roothash)

# A 3 MiB GPT disk: root (the ext4) and root-verity (the hash device) partitions in the first MiB, with the DPS types
# and the root-hash partition UUIDs, so discovery finds the pair. The second MiB stays zero: a VHDX made from the disk
# leaves its block unallocated, and the write below allocates it through the log.
uuid() { printf '%s-%s-%s-%s-%s' "$(echo "$1" | cut -c1-8)" "$(echo "$1" | cut -c9-12)" "$(echo "$1" | cut -c13-16)" \
  "$(echo "$1" | cut -c17-20)" "$(echo "$1" | cut -c21-32)"; }
dd if=/dev/zero of=disk.raw bs=1M count=3 status=none
sgdisk -a 8 -n 1:40:+512K -t 1:4f68bce3-e8cd-4db1-96e7-fbcaf984b709 -c 1:root -u "1:$(uuid "$(echo "$root" | cut -c1-32)")" \
  -n 2:1104:+64K -t 2:2c7357ed-ebd2-46d9-aec1-23d437ec2bf5 -c 2:root-verity -u "2:$(uuid "$(echo "$root" | cut -c33-64)")" \
  -U 00112233-4455-6677-8899-aabbccddeeff disk.raw >/dev/null
dd if=data.img of=disk.raw bs=512 seek=40 conv=notrunc status=none
dd if=hash.img of=disk.raw bs=512 seek=1104 conv=notrunc status=none

# VHDX with a dirty log: qemu-io allocates block 1 (a BAT update goes through the log) and aborts. qemu has already
# written the data in place, so replaying the log again changes nothing, but only if the header names the log:
# copy the log entry's LogGuid (entry offset 32) into both headers and fix their CRC-32C.
qemu-img convert -q -f raw -O vhdx -o subformat=dynamic,block_size=1M,log_size=1M disk.raw disk.vhdx
qemu-io -f vhdx -c 'write -P 0xa5 1536k 4k' -c abort disk.vhdx >/dev/null 2>&1 || true
node --input-type=module -e "
  import { readFileSync, writeFileSync } from 'node:fs';
  import { crc32cWithZeroedField } from '$repo/dist/binary/crc32c.js';
  const f = readFileSync('disk.vhdx');
  const log = f.readUInt32LE(1 << 20) === 0x65676f6c ? (1 << 20) : -1;
  if (log < 0) throw new Error('qemu left no log entry at 1 MiB');
  for (const at of [64 << 10, 128 << 10]) {
    f.copy(f, at + 48, log + 32, log + 48);
    const h = f.subarray(at, at + 4096);
    h.writeUInt32LE(crc32cWithZeroedField(h, 4), 4);
  }
  writeFileSync('disk.vhdx', f);
"
qemu-img convert -q -f raw -O vpc -o subformat=dynamic disk.raw disk-dynamic.vhd
qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on disk.raw disk-fixed.vhd

# A zip with every kind of entry a user gives: the disk deflated, the data deflated, the hash stored.
zip -q -X -6 -j disk.zip disk.raw data.img
zip -q -X -0 -j disk.zip hash.img
# The same forced to ZIP64: ZIP64 end record and locator, and ZIP64 extra fields in the headers.
zip -q -X -fz -6 -j disk64.zip data.img
zip -q -X -fz -0 -j disk64.zip hash.img

for f in data.img hash.img disk.raw disk.vhdx disk-dynamic.vhd disk-fixed.vhd disk.zip disk64.zip; do
  gzip -9n -c "$f" >"$out/$f.gz"
done
printf '%s' "$root" >"$out/roothash"
ls -l "$work"
