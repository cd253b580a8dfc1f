import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { OrderService, OrderSort, OrderStatus as PbStatus } from "../../gen/shop/order/v1/order_pb.js";
import type { App } from "../../src/app.js";
import type { OrderStatus } from "../../src/order/order.model.js";
import { checkOrders } from "../../src/order/order-check.js";
import { parseId } from "../../src/shard/ids.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, MAIN_TRANSPORTS, transportFor } from "../harness/clients.js";
import { expectError } from "../harness/errors.js";
import { insertOrders, order, prng, randomOrders, type SeededOrder } from "./seed-orders.js";

// Issue test 6: 5,000 random orders over the 3 shards; every filter and both sorts, per user and in
// operator scope, paged with small pages, equal a model; inserts between pages neither skip nor repeat.
// Other test files write orders concurrently: this file's orders have their own users and emails and
// a created_at window (2001) no other file uses. Operator-scope lists compared with the model are
// bounded by one of them; the one unbounded list is checked on this file's orders within it.

const SEED = 20_260_406;
const FROM = new Date("2001-01-01T00:00:00Z");
const TO = new Date("2001-03-01T00:00:00Z");
const users = Array.from({ length: 24 }, (_, i) => unique(`lo-user${i}`));
const emails = Array.from({ length: 6 }, (_, i) => `${unique(`lo-buyer${i}`)}@example.test`);

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

let app: App & { port: number };
const seeded: SeededOrder[] = [];
const byId = new Map<string, SeededOrder>();

// Generated now (deterministic but for the ids), written in beforeAll: the filter sets below take
// their boundary values from the data, and the test names must exist before any hook runs.
const initial = randomOrders({ count: 5000, users, emails, from: FROM, to: TO, rng: prng(SEED) });
// Children of some of users[0]'s orders: real rows that must never be listed.
const children = initial
  .filter((o) => o.userId === users[0])
  .slice(0, 40)
  .map((p) => order({ ...p, parentOrderId: p.id, paidMinor: 0, refundedMinor: 0 }));
/** Two millisecond instants that some orders were created at exactly (inclusive/exclusive bounds). */
const onMs = initial
  .filter((o) => o.createdUs % 1000n === 0n)
  .sort((a, b) => cmpBig(a.createdUs, b.createdUs));
const t1 = new Date(Number((onMs[Math.floor(onMs.length * 0.3)] as SeededOrder).createdUs / 1000n));
const t2 = new Date(Number((onMs[Math.floor(onMs.length * 0.7)] as SeededOrder).createdUs / 1000n));

function remember(orders: SeededOrder[]): void {
  for (const o of orders) {
    seeded.push(o);
    byId.set(o.id, o);
  }
}

beforeAll(async () => {
  app = await startTestApp();
  await insertOrders(app.shards, [...initial, ...children]);
  remember([...initial, ...children]);
}, 120_000);
afterAll(async () => {
  await app?.shutdown();
});

type Sort = "newest" | "highest_total";
interface Spec {
  userId?: string;
  after?: Date;
  before?: Date;
  statuses?: OrderStatus[];
  min?: number;
  max?: number;
  email?: string;
  includeArchived?: boolean;
  sort: Sort;
}

/** The model: the spec applied to every seeded order, in the contract's order. */
function model(s: Spec): string[] {
  const afterUs = s.after ? BigInt(s.after.getTime()) * 1000n : null;
  const beforeUs = s.before ? BigInt(s.before.getTime()) * 1000n : null;
  const rows = seeded.filter(
    (o) =>
      o.parentOrderId === "" &&
      (s.userId === undefined || o.userId === s.userId) &&
      (afterUs === null || o.createdUs >= afterUs) &&
      (beforeUs === null || o.createdUs < beforeUs) &&
      (!s.statuses?.length || s.statuses.includes(o.status)) &&
      (s.min === undefined || o.totalMinor >= s.min) &&
      (s.max === undefined || o.totalMinor <= s.max) &&
      (s.email === undefined || o.customerEmail === s.email) &&
      (s.includeArchived || !o.archived),
  );
  rows.sort(
    (a, b) =>
      (s.sort === "highest_total" ? b.totalMinor - a.totalMinor : 0) ||
      cmpBig(b.createdUs, a.createdUs) ||
      cmpStr(b.id, a.id),
  );
  return rows.map((o) => o.id);
}

const PB_STATUS: Record<OrderStatus, PbStatus> = {
  pending: PbStatus.PENDING,
  confirmed: PbStatus.CONFIRMED,
  processing: PbStatus.PROCESSING,
  shipped: PbStatus.SHIPPED,
  delivered: PbStatus.DELIVERED,
  cancelled: PbStatus.CANCELLED,
};

