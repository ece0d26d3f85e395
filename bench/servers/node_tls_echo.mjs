// Bench server: Node's tls echo. node bench/servers/node_tls_echo.mjs CERT KEY HOST PORT
import { readFileSync } from "node:fs";
import tls from "node:tls";
const [cert, key, host = "127.0.0.1", port = "0"] = process.argv.slice(2);
const server = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (s) => {
  s.setNoDelay(true);
  s.on("error", () => s.destroy());
  s.pipe(s);
});
server.on("tlsClientError", () => {});
server.listen(Number(port), host, () => console.log(`listening ${server.address().port}`));
