/**
 * `node --import tsx bench/scenarios/streams.main.ts [--smoke] [--duration 10] [--warmup 2] [--profile] [--json file]
 *   [--watchers n] [--rate changes-per-s] [--watch-port main|native]`
 * Runs issue 5's scenario 6 (streams) alone and prints its table, until bench/run.ts runs it.
 * --profile writes V8 CPU profiles of both servers under bench/results/profiles/streams-<time>/{A,B};
 * --watch-port native: the watchers connect to the native gRPC port (grpc-js) instead of the main one.
 * --json writes everything measured (with a per-second timeline of calls and deliveries) to a file.
 * Exit 2 on a consistency violation, 3 on errors (missing, duplicated or reordered deliveries, failed calls).
 */
import { runAlone } from "../lib/scenario.js";
import { runStreams } from "./streams.js";

await runAlone(
  {
    profile: { type: "boolean", default: false },
    watchers: { type: "string" },
    rate: { type: "string" },
    "watch-port": { type: "string" },
  },
  0.5,
  async (ctx, flags) => {
    const profileDir = flags.profile
      ? new URL(
          `../results/profiles/streams-${new Date().toISOString().replace(/[:.]/g, "-")}`,
          import.meta.url,
        ).pathname
      : undefined;
    const result = await runStreams(ctx, {
      ...(profileDir !== undefined && { profileDir }),
      ...(flags.watchers !== undefined && { watchers: Number(flags.watchers) }),
      ...(flags.rate !== undefined && { rate: Number(flags.rate) }),
      ...(flags["watch-port"] !== undefined && { watchPort: watchPortFlag(flags["watch-port"]) }),
    });
    if (profileDir) ctx.say(`CPU profiles under ${profileDir} once the servers stop`);
    return result;
  },
  (result) => result.data,
);

function watchPortFlag(value: string | boolean): "main" | "native" {
  if (value === "main" || value === "native") return value;
  throw new Error(`--watch-port must be main or native (got ${String(value)})`);
}
