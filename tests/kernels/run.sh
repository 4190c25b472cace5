#!/bin/bash
# The kernel matrix: boots Debian's own kernels under qemu-system-x86_64
# (software emulation, -accel tcg: no KVM needed) with a small initramfs
# holding cryo (with its shared libraries), busybox and self-checking
# workloads, runs dump/restore of each workload in kill and rewind mode
# (matrix.sh), and prints a table kernel x workload. The running kernel is a
# column too (the same matrix.sh, natively, in a PID namespace of its own).
#
# Usage: tests/kernels/run.sh [BUILD_DIR]       (default: build)
# Environment:
#   KERNELS        Debian packages to boot (default: the newest
#                  linux-image-6.1.0-*-amd64 and linux-image-6.12.*-amd64)
#   CACHE          downloads and unpacked kernels (default: ~/.cache/cryo-kernels)
#   CASES          workloads, "name:arg,arg name: ..." (default: matrix.sh's)
#   KERNEL_TIMEOUT seconds for one VM, boot to power-off (default: 900)
#   HOST=0         skip the running kernel's column
# Needs (Debian packages): qemu-system-x86, busybox-static or busybox (a static
# one), gcc with libc6-dev (a static reaper), apt, dpkg. Run as root (cryo
# on the host column needs it; the VMs do not).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
cache=${CACHE:-$HOME/.cache/cryo-kernels}
timeout_s=${KERNEL_TIMEOUT:-900}
cases=${CASES:-"state: counter: threads:4 tree:4 cow:4 shm: eventfds: timens:100000,200000,self"}
workloads=$(for c in $cases; do echo "${c%%:*}"; done | sort -u)
mkdir -p "$cache/apt/lists/partial" "$cache/apt/archives/partial" "$cache/debs" "$cache/out"

cryo="$build/src/cli/cryo"
[ -x "$cryo" ] || { echo "run.sh: no $cryo: build first" >&2; exit 2; }
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" | grep -q 'statically linked' || {
    echo "run.sh: needs a static busybox (apt-get install busybox-static)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: needs qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 2; }

# --- the kernels: Debian's packages, downloaded with a private apt state
# (the host's sources and installed kernel are left alone).
aptopt=(-o Dir::Etc::SourceList="$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache="$cache/apt" -o Debug::NoLocking=1
        -o APT::Sandbox::User=root)
cat > "$cache/apt/sources.list" <<SRC
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian bookworm-backports main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
if [ -z "${KERNELS:-}" ]; then
    if [ -z "$(find "$cache/apt/lists" -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
        echo "== apt-get update (private lists in $cache/apt)"
        apt-get "${aptopt[@]}" update -q >/dev/null
    fi
    newest() { apt-cache "${aptopt[@]}" search --names-only "$1" | awk '{print $1}' | grep -Ev -- '-(dbg|unsigned)$' | sort -V | tail -n 1; }
    KERNELS="$(newest '^linux-image-6\.1\.0-[0-9]+-amd64$') $(newest '^linux-image-6\.12\.[0-9.]+\+deb[0-9.]+-amd64$')"
fi

unpack() {  # PKG -> prints the vmlinuz path
    local pkg=$1 dir="$cache/$1"
    if [ ! -d "$dir/boot" ]; then
        (cd "$cache/debs" && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get "${aptopt[@]}" download -q "$pkg" >/dev/null)
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        dpkg-deb -x "$(ls "$cache/debs/${pkg}"_*.deb | head -n 1)" "$dir.tmp"  # files only: nothing installed
        mv "$dir.tmp" "$dir"
    fi
    ls "$dir"/boot/vmlinuz-* | head -n 1
}

# --- the initramfs: reaper as /init, busybox, matrix.sh, cryo and the
# workloads at fixed paths, with every shared library they need.
root="$cache/initramfs"
rm -rf "$root" && mkdir -p "$root"/{bin,cryo,w,proc,sys,dev,tmp,run,lib64,lib/x86_64-linux-gnu}
gcc -static -O2 -Wall -Wextra -Werror -o "$root/init" "$here/reaper.c"
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
cp "$here/matrix.sh" "$root/matrix.sh"
cp "$cryo" "$root/cryo/cryo"
bins=("$cryo")
for w in $workloads; do
    [ -x "$build/tests/workloads/$w" ] || { echo "run.sh: no workload $w in $build/tests/workloads" >&2; exit 2; }
    cp "$build/tests/workloads/$w" "$root/w/$w"
    bins+=("$build/tests/workloads/$w")
done
for lib in $(ldd "${bins[@]}" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    case "$lib" in
        */ld-linux-x86-64.so.2) cp -L "$lib" "$root/lib64/ld-linux-x86-64.so.2" ;;
        *) cp -L "$lib" "$root/lib/x86_64-linux-gnu/" ;;
    esac
