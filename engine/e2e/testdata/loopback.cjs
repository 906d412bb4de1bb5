// Preloaded with `node --require` so that a server which listens on every
// interface (server-everything calls app.listen(PORT)) binds 127.0.0.1 only.
// It rewrites net.Server.prototype.listen calls that name a port but no host.
"use strict";
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === "object" && args[0] !== null && !Array.isArray(args[0])) {
    if (args[0].path === undefined && args[0].host === undefined) {
      args[0] = Object.assign({}, args[0], { host: "127.0.0.1" });
    }
  } else if (args.length > 0 && (typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0])))) {
    if (typeof args[1] !== "string") {
      args.splice(1, 0, "127.0.0.1");
    }
  }
  return listen.apply(this, args);
};
