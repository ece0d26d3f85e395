/**
 * The soak: our server (by default "asyncore epoll") with 2,000 connections
 * of mixed message sizes for 20 s, every byte checked by the load
 * generator, and the server's fd count before, during and after.
 *
 * @module
 */

import type { BenchContext } from "./_context.ts";
import { type Env, serverPrefix } from "./_env.ts";
import { runLoadgen } from "./_loadgen.ts";
import type { Options } from "./_options.ts";
import { fmtInt, HOST, mib, RunningServer, sleep, statusKb } from "./_proc.ts";
import { serverNamed, type ServerSpec } from "./_servers.ts";

/** One soak run. */
export interface SoakRow {
  server: string;
  status: "ok" | "error";
  note?: string;
  conns: number;
  seconds: number;
  messages?: number;
  bytesEchoed?: number;
  mbPerS?: number;
  p50?: number;
  p99?: number;
  errors?: number;
  drained?: boolean;
  fdsBefore?: number;
  fdsConnected?: number;
  fdsAfter?: number;
  rss0Kb?: number | null;
  hwmKb?: number | null;
}

/** One soak of `server`: a fresh process, `--soak-conns` connections for `--soak` seconds. */
async function soakOne(env: Env, opts: Options, server: ServerSpec): Promise<SoakRow> {
  const base: SoakRow = {
    server: server.name,
    status: "ok",
    conns: opts.soakConns,
    seconds: opts.soak,
  };
  const srv = new RunningServer([...serverPrefix(env), ...server.cmd, HOST, "0"]);
  try {
    await srv.ready();
    await sleep(1200);
    const rss0Kb = await statusKb(srv.pid, "VmRSS");
    const r = await runLoadgen(env, {
      host: HOST,
      port: srv.port,
      "server-pid": srv.pid,
      mode: "soak",
      conns: opts.soakConns,
      "min-size": 64,
      "max-size": 65536,
      warmup: 0,
      duration: opts.soak,
      "connect-timeout": 60,
    }, opts.soak + 300);
    const hwmKb = await statusKb(srv.pid, "VmHWM");
    if (srv.exited) throw new Error(`server died: ${srv.stderr}`);
    return {
      ...base,
      messages: r.ops,
      bytesEchoed: r.bytes_echoed_total,
      mbPerS: r.rx_mb_per_s,
      p50: r.p50_us,
      p99: r.p99_us,
      errors: r.errors,
      drained: r.drained,
      fdsBefore: r.server.fds_before,
      fdsConnected: r.server.fds_connected,
      fdsAfter: r.server.fds_after,
      rss0Kb,
      hwmKb,
      note: r.errors ? r.error_detail.join("; ") : undefined,
    };
  } catch (error) {
    return { ...base, status: "error", note: (error as Error).message.slice(0, 300) };
  } finally {
    await srv.stop();
  }
}

function soakTable(rows: SoakRow[]): string {
  const head = [
    "Server",
    "Conns",
    "Seconds",
    "Messages",
    "Bytes echoed",
    "MB/s",
    "p50/p99 ms",
    "Errors",
    "Drained",
    "Server fds before/during/after",
    "RSS start / peak MiB",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of rows) {
    if (r.status !== "ok") {
      lines.push(`| ${r.server} | ${r.conns} | ${r.seconds} | error: ${r.note} | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.server} | ${fmtInt(r.conns)} | ${r.seconds} | ${fmtInt(r.messages!)} | ${
        fmtInt(r.bytesEchoed!)
      } | ${r.mbPerS!.toFixed(0)} | ${(r.p50! / 1000).toFixed(1)}/${
        (r.p99! / 1000).toFixed(1)
      } | ${r.errors}${r.note ? ` (${r.note})` : ""} | ${
        r.drained ? "yes" : "no"
      } | ${r.fdsBefore}/${r.fdsConnected}/${r.fdsAfter} | ${mib(r.rss0Kb)} / ${mib(r.hwmKb)} |`,
    );
  }
  return lines.join("\n");
}

/** Soaks each `--soak-servers` server (none with `--soak=0`); adds the soak table to the report. */
export async function runSoak(ctx: BenchContext): Promise<void> {
  const { opts, log } = ctx;
  if (opts.soak <= 0) return;
  const soaks: SoakRow[] = [];
  for (const name of opts.soakServers) {
    const server = serverNamed(name);
    if (!server || (server.needsCc && !ctx.env.cc)) {
      log(`soak: no server named ${name}`);
      continue;
    }
    log(`soak: ${server.name}, ${opts.soakConns} connections, ${opts.soak} s ...`);
    const s = await soakOne(ctx.env, opts, server);
    log(
      s.status === "ok"
        ? `soak: ${
          fmtInt(s.bytesEchoed!)
        } bytes echoed, ${s.errors} errors, fds ${s.fdsBefore}/${s.fdsConnected}/${s.fdsAfter}`
        : `soak: error ${s.note}`,
    );
    soaks.push(s);
  }
  ctx.json.soaks = soaks;
  ctx.failures +=
    soaks.filter((s) => s.status === "error" || (s.errors ?? 0) > 0 || s.fdsAfter! > s.fdsBefore!)
      .length;
  if (soaks.length) ctx.report.push("", "### Soak", "", soakTable(soaks));
}
