// The library imported by URL, as users of a published module do: the
// checkout is served over HTTP on 127.0.0.1, and a `deno run` with only
// --allow-ffi (plus --allow-import for that host) imports mod.ts from it.
import { assertEquals, assertMatch } from "@std/assert";
import { assertNoFdLeak } from "./_util.ts";
import { run } from "./fixtures/subprocess.ts";

const root = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

const TYPES: Record<string, string> = {
  ".ts": "application/typescript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
};

/** Serves the files of the checkout, read-only, on a free port of 127.0.0.1. */
function serveCheckout(): { server: Deno.HttpServer<Deno.NetAddr>; port: number; hits: string[] } {
  const hits: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      hits.push(path);
      if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
      try {
        const body = await Deno.readFile(root + path.slice(1));
        const ext = path.slice(path.lastIndexOf("."));
        return new Response(body, {
          headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  return { server, port: server.addr.port, hits };
}

/** A script that uses the module at `modUrl`: an echo server and a client in one private map. */
function echoScript(modUrl: string): string {
  return `
import { Dispatcher, DispatcherWithSend, loop, type Socket, type SocketMap } from "${modUrl}";

const map: SocketMap = new Map();
const message = "hello over asyncore, imported by URL";

class EchoHandler extends DispatcherWithSend {
  override handleRead(): void {
    const data = this.recv(8192);
    if (data.length > 0) this.send(data);
  }
}

class EchoServer extends Dispatcher {
  constructor() {
    super(null, map);
    this.createSocket();
    this.setReuseAddr();
    this.bind(["127.0.0.1", 0]);
    this.listen(5);
  }
  override handleAccepted(sock: Socket): void {
    new EchoHandler(sock, map);
  }
}

class Client extends Dispatcher {
  out = new TextEncoder().encode(message);
  got = "";
  constructor(port: number) {
    super(null, map);
    this.createSocket();
    this.connect(["127.0.0.1", port]);
  }
  override handleConnect(): void {}
  override writable(): boolean {
    return this.out.length > 0;
  }
  override handleWrite(): void {
    this.out = this.out.subarray(this.send(this.out));
  }
  override handleRead(): void {
    this.got += new TextDecoder().decode(this.recv(8192));
    if (this.got.length >= message.length) {
      console.log("echoed: " + this.got);
      this.close();
      server.close();
    }
  }
  override handleClose(): void {
    this.close();
  }
}

const server = new EchoServer();
new Client((server.socket as Socket).getsockname()[1] as number);
const deadline = performance.now() + 10_000;
while (map.size > 0 && performance.now() < deadline) loop({ map, timeout: 0.05, count: 1 });
console.log("map size " + map.size);
`;
}

/** A temporary directory for the child: its cwd (no deno.json) and its own DENO_DIR. */
async function withScratch<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = Deno.makeTempDirSync({ prefix: "asyncore-url-" });
  try {
    return await fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("url import: mod.ts over http:// runs an echo server and client with --allow-ffi", async () => {
  await assertNoFdLeak(async () => {
    const { server, port, hits } = serveCheckout();
    try {
      await withScratch(async (dir) => {
        const base = `http://127.0.0.1:${port}`;
        Deno.writeTextFileSync(`${dir}/main.ts`, echoScript(`${base}/mod.ts`));
        const r = await run(Deno.execPath(), [
          "run",
          "--no-config",
          "--allow-ffi",
          `--allow-import=127.0.0.1:${port}`,
          "main.ts",
        ], { cwd: dir, env: { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" } });
        assertEquals(r.code, 0, r.stderr);
        assertEquals(
          decoder.decode(r.stdout),
          "echoed: hello over asyncore, imported by URL\nmap size 0\n",
        );
        // The modules really came over HTTP, not from the file system.
        assertEquals(hits.includes("/mod.ts"), true);
        assertEquals(hits.some((h) => h.startsWith("/ffi/")), true);
        assertEquals(hits.some((h) => h.startsWith("/dispatcher/")), true);
      });
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("url import: examples/http_client.ts run by URL fetches mod.ts from the same server", async () => {
  await assertNoFdLeak(async () => {
    const { server, port } = serveCheckout();
    try {
      await withScratch(async (dir) => {
        const base = `http://127.0.0.1:${port}`;
        const r = await run(Deno.execPath(), [
          "run",
          "--no-config",
          "--allow-ffi",
          `--allow-import=127.0.0.1:${port}`,
          `${base}/examples/http_client.ts`,
          `${base}/mod.ts`,
        ], { cwd: dir, env: { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" } });
        assertEquals(r.code, 0, r.stderr);
        const text = decoder.decode(r.stdout);
        const split = text.indexOf("\r\n\r\n");
        assertMatch(text.slice(0, split), /^HTTP\/1\.[01] 200 /);
        assertEquals(text.slice(split + 4), Deno.readTextFileSync(`${root}mod.ts`));
      });
    } finally {
      await server.shutdown();
    }
  });
});

Deno.test("url import: mod.ts type-checks by URL, without the project's deno.json", async () => {
  const { server, port } = serveCheckout();
  try {
    await withScratch(async (dir) => {
      const r = await run(Deno.execPath(), [
        "check",
        "--no-config",
        "--all",
        `--allow-import=127.0.0.1:${port}`,
        `http://127.0.0.1:${port}/mod.ts`,
      ], { cwd: dir, env: { DENO_DIR: `${dir}/deno_dir`, NO_COLOR: "1" }, ms: 60_000 });
      assertEquals(r.code, 0, r.stderr);
    });
  } finally {
    await server.shutdown();
  }
});
