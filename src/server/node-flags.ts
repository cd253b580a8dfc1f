/**
 * The Node/V8 flags the server process runs with: `npm start`, `npm run dev` and the Dockerfile's CMD
 * pass them (a test checks that they do), and so do the bench's and the tests' server processes.
 *
 * --max-semi-space-size=16 (MiB; V8's default on 64-bit grows to 32 under load): every RPC leaves a
 * few KB that outlive a minor GC (node:http2's per-stream objects among them), so a scavenge's pause
 * grows with the calls since the last one, and an open stream's state is rescanned by each one. A
 * smaller young generation scavenges more often, each pause shorter. Measured on the bench machine:
 * sequential ListOrders, scavenge pause p50 11.5 -> 4.3 ms; 5,000 open watch streams per instance,
 * p50 ~58 -> 23 ms, for about 35% more total scavenge time. 8 MiB shortened ListOrders' pauses
 * further (2.4 ms) but cost the streams 60% more scavenge time, so 16 is the compromise.
 * docs/deploy.md says the same for anyone starting the server another way.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=16"];
