#!/usr/bin/env python3
"""bench_ns: what `cryo run` trees and `--join-ns` cost, against plain
dumps and restores of the counter workload (wall time of each cryo command,
median of 6 rounds):
  dump                a counter started by the bench (kill mode)
  dump-pidns-tree     a counter started by `cryo run` (dumped from inside its
                      PID namespace: setns, fork, a mount namespace and /proc)
  restore             plain, -d
  restore-join-net    the same image with --join-ns net:/run/netns/cryo-bench
  restore-pidns-new   the same image with --pidns new
  restore-pidns-tree  the `cryo run` image with --pidns new
Run as root from the build tree: bench_ns.py [CRYO [COUNTER]].
"""
import sys
import os, subprocess, time, tempfile, statistics, re, ctypes
ctypes.CDLL(None).prctl(36,1,0,0,0)
def reap(pid):
    os.kill(pid,9)
    for _ in range(500):
        try: os.waitpid(pid,os.WNOHANG)
        except ChildProcessError: pass
        if not os.path.exists("/proc/%d"%pid): return
        time.sleep(0.01)
    raise SystemExit("pid %d not reaped"%pid)

C = sys.argv[1] if len(sys.argv) > 1 else "src/cli/cryo"
W = sys.argv[2] if len(sys.argv) > 2 else "tests/workloads/counter"
subprocess.run(["ip","netns","add","cryo-bench"]); subprocess.run(["ip","-n","cryo-bench","link","set","lo","up"])
def start(d, run=False):
    os.makedirs(d+"/ctl")
    if run:
        subprocess.run([C,"run","--pidfile",d+"/rp","--",W,d+"/ctl"],stdin=subprocess.DEVNULL,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,close_fds=True)
        pid=int(open(d+"/rp").read())
    else:
        pid=subprocess.Popen([W,d+"/ctl"],stdin=subprocess.DEVNULL,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL,close_fds=True,start_new_session=True).pid
    while not os.path.exists(d+"/ctl/ready"): time.sleep(0.01)
    return pid
def timed(args):
    t=time.monotonic(); r=subprocess.run([C]+args,capture_output=True,text=True); dt=(time.monotonic()-t)*1e3
    assert r.returncode==0, r.stderr
    return dt
res={k:[] for k in ["dump","dump-pidns-tree","restore","restore-join-net","restore-pidns-new","restore-pidns-tree"]}
for i in range(6):
    d=tempfile.mkdtemp(); p=start(d)
    res["dump"].append(timed(["dump","-t",str(p),"-D",d+"/img","-q"]))
    try: os.waitpid(p,0)
    except ChildProcessError: pass
    for k,extra in (("restore",[]),("restore-join-net",["--join-ns","net:/run/netns/cryo-bench"]),("restore-pidns-new",["--pidns","new"])):
        res[k].append(timed(["restore","-D",d+"/img","-d","-q","--pidfile",d+"/pid"]+extra))
        pid=int(open(d+"/pid").read()); init=None
        if k=="restore-pidns-new":
            init=int(open("/proc/%d/stat"%pid).read().rsplit(")",1)[1].split()[2])
        reap(init or pid)
        pass
    d2=tempfile.mkdtemp(); p2=start(d2,run=True)
    res["dump-pidns-tree"].append(timed(["dump","-t",str(p2),"-D",d2+"/img","-q"]))
    time.sleep(0.1)
    res["restore-pidns-tree"].append(timed(["restore","-D",d2+"/img","-d","-q","--pidns","new","--pidfile",d2+"/pid"]))
    pid=int(open(d2+"/pid").read()); init=int(open("/proc/%d/stat"%pid).read().rsplit(")",1)[1].split()[2]); reap(init)
    for q in (p2,):
        pass
subprocess.run(["ip","netns","del","cryo-bench"])
for k,v in res.items(): print("%-20s median %.1f ms  (min %.1f, n=%d)"%(k,statistics.median(v),min(v),len(v)))
