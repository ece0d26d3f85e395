/**
 * The yardstick of the streams rows: Deno's own networking as Web Streams
 * (`Deno.listen`, and per connection `conn.readable.pipeTo(conn.writable)`),
 * TCP_NODELAY on, as the other bench servers.
 *
 *     deno run --allow-net bench/servers/deno_streams_echo.ts [host] [port]
 *
 * Prints `LISTENING <port>` once listening.
 *
 * @module
 */

if (import.meta.main) {
  const host = Deno.args[0] ?? "127.0.0.1";
  const port = Number(Deno.args[1] ?? 0);
  const listener = Deno.listen({ hostname: host, port });
  console.log(`LISTENING ${listener.addr.port}`);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    // A peer that resets ends its pipe with an error: nothing to report in a bench.
    conn.readable.pipeTo(conn.writable).catch(() => {});
  }
}
