/**
 * Processes for the bench: running a command to its end, a server child
 * that says `LISTENING <port>`, and what `/proc` says about a process.
 *
 * Deno 2.9 wants --allow-all for any read under /proc, which `deno task
 * bench` does not grant: /proc is read through small subprocesses instead.
 *
 * @module
 */

/** The repository root, the bench folder and its build output folder. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** `bench/`. */
export const BENCH = `${ROOT}/bench`;
/** `bench/out/`: compiled C programs and results. */
export const OUT = `${BENCH}/out`;
/** Every server listens here. */
export const HOST = "127.0.0.1";
/** The running Deno. */
export const DENO: string = Deno.execPath();

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What {@linkcode run} returns. */
export interface RunOutput {
  ok: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` to its end (with `stdin` as its input); never throws. */
export async function run(cmd: string[], opts: { stdin?: string } = {}): Promise<RunOutput> {
  try {
    const child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(opts.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return {
      ok: out.success,
      code: out.code,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } catch (error) {
    return { ok: false, code: -1, stdout: "", stderr: String(error) };
  }
}

/** The path of command `name`, or null. */
export async function which(name: string): Promise<string | null> {
  const r = await run(["sh", "-c", `command -v ${name}`]);
  return r.ok ? r.stdout.trim() : null;
}

/** A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), or null. */
export async function statusKb(pid: number, key: string): Promise<number | null> {
  const r = await run(["cat", `/proc/${pid}/status`]);
  const m = r.stdout.match(new RegExp(`^${key}:\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : null;
}

/** The number of open fds of process `pid`, or null. */
export async function fdCount(pid: number): Promise<number | null> {
  const r = await run(["ls", `/proc/${pid}/fd`]);
  return r.ok ? r.stdout.split("\n").filter((l) => l.trim() !== "").length : null;
}

/** CPU seconds (user + system, all threads) process `pid` has used, from `/proc/PID/stat`. */
export async function cpuSeconds(pid: number, clkTck = 100): Promise<number> {
  const stat = (await run(["cat", `/proc/${pid}/stat`])).stdout;
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / clkTck;
}

/** What a server prints once it listens: `LISTENING <port>` (ours, C, Python) or `listening on host:port`. */
const READY = /(?:LISTENING |listening on \S*:)(\d+)/;

/** A server child: started with `cmd`, ready once it prints `LISTENING <port>`. */
export class RunningServer {
  readonly #child: Deno.ChildProcess;
  readonly pid: number;
  port = 0;
  exited = false;
  #stderr = "";
  #stdout = "";

  constructor(cmd: string[]) {
    this.#child = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    void this.#child.status.then(() => this.exited = true);
    void this.#drain(this.#child.stderr, (s) => this.#stderr = (this.#stderr + s).slice(-4000));
  }

  async #drain(stream: ReadableStream<Uint8Array>, sink: (s: string) => void): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) sink(dec.decode(chunk, { stream: true }));
    } catch { /* closed */ }
  }

  /** Waits for "LISTENING <port>". */
  async ready(timeoutMs = 20000): Promise<void> {
    const dec = new TextDecoder();
    const reader = this.#child.stdout.getReader();
    const deadline = Date.now() + timeoutMs;
    while (!READY.test(this.#stdout)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no LISTENING line after ${timeoutMs} ms: ${this.stderr}`);
      const next = await Promise.race([reader.read(), sleep(left).then(() => null)]);
      if (next === null) continue;
      if (next.done) throw new Error(`server exited before listening: ${this.stderr}`);
      this.#stdout += dec.decode(next.value, { stream: true });
    }
    this.port = Number(this.#stdout.match(READY)![1]);
    // Keep draining stdout so the server never blocks on a full pipe.
    void (async () => {
      try {
        for (;;) if ((await reader.read()).done) break;
      } catch { /* closed */ }
    })();
  }

  /** The last lines of its stderr, on one line. */
  get stderr(): string {
    return this.#stderr.trim().split("\n").slice(-5).join(" | ");
  }

  /** SIGTERM, then SIGKILL after 2 s; waits for the exit. */
  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.#child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 2000);
      await this.#child.status;
      clearTimeout(t);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A whole number with thousands separators. */
export const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");

/** KiB as MiB with one decimal ("-" when unknown). */
export const mib = (kb: number | null | undefined): string =>
  kb == null || kb < 0 ? "-" : (kb / 1024).toFixed(1);
