#!/bin/bash
# Real pmem under a real kernel: boots a Debian kernel under qemu (TCG) with
# emulated NVDIMMs that have label space, and runs the guest tests (guest/,
# build tag "guest") against the real daxstack binary, /dev/pmemN and
# /dev/daxX.Y namespaces made with ndctl, the kernel's badblocks files and
# uevents. The tests' output comes back on the guest's second serial port
# and is printed here as it arrives; the exit status is theirs.
#
#   scripts/vm-test.sh [-run REGEX] [-v]
#
# -run selects guest tests (go test -run); -v also prints the guest's
# kernel console. Environment:
#   DAXSTACK_VM_CACHE    downloaded .debs (default $XDG_CACHE_HOME/daxstack/vm,
#                        or ~/.cache/daxstack/vm)
#   DAXSTACK_VM_KEEP=1   keep the work directory (initramfs, NVDIMM images, logs)
#   DAXSTACK_VM_TIMEOUT  seconds the guest may run (default 900)
#   DAXSTACK_VM_QEMU     the qemu binary (default qemu-system-x86_64, installed
#                        with apt-get when missing; another one is never
#                        installed, so naming a missing one tests the skip)
#   DAXSTACK_VM_SCRIPT=FILE  run this shell script in the guest instead of the
#                        tests (to look at what the kernel does; its exit
#                        status is the run's)
#   DAXSTACK_REQUIRE_ROOT=1  fail instead of skipping when qemu can't be had
#                        (CI sets it)
#
# What it fetches, with apt-get download (so the host needs apt and dpkg):
# whatever linux-image-amd64 resolves to today, busybox-static, ndctl and
# e2fsprogs with the libraries they link (resolved with the fetched
# loader, like ldd). Nothing is installed on the host but qemu-system-x86
# and cpio, and only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

run_filter=""
verbose=0
while [ $# -gt 0 ]; do
	case "$1" in
	-run) run_filter=${2:?-run needs a pattern}; shift 2 ;;
	-run=*) run_filter=${1#-run=}; shift ;;
	-v) verbose=1; shift ;;
	-h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
	*) echo "vm-test: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

say() { printf 'vm-test: %s\n' "$*"; }
die() { printf 'vm-test: FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# unavailable WHY: skip the whole run (exit 0), or fail under
# DAXSTACK_REQUIRE_ROOT=1, as internal/testenv does for one test.
unavailable() {
	if [ "${DAXSTACK_REQUIRE_ROOT:-}" = 1 ]; then
		die "$1 (and DAXSTACK_REQUIRE_ROOT=1)"
	fi
	say "SKIP: $1; set DAXSTACK_REQUIRE_ROOT=1 to fail instead of skipping"
	exit 0
}

t_start=$(now)

# ---- host tools -----------------------------------------------------------
apt_updated=0
apt_update() {
	[ "$apt_updated" = 1 ] && return 0
	apt_updated=1
	[ "$(id -u)" = 0 ] || return 1
	say "apt-get update"
	apt-get update -qq
}
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
	unavailable "needs apt-get and dpkg-deb to fetch the guest's kernel and tools"
fi
QEMU=${DAXSTACK_VM_QEMU:-qemu-system-x86_64}
missing=""
if ! command -v "$QEMU" >/dev/null && [ "$QEMU" = qemu-system-x86_64 ]; then
	missing="$missing qemu-system-x86"
fi
command -v cpio >/dev/null || missing="$missing cpio"
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		say "installing$missing"
		apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; }
		apt_install || { apt_update && apt_install; } || true
	fi
	command -v cpio >/dev/null || die "cpio can't be had"
fi
command -v "$QEMU" >/dev/null || unavailable "$QEMU can't be had (not installed, and apt-get install qemu-system-x86 failed, was not tried, or needs root)"
export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || die "go is not on PATH"
say "$("$QEMU" --version | head -1)"

