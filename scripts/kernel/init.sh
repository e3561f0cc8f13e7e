#!/bin/sh
# /init of the initramfs that scripts/kernel/kit.sh builds (busybox sh, PID 1). Runs the dm-verity cases that
# test/kernel/kernel.test.ts describes in a manifest disk, prints one result line per case on the console
# (ttyS0) and powers off. Lines the host parses start with "@@".
#
# Disks: one holds the manifest (text, zero padded, first line "VERITY-KIT-MANIFEST 1"), the other the packed case
# images. Manifest lines after the first (fields separated by single spaces):
#   case <id> <mode> <version> <data_bs> <hash_bs> <data_blocks> <hash_start> <alg> <root> <salt>
#        <data_off> <data_len> <hash_off> <hash_len>
# mode:  clean   - default error mode: read the whole device, print its sha256 and dm status
#        corrupt - ignore_corruption: read it all, print the data blocks the kernel logged as corrupted;
#                  then the default mode: a full read must fail
#        badroot - default mode, wrong root hash: a full read must fail
#        fec     - default mode with forward error correction: five more fields
#                  <fec_off> <fec_len> <roots> <fec_blocks> <fec_start>, the FEC device's region on the images disk
#                  ("-" for the hash device itself) and the table's fec_roots, fec_blocks and fec_start; read it all,
#                  print its sha256 and how many "corrected" lines the kernel logged
# Offsets and lengths are 512-byte sectors on the images disk; hash_off "-" means the hash tree is on the data
# region itself (hash_start then points past the data).

export PATH=/sbin:/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
export DM_DISABLE_UDEV=1
set -o pipefail

out() { echo "$*" >/dev/console; }
finish() {
  out "@@DONE $1"
  sync
  poweroff -f
  sleep 5
}

out "@@BOOTED $(cat /proc/uptime | cut -d' ' -f1)"
while read -r line; do out "@@KIT $line"; done </kit-versions
out "@@KIT uname=$(uname -r)"

for m in $(cat /modules/load.list); do
  insmod "/modules/$m" 2>/tmp/insmod.err || { out "@@ERROR insmod $m: $(cat /tmp/insmod.err)"; finish fail; }
done

# Wait for the two virtio disks.
i=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && { out "@@ERROR virtio disks missing: $(ls /dev | tr '\n' ' ')"; finish fail; }
  usleep 100000
done
MANIFEST=/tmp/manifest
IMAGES=
for d in /dev/vda /dev/vdb; do
  if [ "$(head -c 21 "$d")" = "VERITY-KIT-MANIFEST 1" ]; then
    tr -d '\000' <"$d" >"$MANIFEST"
  else
    IMAGES=$d
  fi
done
[ -s "$MANIFEST" ] && [ -n "$IMAGES" ] || { out "@@ERROR no manifest disk"; finish fail; }
out "@@READY images=$IMAGES cases=$(grep -c '^case ' "$MANIFEST") uptime=$(cut -d' ' -f1 /proc/uptime)"

# dm-verity logs corrupted blocks with a rate-limited printk (10 lines per 5 s): wait until 5.5 s after the last
# read that could have logged anything, so a case's lines are never suppressed.
now_cs() { local u; u=$(cut -d' ' -f1 /proc/uptime); echo "${u%.*}${u#*.}" | sed 's/^0*//;s/^$/0/'; }
LAST_ERR=0
mark_err() { LAST_ERR=$(now_cs); }
wait_ratelimit() {
  while [ $(( $(now_cs) - LAST_ERR )) -lt 550 ]; do usleep 100000; done
}

# read_dev <dev> <status file>: reads the whole device with O_DIRECT (no page cache: every block goes through
# dm-verity once); prints its sha256; the file gets "<dd exit code> <records in, full+partial>".
read_dev() {
  local sum rc recs
  sum=$(dd if="$1" bs=65536 iflag=direct 2>/tmp/dd.err | sha256sum)
  rc=$?
  recs=$(sed -n 's/^\([0-9]*+[0-9]*\) records in.*/\1/p' /tmp/dd.err | tail -n1)
  echo "$rc ${recs:-?}" >"$2"
  echo "${sum%% *}"
}

mk_linear() { # mk_linear <name> <off> <len>
  dmsetup create -r "$1" --table "0 $3 linear $IMAGES $2" 2>/tmp/dm.err
}
majmin() { dmsetup info -c --noheadings -o major,minor --separator : "$1"; }
# mk_verity <name> <extra opt args or empty>; uses the case fields
mk_verity() {
  local sectors=$((blocks * dbs / 512))
  dmsetup create -r "$1" --table "0 $sectors verity $version /dev/mapper/$DATA /dev/mapper/$HASH $dbs $hbs $blocks $hstart $alg $root $salt$2" 2>/tmp/dm.err
}
dm_status() { dmsetup status "$1" 2>/dev/null | awk '{ print $NF }'; }
klog() { # klog <id> <tag>: prints and clears the kernel log lines about device-mapper
  dmesg -c >/tmp/dmesg.out
  grep -E 'device-mapper|verity|callbacks suppressed' /tmp/dmesg.out | while read -r l; do out "@@KLOG $1 $2 $l"; done
}