function request(s: Spec, pageSize: number, pageToken: string) {
  return {
    userId: s.userId ?? "",
    createdAfter: s.after ? timestampFromDate(s.after) : undefined,
    createdBefore: s.before ? timestampFromDate(s.before) : undefined,
    statuses: (s.statuses ?? []).map((st) => PB_STATUS[st]),
    minTotalMinor: s.min === undefined ? undefined : BigInt(s.min),
    maxTotalMinor: s.max === undefined ? undefined : BigInt(s.max),
    customerEmail: s.email ?? "",
    includeArchived: s.includeArchived ?? false,
    sort: s.sort === "newest" ? OrderSort.NEWEST : OrderSort.HIGHEST_TOTAL,
    pageSize,
    pageToken,
  };
}

const orders = (transport: string = MAIN_TRANSPORTS[1]) =>
  client(OrderService, transportFor(transport, app.port));

async function listPage(s: Spec, pageSize: number, pageToken: string, transport?: string) {
  const page = await orders(transport).listOrders(request(s, pageSize, pageToken));
  expect(page.orders.length).toBeLessThanOrEqual(pageSize);
  return {
    ids: page.orders.map((o) => o.id),
    createMs: page.orders.map((o) => (o.createTime ? timestampMs(o.createTime) : Number.NaN)),
    nextPageToken: page.nextPageToken,
  };
}

async function pageThrough(s: Spec, pageSize: number, transport?: string, token = ""): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = token;
  for (let guard = 0; guard < 10_000; guard++) {
    const page = await listPage(s, pageSize, pageToken, transport);
    ids.push(...page.ids);
    if (!page.nextPageToken) return ids;
    expect(page.ids.length).toBe(pageSize); // only the last page may be short
    pageToken = page.nextPageToken;
  }
  throw new Error("pagination did not end");
}

/**
 * The filter sets: none, each filter alone, every pair of filters, and all of them at once. Values
 * sit on exact boundaries (t1/t2 are created_at values of seeded orders, totals are seeded values).
 */
function filterSets(): [string, Omit<Spec, "sort" | "userId">][] {
  const dims: Record<string, Omit<Spec, "sort" | "userId">[]> = {
    created: [{ after: t1 }, { before: t2 }, { after: t1, before: t2 }],
    statuses: [{ statuses: ["shipped"] }, { statuses: ["pending", "cancelled", "pending"] }],
    total: [{ min: 5000 }, { max: 15_000 }, { min: 5000, max: 15_000 }],
    email: [{ email: emails[0] as string }],
    archived: [{ includeArchived: true }],
  };
  const names = Object.keys(dims);
  const index = (name: string, k: number) => k % (dims[name]?.length ?? 1);
  const value = (name: string, k: number) => dims[name]?.[index(name, k)] as Omit<Spec, "sort" | "userId">;
  const sets: [string, Omit<Spec, "sort" | "userId">][] = [["no filter", {}]];
  for (const name of names) {
    (dims[name] ?? []).forEach((v, k) => {
      sets.push([`${name}#${k}`, v]);
    });
  }
  let k = 0;
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++, k++) {
      const [a, b] = [names[i] as string, names[j] as string];
      sets.push([`${a}#${index(a, k)}+${b}#${index(b, k + 1)}`, { ...value(a, k), ...value(b, k + 1) }]);
    }
  }
  sets.push(["all filters", Object.assign({}, ...names.map((n) => value(n, 2)))]);
  sets.push(["all filters (other values)", Object.assign({}, ...names.map((n) => value(n, 0)))]);
  return sets;
}

/** Operator scope sees every test file's orders: bound it to this file's emails or created window. */
function operator(f: Omit<Spec, "sort" | "userId">, sort: Sort): Spec {
  return f.email ? { ...f, sort } : { after: FROM, before: TO, ...f, sort };
}

