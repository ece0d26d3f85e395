// Node's UDP echo server for the UDP bench: dgram, every message sent back
// to its sender.
//
//     node bench/servers/node_udp_echo.js [host] [port]
//
// Prints "LISTENING <port>" once bound.
"use strict";
const dgram = require("node:dgram");
const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const socket = dgram.createSocket("udp4");
socket.on("message", (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
socket.bind(Number(args[1] ?? 0), args[0] ?? "127.0.0.1", () => {
  console.log(`LISTENING ${socket.address().port}`);
});
