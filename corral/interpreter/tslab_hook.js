// Preloaded into tslab kernels (NODE_OPTIONS=--require): a cell's last expression value becomes the cell's main
// result (a display marked corral/main_result) instead of the plain console.log tslab gives it.
"use strict";
const fs = require("fs");
const path = require("path");
const util = require("util");

// tslab logs the value from its executor, right after running the cell; the user's own logs come from cell code.
const EXECUTOR = path.join("tslab", "dist", "executor.js");

// User code's child node processes must not load this hook.
delete process.env.NODE_OPTIONS;

function emit(v) {
  try {
    const bin = fs.realpathSync(process.argv[1]);
    const jupyter = require(path.join(path.dirname(bin), "..", "dist", "jupyter.js"));
    if (!jupyter.lastWriteDisplayData) return false;
    jupyter.lastWriteDisplayData(
      { data: { "text/plain": util.inspect(v) }, metadata: { "corral/main_result": true }, transient: {} },
      false,
    );
    return true;
  } catch (e) {
    return false;
  }
}

// Replaced before tslab's executor captures console.log (it does so once, at startup).
const log = console.log;
console.log = function (...args) {
  if (args.length === 1) {
    const caller = (new Error().stack || "").split("\n")[2] || "";
    if (caller.includes(EXECUTOR) && emit(args[0])) return;
  }
  return log.apply(this, args);
};