CACHE=${DAXSTACK_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/daxstack/vm}
DEBS=$CACHE/debs
mkdir -p "$DEBS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/daxstack-vm.XXXXXX")
cleanup() {
	if [ "${DAXSTACK_VM_KEEP:-}" = 1 ]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# ---- download -------------------------------------------------------------
t_dl=$(now)
# deps PKG...: the library packages PKG... depend on (Depends and
# PreDepends), one apt-cache call per round until nothing new turns up.
lib_closure() {
	local seen=" $* " round="$*" next p
	while [ -n "$round" ]; do
		next=""
		for p in $(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
			--no-replaces --no-enhances $round 2>/dev/null |
			awk '($1=="Depends:"||$1=="PreDepends:") && $2 ~ /^lib/ {print $2}' | sort -u); do
			case "$seen" in *" $p "*) continue ;; esac
			seen="$seen$p "
			next="$next $p"
		done
		round=$next
	done
	echo $seen
}
apt-cache show --no-all-versions linux-image-amd64 >/dev/null 2>&1 || apt_update ||
	die "apt knows no linux-image-amd64 (apt-get update needs root)"
kpkg=$(apt-cache depends linux-image-amd64 | awk '$1=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
[ -n "$kpkg" ] || die "linux-image-amd64 depends on no linux-image-* package"
kmeta_ver=$(apt-cache show --no-all-versions linux-image-amd64 | awk '/^Version:/{print $2; exit}')
say "linux-image-amd64 $kmeta_ver -> $kpkg"
pkgs="$kpkg busybox-static $(lib_closure ndctl e2fsprogs)"

# One apt-cache show for all: "package version arch size sha256" per line.
apt-cache show --no-all-versions $pkgs | awk '
	/^Package:/ {p=$2} /^Version:/ {v=$2} /^Architecture:/ {a=$2} /^Size:/ {s=$2} /^SHA256:/ {h=$2}
	/^$/ { if (p != "") print p, v, a, s, h; p="" }
	END { if (p != "") print p, v, a, s, h }' > "$WORK/pkgs.txt"
deb() { echo "$DEBS/${1}_${2//:/%3a}_$3.deb"; }
fetch=""
total=0
: > "$WORK/sha256"
while read -r p v a s h; do
	f=$(deb "$p" "$v" "$a")
	echo "$h  $f" >> "$WORK/sha256"
	state=cached
	if ! echo "$h  $f" | sha256sum -c --status 2>/dev/null; then
		rm -f "$f"
		fetch="$fetch $p=$v"
		state=download
	fi
	total=$((total + s))
	printf 'vm-test:   %-30s %-28s %9s bytes  %s\n' "$p" "$v" "$s" "$state"
done < "$WORK/pkgs.txt"
say "$(wc -l < "$WORK/pkgs.txt") packages, $((total / 1048576)) MiB"
# Versions that left the set (a new kernel, a point release) leave the cache.
for f in "$DEBS"/*.deb; do
	[ -e "$f" ] && ! grep -qF "  $f" "$WORK/sha256" && rm -f "$f"
done
if [ -n "$fetch" ]; then
	sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
	# A mirror that dropped the version apt knows needs a fresh list.
	(cd "$DEBS" && apt-get -qq "${sandbox[@]}" download $fetch) ||
		{ apt_update && (cd "$DEBS" && apt-get -qq "${sandbox[@]}" download $fetch); } ||
		die "apt-get download$fetch failed"
	sha256sum -c --quiet "$WORK/sha256" || die "a downloaded package does not match apt's SHA256"
fi
t_build=$(now)

# ---- unpack, modules, libraries -----------------------------------------
X=$WORK/x          # the unpacked packages
I=$WORK/initramfs  # what the guest gets
mkdir -p "$X" "$I"
while read -r p v a s h; do
	dpkg-deb -x "$(deb "$p" "$v" "$a")" "$X"
done < "$WORK/pkgs.txt"
BB=$X/bin/busybox
kver=$(ls "$X/lib/modules")
[ "$(echo "$kver" | wc -w)" = 1 ] || die "not one kernel in $kpkg: $kver"
KERNEL=$X/boot/vmlinuz-$kver
[ -f "$KERNEL" ] || die "no $KERNEL"

# The nvdimm stack and what the test filesystem needs, with their
# dependencies from modules.dep, each after what it needs. The kernel
# package leaves modules.dep to its postinst; the fetched busybox's depmod
# writes it.
"$BB" depmod -b "$X" "$kver"
MODDIR=$X/lib/modules/$kver
want="nfit libnvdimm nd_pmem nd_btt dax_pmem device_dax ext4 crc32c_generic"
: > "$WORK/modules.order"
add_module() {
	local name=$1 path deps d
	path=$(awk -v n="/$name.ko:" 'index($1, n) && substr($1, length($1)-length(n)+1) == n {sub(":$", "", $1); print $1; exit}' "$MODDIR/modules.dep")
	[ -n "$path" ] || die "no module $name in $kpkg"
	grep -qx "$path" "$WORK/modules.order" && return 0
	deps=$(awk -v p="$path:" '$1==p {for (i=2; i<=NF; i++) print $i}' "$MODDIR/modules.dep")
	for d in $deps; do
		d=${d##*/}
		add_module "${d%.ko}"
	done
	echo "$path" >> "$WORK/modules.order"
}
for m in $want; do add_module "$m"; done
mkdir -p "$I/lib/modules"
while read -r path; do
	cp "$MODDIR/$path" "$I/lib/modules/"
