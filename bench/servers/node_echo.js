// Node's echo server for the bench modules (churn, burst): net.createServer,
// write back every chunk, TCP_NODELAY, listen backlog 1024 as the other
// bench servers (Node's own default is 511).
//
//     node bench/servers/node_echo.js [host] [port] [--backlog=N]
//
// Prints "LISTENING <port>" once listening.
"use strict";
const net = require("node:net");
const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const flag = process.argv.find((a) => a.startsWith("--backlog="));
const backlog = flag ? Number(flag.slice(10)) : 1024;
const server = net.createServer({ noDelay: true }, (sock) => {
  sock.on("data", (d) => sock.write(d));
  sock.on("end", () => sock.end());
  sock.on("error", () => sock.destroy());
});
server.listen({ host: args[0] ?? "127.0.0.1", port: Number(args[1] ?? 0), backlog }, () => {
  console.log(`LISTENING ${server.address().port}`);
});
