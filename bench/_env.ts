/**
 * The bench's environment: what the machine has (CPUs, python3, a C
 * compiler, taskset, prlimit), the C programs built from it, and the prefix
 * that pins a server to CPU 0.
 *
 * @module
 */

import { BENCH, OUT, ROOT, run, which } from "./_proc.ts";

/** The machine and the tools the bench found. */
export interface Env {
  nproc: number;
  cpuModel: string;
  kernel: string;
  deno: string;
  python: string | null;
  cc: string | null;
  ccVersion: string | null;
  taskset: boolean;
  fdPrefix: string[];
  fdLimit: number;
  commit: string;
  notes: string[];
}

/** Looks at the machine: CPUs, tools, pinning, the fd limit the children can get. */
export async function probeEnv(): Promise<Env> {
  const notes: string[] = [];
  const cpuinfo = (await run(["cat", "/proc/cpuinfo"])).stdout;
  const cpuModel = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1]?.trim() ?? "unknown";
  const nproc = Number((await run(["nproc"])).stdout.trim()) || navigator.hardwareConcurrency;
  const kernel = (await run(["uname", "-srm"])).stdout.trim();
  const git = await run(["git", "-C", ROOT, "describe", "--always", "--dirty"]);
  const commit = git.ok ? git.stdout.trim() : "unknown";
  const py = await run([
    "python3",
    "-W",
    "ignore",
    "-c",
    "import asyncore,sys;print(sys.version.split()[0])",
  ]);
  const python = py.ok ? py.stdout.trim() : null;
  if (!python) notes.push("python3 with asyncore not found: the Python rows are skipped.");
  let cc: string | null = null;
  for (const c of ["cc", "gcc", "clang"]) {
    if (await which(c)) {
      cc = c;
      break;
    }
  }
  const ccVersion = cc ? (await run([cc, "--version"])).stdout.split("\n")[0] : null;
  const taskset = nproc >= 2 && (await which("taskset")) !== null;
  if (!taskset) {
    notes.push(
      nproc < 2
        ? "one CPU only: server and load generator share it (no pinning)."
        : "taskset not found: processes are not pinned.",
    );
  }
  // The children need >= 5,010 fds (the servers) and >= 5,010 (the load generator).
  const want = 20000;
  let fdPrefix: string[] = [];
  let fdLimit = want;
  if ((await run(["prlimit", `--nofile=${want}:${want}`, "true"])).ok) {
    fdPrefix = ["prlimit", `--nofile=${want}:${want}`];
  } else {
    const hard = (await run(["sh", "-c", "ulimit -Hn"])).stdout.trim();
    fdLimit = hard === "unlimited" ? want : Math.min(want, Number(hard) || 1024);
    fdPrefix = ["sh", "-c", `ulimit -n ${fdLimit} && exec "$@"`, "sh"];
    notes.push(`prlimit refused ${want} fds: children run with ulimit -n ${fdLimit}.`);
  }
  if (fdLimit < 5100) notes.push(`fd limit ${fdLimit}: the 5,000-connection rows will fail.`);
  if (!cc) notes.push("no C compiler (cc, gcc, clang): the load generator cannot be built.");
  return {
    nproc,
    cpuModel,
    kernel,
    deno: `${Deno.version.deno} (V8 ${Deno.version.v8})`,
    python,
    cc,
    ccVersion,
    taskset,
    fdPrefix,
    fdLimit,
    commit,
    notes,
  };
}

/** Builds bench/loadgen.c and the C servers (epoll_echo.c, udp_recvmmsg_echo.c) into bench/out/. */
export async function compile(env: Env): Promise<void> {
  if (!env.cc) {
    throw new Error("the bench needs a C compiler (cc, gcc or clang) to build bench/loadgen.c");
  }
  await Deno.mkdir(OUT, { recursive: true });
  const jobs: [string, string, string[]][] = [
    [`${BENCH}/loadgen.c`, `${OUT}/loadgen`, ["-lm"]],
    [`${BENCH}/servers/epoll_echo.c`, `${OUT}/epoll_echo`, []],
    [`${BENCH}/servers/udp_recvmmsg_echo.c`, `${OUT}/udp_recvmmsg_echo`, []],
  ];
  for (const [src, bin, libs] of jobs) {
    const r = await run([env.cc, "-O2", "-Wall", "-o", bin, src, ...libs]);
    if (!r.ok) throw new Error(`compiling ${src} failed:\n${r.stderr}`);
  }
}

/** What a server command is prefixed with: pinned to CPU 0, with the raised fd limit. */
export function serverPrefix(env: Env): string[] {
  return [...(env.taskset ? ["taskset", "-c", "0"] : []), ...env.fdPrefix];
}
