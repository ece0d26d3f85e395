/**
 * The handoff protocol's messages: one line of ASCII each, on a Unix stream
 * socket; the listeners' fds travel with the `FDS` line (`SCM_RIGHTS`).
 *
 *     successor → old   ASYNCORE-HANDOFF 1 TAKE
 *     old → successor   ASYNCORE-HANDOFF 1 FDS <n> <family>/<type>/<proto> ...   (+ n fds)
 *     successor → old   ASYNCORE-HANDOFF 1 ACK <n>
 *     old → successor   ASYNCORE-HANDOFF 1 DONE
 *     either way        ASYNCORE-HANDOFF 1 ERROR <text>
 *
 * The old process keeps accepting until the `ACK`, then closes its copies
 * and its handoff socket (removing the file) and answers `DONE`: a successor
 * that waits for `DONE` may bind the same path for the next switch. The
 * family, type and protocol of each fd let the successor rebuild each
 * socket and check that it got what was meant; the numbers are the kernel's
 * (both processes run on one machine). Text only, so a shell or Python
 * program can take part: `socket.send_fds`/`recv_fds` speak it in a few lines.
 *
 * @module
 */

/** The protocol's name, first on every line. */
export const HANDOFF_MAGIC = "ASYNCORE-HANDOFF";
/** The version this library speaks. */
export const HANDOFF_VERSION = 1;
/** The longest line either side accepts (253 fds' descriptions fit). */
export const MAX_LINE = 4096;
/** The most fds one handoff carries: Linux's `SCM_MAX_FD`. */
export const MAX_HANDOFF_FDS = 253;

/** What one fd is, as the `FDS` line describes it. */
export interface SocketKind {
  family: number;
  type: number;
  proto: number;
}

/** A parsed line. */
export type HandoffMessage =
  | { kind: "take"; version: number }
  | { kind: "fds"; version: number; sockets: SocketKind[] }
  | { kind: "ack"; version: number; count: number }
  | { kind: "done"; version: number }
  | { kind: "error"; version: number; text: string };

const PREFIX = `${HANDOFF_MAGIC} `;

/** The `TAKE` line a successor opens with. */
export function takeLine(): string {
  return `${PREFIX}${HANDOFF_VERSION} TAKE\n`;
}

/** The `FDS` line for `sockets`. */
export function fdsLine(sockets: readonly SocketKind[]): string {
  const kinds = sockets.map((s) => `${s.family}/${s.type}/${s.proto}`).join(" ");
  return `${PREFIX}${HANDOFF_VERSION} FDS ${sockets.length} ${kinds}\n`;
}

/** The `ACK` line for `count` fds. */
export function ackLine(count: number): string {
  return `${PREFIX}${HANDOFF_VERSION} ACK ${count}\n`;
}

/** The `DONE` line. */
export function doneLine(): string {
  return `${PREFIX}${HANDOFF_VERSION} DONE\n`;
}

/** An `ERROR` line (the text on one line, printable ASCII, at most 200 characters). */
export function errorLine(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
  return `${PREFIX}${HANDOFF_VERSION} ERROR ${clean}\n`;
}

/** What a line that is not a message of this protocol is: a short, printable quote of it. */
export function quote(bytes: string): string {
  const shown = bytes.length > 60 ? `${bytes.slice(0, 60)}...` : bytes;
  return JSON.stringify(shown);
}

const INT = /^(0|[1-9]\d{0,9})$/;
const KIND = /^(-?\d{1,10})\/(\d{1,10})\/(\d{1,10})$/;

/**
 * Parses one line (without its newline). Throws an `Error` saying what is
 * wrong: not this protocol, another version (the message names both), a
 * malformed field.
 */
export function parseLine(line: string): HandoffMessage {
  if (!line.startsWith(PREFIX)) {
    throw new Error(`not an asyncore handoff peer (it said ${quote(line)})`);
  }
  const [versionText, verb, ...rest] = line.slice(PREFIX.length).split(" ");
  if (!INT.test(versionText ?? "")) throw new Error(`malformed handoff line ${quote(line)}`);
  const version = Number(versionText);
  // An ERROR line is read in any version: it says why the peer refused.
  if (verb === "ERROR") return { kind: "error", version, text: rest.join(" ") };
  if (version !== HANDOFF_VERSION) {
    throw new Error(
      `the peer speaks handoff protocol version ${version}, this process ${HANDOFF_VERSION}`,
    );
  }
  switch (verb) {
    case "TAKE":
    case "DONE":
      if (rest.length !== 0) break;
      return verb === "TAKE" ? { kind: "take", version } : { kind: "done", version };
    case "ACK":
      if (rest.length !== 1 || !INT.test(rest[0])) break;
      return { kind: "ack", version, count: Number(rest[0]) };
    case "FDS": {
      const [countText, ...kinds] = rest;
      if (!INT.test(countText ?? "") || Number(countText) !== kinds.length) break;
      if (kinds.length > MAX_HANDOFF_FDS) break;
      const sockets: SocketKind[] = [];
      for (const k of kinds) {
        const m = KIND.exec(k);
        if (m === null) break;
        sockets.push({ family: Number(m[1]), type: Number(m[2]), proto: Number(m[3]) });
      }
      if (sockets.length !== kinds.length) break;
      return { kind: "fds", version, sockets };
    }
  }
  throw new Error(`malformed handoff line ${quote(line)}`);
}

/**
 * Collects bytes into lines of at most {@linkcode MAX_LINE} bytes: the
 * complete line once it is in, null while it is not, and an `Error` when
 * the peer sent more than a line's worth without a newline (or bytes that
 * are not ASCII).
 */
export class LineReader {
  #text = "";

  /** Adds `bytes`; returns the first complete line (the rest is kept), or null. */
  push(bytes: Uint8Array): string | null {
    for (const b of bytes) {
      // Text only (a CR or tab is let through, to be quoted in the error that follows).
      if (b > 0x7e || (b < 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09)) {
        throw new Error(`not an asyncore handoff peer (it sent byte 0x${b.toString(16)})`);
      }
    }
    this.#text += String.fromCharCode(...bytes);
    return this.next();
  }

  /** The next complete line already in, or null. */
  next(): string | null {
    const i = this.#text.indexOf("\n");
    if (i < 0) {
      if (this.#text.length > MAX_LINE) {
        throw new Error(`a handoff line longer than ${MAX_LINE} bytes`);
      }
      return null;
    }
    const line = this.#text.slice(0, i);
    this.#text = this.#text.slice(i + 1);
    return line;
  }

  /** Bytes received and not yet part of a line. */
  get pending(): number {
    return this.#text.length;
  }
}
