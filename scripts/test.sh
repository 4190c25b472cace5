#!/usr/bin/env bash
# Builds cryo and runs every test (unit + end-to-end). Installs missing Debian
# packages first. Usage: scripts/test.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build
# The end-to-end tests checkpoint real processes: they need root (ptrace,
# clone3 set_tid, PR_SET_MM_MAP). `cryo check` says what the kernel lacks.
build/src/cli/cryo check >/dev/null || { build/src/cli/cryo check; exit 1; }
# What the tests leave on the machine (SysV IPC, netns, nftables, mounts...)
# is a defect of the test that left it: named, and the run fails.
snapshot=$(mktemp)
trap 'rm -f "$snapshot"' EXIT
python3 tests/hygiene/leftovers.py snapshot "$snapshot"
rc=0
(cd build && ctest --output-on-failure "$@") || rc=$?
python3 tests/hygiene/leftovers.py compare "$snapshot" || { [ "$rc" -ne 0 ] || rc=1; }
exit "$rc"
