/**
 * Our streams echo for the bench: `listen()` and, per connection,
 * `conn.readable.pipeTo(conn.writable)` (the streams run on the default loop
 * by themselves; connections get TCP_NODELAY from `listen()`), with a
 * backlog of 1,024 as the other bench servers.
 *
 *     deno run --allow-ffi bench/servers/streams_echo.ts [host] [port]
 *
 * Prints `LISTENING <port>` once listening.
 *
 * @module
 */

import { listen } from "../../mod.ts";

if (import.meta.main) {
  const host = Deno.args[0] ?? "127.0.0.1";
  const port = Number(Deno.args[1] ?? 0);
  const listener = listen({ hostname: host, port, backlog: 1024 });
  console.log(`LISTENING ${(listener.addr as [string, number])[1]}`);
  for await (const conn of listener) {
    // A peer that resets ends its pipe with an error: nothing to report in a bench.
    conn.readable.pipeTo(conn.writable).catch(() => {});
  }
}
