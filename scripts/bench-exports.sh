#!/usr/bin/env bash
# bench-exports.sh: the exports of `daxstack serve` against baselines on
# the same leaf file, in one run, as ratios (issue #11). Root; not in CI.
#
#   NBD:   nbdcopy to null: (sequential read) and fio's nbd engine, 4 KiB
#          random read at QD16, daxstack's NBD export of a one-level linear
#          device vs nbdkit's file plugin serving the leaf.
#   Block: fio (direct I/O, libaio, QD16) on /dev/daxstack/top, a
#          one-level linear device, vs a direct-I/O loop device on the leaf
#          file: sequential read and write (1 MiB) and 4 KiB random read
#          and write.
#
# Environment: BENCH_DIR (default /var/tmp), SIZE_MB (default 1024),
# RUNTIME seconds per fio job (default 10), DAXSTACK (the binary; built
# from the tree if unset).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "bench-exports.sh: needs root" >&2; exit 1; }
for c in nbdkit nbdcopy fio losetup jq; do
	command -v "$c" >/dev/null || { echo "bench-exports.sh: needs $c" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${BENCH_DIR:-/var/tmp}/daxstack-bench-XXXXXX")
size_mb=${SIZE_MB:-1024}
runtime=${RUNTIME:-10}
daemon_pid= nbdkit_pid= loop=

cleanup() {
	set +e
	[ -n "$nbdkit_pid" ] && kill "$nbdkit_pid" 2>/dev/null && wait "$nbdkit_pid" 2>/dev/null
	[ -n "$loop" ] && losetup -d "$loop"
	if [ -n "$daemon_pid" ]; then
		DAXSTACK_DB=$dir/db DAXSTACK_SOCKET=$dir/d.sock "$bin" remove top >/dev/null 2>&1
		kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

bin=${DAXSTACK:-}
if [ -z "$bin" ]; then
	bin=$dir/daxstack
	(cd "$root" && go build -o "$bin" ./cmd/daxstack)
fi
export DAXSTACK_DB=$dir/db DAXSTACK_SOCKET=$dir/d.sock

leaf=$dir/leaf.img
echo "# leaf: $leaf, $size_mb MiB, filled" >&2
dd if=/dev/urandom of="$leaf" bs=1M count="$size_mb" status=none conv=fsync
sectors=$((size_mb * 2048))

"$bin" serve --no-uevents --mount "$dir/dev" --links "$dir/links" --mapper-links off \
	--nbd-socket "$dir/nbd.sock" 2>"$dir/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$dir/d.sock" ] && break; sleep 0.05; done
"$bin" create top --table "0 $sectors linear $leaf 0"
top=$dir/links/top
dx_uri="nbd+unix:///top?socket=$dir/nbd.sock"

nbdkit -f -U "$dir/kit.sock" file "$leaf" &
nbdkit_pid=$!
for _ in $(seq 100); do [ -S "$dir/kit.sock" ] && break; sleep 0.05; done
kit_uri="nbd+unix:///?socket=$dir/kit.sock"

loop=$(losetup --direct-io=on --show -f "$leaf")

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# seconds of nbdcopy URI null:, best of 3
copy_secs() {
	local best=
	for _ in 1 2 3; do
		drop
		local t0 t1
		t0=$(date +%s.%N)
		nbdcopy "$1" null:
		t1=$(date +%s.%N)
		best=$(echo "$t0 $t1 $best" | awk '{d=$2-$1; if ($3=="" || d<$3) print d; else print $3}')
	done
	echo "$best"
}

# fio_iops|fio_bw NAME ARGS...: one job, its read or write IOPS / MiB/s
fio_json() {
	fio --name=b --runtime="$runtime" --time_based --group_reporting --output-format=json "$@" 2>/dev/null |
		sed -n '/^{/,$p' # the nbd engine prints a line before the JSON
}
metric() { # json rw iops|bw
	if [ "$3" = iops ]; then jq -r ".jobs[0].$2.iops" <<<"$1"; else jq -r ".jobs[0].$2.bw_bytes / 1048576" <<<"$1"; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

printf '%-34s %12s %12s %7s\n' "benchmark" "daxstack" "baseline" "ratio"
row() { printf '%-34s %12.1f %12.1f %6sx\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }

# NBD sequential read: MiB/s from nbdcopy's time.
d=$(copy_secs "$dx_uri"); k=$(copy_secs "$kit_uri")
row "nbd seq read (nbdcopy, MiB/s)" "$(awk -v s="$size_mb" -v t="$d" 'BEGIN{print s/t}')" "$(awk -v s="$size_mb" -v t="$k" 'BEGIN{print s/t}')"

# NBD 4 KiB random read, QD16.
d=$(metric "$(fio_json --ioengine=nbd --uri="$dx_uri" --rw=randread --bs=4k --iodepth=16)" read iops)
k=$(metric "$(fio_json --ioengine=nbd --uri="$kit_uri" --rw=randread --bs=4k --iodepth=16)" read iops)
row "nbd 4k randread QD16 (IOPS)" "$d" "$k"

# Block device vs a direct-I/O loop on the leaf.
blk() { # name rw bs unit
	local d k
	d=$(metric "$(fio_json --filename="$top" --direct=1 --ioengine=libaio --iodepth=16 --rw="$2" --bs="$3")" "$4" "$5")
	k=$(metric "$(fio_json --filename="$loop" --direct=1 --ioengine=libaio --iodepth=16 --rw="$2" --bs="$3")" "$4" "$5")
	row "$1" "$d" "$k"
}
blk "blk seq read 1M QD16 (MiB/s)" read 1M read bw
blk "blk seq write 1M QD16 (MiB/s)" write 1M write bw
blk "blk 4k randread QD16 (IOPS)" randread 4k read iops
blk "blk 4k randwrite QD16 (IOPS)" randwrite 4k write iops
