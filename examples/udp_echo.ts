/**
 * A UDP echo server on `DatagramDispatcher`: every datagram goes back to its
 * sender. Each readable event takes up to `--batch` datagrams with one
 * `recvmmsg(2)` and sends the whole batch back with one `sendmmsg(2)`;
 * `--per-datagram` makes one `recvfrom`/`sendto` per datagram instead (what
 * Windows, which has no batch calls, always does).
 *
 *     deno run --allow-ffi examples/udp_echo.ts [host] [port]     (default localhost 9999)
 *
 * Options: --poller=select|poll|epoll (default epoll on Linux, poll
 * elsewhere), --batch=N (1-1024, default 64), --size=BYTES (room per
 * datagram, default 2048: longer ones come back cut), --per-datagram,
 * --join=GROUP (serve an IPv4 multicast group instead: bind its address and
 * join it on the interface of `host`), --help. Try it with `nc -u 127.0.0.1 9999`.
 * Ctrl-C or SIGTERM prints the datagram counts and exits 0; a bad argument
 * prints one line and exits 2; a port in use, one line and exit status 1.
 *
 * @module
 */

import {
  AF_INET,
  AI_PASSIVE,
  DatagramDispatcher,
  type DatagramOptions,
  formatAddress,
  getaddrinfo,
  inetAton,
  IP_ADD_MEMBERSHIP,
  IPPROTO_IP,
  type MessageBatch,
  SOCK_DGRAM,
} from "../mod.ts";
import {
  type Command,
  DEFAULT_POLLER,
  openOrExit,
  parseCommandLine,
  parsePort,
  pollerFlag,
  runLoop,
  SERVER_NOTES,
  usageError,
} from "./_cli.ts";

/** Sends every datagram back to its sender, a whole batch per system call. */
export class UdpEchoServer extends DatagramDispatcher {
  constructor(host: string, port: number, options: DatagramOptions = {}) {
    super(null, undefined, options);
    // As a Python server does: the resolver picks the family ("localhost", "::1", a name).
    const [[family, , , , address]] = getaddrinfo(
      host || null,
      port,
      0,
      SOCK_DGRAM,
      0,
      AI_PASSIVE,
    );
    this.createSocket(family);
    this.bind(address);
  }

  override handleDatagrams(batch: MessageBatch, count: number): void {
    // The received batch, sent as it is: each datagram back to its own sender.
    this.sendDatagrams(batch, count);
  }
}

/** The command line: `--help` is written from this table. */
export const CLI = {
  prog: "udp_echo",
  file: "examples/udp_echo.ts",
  summary:
    "A UDP echo server: every datagram goes back to its sender, a batch per recvmmsg/sendmmsg.",
  arguments: [
    { name: "host", help: "address or name to listen on", default: "localhost" },
    { name: "port", help: "0-65535; 0 picks a free port", default: "9999" },
  ],
  flags: {
    poller: pollerFlag(DEFAULT_POLLER),
    batch: {
      type: "number",
      integer: true,
      min: 1,
      max: 1024,
      default: 64,
      help: "the most datagrams one readable event takes",
    },
    size: {
      type: "number",
      integer: true,
      min: 1,
      max: 65536,
      default: 2048,
      metavar: "BYTES",
      help: "room per datagram (longer ones come back cut)",
    },
    "per-datagram": {
      type: "boolean",
      help: "one recvfrom/sendto per datagram instead of recvmmsg/sendmmsg",
    },
    join: {
      type: "string",
      metavar: "GROUP",
      help: "serve an IPv4 multicast group: bind its address, join it on host's interface",
    },
  },
  notes: SERVER_NOTES,
} as const satisfies Command;

if (import.meta.main) {
  const { prog } = CLI;
  const { args: [host, portText], flags } = parseCommandLine(CLI);
  const port = parsePort(prog, portText!);
  const group = flags.join;
  if (group !== undefined && !/^2(2[4-9]|3\d)\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(group)) {
    usageError(
      prog,
      `--join wants an IPv4 multicast group (224.0.0.0-239.255.255.255), not '${group}'`,
    );
  }
  const server = openOrExit(prog, () => {
    const s = new UdpEchoServer(group !== undefined ? group : host!, port, {
      batchSize: flags.batch,
      datagramSize: flags.size,
      batchCalls: !flags["per-datagram"],
    });
    if (group !== undefined) {
      // Bound to the group's address (only its datagrams arrive), joined on host's interface.
      const [[, , , , ifaceAddr]] = getaddrinfo(host!, null, AF_INET);
      const iface = inetAton((ifaceAddr as [string, number])[0]);
      s.sock.setsockopt(
        IPPROTO_IP,
        IP_ADD_MEMBERSHIP,
        new Uint8Array([...inetAton(group), ...iface]),
      );
    }
    return s;
  });
  const mode = server.batchCalls ? `batches of up to ${flags.batch}` : "one call per datagram";
  console.log(
    `udp echo listening on ${formatAddress(server.sock.getsockname())} (${mode}${
      group !== undefined ? `, member of ${group}` : ""
    })`,
  );
  runLoop({
    poller: flags.poller,
    onStop: (signal) =>
      console.log(
        `udp echo stopping (${signal}): ${server.datagramsReceived} datagrams in, ${server.datagramsSent} out`,
      ),
  });
}
