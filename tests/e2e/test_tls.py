#!/usr/bin/python3
"""End-to-end tests of TLS on the stream: `cryo page-server` and
`cryo dump --to` with certificates (--tls-cert, --tls-key, --tls-ca on both
sides) or a pre-shared key (--tls-psk). A streamed image restores; a wrong
key, a certificate from another CA, a key that does not match its certificate
or a peer without TLS is refused on both sides with a message naming it, the
source tree keeps running untouched and no image is left. The keys and
certificates are made at test time (openssl CLI), never committed.

Run: test_tls.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq, fail  # noqa: E402
from test_stream import Server, check_untouched, dump_to, leftovers, stream_memory_leave_running  # noqa: E402
from test_tree import restore_and_verify, start_tree, tree_ids  # noqa: E402


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        fail("openssl %s: %s" % (" ".join(args), r.stderr.decode(errors="replace")))


class Pki:
    """Two CAs (the operator's and a stranger's), certificates of hosts A and
    B signed by the operator's CA, one of host M signed by the stranger's,
    and two pre-shared keys, in `d`."""

    def __init__(self, d):
        self.d = d
        for ca in ("ca", "rogue-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", self.p(ca + ".key"), "-out", self.p(ca + ".crt"), "-subj", "/CN=cryo test " + ca,
                    "-days", "2")
        for host, ca in (("a", "ca"), ("b", "ca"), ("m", "rogue-ca")):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", self.p(host + ".key"), "-out", self.p(host + ".csr"), "-subj", "/CN=host-" + host)
            openssl("x509", "-req", "-in", self.p(host + ".csr"), "-CA", self.p(ca + ".crt"),
                    "-CAkey", self.p(ca + ".key"), "-CAcreateserial", "-out", self.p(host + ".crt"), "-days", "2")
        for name in ("psk1", "psk2"):
            fd = os.open(self.p(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, os.urandom(32).hex().encode() + b"\n")
            os.close(fd)

    def p(self, name):
        return os.path.join(self.d, name)

    def certs(self, host, ca="ca", key=None):
        return ["--tls-cert", self.p(host + ".crt"), "--tls-key", self.p((key or host) + ".key"),
                "--tls-ca", self.p(ca + ".crt")]

    def psk(self, name):
        return ["--tls-psk", self.p(name)]


def pki(h):
    return Pki(h.mkdir("pki"))


def test_psk_tree_kill(h):
    """A tree with pipes and shared memory streamed over TLS with a
    pre-shared key (kill mode) restores from the received directory."""
    k = pki(h)
    w = start_tree(h)
    h.verify_ok(w, when="before dump")
    before = tree_ids(w.pid)
    images = os.path.join(h.mkdir("recv"), "img")
    srv = Server(h, images, auth=k.psk("psk1"))
    r = dump_to(h, w.pid, srv.addr, auth=k.psk("psk1"))
    check(r.rc == 0, "dump --to over TLS (psk) failed\n%s" % r.describe())
    check_eq(srv.wait(), 0, "page-server exit status (%s)" % srv.stderr())
    check("TLS" in r.stderr + (r.log or ""), "the dump should say the stream is TLS: %s" % r.describe())
    cryotest.check_private_image(images)
    h.reap_original(w)
    cryotest.wait_pids_gone(list(before))
    rw = restore_and_verify(h, w, images, before, "after restore from the TLS-streamed image")
    h.verify_ok(rw, exit=True, when="after restore (exit)")


def test_certs_memory_leave_running(h):
    """64 MiB copy-on-write memory streamed over TLS with certificates
    (each side verifies the other against the CA), --leave-running: the
    original runs on; killed, it restores from the received image."""
    k = pki(h)
    stream_memory_leave_running(h, k.certs("b"), k.certs("a"), "TLS-streamed (certificates)")


def refused(h, w, before, name, server_auth, dump_auth, dump_must, server_must):
    """A stream whose handshake must fail: both sides exit 1 naming why, the
    tree is untouched, no image and no temporary directory is left."""
    images = os.path.join(h.mkdir("refused-" + name), "img")
    srv = Server(h, images, auth=server_auth)
    r = dump_to(h, w.pid, srv.addr, auth=dump_auth)
    rc = srv.wait()
    check_eq(r.rc, 1, "%s: dump exit status\n%s" % (name, r.describe()))
    check(dump_must in r.message, "%s: the dump should say %r: %s" % (name, dump_must, r.message))
    check_eq(rc, 1, "%s: page-server exit status (%s)" % (name, srv.stderr()))
    check(server_must in srv.stderr(), "%s: the page server should say %r: %s" % (name, server_must, srv.stderr()))
    check(not os.path.exists(images), "%s: %s was made" % (name, images))
    check(not leftovers(images), "%s: temporary directories left: %s" % (name, leftovers(images)))
    check_untouched(h, w, before, "after the refused %s stream" % name)


def test_refused_peers(h):
    """Wrong pre-shared key, a certificate signed by another CA (either
    side's), no certificate, one side without TLS: refused on both sides."""
    k = pki(h)
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    cases = [
        ("wrong-psk", k.psk("psk1"), k.psk("psk2"), "wrong pre-shared key", "wrong pre-shared key"),
        ("client-rogue-cert", k.certs("b"), k.certs("m", ca="ca"),
         "refused our certificate", "peer not verified"),
        ("server-rogue-cert", k.certs("m", ca="ca"), k.certs("a"),
         "peer not verified", "refused our certificate"),
        ("psk-vs-certs", k.certs("b"), k.psk("psk1"), "certificate", "TLS"),
        ("tls-vs-insecure", ["--insecure"], k.psk("psk1"), "TLS", "the peer uses TLS"),
        ("insecure-vs-tls", k.psk("psk1"), ["--insecure"], "--tls-*", "does not speak TLS"),
    ]
    for name, server_auth, dump_auth, dump_must, server_must in cases:
        refused(h, w, before, name, server_auth, dump_auth, dump_must, server_must)


def test_bad_local_files(h):
    """A key that does not match its certificate, a certificate or CA that
    does not load, a pre-shared key others can read or too short: the side
    given them refuses before it connects or listens, naming the file."""
    k = pki(h)
    w = h.start_workload("cow", "8")
    h.wait_ready(w, timeout=30)
    before = tree_ids(w.pid)
    short = k.p("short")
    fd = os.open(short, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"abcd\n")
    os.close(fd)
    loose = k.p("loose")
    with open(k.p("psk1")) as src, open(loose, "w") as dst:
        dst.write(src.read())
    os.chmod(loose, 0o644)
    cases = [
        (k.certs("a", key="b"), "does not match the certificate"),
        (["--tls-cert", k.p("a.key"), "--tls-key", k.p("a.key"), "--tls-ca", k.p("ca.crt")],
         "cannot load the certificate"),
        (["--tls-cert", k.p("a.crt"), "--tls-key", k.p("a.key"), "--tls-ca", k.p("psk1")], "cannot load the CA"),
        (["--tls-psk", loose], "can be read by others"),
        (["--tls-psk", short], "32 to 64 bytes"),
    ]
    for auth, must in cases:
        r = dump_to(h, w.pid, "127.0.0.1:9", auth=auth)
        check(r.rc == 1 and must in r.message, "dump --to with %s: should say %r: %s" % (auth, must, r.describe()))
        d = os.path.join(h.mkdir("bad"), "img")
        r = h.run_cryo(["page-server", "--listen", "127.0.0.1:0", "-D", d] + auth, log=False)
        check(r.rc == 1 and must in r.message, "page-server with %s: should say %r: %s" % (auth, must, r.describe()))
        check("listening" not in r.message, "page-server listened with %s: %s" % (auth, r.message))
        check(not os.path.exists(d), "page-server with %s made %s" % (auth, d))
    for auth, must in ((["--tls-cert", k.p("a.crt")], "all three"),
                       (k.psk("psk1") + k.certs("a"), "not both"),
                       (k.psk("psk1") + ["--insecure"], "not both")):
        r = dump_to(h, w.pid, "127.0.0.1:9", auth=auth)
        check(r.rc == 2 and must in r.message, "dump --to with %s: should say %r: %s" % (auth, must, r.describe()))
    check_untouched(h, w, before, "after dumps with bad TLS files")


TESTS = [
    test_psk_tree_kill,
    test_certs_memory_leave_running,
    test_refused_peers,
    test_bad_local_files,
]

if __name__ == "__main__":
    sys.exit(cryotest.main(TESTS, __doc__))
