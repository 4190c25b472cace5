#!/usr/bin/python3
"""Edited records never restore silently wrong: a bounded sample of the
record mutation campaign (tests/mutate/mutate_campaign.py, which runs them all
on demand). Each mutation edits one field of a real image, checksums and sizes
kept right; cryo show must finish and not crash, and the restore must refuse
it with a message and leave nothing behind, or restore what the record says.

Run: test_mutations.py --cryo PATH --workloads DIR [NAME ...]
(image_mutate is found beside the workloads directory).
"""
import argparse
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "mutate"))

import cryotest  # noqa: E402
import mutate_campaign  # noqa: E402
from cryotest import fail  # noqa: E402


def run(h, workload, count, seed):
    args = argparse.Namespace(tool=os.path.join(os.path.dirname(h.workloads), "image_mutate"), max=count, seed=seed,
                              timeout=30.0, out=None, verbose=False)
    if not os.path.isfile(args.tool):
        fail("image_mutate not found at %s (built with the tests)" % args.tool)
    results = []
    mutate_campaign.Campaign(args, h).run_workload(workload, results)
    counts = collections.Counter(r["outcome"] for r in results)
    h.note("%s: %s" % (workload, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
    bad = [r for r in results if r["outcome"] in mutate_campaign.BAD]
    if bad:
        fail("%d of %d mutations went wrong:\n%s" % (len(bad), len(results), "\n".join(
            "%s %s %s %s: %s" % (r["outcome"], r["file"], r["path"], r["op"][:60], r.get("why", "")[:300])
            for r in bad)))
    if counts["refused"] == 0:
        fail("no mutation was refused: %r" % counts)


def test_mutations_tree(h):
    run(h, "tree", 40, 11)


def test_mutations_eventfds(h):
    run(h, "eventfds", 30, 12)


def test_mutations_pty(h):
    run(h, "pty", 20, 13)


TESTS = [test_mutations_tree, test_mutations_eventfds, test_mutations_pty]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, description=__doc__))
