import { runOperatorCommand } from "./operator.js";

/** `npm run migrate`: applies pending migrations on every shard (the embedded ones when no SHARD_URLS). */
runOperatorCommand("migration", async (shards) => {
  await shards.migrateAll();
  return 0;
});
