// `deno task test`: runs the test suite. When the local std mirror of this
// workplace exists beside the checkout (../shared/jsr-mirror), it is started
// and JSR_URL pointed at it, since jsr.io is out of reach there; elsewhere the
// ordinary jsr.io is used. Extra arguments go to `deno test`.
/** A file URL as a path of this OS (`file:///Z:/work` is `Z:\\work` on Windows). */
function toPath(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  return Deno.build.os === "windows" ? path.slice(1).replaceAll("/", "\\") : path;
}

const root = toPath(new URL("..", import.meta.url));
const mirror = toPath(new URL("../../shared/jsr-mirror/serve.ts", import.meta.url));

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

const env: Record<string, string> = {};
let server: Deno.ChildProcess | undefined;
if (!Deno.env.get("JSR_URL") && await exists(mirror)) {
  server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-read", mirror, "0"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const url = text.match(/listening (\S+)/)?.[1];
  if (!url) {
    console.error(`std mirror did not start: ${text}`);
    Deno.exit(2);
  }
  env.JSR_URL = url;
}

// The permission set is deno.json's "test.permissions" (-P), so `deno test -P` and this task
// run with the same one: all, because /proc/self/fd (the fd-leak checks) needs --allow-all in
// Deno 2. The library itself needs only --allow-ffi.
const permissions = ["-P"];
const args = Deno.args.some((a) => !a.startsWith("-")) ? Deno.args : [...Deno.args, "tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", ...permissions, ...args],
  cwd: root,
  env,
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
const status = await child.status;
if (server) {
  server.kill("SIGTERM");
  await server.status;
}
Deno.exit(status.code);
