/**
 * Where `Dispatcher.recv` puts what it reads: one receive buffer shared by
 * every channel (the loop runs one handler at a time), and small results
 * handed out as views into a shared slab, as Node.js does for small Buffers
 * (a new ArrayBuffer per read costs more than the read). So `data.buffer` of
 * a small result is the slab, not just the data. Both are caches: nothing
 * in them outlives the call that filled them, except the views handed out,
 * which are never written again.
 *
 * @module
 */

const POOL_SIZE = 64 * 1024;
/** Results up to this size come from the slab. */
const POOL_MAX = 4096;
let pool = new ArrayBuffer(POOL_SIZE);
let poolUsed = 0;
let scratch = new Uint8Array(65536);

/** The shared receive buffer, at least `n` bytes long. */
export function recvBuffer(n: number): Uint8Array {
  if (n > scratch.length) scratch = new Uint8Array(n);
  return scratch;
}

/**
 * The `n` bytes just read into the shared buffer, as the caller's own:
 * small ones copied into the slab, mid-sized ones copied alone, and a big
 * read keeps the buffer it landed in (no copy; a new one takes its place).
 */
export function takeReceived(n: number): Uint8Array {
  const src = scratch;
  if (n <= POOL_MAX) {
    if (poolUsed + n > POOL_SIZE) {
      pool = new ArrayBuffer(POOL_SIZE);
      poolUsed = 0;
    }
    const out = new Uint8Array(pool, poolUsed, n);
    out.set(n === src.length ? src : src.subarray(0, n));
    poolUsed = (poolUsed + n + 7) & ~7; // keep views 8-byte aligned
    return out;
  }
  if (n * 2 < src.length) return src.slice(0, n);
  const out = src.subarray(0, n);
  scratch = new Uint8Array(src.length);
  return out;
}
