/**
 * The file behind a Unix socket's path: what is there (`statx(2)`, without
 * following a symbolic link) and its removal (`unlink(2)`). A server that
 * binds a path needs both: to tell a stale socket file, left by a process
 * that died, from a live server's or from a file that is no socket at all,
 * and to remove its own file when it closes, but not a file that replaced
 * it. Both go through libc, so `--allow-ffi` is the one permission needed.
 *
 * @module
 */

import { attempt, check } from "./_syscall.ts";
import { toCString } from "./bytes.ts";
import { errno as E, OSError } from "./errno.ts";
import { libc } from "./symbols.ts";

// Linux's values (statx exists on Linux only; the one Unix platform here).
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_TYPE = 0x1;
const STATX_INO = 0x100;
const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
/** `struct statx`: 256 bytes, one layout on every architecture. */
const STATX_SIZE = 256;
const MODE_AT = 0x1c; // __u16 stx_mode
const INO_AT = 0x20; // __u64 stx_ino
const DEV_MAJOR_AT = 0x88; // __u32 stx_dev_major
const DEV_MINOR_AT = 0x8c; // __u32 stx_dev_minor

/** What is at a path: whether it is a socket, and which file it is (device and inode). */
export interface PathInfo {
  /** The file is a socket (`S_IFSOCK`). */
  isSocket: boolean;
  /** `major:minor:inode`: equal for the same file, different once it was replaced. */
  identity: string;
}

/** Whether this platform can look at a path's file (`statx`; not on Windows or an old libc). */
export function canStatPaths(): boolean {
  return libc().statx !== null;
}

/**
 * What is at `path` (a symbolic link is not followed), or null when nothing
 * is. Throws `OSError` for any other failure (`EACCES`, `ENOTDIR`, ...), and
 * `ENOSYS` where `statx` is missing.
 */
export function statPath(path: string): PathInfo | null {
  const statx = libc().statx;
  if (statx === null) {
    throw new OSError(E.ENOSYS, { syscall: "statx", filename: path });
  }
  const buf = new Uint8Array(STATX_SIZE);
  const name = toCString(path, "path");
  const r = attempt(() => statx(AT_FDCWD, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, buf));
  if (r === -E.ENOENT) return null;
  check(r, "statx", path);
  const view = new DataView(buf.buffer);
  const mode = view.getUint16(MODE_AT, true);
  const ino = view.getBigUint64(INO_AT, true);
  const major = view.getUint32(DEV_MAJOR_AT, true);
  const minor = view.getUint32(DEV_MINOR_AT, true);
  return { isSocket: (mode & S_IFMT) === S_IFSOCK, identity: `${major}:${minor}:${ino}` };
}

/** Removes `path` (`unlink(2)`); throws `OSError` (`ENOENT` when it is gone already). */
export function unlinkPath(path: string): void {
  const lib = libc();
  const name = toCString(path, "path");
  check(attempt(() => lib.unlink(name)), "unlink", path);
}
