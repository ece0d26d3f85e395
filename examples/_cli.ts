/**
 * The command line every example shares. Each example declares its
 * arguments and flags in one table ({@linkcode Command}); this module parses
 * them with `node:util`'s `parseArgs` (built into Deno, no dependency),
 * writes `--help` from the table, and keeps the promises all seven make:
 *
 * - `--help`/`-h`: the usage on stdout, exit status 0;
 * - a bad argument, flag, file, certificate or key: one line on stderr,
 *   exit status 2; a port in use: one line, exit status 1 (never a stack
 *   trace);
 * - `--flag=value` and `--flag value` both work; an unknown flag is an error;
 * - SIGINT and SIGTERM close every channel and exit 0 ({@linkcode runLoop});
 * - log lines print addresses one way (`formatAddress`: `host:port`,
 *   `[v6]:port`, Unix paths as they are).
 *
 * A new flag is one more entry in an example's table: its type, help text
 * and default; the parsed value comes back typed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  closeAll,
  GaiError,
  KeyboardInterrupt,
  loop,
  OSError,
  type PollerName,
  type SocketMap,
  socketMap,
  SSLError,
  type StopSignal,
} from "../mod.ts";

interface FlagBase {
  /** One line for `--help`. */
  readonly help: string;
  /** A one-letter alias (`-h`). */
  readonly short?: string;
  /** Left out of `--help` (flags the example passes to itself). */
  readonly hidden?: boolean;
  /** The value's name in `--help` (`--workers=N`). */
  readonly metavar?: string;
  /** How `--help` states a default computed at run time ("the number of CPUs"). */
  readonly defaultText?: string;
}

/** A switch: present or not (`--hello`). */
export interface BooleanFlag extends FlagBase {
  /** The kind of flag. */
  readonly type: "boolean";
}

/** A text value (`--cafile=PATH`). */
export interface StringFlag extends FlagBase {
  /** The kind of flag. */
  readonly type: "string";
  /** The value when the flag is absent. */
  readonly default?: string;
}

/** A number, checked against its bounds (`--idle=SECONDS`, `--workers=N`). */
export interface NumberFlag extends FlagBase {
  /** The kind of flag. */
  readonly type: "number";
  /** The value when the flag is absent. */
  readonly default?: number;
  /** Only whole numbers. */
  readonly integer?: boolean;
  /** The smallest value allowed. */
  readonly min?: number;
  /** The smallest value is not allowed itself (`> 0` rather than `>= 0`). */
  readonly exclusiveMin?: boolean;
  /** The largest value allowed. */
  readonly max?: number;
}

/** One of a few names (`--poller=select|poll|epoll`). */
export interface ChoiceFlag extends FlagBase {
  /** The kind of flag. */
  readonly type: "choice";
  /** The names allowed. */
  readonly choices: readonly string[];
  /** The value when the flag is absent. */
  readonly default?: string;
}

/** One flag of an example's table. */
export type Flag = BooleanFlag | StringFlag | NumberFlag | ChoiceFlag;

/** A positional argument, in order. */
export interface Argument {
  /** Its name in the usage line and in messages. */
  readonly name: string;
  /** One line for `--help`. */
  readonly help: string;
  /** The value when it is left out. */
  readonly default?: string;
  /** Must be given (an argument without a default is optional unless this says so). */
  readonly required?: boolean;
}

/** An example's command line: what `--help` prints and what is accepted. */
export interface Command<
  F extends Readonly<Record<string, Flag>> = Readonly<Record<string, Flag>>,
> {
  /** The name in messages (`echo: bad port ...`). */
  readonly prog: string;
  /** The file, as the usage line names it (`examples/echo.ts`). */
  readonly file: string;
  /** The permissions the usage line shows; default `--allow-ffi`. */
  readonly permissions?: string;
  /** What the program does, a sentence or two. */
  readonly summary: string;
  /** The arguments part of the usage line, when the names alone do not say it. */
  readonly synopsis?: string;
  /** The positional arguments, in order. */
  readonly arguments: readonly Argument[];
  /** The flags, by name without the dashes; `--help`/`-h` is always there. */
  readonly flags: F;
  /** Lines after the options: signals, exit status. */
  readonly notes?: string;
}

type ValueOf<F> = F extends BooleanFlag ? boolean
  : F extends { type: "number"; default: number } ? number
  : F extends NumberFlag ? number | undefined
  : F extends { type: "choice"; choices: readonly (infer C)[]; default: string } ? C
  : F extends { type: "choice"; choices: readonly (infer C)[] } ? C | undefined
  : F extends { type: "string"; default: string } ? string
  : string | undefined;

/** The parsed flags of a table, each typed by its entry. */
export type FlagValues<F> = { -readonly [K in keyof F]: ValueOf<F[K]> };

