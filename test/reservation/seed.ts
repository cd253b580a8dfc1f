import type { App } from "../../src/app.js";
import { unique } from "../harness/app.js";

/** A user id whose bucket lands on the given shard of the app. */
export function userOnShard(app: App, shard: number, prefix = "user"): string {
  for (let i = 0; i < 10_000; i++) {
    const id = unique(`${prefix}${i}`);
    if (app.shards.forUser(id).index === shard) return id;
  }
  throw new Error(`no user found for shard ${shard}`);
}
