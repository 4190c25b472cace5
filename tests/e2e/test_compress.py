#!/usr/bin/python3
"""End-to-end tests of compressed images on disk (`cryo dump --compress`).

The incr workload (tests/workloads/incr.c) checks every byte of its 16 MiB of
memory against the step it is at. Each test dumps it with --compress zstd,
zstd:19 or lz4, checks that the image says so (feature 'compressed-pages',
`cryo show` names the compression) and that its page files are smaller than
the pages they hold, and restores it in kill, leave-running and rewind modes.
An incremental image is dumped over a compressed parent and compared byte for
byte with a full dump (`cryo show --compare-pages`). A corrupted frame of a
compressed page file is refused at restore naming the file and the frame,
and leaves no process behind. An image dumped without --compress stays as
it was: no feature, page files of the raw layout.

Run: test_compress.py --cryo PATH --workloads DIR [NAME ...]
"""
import os
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryotest  # noqa: E402
from cryotest import check, check_eq  # noqa: E402
from test_incremental import page_bytes, start, step, verify_restored  # noqa: E402

HEADER = struct.Struct("<4sIIIQQ16s")  # magic, version, kind, header_size, payload_size, payload_hash, image id
KIND_PAGES, KIND_COMPRESSED_PAGES = 5, 86


def page_file_kind(images, pid):
    with open(os.path.join(images, "pages-%d.img" % pid), "rb") as f:
        return HEADER.unpack(f.read(HEADER.size))[2]


def compressed_dump(h, w, images, spec, leave_running=False, extra=()):
    h.dump(w.pid, images, leave_running=leave_running, extra=["--compress", spec] + list(extra))
    show = h.show_json(images)
    check("compressed-pages" in show["features"], "features of %s lack 'compressed-pages': %s"
          % (images, show["features"]))
    want = "zstd:3" if spec == "zstd" else spec
    check_eq(show["compression"], want, "compression named by cryo show --json")
    r = h.run_cryo(["show", images], tag="show")
    check(r.rc == 0 and ("compression: " + want) in r.stdout, "cryo show does not name the compression\n%s"
          % r.describe())
    check_eq(page_file_kind(images, w.pid), KIND_COMPRESSED_PAGES, "kind of pages-%d.img" % w.pid)
    data, files = show["page_data_bytes"], show["page_files_bytes"]
    h.note("%s: %d KiB of pages in %d KiB of page files" % (spec, data >> 10, files >> 10))
    check(files * 2 < data, "%s: the page files (%d bytes) are not much smaller than the pages (%d)"
          % (spec, files, data))
    return show


def kill_mode_then_rewind(h, spec, at_step):
    w = start(h)
    if at_step:
        step(h, w, at_step)
    images = h.mkdir("img")
    compressed_dump(h, w, images, spec)
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    verify_restored(h, w, images, at_step, "after restoring a %s image" % spec)
    verify_restored(h, w, images, at_step, "after restoring it again (rewind)")


def test_zstd_kill_and_rewind(h):
    kill_mode_then_rewind(h, "zstd", 1)


def test_zstd19_leave_running(h):
    w = start(h)
    step(h, w, 2)
    images = h.mkdir("img")
    compressed_dump(h, w, images, "zstd:19", leave_running=True)
    h.verify_ok(w, when="of the original after dump --leave-running --compress zstd:19")
    step(h, w, 3)
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    verify_restored(h, w, images, 2, "after restoring a zstd:19 image")


def test_lz4_kill_and_rewind(h):
    kill_mode_then_rewind(h, "lz4", 0)


def test_incremental_over_compressed_parent(h):
    w = start(h)
    parent = h.mkdir("parent")
    compressed_dump(h, w, parent, "zstd", leave_running=True)
    step(h, w, 1)
    os.kill(w.pid, signal.SIGSTOP)
    h.wait_state(w.pid, "T")
    full = h.mkdir("full")
    h.dump(w.pid, full, leave_running=True)
    child = h.mkdir("child")
    show = compressed_dump(h, w, child, "lz4", extra=["--parent", parent])
    check("incremental" in show["features"], "the child image is not incremental: %s" % show["features"])
    check(show["processes"][0]["parent_pages"] > 3000, "only %d pages taken from the compressed parent"
          % show["processes"][0]["parent_pages"])
    h.reap_original(w)
    cryotest.wait_pids_gone([w.pid])
    r = h.run_cryo(["show", child, "--compare-pages", full], tag="compare")
    check(r.rc == 0, "the incremental image over a compressed parent differs from the full dump\n%s" % r.describe())
    verify_restored(h, w, child, 1, "after restoring an incremental image over a compressed parent", stopped=True)


def frame_offsets(images, pid):
    """(file offset, stored bytes) of every frame of a compressed page file."""
    with open(os.path.join(images, "pages-%d.img" % pid), "rb") as f:
        data = f.read()
    magic, _codec, _level, _chunk, count, index_at, _ = struct.unpack_from("<4sIIIQQI", data, 48)
    check_eq(magic, b"CFRM", "frame descriptor magic")
    return [struct.unpack_from("<QI", data, index_at + 24 * i) for i in range(count)]


def test_corrupted_frame_refused_by_name(h):
    w = start(h)
    images = h.mkdir("img")
    compressed_dump(h, w, images, "zstd", leave_running=True)
    h.kill_and_reap(w)
    cryotest.wait_pids_gone([w.pid])
    frames = frame_offsets(images, w.pid)
    check(len(frames) > 4, "only %d frames" % len(frames))
    at, size = frames[len(frames) // 2]
    path = os.path.join(images, "pages-%d.img" % w.pid)
    with open(path, "r+b") as f:
        f.seek(at + size // 2)
        b = f.read(1)
        f.seek(at + size // 2)
        f.write(bytes([b[0] ^ 0x20]))
    r = h.restore(images, expect_ok=False)
    check(r.rc == 1, "a restore from a corrupted frame should fail (exit 1)\n%s" % r.describe())
    check(path in r.message and ("frame %d" % (len(frames) // 2)) in r.message and "corrupted" in r.message,
          "the refusal should name the file and the frame: %s" % r.message)
    check(not cryotest.pid_alive(w.pid), "the failed restore left pid %d behind" % w.pid)


def test_uncompressed_image_unchanged(h):
    w = start(h)
    images = h.mkdir("img")
    h.dump(w.pid, images, leave_running=True)
    show = h.show_json(images)
    check("compressed-pages" not in show["features"], "an uncompressed image lists 'compressed-pages'")
    check_eq(show["compression"], "none", "compression of a plain image")
    check_eq(page_file_kind(images, w.pid), KIND_PAGES, "kind of pages-%d.img" % w.pid)
    check_eq(page_bytes(images), os.path.getsize(os.path.join(images, "pages-%d.img" % w.pid)), "page files")
    h.kill_and_reap(w)


def test_bad_compress_option(h):
    w = start(h)
    for bad in ("gzip", "zstd:20", "lz4:3"):
        r = h.run_cryo(["dump", "-t", str(w.pid), "-D", h.mkdir("bad"), "--compress", bad], tag="bad")
        check(r.rc == 2 and "--compress" in r.message, "--compress %s should be a usage error\n%s" % (bad, r.describe()))
    h.verify_ok(w, when="after the refused dumps")
    h.kill_and_reap(w)


if __name__ == "__main__":
    sys.exit(cryotest.main([test_zstd_kill_and_rewind, test_zstd19_leave_running, test_lz4_kill_and_rewind,
                   test_incremental_over_compressed_parent, test_corrupted_frame_refused_by_name,
                   test_uncompressed_image_unchanged, test_bad_compress_option], __doc__))