/** What {@linkcode parseCommandLine} returns. */
export interface CommandLine<F> {
  /** The positional arguments in the table's order, defaults filled in. */
  args: (string | undefined)[];
  /** The flags, converted and checked. */
  flags: FlagValues<F>;
}

/** The poller examples use unless told: epoll on Linux, poll elsewhere. */
export const DEFAULT_POLLER: PollerName = Deno.build.os === "linux" ? "epoll" : "poll";

/** The `--poller` entry of a table. */
export function pollerFlag<P extends PollerName>(
  fallback: P,
): { type: "choice"; choices: readonly PollerName[]; default: P; metavar: string; help: string } {
  return {
    type: "choice",
    choices: ["select", "poll", "epoll"],
    default: fallback,
    metavar: "NAME",
    help: "readiness backend",
  };
}

/** What servers' `--help` says about stopping and exit status. */
export const SERVER_NOTES = `
Ctrl-C (SIGINT) or SIGTERM closes every connection and exits 0.
Exit status: 1 when the port is in use, 2 for a bad argument.`;

/** Prints `prog: message (see --help)` on stderr and exits with status 2 (a usage error). */
export function usageError(prog: string, message: string): never {
  console.error(`${prog}: ${message} (see --help)`);
  Deno.exit(2);
}

/** Prints `prog: message` on stderr and exits with `status`. */
export function fail(prog: string, message: string, status = 1): never {
  console.error(`${prog}: ${message}`);
  Deno.exit(status);
}

/** The first line of an error's message (the whole of it for the library's errors). */
export function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0];
}

/** The usage text of `spec`, as `--help` prints it. */
export function helpText(spec: Command): string {
  const synopsis = spec.synopsis ??
    spec.arguments.map((a) => a.required ? a.name : `[${a.name}]`).join(" ");
  const rows: [string, string][] = [];
  const out = [
    `Usage: deno run ${spec.permissions ?? "--allow-ffi"} ${spec.file} ${synopsis} [options]`,
    "",
    spec.summary.trim(),
  ];
  for (const a of spec.arguments) {
    rows.push([a.name, a.help + (a.default !== undefined ? ` (default: ${a.default})` : "")]);
  }
  const argRows = rows.length;
  for (const [name, f] of Object.entries(spec.flags)) {
    if (f.hidden) continue;
    const short = f.short ? `-${f.short}, ` : "";
    const left = f.type === "boolean"
      ? `${short}--${name}`
      : `${short}--${name}=${f.metavar ?? (f.type === "number" ? "N" : "VALUE")}`;
    let help = f.help;
    if (f.type === "choice") help += `: ${f.choices.join(", ")}`;
    const fallback = f.defaultText ??
      ("default" in f && f.default !== undefined ? String(f.default) : undefined);
    if (fallback !== undefined) help += ` (default: ${fallback})`;
    rows.push([left, help]);
  }
  rows.push(["-h, --help", "print this help and exit"]);
  const width = Math.max(20, ...rows.map(([l]) => l.length + 2));
  const line = ([l, r]: [string, string]) => `  ${l.padEnd(width)}${r}`;
  if (argRows > 0) out.push("", "Arguments:", ...rows.slice(0, argRows).map(line));
  out.push("", "Options:", ...rows.slice(argRows).map(line));
  if (spec.notes) out.push("", spec.notes.trim());
  return out.join("\n");
}

/** parseArgs' messages run on with advice about "--": one clause, in this module's words. */
function parseArgsMessage(message: string): string {
  let m = /^Unknown option '([^']*)'/.exec(message);
  if (m) return `unknown option '${m[1]}'`;
  m = /^Option '(?:-\w, )?(--[\w-]+)[^']*' argument (?:missing|is ambiguous)/.exec(message);
  if (m) return `${m[1]} needs a value`;
  m = /^Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(message);
  if (m) return `${m[1]} takes no value`;
  return message.split(". ")[0];
}

function convert(prog: string, name: string, f: Flag, raw: unknown): unknown {
  if (f.type === "boolean") return raw === true;
  if (raw === undefined) return f.default;
  const text = raw as string;
  if (f.type === "string") return text;
  if (f.type === "choice") {
    if (!f.choices.includes(text)) {
      usageError(prog, `--${name} must be one of ${f.choices.join(", ")}, not '${text}'`);
    }
    return text;
  }
  const n = text.trim() === "" ? NaN : Number(text);
  const low = f.min === undefined ? "" : `${f.exclusiveMin ? ">" : ">="} ${f.min}`;
  const high = f.max === undefined ? "" : `<= ${f.max}`;
  const bounds = [low, high].filter(Boolean).join(" and ");
  const ok = Number.isFinite(n) && (!f.integer || Number.isInteger(n)) &&
    (f.min === undefined || (f.exclusiveMin ? n > f.min : n >= f.min)) &&
    (f.max === undefined || n <= f.max);
  if (!ok) {
    const kind = f.integer ? "an integer" : "a number";
    usageError(prog, `--${name} must be ${kind}${bounds ? ` ${bounds}` : ""}, not '${text}'`);
  }
  return n;
}

