#!/usr/bin/env bash
# Builds the image fuzzer (tests/fuzz) with clang and the sanitizers in a build
# directory of its own, and runs it over a copy of the seed corpus.
#
#   scripts/fuzz.sh [--seconds N] [--build-dir DIR] [--corpus DIR] [--fuzzer NAME] [-- LIBFUZZER-ARGS...]
#
# --fuzzer: image_fuzzer (default: the image reader) or stream_fuzzer (the
# page server's frame parser; seeded from tests/fuzz/stream-corpus).
#
# --seconds: how long to fuzz (default 60; the test suite runs 60, longer
# campaigns on demand: --seconds 3600). --corpus: where the corpus lives and
# grows (default BUILD/corpus, seeded from tests/fuzz/corpus). A finding (crash,
# leak, input slower than 10 s, more than 2 GiB) stops it with a non-zero exit
# status and leaves the input in BUILD/artifacts/.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
RUN_SECONDS=60
BUILD="$SRC/build-fuzz"
CORPUS=""
FUZZER=image_fuzzer
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) RUN_SECONDS=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --corpus) CORPUS=$2; shift 2 ;;
    --fuzzer) FUZZER=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--seconds N] [--build-dir DIR] [--corpus DIR] [-- LIBFUZZER-ARGS]" >&2; exit 2 ;;
  esac
done
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is not installed (scripts/install-deps.sh)" >&2; exit 1; }
LAUNCHER=()
if command -v ccache >/dev/null; then
  LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCRYO_FUZZ_ONLY=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${LAUNCHER[@]}" >/dev/null
cmake --build "$BUILD" --target "$FUZZER"
SEEDS="$SRC/tests/fuzz/corpus"
[ "$FUZZER" = stream_fuzzer ] && SEEDS="$SRC/tests/fuzz/stream-corpus"
DEFAULT_CORPUS=$BUILD/corpus
[ "$FUZZER" = stream_fuzzer ] && DEFAULT_CORPUS=$BUILD/corpus-stream
CORPUS=${CORPUS:-$DEFAULT_CORPUS}
mkdir -p "$CORPUS" "$BUILD/artifacts"
cp -n "$SEEDS"/* "$CORPUS"/
exec "$BUILD/tests/fuzz/$FUZZER" "$CORPUS" -max_total_time="$RUN_SECONDS" -max_len=262144 -timeout=10 \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" "$@"
