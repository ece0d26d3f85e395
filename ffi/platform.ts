/**
 * Platform facts: everything that differs between operating systems and
 * architectures lives in one table per platform: the libc name, the
 * constants, errno, struct layouts and the calling convention of variadic
 * functions. Linux x86_64 and aarch64 (`ffi/platform_linux.ts`) and Windows
 * x86_64 (`ffi/platform_windows.ts`) are implemented; another platform is a
 * new {@linkcode Platform} table (`ffi/platform_types.ts` has its shape)
 * added to {@linkcode PLATFORMS}, and the compiler names every fact it is
 * missing. This module picks the table of the running platform.
 *
 * What is optional in libc (`accept4`, `pipe2`, the `epoll` family) is not a
 * table entry: `ffi/symbols.ts` binds it as `optional` and checks for it.
 *
 * @module
 */

import { linuxAarch64, linuxX86_64 } from "./platform_linux.ts";
import type { Constants, Platform } from "./platform_types.ts";

export type * from "./platform_types.ts";

// Windows' table is loaded off Linux only (on Windows, and to be named in the
// "not supported" error elsewhere): Linux never parses it.
const windows = Deno.build.os === "linux"
  ? undefined
  : (await import("./platform_windows.ts")).windowsX86_64;

/** Every implemented platform, keyed by `${Deno.build.os}-${Deno.build.arch}` (Windows' off Linux). */
export const PLATFORMS: Readonly<Record<string, Platform>> = {
  "linux-x86_64": linuxX86_64,
  "linux-aarch64": linuxAarch64,
  ...(windows === undefined ? {} : { "windows-x86_64": windows }),
};

function currentPlatform(): Platform {
  const key = `${Deno.build.os}-${Deno.build.arch}`;
  const found = PLATFORMS[key];
  if (!found) {
    throw new Error(
      `asyncore: platform ${key} is not supported yet (supported: ${
        Object.keys(PLATFORMS).join(", ")
      }); add its table to ffi/platform.ts`,
    );
  }
  return found;
}

/** The table of the platform this process runs on. */
export const platform: Platform = currentPlatform();

/** Shorthand for `platform.constants`. */
export const C: Constants = platform.constants;
