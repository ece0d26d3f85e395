/**
 * asyncore for Deno: Python's `asyncore` and `asynchat` on raw file
 * descriptors through Deno FFI. Needs `--allow-ffi`.
 *
 * @example Echo server
 * ```ts ignore
 * import { Dispatcher, DispatcherWithSend, loop, type Socket } from "./mod.ts";
 *
 * class EchoHandler extends DispatcherWithSend {
 *   override handleRead() {
 *     const data = this.recv(8192);
 *     if (data.length) this.send(data);
 *   }
 * }
 * class EchoServer extends Dispatcher {
 *   constructor(host: string, port: number) {
 *     super();
 *     this.createSocket();
 *     this.setReuseAddr();
 *     this.bind([host, port]);
 *     this.listen(5);
 *   }
 *   override handleAccepted(sock: Socket) {
 *     new EchoHandler(sock);
 *   }
 * }
 * new EchoServer("localhost", 8080);
 * loop();
 * ```
 *
 * @module
 */

export { errno, GaiError, OSError, type OSErrorOptions } from "./ffi/errno.ts";
export { type BytesLike, Socket } from "./ffi/socket.ts";
export type { Address } from "./ffi/structs.ts";
export * from "./ffi/constants.ts";
