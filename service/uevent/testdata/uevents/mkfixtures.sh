#!/bin/sh
# Writes the hand-made uevent fixtures. The kernel-*.bin files not made
# here were captured from a NETLINK_KOBJECT_UEVENT socket (group 1) on
# Linux 6.18 while running LOOP_CTL_ADD/REMOVE, losetup -f/-d and
# `echo "change UUID DAXSTACK=1" > /sys/block/loop0/uevent`; see README.
set -eu
cd "$(dirname "$0")"

# Kernel format, a value with '=' in it: what dm_kobject_uevent would send
# for a device-mapper device named "vg=1" (dm names may hold '=').
printf 'change@/devices/virtual/block/dm-3\0ACTION=change\0DEVPATH=/devices/virtual/block/dm-3\0SUBSYSTEM=block\0DM_COOKIE=0\0DM_NAME=vg=1\0DM_UUID=\0MAJOR=253\0MINOR=3\0DEVNAME=dm-3\0DEVTYPE=disk\0DISKSEQ=42\0SEQNUM=900\0' >kernel-dm-name-equals.bin

# Kernel format, a devpath with '@' in it.
printf 'add@/devices/virtual/misc/a@b\0ACTION=add\0DEVPATH=/devices/virtual/misc/a@b\0SUBSYSTEM=misc\0MAJOR=10\0MINOR=99\0DEVNAME=a@b\0SEQNUM=901\0' >kernel-devpath-at.bin

# Kernel format, an action go-udev does not know.
printf 'frob@/devices/virtual/dax/dax0.0\0ACTION=frob\0DEVPATH=/devices/virtual/dax/dax0.0\0SUBSYSTEM=dax\0SEQNUM=902\0' >kernel-unknown-action.bin

# The captured loop200 add without its final NUL: SEQNUM=834 is cut short.
head -c -1 kernel-add-loop.bin >kernel-no-trailing-nul.bin

# udevd format. Header (struct udev_monitor_netlink_header, 40 bytes):
#   "libudev\0", magic 0xfeedcafe big-endian, header_size=40,
#   properties_off=40, properties_len (host order, little-endian here),
#   then four 32-bit filter words (subsystem hash, devtype hash, tag bloom
#   hi/lo) left zero. Properties as udevd sends them after its rules.
udev() { # name properties
	props=$1
	len=$(printf "$props" | wc -c)
	{
		printf 'libudev\0'
		printf '\376\355\312\376'                       # 0xfeedcafe
		printf '\050\0\0\0'                             # header_size 40
		printf '\050\0\0\0'                             # properties_off 40
		printf "\\$(printf %03o $((len & 255)))\\$(printf %03o $((len >> 8)))\0\0"
		printf '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'       # filters
		printf "$props"
	} >"$2"
}
udev 'ACTION=add\0DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0MAJOR=7\0MINOR=0\0DEVNAME=/dev/loop0\0DEVTYPE=disk\0DISKSEQ=21\0SEQNUM=950\0USEC_INITIALIZED=123456\0DEVLINKS=/dev/disk/by-diskseq/21\0TAGS=:systemd:\0' udev-add-loop.bin
udev 'ACTION=change\0DEVPATH=/devices/virtual/block/loop1\0SUBSYSTEM=block\0MAJOR=7\0MINOR=1\0DEVNAME=/dev/loop1\0DEVTYPE=disk\0DISKSEQ=22\0SEQNUM=951\0ID_FS_LABEL=a=b\0ID_FS_LABEL_ENC=a\\x3db\0' udev-label-equals.bin

# Malformed.
printf '' >bad-empty.bin
printf 'hello world\0FOO=bar\0' >bad-no-at.bin
printf '@/devices/x\0FOO=bar\0' >bad-empty-action.bin
# Kernel format, a bare header without even its NUL (go-udev v0.9.0
# panics on it: slice bounds out of range [1:0]).
printf 'add@/devices/x' >kernel-header-only.bin
{ head -c 8 udev-add-loop.bin; printf '\0\0\0\0'; tail -c +13 udev-add-loop.bin; } >bad-udev-magic.bin
{ head -c 16 udev-add-loop.bin; printf '\377\0\0\0'; tail -c +21 udev-add-loop.bin; } >bad-udev-offset.bin
udev 'DEVPATH=/devices/virtual/block/loop0\0SUBSYSTEM=block\0' bad-udev-no-action.bin
