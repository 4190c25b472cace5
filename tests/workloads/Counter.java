// Counter: a Java workload for cryo's end-to-end tests (protocol: wl_common.h).
//
// Usage: java Counter CTL_DIR
//
// THREADS worker threads count, each in its own slot of an AtomicLongArray,
// checking on every step that its running sum is still n(n+1)/2 (its stack
// and registers are intact), and all of them take a shared monitor now and
// then (contended locks: futexes in the JVM). A churn thread allocates and
// drops objects so that the garbage collector runs. On verify the main thread
// checks that every worker is alive, has no errors, counted at least as far
// as at the previous verify (the counters continue, they did not restart),
// and advances within 300 ms; then writes "OK ..." or "FAIL ..." to result.
//
// Files are handled with java.io only (java.nio file channels would make the
// JVM keep one end of a UNIX socketpair open, FileDispatcherImpl's preClose
// fd: cryo restores it, but this workload is about threads and a terminal;
// HttpCounter.java covers sockets).
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

public class Counter {
  static final int THREADS = 4;
  static final AtomicLongArray counts = new AtomicLongArray(THREADS);
  static final AtomicLong errors = new AtomicLong();
  static final Object monitor = new Object();
  static long shared = 0;  // guarded by monitor
  static volatile long churned = 0;

  static void work(int slot) {
    long n = 0, sum = 0;
    while (true) {
      n++;
      sum += n;
      if (sum != n * (n + 1) / 2) errors.incrementAndGet();
      counts.set(slot, n);
      if (n % 1000 == 0) {
        synchronized (monitor) {
          shared++;
        }
        try {
          Thread.sleep(1);
        } catch (InterruptedException e) {
          return;
        }
      }
    }
  }

  static void churn() {
    List<String> keep = new ArrayList<>();
    long i = 0;
    while (true) {
      keep.add("item " + i++);
      if (keep.size() > 10000) keep.clear();
      churned = i;
      if (i % 1000 == 0) {
        try {
          Thread.sleep(1);
        } catch (InterruptedException e) {
          return;
        }
      }
    }
  }

  static void writeAtomic(File dir, String name, String content) throws IOException {
    File tmp = new File(dir, name + ".tmp");
    try (FileOutputStream out = new FileOutputStream(tmp)) {
      out.write(content.getBytes(StandardCharsets.UTF_8));
      out.getFD().sync();
    }
    if (!tmp.renameTo(new File(dir, name))) throw new IOException("rename " + tmp);
  }

  static String readAll(File f) throws IOException {
    try (FileInputStream in = new FileInputStream(f)) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  public static void main(String[] args) throws Exception {
    File ctl = new File(args[0]);
    Thread[] workers = new Thread[THREADS];
    for (int i = 0; i < THREADS; i++) {
      final int slot = i;
      workers[i] = new Thread(() -> work(slot), "counter-" + i);
      workers[i].start();
    }
    Thread churner = new Thread(Counter::churn, "churn");
    churner.start();
    long[] last = new long[THREADS];
    writeAtomic(ctl, "ready", ProcessHandle.current().pid() + "\n");
    File verify = new File(ctl, "verify");
    int verifies = 0;
    while (true) {
      Thread.sleep(10);
      if (!verify.exists()) continue;
      String req = readAll(verify).trim();
      if (!verify.delete()) throw new IOException("delete " + verify);
      verifies++;
      StringBuilder fail = new StringBuilder();
      long[] before = new long[THREADS];
      for (int i = 0; i < THREADS; i++) before[i] = counts.get(i);
      long churnBefore = churned, sharedBefore;
      synchronized (monitor) {
        sharedBefore = shared;
      }
      Thread.sleep(300);
      StringBuilder summary = new StringBuilder();
      for (int i = 0; i < THREADS; i++) {
        long now = counts.get(i);
        if (!workers[i].isAlive()) fail.append(" thread ").append(i).append(" is dead;");
        if (before[i] < last[i])
          fail.append(" thread ").append(i).append(" went back from ").append(last[i]).append(" to ").append(before[i]).append(';');
        if (now <= before[i]) fail.append(" thread ").append(i).append(" stuck at ").append(now).append(';');
        summary.append(' ').append(now);
        last[i] = now;
      }
      synchronized (monitor) {
        if (shared <= sharedBefore) fail.append(" shared counter stuck at ").append(shared).append(';');
      }
      if (churned <= churnBefore) fail.append(" churn stuck;");
      if (errors.get() != 0) fail.append(' ').append(errors.get()).append(" sum errors;");
      boolean ok = fail.length() == 0;
      writeAtomic(ctl, "result",
          (ok ? "OK java " + THREADS + " threads, verify " + verifies + ", counts" + summary
              : "FAIL" + fail) + "\n");
      if (req.equals("exit")) System.exit(ok ? 0 : 1);
    }
  }
}
