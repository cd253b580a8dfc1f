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
 * further (2.4 ms) but cost the streams 60% more scavenge time, so 16 is the compromise. Fixing
 * the young generation at 16 MiB from the start (--min-semi-space-size=16) halved sequential
 * ListOrders' scavenges (V8 keeps it smaller), but scenario 6 alone, twice each way, gave stream
 * delivery p99 52.1 and 104.9 ms with it against 40.7 and 53.9 ms without: not set.
 *
 * --no-allocation-site-pretenuring: V8 allocates objects from an allocation site straight into old
 * space once most of them have survived a scavenge. Under RPC load it decided that for sites of the
 * per-call path (grpc-js's call objects, connect's handler context), and each pretenured object then
 * kept the young objects it points to alive through every scavenge until they were promoted too:
 * about 10 KB per ListOrders call went to old space, which filled, and the mark-compacts that
 * emptied it paused the server 20-50 ms every 15-30 s. Measured with `npm run bench:server-ab` (two
 * servers in turns, same run, 60 s each): old-space growth 0.02 against 0.71 MB per scavenge,
 * scavenge pause p50 1.2 against 3.0 ms, 1 mark-compact (9 ms) against 2 (58 ms), same CPU per call.
 * It is a V8 flag that NODE_OPTIONS refuses: it must be on the command line.
 *
 * --no-memory-reducer: V8's memory reducer, seeing the allocation rate drop for a moment (a lull in
 * traffic), starts a mark-compact that shrinks the heap, and up to two more after it. When the calls
 * come back before it ends, they wait for it: in a ListOrders run of the bench (scenario 5, with
 * --trace-gc) one such collection, flagged "(reduce)", paused the server 170 ms, the two after it
 * 16 and 10 ms, and the three cases measured meanwhile were the run's only three over their 10 ms
 * p99 target. Without the reducer the same scenario had no mark-compact while measuring. The price:
 * an idle server keeps its heap at the size V8 last grew it to, until an ordinary collection
 * shrinks it. A V8 flag, so again the command line only.
 *
 * docs/deploy.md says the same for anyone starting the server another way.
 */
export const SERVER_NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=16",
  "--no-allocation-site-pretenuring",
  "--no-memory-reducer",
];
