#!/usr/bin/env python3
"""Every end-to-end test script ends with sys.exit(...) of cryotest.main's
status (directly or through a variable): a script that drops it exits 0 with
failed tests, and CTest counts it as passed. Four scripts did, unseen.

Usage: lint_exit_status.py DIR
"""
import os
import re
import sys


def main():
    d = sys.argv[1]
    bad = []
    names = sorted(n for n in os.listdir(d) if n.startswith("test_") and n.endswith(".py"))
    for n in names:
        text = open(os.path.join(d, n)).read()
        tail = text.split('if __name__ == "__main__":', 1)
        if len(tail) != 2:
            bad.append("%s: no `if __name__ == \"__main__\":` block" % n)
            continue
        body = tail[1]
        direct = re.search(r"sys\.exit\(\s*cryotest\.main\(", body)
        via = re.search(r"(\w+) = cryotest\.main\(", body)
        own_main = re.search(r"sys\.exit\(main\(\)\)", body) and re.search(r"return cryotest\.main\(", text)
        if not direct and not own_main and not (via and re.search(r"sys\.exit\(%s\)" % via.group(1), body)):
            bad.append("%s: cryotest.main's status does not reach sys.exit" % n)
    for b in bad:
        print("FAIL " + b)
    print("%d scripts checked, %d bad" % (len(names), len(bad)))
    return 1 if bad or not names else 0


if __name__ == "__main__":
    sys.exit(main())