done < "$WORK/modules.order"
sed 's,.*/,,' "$WORK/modules.order" > "$I/lib/modules/order"
say "kernel $kver, modules: $(sed 's/\.ko$//' "$I/lib/modules/order" | tr '\n' ' ')"

# Binaries and the libraries they link, as the fetched loader resolves
# them (ldd's job, with the guest's own libc rather than the host's).
LOADER=$X/lib64/ld-linux-x86-64.so.2
LIBPATH=$X/lib/x86_64-linux-gnu:$X/usr/lib/x86_64-linux-gnu
mkdir -p "$I/bin" "$I/lib/x86_64-linux-gnu" "$I/lib64" "$I/etc"
cp "$BB" "$I/bin/busybox"
cp "$LOADER" "$I/lib64/"
for b in usr/bin/ndctl sbin/mke2fs; do
	[ -x "$X/$b" ] || die "no $b in the fetched packages"
	cp "$X/$b" "$I/bin/"
	"$LOADER" --library-path "$LIBPATH" --list "$X/$b" > "$WORK/ldd.txt" ||
		die "resolving the libraries of $b: $(cat "$WORK/ldd.txt")"
	if grep -q 'not found' "$WORK/ldd.txt"; then
		die "$b links libraries no fetched package holds: $(grep 'not found' "$WORK/ldd.txt" | tr '\n' ' ')"
	fi
	awk '$2=="=>" && $3 ~ /^\// {print $3}' "$WORK/ldd.txt" | while read -r lib; do
		cp -L "$lib" "$I/lib/x86_64-linux-gnu/"
	done
done
ln -s mke2fs "$I/bin/mkfs.ext4"
cp "$X/etc/mke2fs.conf" "$I/etc/" 2>/dev/null || true

# daxstack and the guest tests, static, without -race (TCG is slow enough).
mkdir -p "$I/guest"
CGO_ENABLED=0 go build -o "$I/bin/daxstack" ./cmd/daxstack
go vet -tags guest ./guest/
CGO_ENABLED=0 go test -c -tags guest -o "$I/guest/guest.test" ./guest
mkdir -p "$I/testdata/kernel-oracle"
cp testdata/kernel-oracle/dm-stack.out "$I/testdata/kernel-oracle/"
printf '%s\n' "$run_filter" > "$I/guest/run"
if [ -n "${DAXSTACK_VM_SCRIPT:-}" ]; then
	cp "$DAXSTACK_VM_SCRIPT" "$I/guest/script.sh"
fi

cat > "$I/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu HOME=/root TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp /run /root /var/lib
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
out=/dev/ttyS1
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m || echo "insmod $m failed" > $out
done
# nfit finds the NVDIMMs from ACPI; their regions appear shortly after.
i=0
while [ $i -lt 100 ] && [ "$(ls -d /sys/bus/nd/devices/region* 2>/dev/null | wc -l)" -lt 3 ]; do
	sleep 0.1; i=$((i+1))
done
cd /guest
echo "===DAXSTACK-GUEST-BEGIN kernel $(uname -r), up $(cut -d" " -f1 /proc/uptime)s===" > $out
run=$(cat /guest/run)
# The guest tests pmem, not the exports (the host's e2e tests run those
# with FUSE and loop devices; the guest's initramfs has no fuse module).
export DAXSTACK_NO_EXPORTS=1
export DAXSTACK_REQUIRE_ROOT=1 DAXSTACK_BIN=/bin/daxstack DAXSTACK_ORACLE=/testdata/kernel-oracle/dm-stack.out
if [ -f /guest/script.sh ]; then
	sh /guest/script.sh > $out 2>&1
else
	./guest.test -test.v -test.count=1 -test.timeout=12m ${run:+-test.run "$run"} > $out 2>&1
