// node_ws.js PORT: the WebSocket echo server of bench/ws_echo.sh, on the npm `ws` package.
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: +process.argv[2] || 0, perMessageDeflate: false,
  backlog: 1024 });
wss.on('listening', () => console.log('listening on 127.0.0.1:' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary }));
});
