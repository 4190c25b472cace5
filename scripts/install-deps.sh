#!/usr/bin/env bash
# Installs the Debian packages cryo needs to build and test. Idempotent; quiet when
# everything is present already.
set -euo pipefail
PKGS=(g++ cmake ninja-build pkg-config libprotobuf-dev protobuf-compiler libcli11-dev
      libzstd-dev liblz4-dev libxxhash-dev libssl-dev openssl libgtest-dev python3 iproute2
      openjdk-17-jre-headless openjdk-17-jdk-headless
      clang libclang-rt-14-dev  # scripts/fuzz.sh and the fuzz test: libFuzzer
      screen   # test_screen.py: a GNU screen session checkpointed and restored
      sqlite3) # test_sqlite.py: the sqlite3 shell mid-transaction
# tests/e2e/test_postgres.py: the server, initdb, pg_ctl and amcheck; psql and pg_isready.
PKGS+=(postgresql-15 postgresql-client-15)
# cryo dump/restore of TCP connections: the network lock (nft); test_tcp.py: redis-server.
PKGS+=(nftables redis-server)
# A network namespace of the tree's own (src/ns/rtnl.cc): rtnetlink through libmnl.
PKGS+=(libmnl-dev)
# The exact count of a UDP socket's queued datagrams (src/bpf): a BPF iterator through libbpf.
PKGS+=(libbpf-dev)
# test_snapshot.py: chattr (an append-only file refused).
PKGS+=(e2fsprogs)
# test_unix.py and test_realnet.py: nginx (a master and its workers); test_realnet.py: tmux
# with a client attached from outside the tree.
PKGS+=(nginx-light tmux)
# rsync: the baseline of bench/fsroot_bench.py (--fs-root against rsync -a and cp -a).
PKGS+=(rsync)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
