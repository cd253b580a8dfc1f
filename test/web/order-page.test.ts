import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryService } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { OrderService, OrderStatus } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationService } from "../../gen/shop/reservation/v1/reservation_pb.js";
import type { App } from "../../src/app.js";
import { startTestApp, unique } from "../harness/app.js";
import { userToken } from "../harness/auth.js";
import { client, transportFor } from "../harness/clients.js";
import { seedProduct } from "../inventory/seed.js";

// Issue 6: the browser page (web/) in real headless Chromium, against a real server. The page is
// built here with VITE_API_URL pointing at this run's API (its port is picked at start, so a build
// from an earlier run cannot be reused; vite builds it in about a second), served from one loopback
// port that CORS allows, and from a second one that it does not.

const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const webDir = fileURLToPath(new URL("../../web/", import.meta.url));
const screenshotPath = fileURLToPath(new URL("../../test-results/order-page.png", import.meta.url));
/** A hang guard for one step in the page, not a latency target. */
const STEP_MS = 10_000;

type TestApp = App & { port: number };
let app: TestApp;
let api: string;
let allowed: StaticServer;
let notAllowed: StaticServer;
let browser: Browser;
let distDir: string;

beforeAll(async () => {
  // Fail, never skip: a CI machine without the browser must not pass silently.
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `${chromiumPath} is missing: install Debian's chromium (apt-get install -y --no-install-recommends chromium; .ci/run does) or set CHROMIUM_PATH`,
    );
  }
  const viteBin = join(webDir, "node_modules", "vite", "bin", "vite.js");
  if (!existsSync(viteBin)) throw new Error("web/node_modules is missing: run `npm ci --prefix web`");

  distDir = await mkdtemp(join(tmpdir(), "shop-web-"));
  [allowed, notAllowed] = await Promise.all([serveStatic(distDir), serveStatic(distDir)]);
  app = await startTestApp({ corsOrigins: [allowed.origin] });
  api = `http://127.0.0.1:${app.port}`;
  [browser] = await Promise.all([
    chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    }),
    promisify(execFile)(process.execPath, [viteBin, "build", "--outDir", distDir, "--emptyOutDir"], {
      cwd: webDir,
      env: { ...process.env, VITE_API_URL: api },
      timeout: 60_000,
    }),
  ]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([app?.shutdown(), allowed?.close(), notAllowed?.close()]);
  if (distDir) await rm(distDir, { recursive: true, force: true });
});

