// examples/echo_workers.ts: one loop per worker on one port (SO_REUSEPORT);
// every worker must answer, as Deno Workers and as subprocesses, and the
// subprocesses must go when their parent does.
import { assert, assertEquals } from "@std/assert";
import { existsSync } from "@std/fs";
import { Dispatcher, OSError, type Socket, type SocketMap } from "../mod.ts";
import { assertNoFdLeak, delay } from "./_util.ts";
import { spawn, stop } from "./fixtures/subprocess.ts";

const root = new URL("..", import.meta.url).pathname;
const WORKERS = 3;
const MAX_TRIES = 300;

/** Connects until every worker has said hello (bounded); returns the connections per worker. */
async function helloFromEach(port: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const pids = new Set<string>();
  for (let i = 0; i < MAX_TRIES && seen.size < WORKERS; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const payload = new TextEncoder().encode(`ping ${i}\n`);
      await conn.write(payload);
      let text = "";
      const buf = new Uint8Array(256);
      const deadline = performance.now() + 10_000;
      while (!text.includes(`ping ${i}\n`) && performance.now() < deadline) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      const m = text.match(/^hello from worker (\d+) of (\d+) \(pid (\d+)\)\nping \d+\n$/);
      assert(m, `unexpected answer: ${JSON.stringify(text)}`);
      assertEquals(Number(m[2]), WORKERS);
      seen.set(m[1], (seen.get(m[1]) ?? 0) + 1);
      pids.add(m[3]);
    } finally {
      conn.close();
    }
  }
  return Object.assign(seen, { pids });
}

for (const mode of ["workers", "processes"] as const) {
  Deno.test({
    name: `examples/echo_workers.ts: every one of ${WORKERS} ${mode} serves the same port`,
    fn: () =>
      assertNoFdLeak(async () => {
        const flags = mode === "workers" ? ["--allow-ffi", "--allow-read"] : [
          "--allow-ffi",
          "--allow-run",
        ];
        const s = spawn(Deno.execPath(), [
          "run",
          ...flags,
          "examples/echo_workers.ts",
          "127.0.0.1",
          "0",
          `--workers=${WORKERS}`,
          "--hello",
          ...(mode === "processes" ? ["--processes"] : []),
        ], root);
        let pids = new Set<string>();
        try {
          const ready = await s.stdout.waitFor(/listening on 127\.0\.0\.1:(\d+)$/, 1, 30_000);
          assert(ready, `did not start: ${s.stdout.lines.join("\n")}`);
          assertEquals(s.stdout.matching(/^worker \d+ of \d+ listening/).length, WORKERS);
          const port = Number(ready[0].match(/:(\d+)$/)![1]);
          const seen = await helloFromEach(port);
          pids = (seen as unknown as { pids: Set<string> }).pids;
          assertEquals(
            [...seen.keys()].sort(),
            Array.from({ length: WORKERS }, (_, i) => String(i + 1)),
            `answered: ${JSON.stringify([...seen])}`,
          );
          assertEquals(pids.size, mode === "processes" ? WORKERS : 1);
        } finally {
          await stop(s);
        }
        if (mode === "processes") {
          // The children watch their stdin pipe: with the parent gone, they exit.
          for (let i = 0; i < 500 && [...pids].some((p) => existsSync(`/proc/${p}`)); i++) {
            await delay(20);
          }
          for (const p of pids) {
            assert(!existsSync(`/proc/${p}`), `loop process ${p} outlived its parent`);
          }
        }
      }),
  });
}

Deno.test("setReusePort: two listeners on one port; without it the second bind fails", async () => {
  await assertNoFdLeak(() => {
    const map: SocketMap = new Map();
    const make = (reuse: boolean, port: number) => {
      const d = new Dispatcher(null, map);
      d.createSocket();
      if (reuse) d.setReusePort();
      d.bind(["127.0.0.1", port]);
      d.listen(8);
      return d;
    };
    const a = make(true, 0);
    const port = ((a.socket as Socket).getsockname() as [string, number])[1];
    const b = make(true, port);
    assert(b.accepting, "the second SO_REUSEPORT listener listens");
    let refused: unknown = null;
    try {
      make(false, port);
    } catch (error) {
      refused = error;
    }
    assert(refused instanceof OSError, String(refused));
    assertEquals(refused.syscall, "bind");
    // The failed third channel is in the map too: close them all.
    for (const d of [...map.values()]) d.close();
  });
});
