/**
 * Bench server: Deno's native TLS echo (`Deno.listenTls`).
 *
 *     deno run --allow-net --allow-read bench/servers/deno_tls_echo.ts CERT KEY HOST PORT
 *
 * @module
 */
const [cert, key, hostname = "127.0.0.1", port = "0"] = Deno.args;
const listener = Deno.listenTls({
  hostname,
  port: Number(port),
  cert: Deno.readTextFileSync(cert),
  key: Deno.readTextFileSync(key),
});
console.log(`listening ${(listener.addr as Deno.NetAddr).port}`);
for await (const conn of listener) {
  (async () => {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (let off = 0; off < n;) off += await conn.write(buf.subarray(off, n));
      }
    } catch { /* reset or failed handshake */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}
