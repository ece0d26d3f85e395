// Node's file server for bench/sendfile_bench.ts: fs.createReadStream piped
// to the socket (ends it at the end of the file).
//
//     node bench/servers/node_file_server.js [host] [port] --file=PATH
//
// Prints "LISTENING <port>" once listening.
"use strict";
const fs = require("node:fs");
const net = require("node:net");
const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const path = (process.argv.find((a) => a.startsWith("--file=")) ?? "").slice(7);
if (!path) throw new Error("--file=PATH is required");
const server = net.createServer((sock) => {
  sock.on("error", () => sock.destroy());
  fs.createReadStream(path, { highWaterMark: 256 * 1024 }).pipe(sock);
});
server.listen({ host: args[0] ?? "127.0.0.1", port: Number(args[1] ?? 0), backlog: 1024 }, () => {
  console.log(`LISTENING ${server.address().port}`);
});
