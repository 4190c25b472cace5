#!/usr/bin/env bash
# Builds cryo and shows its main job: a counter program is checkpointed, killed,
# and restored; it continues counting from where it was, with the same PID.
# Builds only what the demo runs (cryo and the counter); scripts/test.sh builds
# the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== installing build dependencies (Debian packages; nothing to do if present)"
scripts/install-deps.sh
echo "== building cryo into build/ (a fresh build takes about 2 minutes on 2 cores)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target cryo counter
CRYO=build/src/cli/cryo
work=$(mktemp -d /tmp/cryo-demo-XXXXXX)
cleanup() { [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
last_count() { tail -n 1 "$work/out" | awk '{print $2}'; }

echo "== cryo check"
$CRYO check | tail -1
mkdir -p "$work/ctl"
# The counter prints "count N" every 200 ms into a file. A small python parent
# starts it in a session of its own (so it reaps it at once when cryo kills it).
python3 -c 'import subprocess,sys
p = subprocess.Popen([sys.argv[1], sys.argv[3]], stdin=subprocess.DEVNULL, stdout=open(sys.argv[2], "w"),
                     stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)
open(sys.argv[3] + "/pid", "w").write(str(p.pid)); p.wait()' \
  build/tests/workloads/counter "$work/out" "$work/ctl" &
for _ in $(seq 50); do [ -s "$work/ctl/pid" ] && break; sleep 0.1; done
pid=$(cat "$work/ctl/pid")
sleep 1.2
echo "== the counter (pid $pid) is running:"; tail -n 2 "$work/out"
echo "== cryo dump -t $pid -D $work/image   (checkpoint, then kill)"
$CRYO dump -t "$pid" -D "$work/image"
before=$(last_count)
echo "   last count written before the checkpoint: $before"
sleep 0.1
echo "== process $pid is gone ($(ls /proc/$pid >/dev/null 2>&1 && echo still there || echo no such process)); the image holds:"
$CRYO show "$work/image" | head -n 8
echo "== cryo restore -D $work/image --detach"
$CRYO restore -D "$work/image" --detach
for _ in $(seq 50); do [ "$(last_count)" != "$before" ] && break; sleep 0.05; done
echo "   first count after the restore: $(last_count) (pid $pid again: $(ls /proc/$pid >/dev/null 2>&1 && echo yes || echo no))"
sleep 1
echo "== pid $pid runs on and keeps counting:"; tail -n 3 "$work/out"
kill "$pid"
