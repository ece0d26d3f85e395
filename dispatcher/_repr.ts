/**
 * How channels present themselves: addresses in log lines and `toString()`,
 * and the read-only default of `ignoreLogTypes`.
 *
 * @module
 */

import type { Address } from "../ffi/structs.ts";

/** `host:port`, `[v6]:port`, or a Unix path as it is. */
export function formatAddress(addr: Address): string {
  if (typeof addr === "string") return JSON.stringify(addr);
  return addr[0].includes(":") ? `[${addr[0]}]:${addr[1]}` : `${addr[0]}:${addr[1]}`;
}

/** A Set that refuses changes once built, like Python's frozenset (the message says what to do instead). */
export class FrozenSet<T> extends Set<T> {
  readonly #refusal: string;
  #frozen = false;
  /** A frozen set of `items`; changing it throws a `TypeError` with `refusal`. */
  constructor(items: Iterable<T>, refusal: string) {
    super(); // Set's constructor would call add() before the private fields exist
    this.#refusal = refusal;
    for (const item of items) super.add(item);
    this.#frozen = true;
  }
  /** Refused once frozen. */
  override add(value: T): this {
    if (this.#frozen) throw new TypeError(this.#refusal);
    return super.add(value);
  }
  /** Refused. */
  override delete(_value: T): boolean {
    throw new TypeError(this.#refusal);
  }
  /** Refused. */
  override clear(): void {
    throw new TypeError(this.#refusal);
  }
}
