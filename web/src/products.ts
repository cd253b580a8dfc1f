import type { Product } from "../../gen/shop/inventory/v1/inventory_pb.js";
import { inventory } from "./api.js";
import { byId, h } from "./dom.js";
import { showError, whileBusy } from "./errors.js";
import { formatMoney } from "./format.js";

const pageSize = 20;

/** Called with the product and quantity when the buyer clicks Reserve. */
export type ReserveHandler = (product: Product, quantity: bigint) => Promise<void>;

/** The product list: ListProducts across all sellers, filtered by name, newest first, paged. */
export function initProducts(onReserve: ReserveHandler) {
  const rows = byId<HTMLTableSectionElement>("product-rows");
  const empty = byId<HTMLParagraphElement>("products-empty");
  const more = byId<HTMLButtonElement>("products-more");
  const search = byId<HTMLFormElement>("product-search");
  let nameContains = "";
  let nextPageToken = "";
  // Loads can overlap (a reload after a reservation, a search typed meanwhile): only the latest
  // one started is shown, so an older answer arriving last never replaces a newer list.
  let latest = 0;

  async function load(append: boolean): Promise<void> {
    const seq = ++latest;
    const page = await inventory.listProducts({
      nameContains,
      pageSize,
      pageToken: append ? nextPageToken : "",
    });
    if (seq !== latest) return;
    if (!append) {
      // A quantity the buyer typed survives the list being redrawn under it.
      const typed = typedQuantities(rows);
      rows.replaceChildren();
      rows.append(...page.products.map((p) => productRow(p, onReserve, typed.get(p.id))));
    } else {
      rows.append(...page.products.map((p) => productRow(p, onReserve)));
    }
    nextPageToken = page.nextPageToken;
    more.hidden = nextPageToken === "";
    empty.hidden = rows.childElementCount > 0;
  }

  search.addEventListener("submit", (event) => {
    event.preventDefault();
    nameContains = String(new FormData(search).get("q") ?? "").trim();
    const button = search.querySelector("button");
    if (button) void whileBusy(button, () => load(false));
  });
  more.addEventListener("click", () => void whileBusy(more, () => load(true)));

  return {
    /** Reloads the first page (after a reservation or an order changed the stock). */
    reload: () => load(false).catch(showError),
  };
}

/** The quantities typed into the shown rows, by product id (rows left at the default are not named). */
function typedQuantities(rows: HTMLTableSectionElement): Map<string, string> {
  const typed = new Map<string, string>();
  for (const row of rows.querySelectorAll<HTMLTableRowElement>("tr[data-product-id]")) {
    const input = row.querySelector<HTMLInputElement>("input[data-testid=quantity]");
    const id = row.dataset.productId;
    if (input && id && input.value !== input.defaultValue) typed.set(id, input.value);
  }
  return typed;
}

function productRow(product: Product, onReserve: ReserveHandler, typed?: string): HTMLTableRowElement {
  const available = product.stock.reduce((sum, level) => sum + level.available, 0n);
  const quantity = h("input", {
    type: "number",
    min: "1",
    max: String(available),
    value: "1",
    "aria-label": `Quantity of ${product.name}`,
    "data-testid": "quantity",
  });
  if (typed !== undefined) quantity.value = typed;
  const reserve = h("button", { type: "button", "data-testid": "reserve" }, "Reserve");
  reserve.disabled = available === 0n;
  reserve.addEventListener("click", () => {
    void whileBusy(reserve, () => onReserve(product, BigInt(quantity.valueAsNumber || 1)));
  });
  return h(
    "tr",
    { "data-testid": "product-row", "data-product-id": product.id, "data-sku": product.sku },
    h("td", { "data-testid": "product-name" }, product.name),
    h("td", {}, product.sku),
    h("td", { class: "num" }, formatMoney(product.price)),
    h("td", { class: "num", "data-testid": "product-available" }, String(available)),
    h("td", {}, quantity),
    h("td", {}, reserve),
  );
}
