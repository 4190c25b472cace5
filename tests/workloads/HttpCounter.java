// HttpCounter: a Java 17 com.sun.net.httpserver program for cryo's end-to-end
// tests (tests/e2e/test_realnet.py), checked from outside over HTTP.
//
// Usage: java HttpCounter CTL_DIR
//
// Serves GET on 127.0.0.1 (a port the kernel picks, written to CTL_DIR/port
// once it listens) with "count N peer PORT\n": N counts the requests served
// since the start (a restored server goes on counting, a rewound one counts
// again from the image's value), PORT is the client's port, so a client can
// tell that a keep-alive connection is still the same one. HTTP/1.1: the
// connection stays open between requests.
import com.sun.net.httpserver.HttpServer;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

public class HttpCounter {
  public static void main(String[] args) throws IOException {
    File dir = new File(args[0]);
    AtomicLong count = new AtomicLong();
    HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0), 16);
    server.createContext("/", exchange -> {
      long n = count.incrementAndGet();
      byte[] body = ("count " + n + " peer " + exchange.getRemoteAddress().getPort() + "\n")
                        .getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().set("Content-Type", "text/plain");
      exchange.sendResponseHeaders(200, body.length);
      try (OutputStream out = exchange.getResponseBody()) {
        out.write(body);
      }
    });
    server.setExecutor(null);  // the dispatcher thread serves
    server.start();
    // Written whole, then renamed: the test never reads half a port.
    File tmp = new File(dir, "port.tmp");
    try (FileOutputStream out = new FileOutputStream(tmp)) {
      out.write(Integer.toString(server.getAddress().getPort()).getBytes(StandardCharsets.UTF_8));
    }
    if (!tmp.renameTo(new File(dir, "port"))) throw new IOException("rename port.tmp");
  }
}
