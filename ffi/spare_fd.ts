/**
 * One spare file descriptor held in reserve. When the process runs out of
 * fds, Deno itself needs one to format an error's stack (and panics without
 * it), so the spare is freed while such an error is built, then taken back.
 * libuv and nginx keep a spare for the same reason.
 *
 * @module
 */

import { C } from "./platform.ts";
import { libc } from "./symbols.ts";

const devNull = new TextEncoder().encode("/dev/null\0");
let spare = -1;

/** Opens the spare fd if it is not held (and an fd is free). */
export function holdSpareFd(): void {
  if (spare < 0) spare = libc().open(devNull, C.O_RDONLY | C.O_CLOEXEC);
}

/** Closes the spare fd so that one fd is free. */
export function releaseSpareFd(): void {
  if (spare < 0) return;
  const fd = spare;
  spare = -1;
  libc().close(fd);
}

/** Whether the spare fd is held now. */
export function spareFdHeld(): boolean {
  return spare >= 0;
}
