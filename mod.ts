/**
 * asyncore for Deno: Python's `asyncore` and `asynchat` on raw file
 * descriptors through Deno FFI. Needs `--allow-ffi`.
 *
 * @example Echo server
 * ```ts no-run
 * import { Dispatcher, DispatcherWithSend, loop, type Socket } from "@asyncore/deno";
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
 * loop(); // serves until the process is stopped
 * ```
 *
 * @module
 */

// First: on a Deno too old for the library, this stops the program with one sentence.
export { MIN_DENO_VERSION } from "./ffi/deno_version.ts";
export { errno, GaiError, OSError, type OSErrorOptions } from "./ffi/errno.ts";
export { Socket } from "./ffi/socket.ts";
export type { Address } from "./ffi/structs.ts";
export { formatAddress, type InetAddress, inetAddress, isInetAddress } from "./ffi/address.ts";
export {
  type AddrInfo,
  getaddrinfo,
  getaddrinfoAsync,
  getfqdn,
  gethostbyname,
  gethostname,
  getnameinfo,
} from "./ffi/netdb.ts";
export { TimeoutError } from "./ffi/timeout.ts";
export {
  type Ancillary,
  type AncillaryInput,
  CMSG_LEN,
  CMSG_SPACE,
  type MessageSocket,
  recvFds,
  type RecvFdsResult,
  type RecvmsgResult,
  sendFds,
} from "./ffi/msg.ts";
export { hasBatchCalls, MAX_BATCH, MessageBatch } from "./ffi/mmsg.ts";
export { inetAton, inetNtoa, inetNtop, inetPton } from "./ffi/inet.ts";
export {
  createConnection,
  createServer,
  type CreateServerOptions,
  hasDualstackIpv6,
  socketpair,
} from "./ffi/create.ts";
export { listenFds, listenFdsWithNames, SD_LISTEN_FDS_START } from "./ffi/activation.ts";
export type { StopSignal } from "./ffi/signals.ts";
export * from "./ffi/constants.ts";
export { type BytesLike } from "./ffi/bytes.ts";
export {
  ACCEPT_BACKOFF_SECONDS,
  ACCEPT_BATCH,
  type ChannelSocket,
  Dispatcher,
  type SocketMap,
  type StartTlsOptions,
} from "./dispatcher/dispatcher.ts";
export { DispatcherWithSend } from "./dispatcher/dispatcher_with_send.ts";
export { DatagramDispatcher, type DatagramOptions } from "./dispatcher/datagram.ts";
export {
  HANDOFF_PROTOCOL_VERSION,
  HandoffServer,
  serveHandoff,
  takeOverListeners,
} from "./dispatcher/handoff.ts";
export {
  parseProxyHeader,
  PROXY_V1_MAX_BYTES,
  PROXY_V2_MAX_BYTES,
  type ProxyHeader,
  type ProxyParseResult,
  type ProxyProtocolVersion,
  type ProxyTlv,
} from "./dispatcher/proxy_header.ts";
export { proxyHeaderOf } from "./dispatcher/proxy_accept.ts";
export { ByteQueue, type FifoEntry, ProducerFifo } from "./dispatcher/output_queue.ts";
export {
  FileProducer,
  type FileProducerOptions,
  type FileSink,
  type Producer,
  SimpleProducer,
} from "./dispatcher/producers.ts";
export { FileQueue, type FileQueueOwner } from "./dispatcher/file_queue.ts";
export { type HasFilenoLike, type SendfileSource } from "./ffi/sendfile.ts";
export { FileDispatcher, FileWrapper, type HasFileno } from "./dispatcher/file_dispatcher.ts";
export {
  compactTraceback,
  ExitNow,
  KeyboardInterrupt,
  type TracebackFrame,
} from "./dispatcher/errors.ts";
export type { Channel } from "./dispatcher/_loop_core.ts";
export {
  callEvery,
  callLater,
  closeAll,
  defaultLoop,
  Loop,
  loop,
  type LoopConstructorOptions,
  type LoopOptions,
  type LoopRunAsyncOptions,
  type LoopRunOptions,
  poll,
  poll2,
  poll3,
  type PollerName,
  read,
  readwrite,
  setTimerErrorHandler,
  socketMap,
  write,
} from "./dispatcher/loop.ts";
export { type TimerErrorHandler, type TimerHandle } from "./dispatcher/timers.ts";
export {
  loopAsync,
  type LoopAsyncOptions,
  SPIN_MS,
  SPIN_SECONDS,
  YIELD_EVERY_MS,
  YIELD_EVERY_SECONDS,
} from "./dispatcher/loop_async.ts";
export { AsyncChat, findPrefixAtEnd, type Terminator } from "./dispatcher/asynchat.ts";
export {
  CERT_NONE,
  CERT_OPTIONAL,
  CERT_REQUIRED,
  HANDSHAKE_TIMEOUT,
  PROTOCOL_TLS_CLIENT,
  PROTOCOL_TLS_SERVER,
} from "./tls/constants.ts";
export {
  type CertChainOptions,
  createDefaultContext,
  type DefaultContextOptions,
  SSLContext,
  SSLSocket,
  type TLSVersion,
  type WrapSocketOptions,
} from "./tls/ssl.ts";
export type { DistinguishedName, PeerCertificate } from "./tls/peer_certificate.ts";
export {
  SSL_ERROR_EOF,
  SSL_ERROR_INVALID_ERROR_CODE,
  SSL_ERROR_SSL,
  SSL_ERROR_SYSCALL,
  SSL_ERROR_WANT_CONNECT,
  SSL_ERROR_WANT_READ,
  SSL_ERROR_WANT_WRITE,
  SSL_ERROR_WANT_X509_LOOKUP,
  SSL_ERROR_ZERO_RETURN,
} from "./tls/constants.ts";
export {
  SSLCertVerificationError,
  SSLEOFError,
  SSLError,
  type SSLErrorOptions,
  SSLWantReadError,
  SSLWantWriteError,
  SSLZeroReturnError,
} from "./tls/errors.ts";
export { connect } from "./streams/connect.ts";
export { listen, type Listener } from "./streams/listener.ts";
export type { Conn } from "./streams/conn.ts";
export type {
  ConnectOptions,
  ListenOptions,
  ProxyProtocolOption,
  TcpConnectOptions,
  TcpListenOptions,
  UnixConnectOptions,
  UnixListenOptions,
} from "./streams/_options.ts";
