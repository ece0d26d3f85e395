/**
 * Bytes and C strings, one converter of each for the whole library: what a
 * caller may pass as data (bytes, or a string sent as UTF-8) and what a C
 * function takes as `const char *`.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Bytes, or a string sent as UTF-8. */
export type BytesLike = Uint8Array | string;

/**
 * `data` as bytes: a `Uint8Array` as it is, a string as UTF-8. With
 * `anyView`, any other typed array or `DataView` too, as a byte view of the
 * same memory (asynchat takes those). Anything else is a `TypeError` naming
 * `what`.
 */
export function asBytes(data: unknown, what = "data", anyView = false): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return encoder.encode(data);
  if (anyView && ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError(
    `${what} must be a Uint8Array or a string, not ${data === null ? "null" : typeof data}`,
  );
}

/**
 * A NUL-terminated UTF-8 copy of `text`, to pass as `const char *`. A NUL
 * inside would cut the string short in C without a word, so it is a
 * `TypeError` naming `what`, as is a value that is not a string.
 */
export function toCString(text: string, what = "string"): Uint8Array<ArrayBuffer> {
  if (typeof text !== "string") throw new TypeError(`${what} must be a string, not ${typeof text}`);
  if (text.includes("\0")) throw new TypeError(`${what} must not contain NUL characters`);
  const out = new Uint8Array(text.length * 3 + 1);
  const { written } = encoder.encodeInto(text, out);
  return out.subarray(0, written + 1) as Uint8Array<ArrayBuffer>;
}

/** Reads a NUL-terminated C string, or null for a NULL pointer. */
export function readCString(ptr: Deno.PointerValue): string | null {
  return ptr === null ? null : Deno.UnsafePointerView.getCString(ptr);
}

/** The text encodings {@linkcode encodeText} knows, by Python's names. */
const ENCODINGS: Record<string, number> = {
  "utf-8": 0x10ffff,
  "utf8": 0x10ffff,
  "latin-1": 0xff,
  "latin1": 0xff,
  "iso-8859-1": 0xff,
  "iso8859-1": 0xff,
  "ascii": 0x7f,
  "us-ascii": 0x7f,
};

/**
 * `text` in `encoding`, as Python's `str.encode`: `"utf-8"`, `"latin-1"`
 * (`"iso-8859-1"`) or `"ascii"`. A character the encoding cannot hold is a
 * `RangeError` in Python's words; an unknown encoding is a `RangeError`.
 */
export function encodeText(text: string, encoding: string): Uint8Array {
  const name = String(encoding).toLowerCase().replace("_", "-");
  const max = ENCODINGS[name];
  if (max === undefined) {
    throw new RangeError(`unknown encoding: ${encoding} (use "utf-8", "latin-1" or "ascii")`);
  }
  if (max === 0x10ffff) return encoder.encode(text);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > max) {
      throw new RangeError(
        `'${encoding}' codec can't encode character '\\u${
          c.toString(16).padStart(4, "0")
        }' in position ${i}: ordinal not in range(${max + 1})`,
      );
    }
    out[i] = c;
  }
  return out;
}
