/**
 * This library's file server for `bench/sendfile_bench.ts`: every connection
 * gets the whole file (`--file=PATH`), then the server closes it.
 *
 *     deno run --allow-ffi bench/servers/file_server.ts [host] [port] --file=PATH
 *         [--mode=sendfile|readsend] [--poller=select|poll|epoll]
 *
 * `--mode=sendfile` (default) queues a `FileProducer` on an `AsyncChat`: the
 * loop sends it with non-blocking `sendfile(2)`. `--mode=readsend` queues a
 * plain producer that reads the file 64 KiB at a time, as a program without
 * sendfile would (the bytes pass through JavaScript). Prints `LISTENING <port>`.
 *
 * @module
 */

import {
  AsyncChat,
  Dispatcher,
  FileProducer,
  loop,
  type PollerName,
  type Producer,
  type Socket,
} from "../../mod.ts";

const flag = (name: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const path = flag("file");
if (!path) throw new Error("--file=PATH is required");
const readSend = flag("mode") === "readsend";

/** Sends the file and closes. */
class FileHandler extends AsyncChat {
  constructor(sock: Socket) {
    super(sock);
    const file = new FileProducer(path!);
    // readsend: the same file read in 64 KiB pieces by more(), sent as bytes.
    const producer: Producer = readSend ? { more: () => file.more() } : file;
    this.pushWithProducer(producer);
    this.closeWhenDone();
  }
  override collectIncomingData(_data: Uint8Array): void {}
  override foundTerminator(): void {}
  override handleClose(): void {
    this.close();
  }
}

class Server extends Dispatcher {
  constructor(host: string, port: number) {
    super();
    this.createSocket();
    this.setReuseAddr();
    this.bind([host, port]);
    this.listen(1024);
  }
  override handleAccepted(sock: Socket): void {
    new FileHandler(sock);
  }
}

const args = Deno.args.filter((a) => !a.startsWith("--"));
const server = new Server(args[0] ?? "127.0.0.1", Number(args[1] ?? 0));
console.log(`LISTENING ${((server.socket as Socket).getsockname() as [string, number])[1]}`);
loop({ poller: (flag("poller") ?? "epoll") as PollerName });
