#!/bin/sh
# The kernel matrix's guest side (busybox sh): for each workload, dump and
# restore in kill mode and in rewind mode, each workload checking its own
# state (tests/workloads/wl_common.h protocol: <ctl>/ready, <ctl>/verify ->
# <ctl>/result "OK ..." / "FAIL ..."). Prints one line per case:
#   RESULT <workload> <mode> PASS|FAIL <why>
# and `cryo check`'s report first. Runs under tests/kernels/reaper (PID 1 of
# the VM, or a subreaper on the host), which reaps orphans and restored
# processes. Every wait is bounded.
#
# Environment: CRYO (cryo binary), WL (workload dir), WORK (scratch dir),
# CASES ("name:args name:args ..."; args joined with commas).

CRYO=${CRYO:-/cryo/cryo}
WL=${WL:-/w}
WORK=${WORK:-/tmp/matrix}
CASES=$(echo "${CASES:-state: counter: threads:4 tree:4 cow:4 shm: eventfds: timens:100000,200000,self}" | tr '+' ' ')  # '+' from a kernel command line
SELF=$$
REAPER=$PPID

mkdir -p "$WORK"
for m in /lib/modules/"$(uname -r)"/*.ko; do  # in the VM: modules the kernel has as such (unix_diag)
    [ -f "$m" ] && insmod "$m" 2>/dev/null
done
echo "MATRIX-KERNEL $(uname -r)"
echo "MATRIX-CHECK-BEGIN"
"$CRYO" check 2>&1
echo "MATRIX-CHECK-END rc=$?"

# wait_file FILE TENTHS: up to TENTHS tenths of a second for FILE to exist.
wait_file() {
    n=0
    while [ ! -e "$1" ]; do
        n=$((n + 1))
        [ $n -gt "$2" ] && return 1
        sleep 0.1
    done
    return 0
}

# verify CTL [exit]: asks the workload to check itself; 0 when it said OK.
verify() {
    sleep 0.3  # counter-like workloads must have ticked (200 ms) since the last verify
    rm -f "$1/result"
    echo "${2:-check}" > "$1/verify.tmp" && mv "$1/verify.tmp" "$1/verify"
    wait_file "$1/result" 600 || { WHY="no result within 60 s"; return 1; }
    sleep 0.05
    r=$(cat "$1/result")
    case "$r" in
        OK*) return 0 ;;
        *) WHY="$r"; return 1 ;;
    esac
}

# Every process under the reaper but the reaper and this script (and its
# subshells): the
# workload trees, originals or restored (the reaper adopts orphans).
descendants() {
    for st in /proc/[0-9]*/stat; do
        p=${st#/proc/}; p=${p%/stat}
        [ "$p" = "$SELF" ] || [ "$p" = "$REAPER" ] && continue
        { read -r comm < "/proc/$p/comm"; } 2>/dev/null || continue
        case "$comm" in sh|busybox) continue ;; esac  # this script's subshells
        q=$p; hops=0
        while [ "$q" -gt 1 ] && [ $hops -lt 64 ]; do
            { read -r line < "/proc/$q/stat"; } 2>/dev/null || break
            rest=${line##*) }
            set -- $rest
            q=$2; hops=$((hops + 1))
            if [ "$q" = "$REAPER" ] || [ "$q" = "$SELF" ]; then echo "$p"; break; fi
        done
    done
}

# Kills every descendant and waits (up to 10 s) until none is left.
clean_slate() {
    for p in $(descendants); do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    n=0
    while [ -n "$(descendants)" ] && [ $n -lt 100 ]; do
        sleep 0.1; n=$((n + 1))
        for p in $(descendants); do kill -9 "$p" 2>/dev/null; done
    done
}

# Waits (up to 10 s) until no process has pid $1.
wait_gone() {
    n=0
    while [ -e "/proc/$1/stat" ] && [ $n -lt 100 ]; do
        wait "$1" 2>/dev/null
        sleep 0.1; n=$((n + 1))
    done
    [ ! -e "/proc/$1/stat" ]
}

