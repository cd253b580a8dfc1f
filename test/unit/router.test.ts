import { createHash, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  BUCKET_COUNT,
  type BucketMap,
  bucketOfUser,
  contiguousBucketMap,
  parseBucketMap,
} from "../../src/shard/router.js";
import bucketTable from "./bucket-table.json" with { type: "json" };

const USERS = 100_000;

/** Loads per shard and the max/min ratio for a set of user ids. */
function shardLoads(userIds: Iterable<string>, map: BucketMap): { loads: number[]; ratio: number } {
  const loads = new Array<number>(map.shardCount).fill(0);
  for (const id of userIds) {
    const shard = map.shardOf(bucketOfUser(id));
    loads[shard] = (loads[shard] ?? 0) + 1;
  }
  return { loads, ratio: Math.max(...loads) / Math.min(...loads) };
}

function* sequentialIds(): Generator<string> {
  for (let i = 0; i < USERS; i++) yield `user-${i}`;
}

function* uuidIds(): Generator<string> {
  for (let i = 0; i < USERS; i++) yield randomUUID();
}

/** Every bucket's shard under a map. */
function shardsOf(map: BucketMap): number[] {
  return Array.from({ length: BUCKET_COUNT }, (_, b) => map.shardOf(b));
}

describe("bucketOfUser evenness", () => {
  for (const shardCount of [3, 4, 8]) {
    it(`spreads ${USERS} sequential ids evenly over ${shardCount} contiguous shards`, () => {
      const { loads, ratio } = shardLoads(sequentialIds(), contiguousBucketMap(shardCount));
      expect(loads.reduce((a, b) => a + b, 0)).toBe(USERS);
      expect(loads.every((n) => n > 0)).toBe(true);
      expect(ratio).toBeLessThan(1.1);
    });

    it(`spreads ${USERS} random UUIDs evenly over ${shardCount} contiguous shards`, () => {
      const { loads, ratio } = shardLoads(uuidIds(), contiguousBucketMap(shardCount));
      expect(loads.reduce((a, b) => a + b, 0)).toBe(USERS);
      expect(ratio).toBeLessThan(1.1);
    });
  }

  it("uses every bucket for sequential ids", () => {
    const used = new Set<number>();
    for (const id of sequentialIds()) used.add(bucketOfUser(id));
    expect(used.size).toBe(BUCKET_COUNT);
  });
});

describe("bucketOfUser stability", () => {
  const entries = Object.entries(bucketTable as Record<string, number>);

  it("has a table of about 50 ids", () => {
    expect(entries.length).toBeGreaterThanOrEqual(50);
  });

  it.each(entries)("keeps %j in bucket %i", (userId, bucket) => {
    expect(bucketOfUser(userId)).toBe(bucket);
  });

  // The first 32 bits of SHA-256, taken from published test vectors or computed outside this code base
  // (`node -e` with node:crypto); the bucket is those 32 bits modulo 1024.
  it.each([
    ["", "e3b0c442"],
    ["a", "ca978112"],
    ["abc", "ba7816bf"],
    ["user-0", "7fad6a4d"],
    ["alice@example.com", "ff8d9819"],
    ["用户", "0d0e1a86"],
    ["😀", "f0443a34"],
  ])("hashes %j as the first 32 bits of SHA-256 (%s) modulo 1024", (userId, first32) => {
    expect(bucketOfUser(userId)).toBe(Number.parseInt(first32, 16) % BUCKET_COUNT);
  });

  it("hard-codes the buckets of the published vectors", () => {
    expect(bucketOfUser("")).toBe(66);
    expect(bucketOfUser("a")).toBe(274);
    expect(bucketOfUser("abc")).toBe(703);
  });

  it("agrees with an independent SHA-256 over the whole table", () => {
    for (const [userId, bucket] of entries) {
      const digest = createHash("sha256").update(Buffer.from(userId, "utf8")).digest();
      expect(digest.readUInt32BE(0) % BUCKET_COUNT).toBe(bucket);
    }
  });

  it("is sensitive to case, whitespace and Unicode normalization", () => {
    expect(bucketOfUser("alice")).not.toBe(bucketOfUser("Alice"));
    expect(bucketOfUser("alice")).not.toBe(bucketOfUser("alice "));
    // Composed and decomposed é are different user ids: callers must normalize if they want otherwise.
    expect(bucketOfUser("jos\u00e9")).not.toBe(bucketOfUser("jose\u0301"));
  });
});

