// Load without loss: 100 concurrent clients each send 1 MiB, in seeded
// random-sized pieces, to an in-process echo server; every client must get
// back exactly what it sent. Server and clients share one private map and
// one loop, on select, poll and epoll.
import { assert, assertEquals } from "@std/assert";
import { type Address, closeAll, Dispatcher, loop, type Socket, type SocketMap } from "../mod.ts";
import { assertNoFdLeak, EchoServer, POLLERS, rng, sha256 } from "./_util.ts";

const CLIENTS = 100;
const BYTES_PER_CLIENT = 1024 * 1024;
const DEADLINE_MS = 60_000;

/** Seeded pseudo-random bytes, four at a time (fast enough for 100 MiB). */
function seededBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  const words = new Uint32Array(Math.ceil(n / 4));
  for (let i = 0; i < words.length; i++) words[i] = (r() * 4294967296) >>> 0;
  return new Uint8Array(words.buffer, 0, n);
}

/**
 * Sends its data in random-sized pieces (1 byte to 64 KiB, skewed small) as
 * the socket takes them, and stores the echo in a buffer of the same size.
 */
class LoadClient extends Dispatcher {
  readonly data: Uint8Array;
  readonly echo: Uint8Array;
  sent = 0;
  received = 0;
  overflow = false;
  done = false;
  closedEarly = false;
  readonly #rand: () => number;
  #piece = 0; // bytes of the current piece not yet taken by the socket

  constructor(addr: Address, data: Uint8Array, seed: number, map: SocketMap) {
    super(null, map);
    this.data = data;
    this.echo = new Uint8Array(data.length);
    this.#rand = rng(seed);
    this.createSocket();
    this.connect(addr);
  }

  override handleConnect(): void {}

  override writable(): boolean {
    return !this.connected || this.sent < this.data.length;
  }

  override handleWrite(): void {
    if (this.sent >= this.data.length) return;
    if (this.#piece === 0) {
      const x = this.#rand();
      this.#piece = Math.min(1 + Math.floor(x * x * x * 65536), this.data.length - this.sent);
    }
    // A piece the socket takes only in part is finished on the next write event.
    const n = this.send(this.data.subarray(this.sent, this.sent + this.#piece));
    this.sent += n;
    this.#piece -= n;
  }

  override handleRead(): void {
    const room = this.echo.length - this.received;
    // Read more than is due, so an echo that duplicates bytes shows up as overflow.
    const chunk = this.recv(65536);
    if (chunk.length === 0) return;
    if (chunk.length > room) {
      this.overflow = true;
      this.close();
      return;
    }
    this.echo.set(chunk, this.received);
    this.received += chunk.length;
    if (this.received === this.echo.length) {
      this.done = true;
      this.close();
    }
  }

  override handleClose(): void {
    if (!this.done) this.closedEarly = true;
    this.close();
  }
}

for (const poller of POLLERS) {
  Deno.test({
    name: `load: ${CLIENTS} clients x 1 MiB echoed without loss (${poller})`,
    async fn() {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        try {
          const server = new EchoServer({
            map,
            // Room for every client at once: a short backlog drops SYNs and costs a 1 s retransmit.
            backlog: CLIENTS * 2,
          });
          const addr = (server.socket as Socket).getsockname();
          const clients: LoadClient[] = [];
          for (let i = 0; i < CLIENTS; i++) {
            const seed = 1000 + i;
            clients.push(new LoadClient(addr, seededBytes(BYTES_PER_CLIENT, seed), seed, map));
          }
          const start = performance.now();
          const deadline = start + DEADLINE_MS;
          let finished = 0;
          // Everything is in this process and this map: one synchronous loop drives all of it.
          while (performance.now() < deadline) {
            loop({ map, timeout: 0.1, count: 50, poller });
            finished = clients.filter((c) => c.done || c.closedEarly || c.overflow).length;
            // Done when every client is through and every server-side handler has closed.
            if (finished === CLIENTS && map.size === 1) break;
          }
          const elapsed = performance.now() - start;
          const broken = clients.filter((c) => c.closedEarly || c.overflow);
          assertEquals(
            broken.map((c) => `${c}: sent ${c.sent}, received ${c.received}`),
            [],
            "clients that lost their connection or got too much",
          );
          assertEquals(finished, CLIENTS, `only ${finished} clients done in ${DEADLINE_MS} ms`);
          assertEquals(server.accepted, CLIENTS);
          assertEquals(map.size, 1, "server-side handlers left open");
          for (const c of clients) {
            assertEquals(c.received, BYTES_PER_CLIENT);
            assertEquals(await sha256(c.echo), await sha256(c.data), `${c}`);
          }
          assert(elapsed < DEADLINE_MS);
          console.log(`  ${poller}: ${CLIENTS} MiB each way in ${(elapsed / 1000).toFixed(2)} s`);
        } finally {
          closeAll(map);
        }
      });
    },
  });
}
