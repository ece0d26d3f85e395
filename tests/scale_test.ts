// Connections at scale with real clients (python3 selectors, not this
// library): a burst of 500 connections at once and churn of 1,000 short
// connections (connect, echo 64 bytes, close) against an echo server that
// listens with a backlog of 1024; every echo checked, every fd back, on
// select, poll and epoll. Not timed: a loaded machine only makes it slower.
import { assertEquals } from "@std/assert";
import {
  closeAll,
  Dispatcher,
  DispatcherWithSend,
  loopAsync,
  type Socket,
  type SocketMap,
} from "../mod.ts";
import { assertNoFdLeak, POLLERS, python } from "./_util.ts";

const fixtures = new URL("./fixtures/", import.meta.url).pathname;

class Echo extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(65536);
    if (data.length > 0) this.send(data);
  }
  override handleClose(): void {
    this.close();
  }
}

class Server extends Dispatcher {
  constructor(map: SocketMap) {
    super(null, map);
    this.createSocket();
    this.bind(["127.0.0.1", 0]);
    this.listen(1024);
  }
  get port(): number {
    return ((this.socket as Socket).getsockname() as [string, number])[1];
  }
  override handleAccepted(sock: Socket): void {
    new Echo(sock, this._map);
  }
}

interface ClientResult {
  ok: number;
  failed: number;
  unfinished: number;
  errors: string[];
}

async function clients(port: number, args: string[]): Promise<ClientResult> {
  const out = await new Deno.Command(python!, {
    args: [`${fixtures}burst_client.py`, "127.0.0.1", String(port), ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

for (const poller of POLLERS) {
  Deno.test({
    name: `scale: a burst of 500 connections, then churn of 1,000, all echoed (${poller})`,
    ignore: !python,
    async fn() {
      await assertNoFdLeak(async () => {
        const map: SocketMap = new Map();
        const server = new Server(map);
        const stop = new AbortController();
        const looping = loopAsync({ map, poller, timeout: 0.05, signal: stop.signal });
        try {
          const burst = await clients(server.port, ["burst", "500"]);
          assertEquals(burst.errors, []);
          assertEquals([burst.ok, burst.failed, burst.unfinished], [500, 0, 0]);
          const churn = await clients(server.port, ["churn", "20", "1000"]);
          assertEquals(churn.errors, []);
          assertEquals(churn.ok, 1000);
          // Every server-side channel closed with its client: only the listener is left.
          for (let i = 0; i < 200 && map.size > 1; i++) {
            await new Promise((r) => setTimeout(r, 10));
          }
          assertEquals(map.size, 1);
        } finally {
          stop.abort();
          await looping;
          closeAll(map);
        }
      });
    },
  });
}
