import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService, type Product, ProductSort } from "../../gen/shop/inventory/v1/inventory_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { client, transportFor } from "../harness/clients.js";
import { seedProduct } from "./seed.js";

let app: App & { port: number };
const inv = () => client(InventoryService, transportFor("grpc-h2c", app.port));
const category = unique("cat");
const sellers = [1, 2, 3, 4, 5, 6].map((i) => unique(`lister${i}`));
const seeded: Product[] = [];

beforeAll(async () => {
  app = await startTestApp();
  const names = ["Desk lamp", "Floor LAMP", "Chair", "Table", "lampshade", "Stool"];
  for (let i = 0; i < 36; i++) {
    const price = 100 + ((i * 37) % 9) * 50; // repeated prices exercise the id tie-break
    seeded.push(
      await seedProduct(inv(), sellers[i % sellers.length] as string, {
        category,
        name: names[i % names.length],
        price,
      }),
    );
  }
}, 120_000);
afterAll(async () => {
  await app?.shutdown();
});

type Filter = { sellerId?: string; nameContains?: string; minPriceMinor?: bigint; maxPriceMinor?: bigint };

function model(sort: ProductSort, f: Filter): string[] {
  const rows = seeded.filter(
    (p) =>
      (!f.sellerId || p.sellerId === f.sellerId) &&
      (!f.nameContains || p.name.toLowerCase().includes(f.nameContains.toLowerCase())) &&
      (f.minPriceMinor === undefined || (p.price?.amountMinor ?? 0n) >= f.minPriceMinor) &&
      (f.maxPriceMinor === undefined || (p.price?.amountMinor ?? 0n) <= f.maxPriceMinor),
  );
  const key = (p: Product) => [Number(p.price?.amountMinor), p.id] as const;
  const cmpId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  rows.sort((a, b) => {
    if (sort === ProductSort.NEWEST) return cmpId(b.id, a.id);
    const [pa, ia] = key(a);
    const [pb, ib] = key(b);
    const c = pa !== pb ? pa - pb : cmpId(ia, ib);
    return sort === ProductSort.PRICE_DESC ? -c : c;
  });
  return rows.map((p) => p.id);
}

async function pageThrough(sort: ProductSort, f: Filter, pageSize: number): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = "";
  for (let guard = 0; guard < 100; guard++) {
    const page = await inv().listProducts({ ...f, category, sort, pageSize, pageToken });
    expect(page.products.length).toBeLessThanOrEqual(pageSize);
    ids.push(...page.products.map((p) => p.id));
    if (!page.nextPageToken) return ids;
    pageToken = page.nextPageToken;
  }
  throw new Error("pagination did not end");
}

const filters: [string, () => Filter][] = [
  ["all shards", () => ({})],
  ["one seller", () => ({ sellerId: sellers[2] })],
  ["name contains, any case", () => ({ nameContains: "LaMp" })],
  ["price range", () => ({ minPriceMinor: 200n, maxPriceMinor: 400n })],
  ["seller + name + price", () => ({ sellerId: sellers[0], nameContains: "lamp", minPriceMinor: 150n })],
];
const sorts = [ProductSort.NEWEST, ProductSort.PRICE_ASC, ProductSort.PRICE_DESC];

describe("ListProducts", () => {
  for (const [label, filter] of filters) {
    for (const sort of sorts) {
      it(`pages ${label} sorted ${ProductSort[sort]} exactly like the model`, async () => {
        const expected = model(sort, filter());
        expect(expected.length).toBeGreaterThan(0);
        expect(await pageThrough(sort, filter(), 4)).toEqual(expected);
      });
    }
  }

  it("neither skips nor repeats when products are created between pages", async () => {
    const first = await inv().listProducts({ category, sort: ProductSort.PRICE_ASC, pageSize: 5 });
    const cheap = await seedProduct(inv(), unique("late"), { category, price: 1 }); // sorts before the cursor
    const dear = await seedProduct(inv(), unique("late"), { category, price: 99_999 }); // sorts after it
    const ids = first.products.map((p) => p.id);
    let token = first.nextPageToken;
    while (token) {
      const page = await inv().listProducts({
        category,
        sort: ProductSort.PRICE_ASC,
        pageSize: 5,
        pageToken: token,
      });
      ids.push(...page.products.map((p) => p.id));
      token = page.nextPageToken;
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toContain(dear.id);
    expect(ids).not.toContain(cheap.id);
    expect(ids.filter((id) => id !== dear.id)).toEqual(model(ProductSort.PRICE_ASC, {}));
    seeded.push(cheap, dear);
  });

  it("refuses a page token used with other filters", async () => {
    const first = await inv().listProducts({ category, pageSize: 2 });
    await expect(
      inv().listProducts({ category, sort: ProductSort.PRICE_ASC, pageToken: first.nextPageToken }),
    ).rejects.toThrow(/page_token/);
  });
});