describe("the order page in Chromium", () => {
  it("buys a product and shows the order's status change live, with its history", async () => {
    const transport = transportFor("connect-json-http1", app.port);
    const inv = client(InventoryService, transport);
    const ord = client(OrderService, transport);
    // A unique name: the page searches for it, so other test files' products never crowd it out.
    const name = `Web mug ${unique("m")}`;
    const product = await seedProduct(inv, unique("seller"), { name, price: 1299, stock: { main: 5 } });
    const buyer = unique("buyer");

    const page = await browser.newPage();
    const pageErrors = collectPageErrors(page);
    await page.goto(`${allowed.origin}/`);

    // The one place the buyer is named: the bearer token (the page shows its `sub`).
    expect(await page.getByTestId("user-id").textContent()).toBe("signed out");
    const tokenInput = page.getByTestId("token");
    await tokenInput.fill(userToken(buyer));
    await tokenInput.press("Tab");
    expect(await page.getByTestId("user-id").textContent()).toBe(buyer);

    await page.getByTestId("product-search").fill(name);
    await page.getByTestId("search-products").click();
    const row = page.getByTestId("product-row").filter({ hasText: name });
    await row.waitFor({ timeout: STEP_MS });
    expect(await row.getAttribute("data-product-id")).toBe(product.id);
    expect(await row.getByTestId("product-available").textContent()).toBe("5");

    await row.getByTestId("quantity").fill("2");
    await row.getByTestId("reserve").click();
    const checkout = page.getByTestId("checkout");
    await checkout.waitFor({ timeout: STEP_MS });
    expect(await page.getByTestId("reservation-status").textContent()).toBe("ACTIVE");
    expect(await page.getByTestId("reservation-item").textContent()).toContain(`2 × ${name}`);
    await poll(() => row.getByTestId("product-available").textContent(), "3");

    await page.getByTestId("customer-email").fill("web-buyer@example.com");
    await page.getByTestId("place-order").click();
    const orderSection = page.getByTestId("order");
    await orderSection.waitFor({ timeout: STEP_MS });
    expect(await checkout.isHidden()).toBe(true);
    const orderId = await orderSection.getAttribute("data-order-id");
    if (!orderId) throw new Error("the order section names no order");
    await poll(() => page.getByTestId("order-status").textContent(), "PENDING");
    await poll(() => page.getByTestId("stream-state").textContent(), "live");
    await poll(() => historyStatuses(page), ["PENDING"]);

    // The API agrees: the buyer's order, from the reservation, priced by the server.
    const { order } = await ord.getOrder({ userId: buyer, orderId });
    expect(order?.status).toBe(OrderStatus.PENDING);
    expect(order?.customerEmail).toBe("web-buyer@example.com");
    expect(order?.total?.amountMinor).toBe(2598n);
    expect(await page.getByTestId("order-number").textContent()).toBe(order?.orderNumber);

    // Status changes made through the API reach the open page over WatchOrder, without a reload.
    const navigations: string[] = [];
    page.on("framenavigated", (frame) => navigations.push(frame.url()));
    let version = order?.version ?? 0n;
    const seen = ["PENDING"];
    for (const status of [OrderStatus.CONFIRMED, OrderStatus.PROCESSING, OrderStatus.SHIPPED]) {
      const res = await ord.updateOrderStatus({
        orderId,
        status,
        expectedVersion: version,
        reason: `web test: ${OrderStatus[status]}`,
        idempotencyKey: unique("status"),
      });
      version = res.order?.version ?? 0n;
      seen.push(OrderStatus[status]);
      await poll(() => page.getByTestId("order-status").textContent(), OrderStatus[status]);
      await poll(() => historyStatuses(page), seen);
    }
    expect(navigations).toEqual([]);
    const last = page.getByTestId("history-entry").last();
    expect(await last.getAttribute("data-version")).toBe(String(version));
    expect(await last.textContent()).toContain("PROCESSING → SHIPPED (web test: SHIPPED)");

    await mkdir(fileURLToPath(new URL(".", `file://${screenshotPath}`)), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    expect((await stat(screenshotPath)).size).toBeGreaterThan(1000);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 90_000);

  it("shows the newest product list when answers arrive out of order, and keeps a typed quantity", async () => {
    const transport = transportFor("connect-json-http1", app.port);
    const inv = client(InventoryService, transport);
    const name = `Web plate ${unique("p")}`;
    const product = await seedProduct(inv, unique("seller"), { name, price: 800, stock: { main: 9 } });

    const page = await browser.newPage();
    const pageErrors = collectPageErrors(page);
    await page.goto(`${allowed.origin}/`);
    // The first ListProducts (the unfiltered list the token loads) is held until the search's has
    // been shown; it then arrives last and must not replace the search's answer.
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let listCalls = 0;
    await page.route("**/shop.inventory.v1.InventoryService/ListProducts", async (route) => {
      if (route.request().method() === "POST" && ++listCalls === 1) await held;
      await route.continue();
    });
    const tokenInput = page.getByTestId("token");
    await tokenInput.fill(userToken(unique("buyer")));
    await tokenInput.press("Tab");
    await expect.poll(() => listCalls, { timeout: STEP_MS, interval: 20 }).toBe(1);

    await page.getByTestId("product-search").fill(name);
    await page.getByTestId("search-products").click();
    const rows = page.getByTestId("product-row");
    await rows.first().waitFor({ timeout: STEP_MS });
    expect(await rows.evaluateAll((all) => all.map((r) => r.getAttribute("data-product-id")))).toEqual([
      product.id,
    ]);

    const stale = page.waitForResponse(
      (res) => res.url().endsWith("/ListProducts") && res.request().method() === "POST",
    );
    release();
    await stale;
    // Give the page a turn to (wrongly) draw the stale answer before looking.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));
    expect(await rows.evaluateAll((all) => all.map((r) => r.getAttribute("data-product-id")))).toEqual([
      product.id,
    ]);

    // A reload of the list (the search again) keeps what the buyer typed in the row.
    await rows.first().getByTestId("quantity").fill("4");
    const reloaded = page.waitForResponse(
      (res) => res.url().endsWith("/ListProducts") && res.request().method() === "POST",
    );
    await page.getByTestId("search-products").click();
    await reloaded;
    await poll(() => page.getByTestId("search-products").isEnabled(), true);
    expect(await rows.first().getByTestId("quantity").inputValue()).toBe("4");
    expect(listCalls).toBe(3);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 60_000);

  it("is refused by CORS from an origin that is not listed", async () => {
    const page = await browser.newPage();
    await page.goto(`${notAllowed.origin}/`);
    const token = userToken(unique("buyer"));
    // The browser withholds the answer (the preflight for Authorization is refused).
    const outcome = await page.evaluate(listProductsFromPage, { api, token });
    expect(outcome).toMatch(/^TypeError: /);
    await page.close();

    // The same call from the listed origin succeeds (so the refusal above is CORS, not the call).
    const listed = await browser.newPage();
    await listed.goto(`${allowed.origin}/`);
    expect(await listed.evaluate(listProductsFromPage, { api, token })).toBe("200");
    await listed.close();
  });

  it("refuses Connect requests without Connect-Protocol-Version", async () => {
    const authorization = `Bearer ${userToken(unique("buyer"))}`;
    const post = await fetch(`${api}/shop.inventory.v1.InventoryService/ListProducts`, {
      method: "POST",
      headers: { "Content-Type": "application/json", authorization },
      body: "{}",
    });
    expect(post.status).toBe(400);
    const get = await fetch(
      `${api}/shop.inventory.v1.InventoryService/ListProducts?encoding=json&message=%7B%7D`,
      { headers: { authorization } },
    );
    expect(get.status).toBe(400);
    // The same calls with the header are answered.
    const ok = await fetch(`${api}/shop.inventory.v1.InventoryService/ListProducts`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Connect-Protocol-Version": "1", authorization },
      body: "{}",
    });
    expect(ok.status).toBe(200);
  });

  it("answers a Connect GET only for RPCs without side effects", async () => {
    const page = await browser.newPage();
    await page.goto(`${allowed.origin}/`);
    const token = userToken(unique("buyer"));
    const get = (path: string) => page.evaluate(connectGet, { api, path, token });
    expect(await get("shop.inventory.v1.InventoryService/ListProducts")).toBe(200);
    expect(await get("shop.order.v1.OrderService/CreateOrder")).toBe(405);
    expect(await get("shop.order.v1.OrderService/UpdateOrderStatus")).toBe(405);
    expect(await get("shop.reservation.v1.ReservationService/CreateReservation")).toBe(405);
    await page.close();
  });

  it("marks no mutating RPC as having no side effects (which would allow GET)", () => {
    const readOnly = /^(Get|List|Search|Check)[A-Z]/;
    for (const service of [InventoryService, ReservationService, OrderService]) {
      for (const method of service.methods) {
        if (method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) {
          expect(method.name, `${service.typeName}.${method.name}`).toMatch(readOnly);
        }
      }
    }
  });
});

/** Runs in the page: a Connect POST to ListProducts; "200", or the error fetch threw. */
async function listProductsFromPage({ api: apiUrl, token }: { api: string; token: string }): Promise<string> {
  try {
    const res = await fetch(`${apiUrl}/shop.inventory.v1.InventoryService/ListProducts`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Connect-Protocol-Version": "1",
        Authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ pageSize: 1 }),
    });
    return String(res.status);
  } catch (error) {
    return String(error);
  }
}

