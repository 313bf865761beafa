// ws_load.js URL CONNS SECONDS [SIZE]: CONNS WebSocket clients (npm `ws`), each sending a
// SIZE-byte text message (64) and waiting for its echo, again and again, for SECONDS after all
// have connected.  Prints "messages N" (echoes received in the measured time).
const WebSocket = require('ws');
const [url, conns, secs, size] = [process.argv[2], +process.argv[3] || 100, +process.argv[4] || 3,
  +process.argv[5] || 64];
const msg = 'm'.repeat(size);
let open = 0, count = 0, measuring = false;
const all = [];
for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  all.push(ws);
  ws.on('open', () => { if (++open === conns) start(); });
  ws.on('message', () => { if (measuring) count++; ws.send(msg); });
  ws.on('error', (e) => { console.error('ws_load: ' + e.message); process.exit(1); });
}
function start() {
  measuring = true;
  console.log('started');
  for (const ws of all) ws.send(msg);
  setTimeout(() => {
    measuring = false;
    console.log('messages ' + count);
    for (const ws of all) ws.terminate();
    process.exit(0);
  }, secs * 1000);
}
