// No dead links in the documentation: every relative link in README.md,
// docs/*.md, bench/RESULTS.md and CHANGELOG.md names a file or directory of
// the repository, and every #anchor names a heading of its page as GitHub
// makes anchors (lowercase, punctuation dropped, spaces made dashes). Also:
// the README links every docs page, so any topic is one click away, and its
// commands for a newcomer are the ones the tests and CI run.
import { assert, assertEquals } from "@std/assert";
import { existsSync } from "@std/fs";
import {
  anchors,
  libraryModules,
  linkedPages,
  links,
  root,
  samplePages,
  slugify,
} from "./fixtures/docs.ts";
import { spawn, stop } from "./fixtures/subprocess.ts";

Deno.test("docs links: GitHub's anchors, as the checker computes them", () => {
  assertEquals(slugify("Stopping on Ctrl-C and SIGTERM"), "stopping-on-ctrl-c-and-sigterm");
  assertEquals(slugify("`loop` or `loopAsync`"), "loop-or-loopasync");
  assertEquals(slugify("TLS (OpenSSL)"), "tls-openssl");
  assertEquals(slugify("Web Streams: `connect` and `listen`"), "web-streams-connect-and-listen");
  assertEquals(slugify("Python's socket functions"), "pythons-socket-functions");
  assertEquals(slugify("recv_into and [links](x.md)"), "recv_into-and-links");
  assertEquals([...anchors("# A\n## A\n```\n# not a heading\n```\n### a")], ["a", "a-1", "a-2"]);
});

Deno.test("docs links: every relative link and anchor resolves", () => {
  const dead: string[] = [];
  let checked = 0;
  for (const page of linkedPages()) {
    for (const link of links(page, Deno.readTextFileSync(root + page))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link.target)) continue; // https:, mailto:
      checked++;
      const [path, anchor] = link.target.split("#", 2) as [string, string | undefined];
      const dir = page.includes("/") ? page.replace(/\/[^/]+$/, "/") : "";
      const file = path === "" ? page : new URL(path, `file:///${dir}`).pathname.slice(1);
      const at = `${link.file}:${link.line}: ${link.target}`;
      if (!existsSync(root + file)) {
        dead.push(`${at} (no ${file})`);
      } else if (anchor !== undefined) {
        if (!file.endsWith(".md")) dead.push(`${at} (an anchor into a file that is not Markdown)`);
        else if (!anchors(Deno.readTextFileSync(root + file)).has(anchor)) {
          dead.push(`${at} (no heading #${anchor} in ${file})`);
        }
      }
    }
  }
  assert(checked > 0);
  assertEquals(dead, [], "dead links");
});

Deno.test("docs links: the README links every page of docs/ directly", () => {
  const readme = links("README.md", Deno.readTextFileSync(root + "README.md"))
    .map((l) => l.target.split("#")[0]);
  const pages = samplePages().filter((p) => p.startsWith("docs/"));
  assert(pages.includes("docs/README.md"), "docs/README.md, the index");
  assertEquals(pages.filter((p) => !readme.includes(p)), []);
  const index = links("docs/README.md", Deno.readTextFileSync(root + "docs/README.md"))
    .map((l) => l.target.split("#")[0]);
  assertEquals(
    pages.filter((p) => p !== "docs/README.md" && !index.includes(p.slice("docs/".length))),
    [],
    "docs/README.md lists every page",
  );
});

Deno.test("docs: internals.md names every module of the library's layers", () => {
  const text = Deno.readTextFileSync(root + "docs/internals.md");
  const unnamed = libraryModules()
    .filter((m) => m !== "mod.ts")
    .filter((m) => !text.includes("`" + m.split("/").pop() + "`"));
  assertEquals(unnamed, [], "a module docs/internals.md's layout does not name");
});

/** The commands of the README's "From a clone" block. */
function cloneCommands(): string[] {
  const text = Deno.readTextFileSync(root + "README.md");
  const block = /## From a clone\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(text)?.[1] ?? "";
  return block.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l !== "");
}

Deno.test("docs: the README's two commands from a clone are the ones tested", () => {
  assertEquals(cloneCommands(), ["deno run --allow-ffi examples/echo.ts", "deno task test"]);
  const config = JSON.parse(Deno.readTextFileSync(root + "deno.json"));
  assertEquals(config.tasks.test, "deno run --allow-run --allow-read --allow-env tests/_run.ts");
  const ci = Deno.readTextFileSync(root + ".ci/run");
  assert(/^deno task test 2>&1/m.test(ci), ".ci/run runs `deno task test`");
});

Deno.test({
  name: "docs: `deno run --allow-ffi examples/echo.ts` as the README has it: localhost:8080",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const [, ...args] = cloneCommands()[0].split(" ");
    // The exact command listens on localhost:8080. Another program may hold that port on a
    // shared machine: then the same command must say so in one line and exit 1.
    const server = spawn(Deno.execPath(), args, root);
    try {
      if (!await server.stdout.waitFor(/^echo server listening on /)) {
        const status = await stop(server);
        const stderr = await server.stderr;
        assertEquals(status.code, 1, `neither listening nor "port in use": ${stderr}`);
        assertEquals(stderr.trim().split("\n").length, 1, stderr);
        assert(/8080/.test(stderr), stderr);
        return;
      }
      // Where it says it listens ("localhost" may also name ::1, where something else may be).
      const [, host, port] = /listening on (\S+):(\d+)$/.exec(server.stdout.lines[0]) ?? [];
      assertEquals(port, "8080", server.stdout.lines[0]);
      const conn = await Deno.connect({ hostname: host.replace(/^\[|\]$/g, ""), port: 8080 });
      try {
        await conn.write(new TextEncoder().encode("hello\n"));
        const buf = new Uint8Array(6);
        let n = 0;
        while (n < 6) {
          const r = await conn.read(buf.subarray(n));
          if (r === null) break;
          n += r;
        }
        assertEquals(new TextDecoder().decode(buf), "hello\n");
      } finally {
        conn.close();
      }
      assertEquals((await stop(server)).code, 0, "SIGTERM: a clean exit");
    } finally {
      await stop(server);
    }
  },
});