describe("ListOrders", () => {
  it("starts from seeded orders that pass the order consistency check", async () => {
    const violations = await Promise.all(app.shards.shards.map((s) => checkOrders(s.fork())));
    expect(violations.flat().filter((v) => byId.has(v.orderId))).toEqual([]);
  });

  for (const sort of ["newest", "highest_total"] as const) {
    for (const scope of ["user", "operator"] as const) {
      filterSets().forEach(([label, f], n) => {
        it(`${scope} scope, ${sort}, ${label}: pages of 7 equal the model`, async () => {
          // The first user from users[n % 3] on whose orders the filters leave something to list.
          const rotated = [...users.slice(n % 3), ...users.slice(0, n % 3)];
          const userId = rotated.find((u) => model({ ...f, userId: u, sort }).length > 0) ?? "";
          const spec = scope === "user" ? { ...f, userId, sort } : operator(f, sort);
          const expected = model(spec);
          expect(expected.length).toBeGreaterThan(0);
          expect(await pageThrough(spec, 7, MAIN_TRANSPORTS[n % 2])).toEqual(expected);
        }, 120_000);
      });
    }
  }

  it("excludes archived orders by default and lists them with include_archived", async () => {
    const archived = seeded.find((o) => o.userId === users[3] && o.archived && !o.parentOrderId);
    expect(archived).toBeDefined();
    const spec: Spec = { userId: users[3] as string, sort: "newest" };
    expect(await pageThrough(spec, 50)).not.toContain(archived?.id);
    expect(await pageThrough({ ...spec, includeArchived: true }, 50)).toContain(archived?.id);
  });

  it("never lists child orders", async () => {
    const children = seeded.filter((o) => o.parentOrderId !== "").map((o) => o.id);
    expect(children.length).toBeGreaterThan(0);
    const ids = await pageThrough({ userId: users[0] as string, includeArchived: true, sort: "newest" }, 100);
    expect(ids.filter((id) => children.includes(id))).toEqual([]);
  });

  it("in operator scope without filters, lists every order in one global order", async () => {
    // Other files' orders are interleaved (and may arrive while paging): this file's orders must
    // appear exactly once each, in the model's relative order, and the whole list newest first.
    const ids: string[] = [];
    const times: number[] = [];
    let pageToken = "";
    do {
      const page = await listPage({ sort: "newest" }, 100, pageToken);
      ids.push(...page.ids);
      times.push(...page.createMs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(new Set(ids).size).toBe(ids.length);
    expect(times.every((t, i) => i === 0 || t <= (times[i - 1] as number))).toBe(true);
    expect(ids.filter((id) => byId.has(id))).toEqual(model({ sort: "newest" }));
  }, 120_000);

  for (const sort of ["newest", "highest_total"] as const) {
    for (const scope of ["user", "operator"] as const) {
      it(`${scope} scope, ${sort}: orders inserted between pages are neither skipped nor repeated`, async () => {
        const spec: Spec =
          scope === "user" ? { userId: users[4] as string, sort } : { email: emails[1] as string, sort };
        await insertBetweenPages(spec);
      });
    }
  }

  it("refuses a malformed page token, one from other filters, and a forged one, naming page_token", async () => {
    const spec: Spec = { userId: users[5] as string, sort: "newest" };
    const first = await listPage(spec, 3, "");
    expect(first.nextPageToken).not.toBe("");
    const call = (s: Spec, token: string) => orders().listOrders(request(s, 3, token));
    await expectError(call(spec, "not-a-token"), Code.InvalidArgument, "page_token");
    await expectError(
      call({ ...spec, sort: "highest_total" }, first.nextPageToken),
      Code.InvalidArgument,
      "page_token",
    );
    await expectError(call({ ...spec, min: 1 }, first.nextPageToken), Code.InvalidArgument, "page_token");
    await expectError(
      call({ ...spec, userId: users[6] as string }, first.nextPageToken),
      Code.InvalidArgument,
      "page_token",
    );
    const decoded = JSON.parse(Buffer.from(first.nextPageToken, "base64url").toString("utf8"));
    for (const a of [[1, "x"], ["12.5", "ord_x"], ["1"], ["1", "ord_x", "extra"], ["1 or 1=1", "ord_x"]]) {
      const forged = Buffer.from(JSON.stringify({ ...decoded, a })).toString("base64url");
      await expectError(call(spec, forged), Code.InvalidArgument, "page_token");
    }
  });

  it("clamps a forged cursor to the listing's range: before it, the first page; past it, an empty last page", async () => {
    const newest: Spec = { userId: users[7] as string, after: t1, before: t2, sort: "newest" };
    const highest: Spec = { userId: users[7] as string, min: 1000, max: 9000, sort: "highest_total" };
    for (const spec of [newest, highest]) {
      const first = await listPage(spec, 7, "");
      expect(first.ids).toEqual(model(spec).slice(0, 7));
      expect(first.nextPageToken).not.toBe("");
      // A token the server cannot tell from its own: the listing's hash, any key of the right shape.
      const { l } = JSON.parse(Buffer.from(first.nextPageToken, "base64url").toString("utf8"));
      const forged = (lead: bigint) =>
        Buffer.from(
          JSON.stringify({ v: 1, l, a: [String(lead), ...(spec.sort === "newest" ? [] : ["0"]), "ord_Z"] }),
        ).toString("base64url");
      const [low, high] =
        spec.sort === "newest"
          ? [BigInt(t1.getTime()) * 1000n, BigInt(t2.getTime()) * 1000n] // [after, before)
          : [BigInt(spec.min as number), BigInt(spec.max as number) + 1n]; // [min, max]
      for (const lead of [high, high + 10n ** 15n]) {
        const page = await listPage(spec, 7, forged(lead));
        expect(page.ids).toEqual(first.ids);
        expect(page.nextPageToken).toBe(first.nextPageToken);
      }
      for (const lead of [low - 1n, low - 10n ** 15n]) {
        expect(await listPage(spec, 7, forged(lead))).toEqual({ ids: [], createMs: [], nextPageToken: "" });
      }
    }
  });

  it("fails with UNAVAILABLE in operator scope when a shard is down, and still serves one user's list", async () => {
    const urls = inject("shardUrls");
    const down = await startTestApp({
      shardUrls: [urls[0] as string, urls[1] as string, "postgres://postgres:secret@127.0.0.1:1/down_db"],
    });
    try {
      const c = client(OrderService, transportFor(MAIN_TRANSPORTS[1], down.port));
      const err = await expectError(
        c.listOrders(request({ email: emails[2] as string, sort: "newest" }, 7, "")),
        Code.Unavailable,
      );
      expect(err.rawMessage).not.toMatch(/127\.0\.0\.1|down_db|secret|select/i);
      const healthy = users.find((u) => down.shards.forUser(u).index !== 2) as string;
      const page = await c.listOrders(request({ userId: healthy, sort: "newest" }, 7, ""));
      expect(page.orders.map((o) => o.id)).toEqual(model({ userId: healthy, sort: "newest" }).slice(0, 7));
    } finally {
      await down.shutdown();
    }
  });
});

/**
 * Serves a first page, then inserts four orders matching `spec`: one that sorts first (must not
 * appear), one with the last served row's exact key and a greater id (sorts before the cursor: must
 * not appear), one with that key and a smaller id, and one that sorts last (both must appear once).
 */
async function insertBetweenPages(spec: Spec): Promise<void> {
  const first = await listPage(spec, 7, "");
  expect(first.nextPageToken).not.toBe("");
  const last = byId.get(first.ids.at(-1) as string) as SeededOrder;
  const other = () => users[Math.floor(Math.random() * users.length)] as string;
  const idTime = parseId(last.id, "ord", "id").timeMs;
  const listed = new Set(model(spec));
  const matching = seeded.filter((o) => listed.has(o.id));
  const maxTotal = Math.max(...matching.map((o) => o.totalMinor));
  const maxCreated = matching
    .map((o) => o.createdUs)
    .sort(cmpBig)
    .at(-1) as bigint;
  const base = {
    userId: spec.userId ?? other(),
    customerEmail: spec.email ?? last.customerEmail,
    status: "pending" as const,
    currencyCode: "EUR",
    paidMinor: 0,
    refundedMinor: 0,
    archived: false,
    totalMinor: last.totalMinor,
    createdUs: last.createdUs,
  };
  const firstOfAll =
    spec.sort === "newest"
      ? order({ ...base, createdUs: maxCreated + 1n })
      : order({ ...base, totalMinor: maxTotal + 100 });
  const tieBefore = order({ ...base, userId: spec.userId ?? other(), idTimeMs: idTime + 1 });
  const tieAfter = order({ ...base, userId: spec.userId ?? other(), idTimeMs: idTime - 1 });
  const lastOfAll =
    spec.sort === "newest"
      ? order({ ...base, createdUs: BigInt(FROM.getTime()) * 1000n })
      : order({ ...base, totalMinor: 0 });
  const added = [firstOfAll, tieBefore, tieAfter, lastOfAll];
  await insertOrders(app.shards, added);
  remember(added);

  const rest = await pageThrough(spec, 7, undefined, first.nextPageToken);
  const ids = [...first.ids, ...rest];
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids).not.toContain(firstOfAll.id);
  expect(ids).not.toContain(tieBefore.id);
  expect(ids.filter((id) => id === tieAfter.id || id === lastOfAll.id)).toHaveLength(2);
  expect(ids).toEqual(model(spec).filter((id) => id !== firstOfAll.id && id !== tieBefore.id));
}
