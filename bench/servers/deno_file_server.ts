/**
 * Deno's own file server for `bench/sendfile_bench.ts`: `Deno.open` piped to
 * the `Deno.Conn` (`file.readable.pipeTo(conn.writable)`, which closes both
 * at the end), as a Deno program would serve a file.
 *
 *     deno run --allow-net --allow-read bench/servers/deno_file_server.ts [host] [port] --file=PATH
 *
 * Prints `LISTENING <port>` once listening.
 *
 * @module
 */

const path = Deno.args.find((a) => a.startsWith("--file="))?.slice(7);
if (!path) throw new Error("--file=PATH is required");
const args = Deno.args.filter((a) => !a.startsWith("--"));
const listener = Deno.listen({ hostname: args[0] ?? "127.0.0.1", port: Number(args[1] ?? 0) });
console.log(`LISTENING ${listener.addr.port}`);
for await (const conn of listener) {
  void (async () => {
    try {
      const file = await Deno.open(path);
      await file.readable.pipeTo(conn.writable);
    } catch {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  })();
}
