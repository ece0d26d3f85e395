// The package JSR would get: `deno publish --dry-run` succeeds (slow types,
// every module of mod.ts's graph included) and ships the library and its docs/ only.
import { assert, assertEquals } from "@std/assert";

Deno.test("publish: deno publish --dry-run ships the library and its documentation, nothing else", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text);
  const files = [...text.matchAll(/file:\/\/(\S+) \(/g)].map((m) => m[1].slice(root.length));
  assert(files.includes("mod.ts"), text);
  assert(files.some((f) => f.startsWith("tls/")), "tls/ is shipped");
  assert(files.some((f) => f.startsWith("streams/")), "streams/ is shipped");
  const stray = files.filter((f) =>
    !/^(mod\.ts|deno\.json|README\.md|LICENSE|docs\/[A-Za-z_]+\.md|(ffi|dispatcher|tls|streams)\/.*\.ts)$/
      .test(f)
  );
  assertEquals(stray, [], "only the library and docs/ are shipped");
});
