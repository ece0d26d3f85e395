/**
 * The yardstick for UDP: an echo server on Deno's own datagram API
 * (`Deno.listenDatagram`, still behind `--unstable-net`): receive into one
 * buffer, send each datagram back to its sender, await the send before the
 * next receive (the buffer is reused).
 *
 *     deno run --allow-net --unstable-net bench/servers/deno_udp_echo.ts [host] [port]
 *
 * Prints `LISTENING <port>` once bound.
 *
 * @module
 */

if (import.meta.main) {
  const hostname = Deno.args[0] ?? "127.0.0.1";
  const port = Number(Deno.args[1] ?? 0);
  // deno-lint-ignore no-explicit-any
  const listen = (Deno as any).listenDatagram as (o: {
    hostname: string;
    port: number;
    transport: "udp";
  }) => {
    addr: Deno.NetAddr;
    receive(p?: Uint8Array): Promise<[Uint8Array, Deno.Addr]>;
    send(p: Uint8Array, addr: Deno.Addr): Promise<number>;
  };
  const conn = listen({ hostname, port, transport: "udp" });
  console.log(`LISTENING ${conn.addr.port}`);
  const buf = new Uint8Array(2048);
  for (;;) {
    const [data, addr] = await conn.receive(buf);
    await conn.send(data, addr);
  }
}
