/**
 * The echo servers under test, in table order, and the choice among them
 * that `--only` makes. Adding a row is adding one line to `SERVERS`.
 *
 * @module
 */

import type { Env } from "./_env.ts";
import type { Options } from "./_options.ts";
import { BENCH, DENO, OUT } from "./_proc.ts";

/** A server under test. Host and port ("0": any) are appended to `cmd`. */
export interface ServerSpec {
  /** Row label. */
  name: string;
  /** argv; `host port` are appended. */
  cmd: string[];
  /** select(): no fd may be >= 1024, so big rows are "n/a". */
  select?: boolean;
  /** The yardstick of the "vs Deno" column. */
  reference?: boolean;
  /** Left out when there is no C compiler. */
  needsCc?: boolean;
}

/** Our echo server. */
export const OURS = `${BENCH}/servers/asyncore_echo.ts`;
/** The command that runs our echo server. */
export const DENO_OURS: string[] = [DENO, "run", "--no-prompt", "--allow-ffi", OURS];
const PYTHON = ["python3", "-W", "ignore", `${BENCH}/servers/asyncore_echo.py`];

/**
 * `BENCH_BASELINE=DIR` (a checkout of an earlier commit, as made by
 * `git worktree add DIR COMMIT`) adds that commit's echo server, classic and
 * `recvInto`, as rows "… (baseline)": old and new code measured in one run,
 * rounds interleaved, which is how a change is judged against noise that
 * moves whole runs by ±25 % on this VM.
 */
export const BASELINE: string | undefined = Deno.env.get("BENCH_BASELINE") || undefined;

/** The servers, in table order. Adding a row is adding one line here. */
export const SERVERS: ServerSpec[] = [
  { name: "asyncore epoll", cmd: [...DENO_OURS, "--poller=epoll"] },
  { name: "asyncore poll", cmd: [...DENO_OURS, "--poller=poll"] },
  { name: "asyncore select", cmd: [...DENO_OURS, "--poller=select"], select: true },
  // The same handler reading with recvInto into one shared buffer (no allocation per read).
  { name: "asyncore epoll recvInto", cmd: [...DENO_OURS, "--poller=epoll", "--recv-into"] },
  // loopAsync instead of loop(): Deno's event loop keeps running beside it.
  { name: "asyncore loopAsync epoll", cmd: [...DENO_OURS, "--poller=epoll", "--loop=async"] },
  {
    name: "Deno native",
    cmd: [DENO, "run", "--no-prompt", "--allow-net", `${BENCH}/servers/deno_echo.ts`],
    reference: true,
  },
  { name: "Python asyncore select", cmd: [...PYTHON, "--poller=select"], select: true },
  { name: "Python asyncore poll", cmd: [...PYTHON, "--poller=poll"] },
  { name: "C epoll", cmd: [`${OUT}/epoll_echo`], needsCc: true },
  ...baselineServers(),
];

function baselineServers(): ServerSpec[] {
  if (BASELINE === undefined) return [];
  const old = [
    DENO,
    "run",
    "--no-prompt",
    "--allow-ffi",
    `${BASELINE}/bench/servers/asyncore_echo.ts`,
  ];
  return [
    { name: "asyncore epoll (baseline)", cmd: [...old, "--poller=epoll"] },
    { name: "asyncore epoll recvInto (baseline)", cmd: [...old, "--poller=epoll", "--recv-into"] },
  ];
}

/** The servers this run measures: those it can run and `--only` names, and always the reference. */
export function selectServers(env: Env, opts: Options): ServerSpec[] {
  return SERVERS.filter((s) => {
    if (s.needsCc && !env.cc) return false;
    if (s.name.startsWith("Python") && !env.python) return false;
    if (!opts.only || s.reference) return true;
    // A token matches a whole word of the name ("C", "epoll", "python") or, with spaces in it,
    // part of the name ("asyncore epoll").
    const name = s.name.toLowerCase();
    return opts.only.some((o) => {
      const t = o.toLowerCase();
      return t.includes(" ") ? name.includes(t) : name.split(/\s+/).includes(t);
    });
  });
}

/** The server named `name` (any case), or undefined. */
export function serverNamed(name: string): ServerSpec | undefined {
  return SERVERS.find((s) => s.name.toLowerCase() === name.toLowerCase());
}

/**
 * The order to run `servers` in for round `round` (1-based) of `rounds`: the
 * list rotated so that over the rounds each server runs early and late. A
 * server started right after another one exits runs measurably slower on
 * this kind of VM (the same server back to back measured 1,493 against
 * 976 MB/s in bulk), so a fixed order would favour whichever comes first.
 */
export function roundOrder<T>(servers: readonly T[], round: number, rounds: number): T[] {
  const n = servers.length;
  if (n === 0) return [];
  const shift = (Math.floor(((round - 1) * n) / Math.max(1, rounds))) % n;
  return [...servers.slice(shift), ...servers.slice(0, shift)];
}