dmesg -c >/dev/null
n=0
grep '^case ' "$MANIFEST" >/tmp/cases
while read -r _ id mode version dbs hbs blocks hstart alg root salt doff dlen hoff hlen foff flen roots fblocks fstart; do
  n=$((n + 1))
  DATA="kd$n"; HASH="kh$n"; V="kv$n"
  t0=$(now_cs)
  if ! mk_linear "$DATA" "$doff" "$dlen"; then out "@@RESULT $id $mode create=fail reason=linear:$(cat /tmp/dm.err | tr ' \n' '_ ')"; continue; fi
  if [ "$hoff" = "-" ]; then
    HASH=$DATA
  elif ! mk_linear "$HASH" "$hoff" "$hlen"; then
    out "@@RESULT $id $mode create=fail reason=linear:$(cat /tmp/dm.err | tr ' \n' '_ ')"; dmsetup remove "$DATA"; continue
  fi
  mm=$(majmin "$DATA")
  case "$mode" in
    clean|badroot)
      dmesg -c >/dev/null
      if mk_verity "$V" ""; then
        sum=$(read_dev "/dev/mapper/$V" /tmp/st)
        st=$(dm_status "$V")
        dmsetup remove "$V"
        out "@@RESULT $id $mode create=0 read=$(cut -d' ' -f1 /tmp/st) recs=$(cut -d' ' -f2 /tmp/st) sha256=$sum status=$st devno=$mm ms=$(( ($(now_cs) - t0) * 10 ))"
      else
        out "@@RESULT $id $mode create=fail reason=$(cat /tmp/dm.err | tr ' \n' '_ ')"
      fi
      [ "$mode" = badroot ] && mark_err
      klog "$id" "$mode"
      ;;
    corrupt)
      wait_ratelimit
      dmesg -c >/dev/null
      if mk_verity "$V" " 1 ignore_corruption"; then
        sum=$(read_dev "/dev/mapper/$V" /tmp/st)
        st=$(dm_status "$V")
        dmsetup remove "$V"
        mark_err
        dmesg -c >/tmp/dmesg.ic
        found=$(sed -n "s/.*verity: $mm: data block \([0-9]*\) is corrupted.*/\1/p" /tmp/dmesg.ic | sort -n | tr '\n' ',')
        other=$(grep -E 'is corrupted|maximum errors' /tmp/dmesg.ic | grep -vc "verity: $mm: data block [0-9]* is corrupted")
        suppressed=$(grep -c 'callbacks suppressed' /tmp/dmesg.ic)
        grep -E 'device-mapper|verity|callbacks suppressed' /tmp/dmesg.ic | while read -r l; do out "@@KLOG $id ignore $l"; done
        out "@@RESULT $id ignore create=0 read=$(cut -d' ' -f1 /tmp/st) recs=$(cut -d' ' -f2 /tmp/st) blocks=${found:--} other=$other sha256=$sum suppressed=$suppressed status=$st devno=$mm"
      else
        out "@@RESULT $id ignore create=fail reason=$(cat /tmp/dm.err | tr ' \n' '_ ')"
      fi
      if mk_verity "$V" ""; then
        read_dev "/dev/mapper/$V" /tmp/st >/dev/null
        st=$(dm_status "$V")
        dmsetup remove "$V"
        mark_err
        out "@@RESULT $id eio create=0 read=$(cut -d' ' -f1 /tmp/st) recs=$(cut -d' ' -f2 /tmp/st) status=$st devno=$mm ms=$(( ($(now_cs) - t0) * 10 ))"
      else
        out "@@RESULT $id eio create=fail reason=$(cat /tmp/dm.err | tr ' \n' '_ ')"
      fi
      klog "$id" eio
      ;;
    fec)
      F="kf$n"
      if [ "$foff" = "-" ]; then
        F=$HASH
      elif ! mk_linear "$F" "$foff" "$flen"; then
        out "@@RESULT $id fec create=fail reason=linear:$(cat /tmp/dm.err | tr ' \n' '_ ')"; F=
      fi
      if [ -n "$F" ]; then
        wait_ratelimit
        dmesg -c >/dev/null
        if mk_verity "$V" " 8 use_fec_from_device /dev/mapper/$F fec_roots $roots fec_blocks $fblocks fec_start $fstart"; then
          sum=$(read_dev "/dev/mapper/$V" /tmp/st)
          st=$(dm_status "$V")
          dmsetup remove "$V"
          mark_err
          dmesg -c >/tmp/dmesg.fec
          corrected=$(grep -c 'corrected' /tmp/dmesg.fec)
          grep -E 'device-mapper|verity|callbacks suppressed' /tmp/dmesg.fec | while read -r l; do out "@@KLOG $id fec $l"; done
          out "@@RESULT $id fec create=0 read=$(cut -d' ' -f1 /tmp/st) recs=$(cut -d' ' -f2 /tmp/st) sha256=$sum corrected=$corrected status=$st ms=$(( ($(now_cs) - t0) * 10 ))"
        else
          out "@@RESULT $id fec create=fail reason=$(cat /tmp/dm.err | tr ' \n' '_ ')"
        fi
        [ "$F" != "$HASH" ] && dmsetup remove "$F"
      fi
      ;;
    *) out "@@RESULT $id $mode create=fail reason=unknown_mode" ;;
  esac
  [ "$HASH" != "$DATA" ] && dmsetup remove "$HASH"
  dmsetup remove "$DATA"
done </tmp/cases

out "@@END uptime=$(cut -d' ' -f1 /proc/uptime)"
finish ok
