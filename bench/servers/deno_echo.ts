/**
 * The yardstick: an echo server on Deno's own networking (`Deno.listen`,
 * `conn.read`/`conn.write`), one async loop per connection with a 64 KiB
 * buffer, TCP_NODELAY on, as the other bench servers.
 *
 *     deno run --allow-net bench/servers/deno_echo.ts [host] [port]
 *
 * Prints `LISTENING <port>` once listening.
 *
 * @module
 */

const BUF = 65536;

async function serve(conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(BUF);
  try {
    (conn as Deno.TcpConn).setNoDelay(true);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // reset by the peer: just close
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

if (import.meta.main) {
  const host = Deno.args[0] ?? "127.0.0.1";
  const port = Number(Deno.args[1] ?? 0);
  const listener = Deno.listen({ hostname: host, port });
  console.log(`LISTENING ${listener.addr.port}`);
  for await (const conn of listener) void serve(conn);
}
