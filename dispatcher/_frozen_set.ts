/**
 * The read-only default of `ignoreLogTypes`.
 *
 * @module
 */

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