stamp() { [ -n "$MATRIX_TRACE" ] && echo "TRACE $(cat /proc/uptime | cut -d' ' -f1) $*"; }

restore_and_verify() {  # IMG CTL PID LAST
    "$CRYO" restore -D "$1" --detach -o "$1.restore.log" -v > "$1.restore.out" 2>&1 || {
        WHY="restore failed: $(tail -n 4 "$1.restore.out" | tr '\n' ' ')"; return 1; }
    [ -e "/proc/$3/stat" ] || { WHY="restored pid $3 not running"; return 1; }
    verify "$2" || { WHY="after restore: $WHY"; return 1; }
    return 0
}

run_case() {  # NAME ARGS MODE
    name=$1; args=$(echo "$2" | tr ',' ' '); mode=$3
    ctl="$WORK/$name-$mode"; img="$ctl.img"
    rm -rf "$ctl" "$img"; mkdir -p "$ctl" "$img"
    WHY=""
    # In a session of its own, from its control directory, as the e2e harness
    # starts it (output appended, as a shell's >>).
    : > "$ctl.out"
    (cd "$ctl" && exec setsid "$WL/$name" "$ctl" $args) < /dev/null >> "$ctl.out" 2>&1 &
    pid=$!
    if ! wait_file "$ctl/ready" 600; then WHY="not ready within 60 s: $(tail -n 2 "$ctl.out" | tr '\n' ' ')"; return 1; fi
    verify "$ctl" || { WHY="before dump: $WHY"; return 1; }
    if [ "$mode" = kill ]; then
        "$CRYO" dump -t "$pid" -D "$img" -o "$img.dump.log" -v > "$img.dump.out" 2>&1 || {
            WHY="dump failed: $(grep -v ': storing ' "$img.dump.out" | tail -n 4 | tr '\n' ' ')"; return 1; }
        wait_gone "$pid" || { WHY="original $pid still there after a kill-mode dump"; return 1; }
        restore_and_verify "$img" "$ctl" "$pid" || return 1
    else  # rewind: the original runs on; the image is restored twice
        # A rewind goes back to the checkpoint, files included: the files the
        # workload holds open are carried in the image and put back at each
        # restore (state writes its MAP_SHARED file after the dump, which
        # the restore would otherwise refuse as changed since the dump).
        "$CRYO" dump -t "$pid" -D "$img" --leave-running --snapshot-open-files -o "$img.dump.log" -v \
            > "$img.dump.out" 2>&1 || {
            WHY="dump failed: $(grep -v ': storing ' "$img.dump.out" | tail -n 4 | tr '\n' ' ')"; return 1; }
        verify "$ctl" || { WHY="original after the dump: $WHY"; return 1; }
        for round in 1 2; do
            stamp clean; clean_slate
            stamp gone; wait_gone "$pid" || { WHY="pid $pid still taken before restore $round"; return 1; }
            stamp restore; restore_and_verify "$img" "$ctl" "$pid" || { WHY="restore $round: $WHY"; return 1; }
        done
    fi
    verify "$ctl" exit || { WHY="at exit: $WHY"; return 1; }
    return 0
}

for c in $CASES; do
    name=${c%%:*}; args=${c#*:}
    [ -x "$WL/$name" ] || { echo "RESULT $name - SKIP no such workload"; continue; }
    for mode in kill rewind; do
        start=$(date +%s)
        if run_case "$name" "$args" "$mode"; then
            echo "RESULT $name $mode PASS $(( $(date +%s) - start ))s"
        else
            echo "RESULT $name $mode FAIL $WHY"
            for f in "$WORK/$name-$mode.img/"*.log "$WORK/$name-$mode.img."*.log; do
                [ -f "$f" ] && grep -E ' (error|warn) ' "$f" | tail -n 5 | sed 's/^/    /'
            done
        fi
        clean_slate
    done
done
echo "MATRIX-DONE"
