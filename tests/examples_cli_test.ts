// The examples' command lines: --help, and one line with exit status 2 for a
// bad argument (never a stack trace).
import { assert, assertEquals, assertMatch } from "@std/assert";
import { run } from "./fixtures/subprocess.ts";

const root = new URL("..", import.meta.url).pathname;

function example(file: string, args: string[]) {
  return run(Deno.execPath(), ["run", "--allow-ffi", `examples/${file}`, ...args], {
    cwd: root,
    env: { NO_COLOR: "1" },
  });
}

const EXAMPLES = ["echo.ts", "chat_server.ts", "http_client.ts"];

for (const file of EXAMPLES) {
  Deno.test(`examples/${file} --help: usage on stdout, exit status 0`, async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await example(file, [flag]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(new TextDecoder().decode(r.stdout), new RegExp(`^Usage: .*examples/${file}`));
      assertEquals(r.stderr, "");
    }
  });
}

/** [example, arguments, what the one line says] */
const BAD: [string, string[], RegExp][] = [
  ["echo.ts", ["127.0.0.1", "99999"], /^echo: bad port '99999'/],
  ["echo.ts", ["127.0.0.1", "-1"], /^echo: unknown option '-1'/],
  ["echo.ts", ["127.0.0.1", "80x"], /^echo: bad port '80x'/],
  ["echo.ts", ["no-such-host.invalid", "0"], /^echo: unknown host: \[Errno -2\] /],
  ["echo.ts", ["--bogus"], /^echo: unknown option '--bogus'/],
  ["echo.ts", ["--poller=kqueue"], /^echo: --poller must be one of select, poll, epoll/],
  ["echo.ts", ["a", "1", "extra"], /^echo: unexpected argument 'extra'/],
  ["echo.ts", ["--proxy-protocol=v3"], /^echo: --proxy-protocol must be one of v1, v2, any/],
  ["chat_server.ts", ["127.0.0.1", "http"], /^chat_server: bad port 'http'/],
  ["chat_server.ts", ["no-such-host.invalid", "0"], /^chat_server: unknown host: /],
  ["chat_server.ts", ["--nope"], /^chat_server: unknown option '--nope'/],
  ["http_client.ts", [], /^http_client: usage: /],
  ["http_client.ts", ["https://127.0.0.1/"], /^http_client: only http:\/\/ URLs/],
  ["http_client.ts", ["http://127.0.0.1:99999/"], /^http_client: Invalid URL/],
  ["http_client.ts", ["http://no-such-host.invalid/"], /^http_client: unknown host: \[Errno -2\] /],
  ["http_client.ts", ["--poller", "x", "127.0.0.1"], /^http_client: --poller must be/],
];

for (const [file, args, want] of BAD) {
  Deno.test(`examples/${file} ${args.join(" ")}: one line, exit status 2`, async () => {
    const r = await example(file, args);
    assertEquals(r.code, 2, r.stderr);
    const lines = r.stderr.trimEnd().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assertMatch(lines[0], want);
    assert(!/\bat .*:\d+:\d+/.test(r.stderr), "no stack trace");
    assertEquals(r.stdout.length, 0);
  });
}

Deno.test("examples/echo.ts on a port in use: one line, exit status 1", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await example("echo.ts", ["127.0.0.1", String((taken.addr as Deno.NetAddr).port)]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(
      r.stderr.trimEnd(),
      /^echo: \[Errno 98\] Address already in use: '127\.0\.0\.1:\d+'$/,
    );
  } finally {
    taken.close();
  }
});
