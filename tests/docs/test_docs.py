#!/usr/bin/env python3
"""The man page and README agree with the binary:
  - the version has one source (project(VERSION) in CMakeLists.txt): cryo
    --version, the man page's title and any version the README names;
  - every option `cryo [COMMAND] --help` lists is documented in the man page,
    and every option the man page's SYNOPSIS or the README's usage block
    gives exists in that command's --help;
  - every command line of `cryo --help`'s summary is in the README's usage
    block, and the usage block's commands are cryo's;
  - the man page's EXIT STATUS documents 0, 1 and 2, and cryo exits 2 for a
    usage error and 1 for a failure, as documented.

Usage: test_docs.py --cryo PATH --source DIR
"""
import argparse
import re
import subprocess
import sys

COMMANDS = ["dump", "restore", "show", "check", "unlock", "page-server", "migrate", "run"]
OPTION_RE = r"(?<![\w-])(--?[a-zA-Z][a-z0-9-]*)"


def run(cryo, args):
    return subprocess.run([cryo] + args, capture_output=True, text=True)


def help_options(cryo, cmd):
    out = run(cryo, ([cmd] if cmd else []) + ["--help"]).stdout
    opts = set()
    for line in out.splitlines():
        m = re.match(r"\s+(-\S+?)(?:\s|$)", line)
        if m:
            opts.update(o for o in m.group(1).split(",") if o.startswith("-"))
    return opts, out


def man_synopsis(man):
    """command -> set of options in the SYNOPSIS lines of that command."""
    syn = man.split(".SH SYNOPSIS", 1)[1].split(".SH DESCRIPTION", 1)[0].replace("\\-", "-")
    out = {}
    for block in syn.split(".br"):
        # (a command word, not an option such as page-server's --restore)
        words = re.findall(r"(?<![\w-])(check|dump|restore|show|unlock|page-server|migrate)\b", block)
        if words:
            out.setdefault(words[0], set()).update(re.findall(OPTION_RE, block))
    return out


def readme_usage(readme):
    """The `cryo ...` command lines of the README's "Using it" block."""
    section = readme.split("## Using it", 1)[1]
    block = section.split("```", 2)[1]
    return [l.split("#", 1)[0].strip() for l in block.splitlines() if l.strip().startswith("cryo ")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cryo", required=True)
    ap.add_argument("--source", required=True)
    a = ap.parse_args()
    failures = []
    version = run(a.cryo, ["--version"]).stdout.split()
    if len(version) < 2 or version[0] != "cryo":
        print("FAIL: cryo --version printed %r" % version)
        return 1
    cmake = open(a.source + "/CMakeLists.txt", encoding="utf-8").read()
    m = re.search(r"project\(cryo VERSION ([0-9.]+)", cmake)
    if not m or m.group(1) != version[1]:
        failures.append("cryo --version says %s, CMakeLists.txt project(VERSION) %s" % (version[1], m and m.group(1)))
    man = open(a.source + "/docs/cryo.1", encoding="utf-8").read()
    readme = open(a.source + "/README.md", encoding="utf-8").read()
    title = man.splitlines()[0]
    if '"cryo %s"' % version[1] not in title:
        failures.append("docs/cryo.1 title %r does not name cryo %s" % (title, version[1]))
    for v in set(re.findall(r"\bcryo ([0-9]+\.[0-9]+\.[0-9]+)\b", readme)):
        if v != version[1]:
            failures.append("README.md names cryo %s, cryo --version %s" % (v, version[1]))
    plain = man.replace("\\-", "-")

    # --help -> man page.
    helps = {}
    for cmd in [None] + COMMANDS:
        opts, out = help_options(a.cryo, cmd)
        helps[cmd] = opts
        for opt in sorted(opts):
            if opt in ("-h", "--help"):
                continue
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), plain):
                failures.append("cryo %s--help lists %s, docs/cryo.1 does not" % (cmd + " " if cmd else "", opt))
    global_opts = helps[None]

    # man page SYNOPSIS -> --help.
    for cmd, opts in man_synopsis(man).items():
        for opt in sorted(opts - helps[cmd] - global_opts):
            failures.append("docs/cryo.1 SYNOPSIS gives %s %s, cryo %s --help does not list it" % (cmd, opt, cmd))

    # README usage block <-> --help.
    usage = readme_usage(readme)
    if not usage:
        failures.append("README.md: no cryo command lines in the \"Using it\" block")
    for line in usage:
        words = line.split()
        cmd = words[1]
        if cmd not in COMMANDS:
            failures.append("README.md usage %r: %s is not a cryo command" % (line, cmd))
            continue
        for opt in re.findall(OPTION_RE, line):
            if opt not in helps[cmd] and opt not in global_opts:
                failures.append("README.md usage %r: cryo %s --help does not list %s" % (line, cmd, opt))
    summary = run(a.cryo, ["--help"]).stdout.split("Usage:", 1)[0]
    shapes = {re.sub(r"\s+", " ", l) for l in usage}
    for l in summary.splitlines():
        m = re.match(r"\s+(cryo \S.*?)\s{2,}", l)
        if m and not any(s == m.group(1) or s.startswith(m.group(1) + " ") for s in shapes):
            failures.append("cryo --help shows %r, README.md's usage block does not" % m.group(1))

    # Exit statuses: documented, and as documented.
    status = plain.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in ("0", "1", "2"):
        if not re.search(r"^\.B %s$" % code, status, re.M):
            failures.append("docs/cryo.1 EXIT STATUS does not document %s" % code)
    for args, code in ((["dump", "-t", "0", "-D", "/nonexistent/cryo-docs-test"], 2),
                       (["no-such-command"], 2),
                       (["dump", "--no-such-option"], 2),
                       (["show", "/nonexistent/cryo-docs-test"], 1),
                       (["--help"], 0),
                       (["--version"], 0)):
        rc = run(a.cryo, args).returncode
        if rc != code:
            failures.append("cryo %s exited %d, docs/cryo.1 says %d" % (" ".join(args), rc, code))

    for f in failures:
        print("FAIL:", f)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
