// node_static.js ROOT PORT: a static file server on node's http module for
// bench/static_file.sh: fs.stat for the Content-Length, then fs.createReadStream
// piped into the response (node's idiomatic way; node has no sendfile).
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const root = process.argv[2];
const port = Number(process.argv[3] || 0);

const srv = http.createServer((req, res) => {
  const file = path.join(root, path.normalize(decodeURIComponent(req.url.split('?')[0])));
  fs.stat(file, (err, st) => {
    if (err || !st.isFile() || !file.startsWith(root)) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': st.size });
    fs.createReadStream(file).pipe(res);
  });
});
srv.keepAliveTimeout = 300000;
srv.listen(port, '127.0.0.1', () => {
  console.log('listening on 127.0.0.1:' + srv.address().port);
});