fi
rc=$?
echo "===DAXSTACK-GUEST-END rc=$rc===" > $out
sync
poweroff -f
INIT
chmod +x "$I/init"
(cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$WORK/initramfs.cpio"
say "initramfs $(($(stat -c %s "$WORK/initramfs.cpio") / 1048576)) MiB"
t_boot=$(now)

# ---- boot -----------------------------------------------------------------
# Three NVDIMMs of 256 MiB plus 128 KiB of label space each (so ndctl can
# create and destroy namespaces), on sparse files. The label space is cut
# from the end of the backing file and QEMU puts the next NVDIMM right
# after the previous one's pmem, so that pmem must be a whole 256 MiB for
# every region to start on the kernel's 16 MiB region alignment.
nv_args=()
for n in 0 1 2; do
	truncate -s $((256 * 1024 + 128))K "$WORK/nvdimm$n.img"
	nv_args+=(-object "memory-backend-file,id=nvmem$n,share=on,mem-path=$WORK/nvdimm$n.img,size=$((256 * 1024 + 128))K"
		-device "nvdimm,id=nvdimm$n,memdev=nvmem$n,label-size=128K")
done
say "booting (TCG); guest output follows"
set +e
timeout --foreground "${DAXSTACK_VM_TIMEOUT:-900}" "$QEMU" \
	-accel tcg -cpu max -smp 2 -machine pc,nvdimm=on -m 1G,slots=4,maxmem=4G \
	"${nv_args[@]}" \
	-kernel "$KERNEL" -initrd "$WORK/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 loglevel=4" \
	-nodefaults -display none -no-reboot \
	-serial "file:$WORK/console.log" -serial stdio < /dev/null |
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'} # the guest's tty ends lines with CR LF
		printf '%s\n' "$line"
		printf '%s\n' "$line" >> "$WORK/guest.log"
		case "$line" in *===DAXSTACK-GUEST-BEGIN*) now > "$WORK/t_tests" ;; esac
	done
qrc=${PIPESTATUS[0]}
set -e
t_end=$(now)
if [ "$verbose" = 1 ]; then
	say "guest console:"
	cat "$WORK/console.log"
fi

if [ -s "$WORK/t_tests" ]; then
	t_tests=$(cat "$WORK/t_tests")
	split="boot $(elapsed "$t_boot" "$t_tests")s, tests $(elapsed "$t_tests" "$t_end")s"
else
	split="boot and tests $(elapsed "$t_boot" "$t_end")s"
fi
say "time: download $(elapsed "$t_dl" "$t_build")s, build $(elapsed "$t_build" "$t_boot")s, $split, total $(elapsed "$t_start" "$t_end")s"
end=$(grep -a -o '===DAXSTACK-GUEST-END rc=[0-9]*===' "$WORK/guest.log" | tail -1 || true)
if [ -z "$end" ]; then
	[ "$qrc" = 124 ] && say "the guest ran out of time (${DAXSTACK_VM_TIMEOUT:-900}s)"
	say "the guest tests did not finish (qemu exit $qrc); last of the guest console:"
	tail -n 60 "$WORK/console.log" | sed 's/^/  | /'
	exit 1
fi
rc=${end#*rc=}
rc=${rc%===}
if [ "$rc" != 0 ]; then
	say "guest tests FAILED (exit $rc); what the failing tests said:"
	# go test -v: the lines after "=== RUN NAME" (or CONT) are NAME's;
	# print those of every NAME that has a "--- FAIL: NAME" line.
	awk '
		/^=== (RUN|CONT|PAUSE|NAME) / { cur = $3; next }
		/^ *--- (FAIL|PASS|SKIP): / { if ($2 == "FAIL:") failed[$3] = 1; cur = ""; next }
		/^FAIL|^PASS|^ok / { cur = ""; next }
		cur != "" { said[cur] = said[cur] "\n" $0; if (!(cur in seen)) { seen[cur] = 1; order[n++] = cur } }
		END {
			for (i = 0; i < n; i++) if (order[i] in failed) printf "--- FAIL: %s%s\n", order[i], said[order[i]]
			for (f in failed) if (!(f in seen)) printf "--- FAIL: %s\n", f
		}' "$WORK/guest.log" | sed 's/^/  /'
	grep -a '^FAIL: known bug' "$WORK/guest.log" | sed 's/^/  /' || true
	say "last of the guest's kernel console:"
	tail -n 20 "$WORK/console.log" | sed 's/^/  | /'
	exit 1
fi
say "guest tests passed"
