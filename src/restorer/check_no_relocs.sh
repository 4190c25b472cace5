#!/bin/sh
# Fails if the restorer blob would need relocations to run at an arbitrary address.
if readelf -r "$1" | grep -q R_X86_64; then
  echo "restorer blob $1 needs relocations: it must be position-independent" >&2
  exit 1
fi