/**
 * Parses `args` by `spec`. `--help`/`-h` prints {@linkcode helpText} and
 * exits 0; an unknown flag, a flag without its value (or with a value it
 * does not take), a bad value, a missing or extra argument is a usage
 * error (one line, exit status 2).
 *
 * @example
 * ```ts ignore
 * const { args, flags } = parseCommandLine({
 *   prog: "echo", file: "examples/echo.ts", summary: "An echo server.",
 *   arguments: [{ name: "port", help: "0-65535", default: "8080" }],
 *   flags: { poller: pollerFlag("epoll") },
 * });
 * flags.poller; // "select" | "poll" | "epoll"
 * ```
 */
export function parseCommandLine<const F extends Readonly<Record<string, Flag>>>(
  spec: Command<F>,
  args: readonly string[] = Deno.args,
): CommandLine<F> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type === "boolean" ? "boolean" : "string" };
    if (f.short) options[name].short = f.short;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (error) {
    usageError(spec.prog, parseArgsMessage(errorText(error)));
  }
  if (parsed.values.help) {
    console.log(helpText(spec));
    Deno.exit(0);
  }
  const values = parsed.values as Record<string, unknown>;
  const flags: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    flags[name] = convert(spec.prog, name, f, values[name]);
  }
  const given = parsed.positionals;
  if (given.length > spec.arguments.length) {
    usageError(spec.prog, `unexpected argument '${given[spec.arguments.length]}'`);
  }
  const positional = spec.arguments.map((a, i) => {
    const value = given[i] ?? a.default;
    if (value === undefined && a.required) usageError(spec.prog, `missing ${a.name}`);
    return value;
  });
  return { args: positional, flags: flags as FlagValues<F> };
}

/** Reads a port number (0-65535; 0 picks a free port). */
export function parsePort(prog: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    usageError(prog, `bad port '${text}': expected a number 0-65535`);
  }
  return Number(text);
}

/**
 * Runs `open` (which creates and binds a server, or starts a client): a
 * host that does not resolve is a usage error (status 2), any other
 * `OSError` (port in use, permission, refused at once) one line and status
 * 1, anything else (a bad address, say) one line and status 2.
 */
export function openOrExit<T>(prog: string, open: () => T): T {
  try {
    return open();
  } catch (error) {
    if (error instanceof GaiError) usageError(prog, `unknown host: ${error.message}`);
    if (error instanceof OSError && !(error instanceof SSLError)) fail(prog, error.message, 1);
    fail(prog, errorText(error), 2);
  }
}

/**
 * Runs `load` (which reads certificates, keys or CA files): any failure, a
 * missing or unreadable file, one that holds no PEM, a key that does not
 * match the certificate, is one line naming `what`, status 2.
 */
export function loadOrExit<T>(prog: string, what: string, load: () => T): T {
  try {
    return load();
  } catch (error) {
    fail(prog, `cannot load ${what}: ${errorText(error)}`, 2);
  }
}

/** Options of {@linkcode runLoop}. */
export interface RunLoopOptions {
  /** The readiness backend. */
  poller: PollerName;
  /** The channels; default the global `socketMap`. */
  map?: SocketMap;
  /**
   * The signals that stop the loop; default SIGINT and SIGTERM. `[]` for a
   * loop that another thread stops (a Worker's: Deno keeps SIGINT then).
   */
  stopSignals?: StopSignal[];
  /**
   * Called when SIGINT or SIGTERM stopped the loop, before the channels are
   * closed: a server says so on stdout; a client, whose stdout is data,
   * says nothing.
   */
  onStop?: (signal: string, channels: number) => void;
}

/**
 * Runs the loop until its channels are gone or SIGINT/SIGTERM arrives,
 * then closes every channel, as Python's `try: asyncore.loop() except
 * KeyboardInterrupt: ... finally: asyncore.close_all()`. Returns the signal
 * that stopped it, or null when the channels finished by themselves.
 */
export function runLoop(
  { poller, map = socketMap, stopSignals = ["SIGINT", "SIGTERM"], onStop }: RunLoopOptions,
): string | null {
  try {
    loop({ poller, map, stopSignals: stopSignals.length > 0 ? stopSignals : undefined });
    return null;
  } catch (error) {
    if (!(error instanceof KeyboardInterrupt)) throw error;
    onStop?.(error.signal, map.size);
    return error.signal;
  } finally {
    closeAll(map, true);
  }
}
