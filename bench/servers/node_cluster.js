// node_cluster.js - Node's cluster module: WORKERS processes running the
// node_net.js (own HTTP framing, like node-net) or node_http.js server.
//   node node_cluster.js WORKERS net|http PORT
// The primary forks the workers and, with Node's default scheduling policy on
// Linux (round-robin), accepts connections and hands them to the workers.
'use strict';
const cluster = require('cluster');
const path = require('path');
const [wArg, kind, portArg] = process.argv.slice(2);
const workers = Number(wArg);
if (!(workers >= 1) || (kind !== 'net' && kind !== 'http') || !Number(portArg)) {
  console.error('usage: node node_cluster.js WORKERS net|http PORT');
  process.exit(2);
}
if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  // a worker that dies is not replaced: the run shows it as a failure
  cluster.on('exit', (w, code, sig) => console.error(`worker ${w.process.pid} exited ${code || sig}`));
} else {
  process.argv = kind === 'net'
    ? [process.argv[0], path.join(__dirname, 'node_net.js'), 'http', portArg]
    : [process.argv[0], path.join(__dirname, 'node_http.js'), portArg];
  require(process.argv[1]);
}