done
initrd="$cache/initramfs.cpio.gz"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$initrd")
echo "== initramfs: $(du -h "$initrd" | cut -f1) ($(echo $workloads | wc -w) workloads)"

# --- one column per kernel
declare -A result
declare -A seconds  # column -> wall time of its run (boot to power-off)
columns=()
collect() {  # COLUMN LOGFILE
    local col=$1 log=$2
    columns+=("$col")
    while read -r _ w mode verdict rest; do
        result["$col|$w|$mode"]=$verdict
        [ "$verdict" = FAIL ] && echo "   $col $w $mode: $rest"
    done < <(tr -d '\r' < "$log" | grep '^RESULT ')
    local missing
    missing=$(tr -d '\r' < "$log" | grep '^missing, cryo works without them' | sed 's/.*: //' || true)
    echo "   $col: cryo check: ${missing:+missing $missing; }$(tr -d '\r' < "$log" | grep '^verdict:' || echo 'no verdict')"
}

for pkg in $KERNELS; do
    vmlinuz=$(unpack "$pkg")
    # unix_diag is a module in Debian's config (sock-diag): loaded by matrix.sh.
    for ko in $(find "$cache/$pkg/lib/modules" -name 'unix_diag.ko*'); do
        ver=$(basename "$(dirname "$(dirname "$(dirname "$(dirname "$ko")")")")")
        mkdir -p "$root/lib/modules/$ver"
        case "$ko" in
            *.xz) xz -dc "$ko" > "$root/lib/modules/$ver/unix_diag.ko" ;;
            *.zst) zstd -qdc "$ko" > "$root/lib/modules/$ver/unix_diag.ko" ;;
            *) cp "$ko" "$root/lib/modules/$ver/unix_diag.ko" ;;
        esac
    done
done
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$initrd")

for pkg in $KERNELS; do
    vmlinuz=$(unpack "$pkg")
    col=${pkg#linux-image-}
    log="$cache/out/$col.log"
    echo "== $col: booting under qemu (tcg), up to ${timeout_s}s; serial log in $log"
    start=$(date +%s)
    timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1536 \
        -display none -monitor none -serial stdio -no-reboot \
        -kernel "$vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3 CASES=$(echo "$cases" | tr ' ' '+')" \
        < /dev/null > "$log" 2>&1 || echo "   qemu exited with $? (timeout: 124)"
    seconds["$col"]=$(( $(date +%s) - start ))
    echo "   ${seconds[$col]}s"
    grep -q '^MATRIX-DONE' <(tr -d '\r' < "$log") || echo "   $col: the matrix did not finish (see $log)"
    collect "$col" "$log"
done

# The workloads' SysV segments and /dev/shm files (shm) stay in the run's own
# IPC namespace and /dev/shm, not on the host.
if [ "${HOST:-1}" != 0 ]; then
    col="$(uname -r) (host)"
    log="$cache/out/host.log"
    echo "== $col: natively, in PID, IPC and mount namespaces of its own"
    gcc -static -O2 -Wall -Wextra -Werror -o "$cache/reaper" "$here/reaper.c"
    rm -rf "$cache/host-work"
    start=$(date +%s)
    CRYO="$cryo" WL="$build/tests/workloads" WORK="$cache/host-work" CASES="$cases" \
        timeout "$timeout_s" unshare --pid --ipc --fork --mount-proc \
        "$busybox" sh -c 'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"' sh \
        "$cache/reaper" "$busybox" sh "$here/matrix.sh" \
        < /dev/null > "$log" 2>&1 || echo "   exited with $?"
    seconds["$col"]=$(( $(date +%s) - start ))
    echo "   ${seconds[$col]}s"
    collect "$col" "$log"
fi

# --- the table
printf '\n%-10s %-7s' workload mode
for c in "${columns[@]}"; do printf ' | %-28s' "$c"; done
printf '\n'
fails=0
for c in $cases; do
    w=${c%%:*}
    for mode in kill rewind; do
        printf '%-10s %-7s' "$w" "$mode"
        for col in "${columns[@]}"; do
            v=${result["$col|$w|$mode"]:-missing}
            [ "$v" = PASS ] || fails=$((fails + 1))
            printf ' | %-28s' "$v"
        done
        printf '\n'
    done
done
printf '%-18s' "time (s)"
for col in "${columns[@]}"; do printf ' | %-28s' "${seconds[$col]:-?}"; done
printf '\n\n'
[ $fails -eq 0 ] && echo "kernel matrix: every workload passed" || echo "kernel matrix: $fails cases did not pass"
[ $fails -eq 0 ]
