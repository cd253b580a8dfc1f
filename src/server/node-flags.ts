/**
 * The Node/V8 flags the server process runs with: `npm start`, `npm run dev` and the Dockerfile's CMD
 * pass them (a test checks that they do), and so do the bench's and the tests' server processes.
 *
 * --max-semi-space-size=8 (MiB; V8's default on 64-bit grows to 32): every RPC leaves a few KB that
 * outlive a minor GC (node:http2's per-stream objects among them), so a scavenge's pause grows with
 * the calls since the last one. A smaller young generation scavenges more often and each pause is
 * short: measured with sequential ListOrders calls, scavenge pauses p50 11.5 -> 2.4 ms and p99 of the
 * calls 9.5-10.6 -> 6.7-7.9 ms, for about twice the total scavenge time (still under 5% of a core).
 * docs/deploy.md says the same for anyone starting the server another way.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=8"];