describe("contiguousBucketMap", () => {
  for (const shardCount of [1, 2, 3, 4, 5, 7, 8, 16, 100, 1023, 1024]) {
    it(`covers every bucket with shards 0..${shardCount - 1} in non-decreasing order`, () => {
      const map = contiguousBucketMap(shardCount);
      expect(map.shardCount).toBe(shardCount);
      const shards = shardsOf(map);
      expect(shards[0]).toBe(0);
      expect(shards[BUCKET_COUNT - 1]).toBe(shardCount - 1);
      for (let b = 1; b < BUCKET_COUNT; b++) {
        const step = (shards[b] ?? -1) - (shards[b - 1] ?? -1);
        expect(step === 0 || step === 1).toBe(true);
      }
      const sizes = new Array<number>(shardCount).fill(0);
      for (const s of shards) sizes[s] = (sizes[s] ?? 0) + 1;
      // Equal ranges: sizes differ by at most one bucket.
      expect(Math.min(...sizes)).toBe(Math.floor(BUCKET_COUNT / shardCount));
      expect(Math.max(...sizes)).toBe(Math.ceil(BUCKET_COUNT / shardCount));
    });
  }

  it("equals the spelled-out spec for four shards", () => {
    const spec = parseBucketMap("0-255:0,256-511:1,512-767:2,768-1023:3", 4);
    expect(shardsOf(contiguousBucketMap(4))).toEqual(shardsOf(spec));
  });

  it.each([0, -1, 1.5, 1025, Number.NaN])("rejects shard count %s", (n) => {
    expect(() => contiguousBucketMap(n)).toThrow(/shard count must be an integer from 1 to 1024/);
  });

  it.each([-1, 1024, 1.5, Number.NaN])("rejects bucket %s", (bucket) => {
    expect(() => contiguousBucketMap(4).shardOf(bucket)).toThrow(RangeError);
  });
});

describe("parseBucketMap", () => {
  it("accepts a valid spec, in any order and with spaces", () => {
    const map = parseBucketMap(" 512-1023:1 , 0-9:0,10-511:2 ", 3);
    expect(map.shardCount).toBe(3);
    expect(map.shardOf(0)).toBe(0);
    expect(map.shardOf(9)).toBe(0);
    expect(map.shardOf(10)).toBe(2);
    expect(map.shardOf(511)).toBe(2);
    expect(map.shardOf(512)).toBe(1);
    expect(map.shardOf(1023)).toBe(1);
  });

  it("accepts single-bucket ranges", () => {
    const map = parseBucketMap("0-0:1,1-1023:0", 2);
    expect(map.shardOf(0)).toBe(1);
    expect(map.shardOf(1)).toBe(0);
  });

  it.each([
    ["overlapping ranges", "0-600:0,500-1023:1", 2, /bucket 500 is assigned twice/],
    ["the same range twice", "0-1023:0,0-1023:0", 1, /bucket 0 is assigned twice/],
    ["a gap", "0-499:0,501-1023:1", 2, /bucket 500 is not assigned to any shard/],
    ["a missing tail", "0-1022:0", 1, /bucket 1023 is not assigned to any shard/],
    ["a shard index out of range", "0-511:0,512-1023:2", 2, /shard 2 does not exist \(there are 2\)/],
    ["a shard with no buckets", "0-511:0,512-1023:2", 3, /shard 1 has no buckets/],
    ["a range past 1023", "0-511:0,512-1024:1", 2, /range 512-1024 is outside 0-1023/],
    ["a range starting past 1023", "0-1023:0,1024-1030:0", 1, /range 1024-1030 is outside 0-1023/],
    ["a reversed range", "0-511:0,1023-512:1", 2, /range 1023-512 is outside 0-1023/],
    ["a missing shard", "0-1023", 1, /entry "0-1023" is not of the form FIRST-LAST:SHARD/],
    ["a single bucket without a range", "0:0,1-1023:0", 1, /entry "0:0" is not of the form/],
    ["a negative bucket", "-1-1023:0", 1, /entry "-1-1023:0" is not of the form/],
    ["a non-numeric shard", "0-1023:a", 1, /entry "0-1023:a" is not of the form/],
    ["a trailing comma", "0-1023:0,", 1, /entry "" is not of the form/],
    ["an empty spec", "", 1, /entry "" is not of the form/],
    ["a wrong separator", "0-511:0;512-1023:1", 2, /entry "0-511:0;512-1023:1" is not of the form/],
  ])("rejects %s", (_name, spec, shardCount, message) => {
    expect(() => parseBucketMap(spec, shardCount)).toThrow(message);
  });

  it("moving one range changes the shard of exactly those buckets", () => {
    const before = parseBucketMap("0-255:0,256-300:0,301-511:1,512-767:2,768-1023:3", 4);
    const after = parseBucketMap("0-255:0,256-300:3,301-511:1,512-767:2,768-1023:3", 4);
    const a = shardsOf(before);
    const b = shardsOf(after);
    for (let bucket = 0; bucket < BUCKET_COUNT; bucket++) {
      if (bucket >= 256 && bucket <= 300) {
        expect(a[bucket]).toBe(0);
        expect(b[bucket]).toBe(3);
      } else {
        expect(b[bucket]).toBe(a[bucket]);
      }
    }
    // And so only the users in those buckets move.
    let moved = 0;
    for (let i = 0; i < 10_000; i++) {
      const bucket = bucketOfUser(`user-${i}`);
      const changed = before.shardOf(bucket) !== after.shardOf(bucket);
      expect(changed).toBe(bucket >= 256 && bucket <= 300);
      if (changed) moved++;
    }
    expect(moved).toBeGreaterThan(0);
  });

  it.each([-1, 1024, 2.5])("rejects bucket %s", (bucket) => {
    expect(() => parseBucketMap("0-1023:0", 1).shardOf(bucket)).toThrow(RangeError);
  });
});
