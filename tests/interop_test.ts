// Interop with the reference itself: CPython's asyncore as the server for our
// client, and as the client of our server, over TCP (IPv4, IPv6) and Unix
// sockets, with our side on select, poll and epoll.
import { assert, assertEquals } from "@std/assert";
import {
  type Address,
  AF_INET,
  AF_INET6,
  AF_UNIX,
  closeAll,
  loop,
  type PollerName,
  type Socket,
  type SocketMap,
} from "../mod.ts";
import {
  assertNoFdLeak,
  concat,
  delay,
  EchoClient,
  EchoServer,
  POLLERS,
  pumpUntil,
  python,
  pythonChild,
  randomBytes,
  sha256,
  tempSocketPath,
} from "./_util.ts";
import { hasIPv6Loopback, type RunResult, spawn, stop } from "./fixtures/subprocess.ts";

const fixtures = new URL("./fixtures/", import.meta.url).pathname;
const decoder = new TextDecoder();
const MiB = 1024 * 1024;

type Kind = "inet" | "inet6" | "unix";
const KINDS: Kind[] = ["inet", ...(hasIPv6Loopback() ? ["inet6" as const] : []), "unix"];
const FAMILY: Record<Kind, number> = { inet: AF_INET, inet6: AF_INET6, unix: AF_UNIX };

for (const kind of KINDS) {
  for (const poller of POLLERS) {
    Deno.test({
      name:
        `interop: our client, CPython asyncore echo server (${kind}, ${poller}): 1 MiB round trip`,
      ignore: !python,
      async fn() {
        const path = kind === "unix" ? tempSocketPath("py-echo") : "";
        try {
          await assertNoFdLeak(async () => {
            const server = spawn(python!, [
              "-W",
              "ignore",
              `${fixtures}asyncore_echo_server.py`,
              kind,
              ...(kind === "unix" ? [path] : []),
              poller === "select" ? "select" : "poll",
            ]);
            const map: SocketMap = new Map();
            try {
              const ready = await server.stdout.waitFor(/^listening /);
              if (!ready) {
                await stop(server);
                throw new Error(`python server did not start: ${await server.stderr}`);
              }
              const where = ready[0].slice("listening ".length);
              const addr: Address = kind === "unix"
                ? where
                : [kind === "inet6" ? "::1" : "127.0.0.1", Number(where)];
              const data = randomBytes(MiB, 101);
              const client = new EchoClient({
                map,
                family: FAMILY[kind],
                addr,
                payload: data,
                pieceSeed: 7,
              });
              // The server is another process: our synchronous loop may block freely.
              pumpUntil(() => {
                loop({ map, timeout: 0.05, count: 1, poller });
                return client.done || client.closedEarly || map.size === 0;
              }, { ms: 30_000, what: "the echo of 1 MiB" });
              assert(!client.closedEarly, `closed early after ${client.received} bytes`);
              assertEquals(client.received, data.length);
              assertEquals(await sha256(concat(client.chunks)), await sha256(data));
              assertEquals(map.size, 0);
            } finally {
              closeAll(map);
              const status = await stop(server);
              // Still running when we killed it: it did not crash meanwhile.
              assertEquals(status.signal, "SIGTERM", `python server: ${await server.stderr}`);
            }
          });
        } finally {
          if (path) Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
        }
      },
    });
  }
}

/**
 * Serves `map` with bounded loop passes until `child` exits: `loop()` blocks
 * Deno's event loop, so the child's exit is noticed between passes.
 */
async function serveUntilExit(
  map: SocketMap,
  poller: PollerName,
  output: Promise<Deno.CommandOutput>,
  ms: number,
): Promise<Deno.CommandOutput> {
  let result: Deno.CommandOutput | null = null;
  let failure: unknown = null;
  output.then((r) => result = r, (e) => failure = e);
  const deadline = performance.now() + ms;
  while (result === null && failure === null) {
    if (performance.now() > deadline) throw new Error(`the python client ran over ${ms} ms`);
    loop({ map, timeout: 0.005, count: 20, poller });
    await delay(0);
  }
  if (failure !== null) throw failure;
  return result!;
}

for (const kind of KINDS) {
  for (const poller of POLLERS) {
    Deno.test({
      name:
        `interop: CPython asyncore client, our echo server (${kind}, ${poller}): 1 MiB round trip`,
      ignore: !python,
      async fn() {
        const path = kind === "unix" ? tempSocketPath("our-echo") : "";
        try {
          await assertNoFdLeak(async () => {
            const map: SocketMap = new Map();
            try {
              const bindAddr: Address = kind === "unix"
                ? path
                : [kind === "inet6" ? "::1" : "127.0.0.1", 0];
              const server = new EchoServer({ family: FAMILY[kind], addr: bindAddr, map });
              const address = kind === "unix"
                ? path
                : String((server.socket as Socket).getsockname()[1]);
              const n = MiB;
              await using client = pythonChild([
                "-W",
                "ignore",
                `${fixtures}asyncore_echo_client.py`,
                kind,
                address,
                String(n),
                "42",
                poller === "select" ? "select" : "poll",
              ]);
              const out = await serveUntilExit(map, poller, client.output(), 40_000);
              const r: RunResult = {
                code: out.code,
                stdout: out.stdout,
                stderr: decoder.decode(out.stderr),
              };
              const [len, sent, got] = decoder.decode(r.stdout).trim().split(" ");
              assertEquals(
                r.code,
                0,
                `python client failed: ${decoder.decode(r.stdout)}${r.stderr}`,
              );
              assertEquals(Number(len), n);
              assertEquals(got, sent);
              assertEquals(server.accepted, 1);
              // Our handler sees the client's close and leaves the map: only the listener stays.
              pumpUntil(() => {
                loop({ map, timeout: 0.01, count: 1, poller });
                return map.size === 1;
              }, { ms: 5000, what: "the handler to close" });
            } finally {
              closeAll(map);
            }
          });
        } finally {
          if (path) Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
        }
      },
    });
  }
}
