import { createHash } from "node:crypto";

/**
 * The number of logical buckets. Fixed forever: changing it would move every user to another bucket
 * and break every id ever issued (ids carry their bucket). Rebalancing moves buckets between physical
 * shards through the bucket map instead.
 */
export const BUCKET_COUNT = 1024;

/** Maps a user id to its logical bucket with a stable hash (the first 32 bits of SHA-256). */
export function bucketOfUser(userId: string): number {
  const digest = createHash("sha256").update(userId, "utf8").digest();
  // 2^32 is a multiple of BUCKET_COUNT, so the modulo keeps the distribution uniform.
  return digest.readUInt32BE(0) % BUCKET_COUNT;
}

/** Assigns every logical bucket to one physical shard. */
export interface BucketMap {
  readonly shardCount: number;
  shardOf(bucket: number): number;
}

/** The default map: contiguous, equal ranges of buckets per shard. */
export function contiguousBucketMap(shardCount: number): BucketMap {
  checkShardCount(shardCount);
  const table = Uint16Array.from({ length: BUCKET_COUNT }, (_, b) =>
    Math.floor((b * shardCount) / BUCKET_COUNT),
  );
  return { shardCount, shardOf: (bucket) => tableLookup(table, bucket) };
}

/**
 * Parses a bucket map such as `0-511:0,512-1023:1` (inclusive bucket ranges, then the shard index).
 * Every bucket must be assigned exactly once and every shard must get at least one bucket.
 */
export function parseBucketMap(spec: string, shardCount: number): BucketMap {
  checkShardCount(shardCount);
  const table = new Int32Array(BUCKET_COUNT).fill(-1);
  for (const part of spec.split(",").map((s) => s.trim())) {
    const m = /^(\d+)-(\d+):(\d+)$/.exec(part);
    if (!m) throw new Error(`entry "${part}" is not of the form FIRST-LAST:SHARD`);
    const [first, last, shard] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (first > last || last >= BUCKET_COUNT)
      throw new Error(`range ${first}-${last} is outside 0-${BUCKET_COUNT - 1}`);
    if (shard >= shardCount) throw new Error(`shard ${shard} does not exist (there are ${shardCount})`);
    for (let b = first; b <= last; b++) {
      if (table[b] !== -1) throw new Error(`bucket ${b} is assigned twice`);
      table[b] = shard;
    }
  }
  const missing = table.indexOf(-1);
  if (missing !== -1) throw new Error(`bucket ${missing} is not assigned to any shard`);
  for (let s = 0; s < shardCount; s++) {
    if (!table.includes(s)) throw new Error(`shard ${s} has no buckets`);
  }
  return { shardCount, shardOf: (bucket) => tableLookup(table, bucket) };
}

function checkShardCount(shardCount: number): void {
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > BUCKET_COUNT) {
    throw new Error(`shard count must be an integer from 1 to ${BUCKET_COUNT}`);
  }
}

function tableLookup(table: ArrayLike<number>, bucket: number): number {
  const shard = table[bucket];
  if (shard === undefined || !Number.isInteger(bucket)) throw new RangeError(`bucket ${bucket} out of range`);
  return shard;
}
