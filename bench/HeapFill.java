// HeapFill: a JVM whose heap holds about MIB MiB of live, typical objects,
// for bench_compress.py (protocol: CTL_DIR/ready gets the pid once filled).
//
// Usage: java -Xms<N>m -Xmx<N>m HeapFill CTL_DIR MIB
//
// A mix of what a service keeps: HashMaps of short strings to boxed numbers,
// char-heavy strings (log lines), long[] of counters and byte[] of random
// bytes (a cache of compressed blobs), in about equal parts.
import java.io.File;
import java.io.FileOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Random;

public class HeapFill {
  static final List<Object> keep = new ArrayList<>();

  public static void main(String[] args) throws Exception {
    File ctl = new File(args[0]);
    long target = Long.parseLong(args[1]) << 20;
    Random rnd = new Random(42);
    long filled = 0;
    int round = 0;
    while (filled < target) {
      switch (round++ % 4) {
        case 0: {
          HashMap<String, Long> m = new HashMap<>();
          for (int i = 0; i < 4096; i++) m.put("user-" + rnd.nextInt(1 << 20) + "-" + i, (long) rnd.nextInt());
          keep.add(m);
          filled += 4096 * 120;
          break;
        }
        case 1: {
          StringBuilder sb = new StringBuilder();
          for (int i = 0; i < 2000; i++)
            sb.append("2026-12-07T06:00:").append(i % 60).append(" INFO request ").append(rnd.nextInt(100000))
                .append(" served in ").append(rnd.nextInt(500)).append(" ms\n");
          keep.add(sb.toString());
          filled += sb.length() * 2L;
          break;
        }
        case 2: {
          long[] a = new long[65536];
          for (int i = 0; i < a.length; i++) a[i] = i * 3L + (rnd.nextInt(16));
          keep.add(a);
          filled += a.length * 8L;
          break;
        }
        default: {
          byte[] b = new byte[256 << 10];
          rnd.nextBytes(b);
          keep.add(b);
          filled += b.length;
        }
      }
    }
    try (FileOutputStream f = new FileOutputStream(new File(ctl, "ready"))) {
      f.write((ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.US_ASCII));
    }
    for (;;) Thread.sleep(1000);
  }
}
