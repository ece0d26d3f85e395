/**
 * errno: reading it, naming it, and the `OSError` every failing call throws.
 *
 * @module
 */

import { platform } from "./platform.ts";
import { libc } from "./symbols.ts";

/** The platform's errno values by name (`errno.ECONNREFUSED === 111` on Linux). */
export const errno: Readonly<Record<string, number>> = Object.freeze({ ...platform.errno });

const errnoNames: string[] = [];
for (const [name, value] of Object.entries(platform.errno)) {
  // The first name listed for a value wins: EAGAIN over EWOULDBLOCK.
  errnoNames[value] ??= name;
}

/** The symbolic name of an errno value (`"ECONNREFUSED"`), or `"E<n>"` if unknown. */
export function errorCode(err: number): string {
  return errnoNames[err] ?? `E${err}`;
}

/** The C library's text for an errno value, as Python's `os.strerror`. */
export function strerror(err: number): string {
  const text = Deno.UnsafePointerView.getCString(libc().strerror(err)!);
  return text || `Unknown error ${err}`;
}

let errnoView: Deno.UnsafePointerView | undefined;

/**
 * Reads the calling thread's errno. Call it right after the failing call:
 * anything in between (even the runtime's own work) may overwrite it.
 */
export function readErrno(): number {
  errnoView ??= new Deno.UnsafePointerView(libc().errnoLocation()!);
  return errnoView.getInt32();
}

/** Options for {@linkcode OSError}. */
export interface OSErrorOptions {
  /** The system call that failed, e.g. `"connect"`. */
  syscall?: string;
  /** A file name or address the error concerns, shown after the message. */
  filename?: string;
  /** The message; by default the C library's `strerror` text. */
  message?: string;
}

/**
 * A failed system call, as Python's `OSError`: `errno` is the number, `code`
 * its symbolic name, and the message reads `[Errno 111] Connection refused`.
 */
export class OSError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The errno's symbolic name, e.g. `"ECONNREFUSED"`. */
  readonly code: string;
  /** The failing system call, when known. */
  readonly syscall?: string;
  /** What the call was about (an address, a path), when known. */
  readonly filename?: string;

  /** Builds the error for errno value `err`. */
  constructor(err: number, options: OSErrorOptions = {}) {
    const text = options.message ?? strerror(err);
    const where = options.filename === undefined ? "" : `: '${options.filename}'`;
    super(`[Errno ${err}] ${text}${where}`);
    this.name = "OSError";
    this.errno = err;
    this.code = errorCode(err);
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.filename !== undefined) this.filename = options.filename;
  }
}

/**
 * A failed name lookup, as Python's `socket.gaierror`: `errno` holds the
 * (negative) `EAI_*` code and `code` its name, e.g. `"EAI_NONAME"`.
 */
export class GaiError extends OSError {
  /** Builds the error for `getaddrinfo` result `gaiCode` while resolving `host`. */
  constructor(gaiCode: number, host: string) {
    const text = Deno.UnsafePointerView.getCString(libc().gai_strerror(gaiCode)!);
    super(gaiCode, { message: `${text} (resolving '${host}')`, syscall: "getaddrinfo" });
    this.name = "GaiError";
    const name = Object.entries(platform.gaiErrors).find(([, v]) => v === gaiCode)?.[0];
    (this as { code: string }).code = name ?? `EAI_${-gaiCode}`;
  }
}
