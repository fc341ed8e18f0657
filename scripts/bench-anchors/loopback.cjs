// Preloaded into supergateway by scripts/bench-gateway. supergateway 4.0.0
// calls `app.listen(port)`, which binds every interface, and has no flag for
// the host; this makes a listen given only a port bind 127.0.0.1, so the
// benchmark stays on loopback.
'use strict';
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
