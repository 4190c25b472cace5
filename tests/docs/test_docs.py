#!/usr/bin/env python3
"""The man page and README agree with the binary: the version in the man
page's title is cryo's own, and every option `cryo COMMAND --help` lists is
documented in the man page.

Usage: test_docs.py --cryo PATH --source DIR
"""
import argparse
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cryo", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    failures = []
    version = subprocess.run([a.cryo, "--version"], capture_output=True, text=True).stdout.split()
    if len(version) < 2 or version[0] != "cryo":
        print("FAIL: cryo --version printed %r" % version)
        return 1
    man = open(a.source + "/docs/cryo.1", encoding="utf-8").read()
    title = man.splitlines()[0]
    if '"cryo %s"' % version[1] not in title:
        failures.append("docs/cryo.1 title %r does not name cryo %s" % (title, version[1]))
    plain = man.replace("\\-", "-")
    for cmd in ["dump", "restore", "show", "check"]:
        out = subprocess.run([a.cryo, cmd, "--help"], capture_output=True, text=True).stdout
        for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out))):
            if opt == "--help":
                continue
            if opt not in plain:
                failures.append("cryo %s --help lists %s, docs/cryo.1 does not" % (cmd, opt))
    for f in failures:
        print("FAIL:", f)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