/** Runs in the page: a Connect GET (the form connect-web uses for NO_SIDE_EFFECTS RPCs). */
async function connectGet({
  api: apiUrl,
  path,
  token,
}: {
  api: string;
  path: string;
  token: string;
}): Promise<number> {
  const query = new URLSearchParams({ connect: "v1", encoding: "json", message: "{}" });
  const res = await fetch(`${apiUrl}/${path}?${query}`, { headers: { Authorization: `Bearer ${token}` } });
  return res.status;
}

/** The history list's statuses, oldest first. */
function historyStatuses(page: Page): Promise<string[]> {
  return page
    .getByTestId("history-entry")
    .evaluateAll((entries) => entries.map((e) => e.getAttribute("data-to-status") ?? ""));
}

/** Waits until `read()` equals `want` (the page updates asynchronously). */
async function poll<T>(read: () => Promise<T>, want: T): Promise<void> {
  await expect.poll(read, { timeout: STEP_MS, interval: 50 }).toEqual(want);
}

function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  return errors;
}

interface StaticServer {
  origin: string;
  close(): Promise<void>;
}

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

/** Serves the files under `root` on a free loopback port (the built page: index.html and assets/). */
async function serveStatic(root: string): Promise<StaticServer> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = normalize(join(root, path.endsWith("/") ? `${path}index.html` : path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file).then(
      (body) =>
        res
          .writeHead(200, {
            "Content-Type": contentTypes[extname(file)] ?? "application/octet-stream",
            "Cache-Control": "no-store",
          })
          .end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
