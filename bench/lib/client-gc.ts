import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * A full garbage collection of this process: the bench's client, never a server under test. A
 * sequential latency measurement calls it before each run of timed calls, so the client's own
 * mark-compacts (its old space fills from every call's request, stream and response objects) fall
 * between measurements instead of inside one: measured on the bench machine, one of them took about
 * 50 ms of the client's main thread and a core of V8's helper threads, and the calls around it ran
 * 11-26 ms. The server's collections are untouched; they are part of what is measured.
 */
export const collectClientGarbage: () => void = (() => {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
})();
