// node_https.js - the HTTPS "hello world" peer of bench/tls.sh: node's https module.
//   node node_https.js PORT CERT KEY
"use strict";
const https = require("https");
const fs = require("fs");
const [port, cert, key] = process.argv.slice(2);
const body = "Hello, World!";
https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": body.length });
    res.end(body);
  })
  .listen(Number(port), "127.0.0.1");
