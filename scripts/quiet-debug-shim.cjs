// Stands in for the `debug` package inside the bundle (scripts/quiet-debug.ts). MQTT.js and mqtt-packet call their
// debug loggers about fifteen times per publish, and `debug`'s logger takes `...args`: every call allocates an array,
// even for a namespace that is off: about half of what the drain allocated, 10.9 KB a record with them and 5.6 KB
// without (docs/benchmarks.md, "Memory while draining"). A namespace that is off gets a function without parameters
// instead; DEBUG=mqttjs* still turns the real logger on, as it does without the bundle.
'use strict';
const realDebug = require('debug/src/index.js');

function quietDebug(namespace) {
  if (realDebug.enabled(namespace)) return realDebug(namespace);
  const off = function () {};
  off.namespace = namespace;
  off.enabled = false;
  off.extend = (sub, delimiter = ':') => quietDebug(`${namespace}${delimiter}${sub}`);
  return off;
}

module.exports = Object.assign(quietDebug, { enabled: realDebug.enabled, enable: realDebug.enable, disable: realDebug.disable });
