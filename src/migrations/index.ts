import type { MigrationObject } from "@mikro-orm/core";
import { Migration0001Inventory } from "./0001-inventory.js";
import { Migration0002Reservations } from "./0002-reservations.js";
import { Migration0003Orders } from "./0003-orders.js";
import { Migration0004ReserveFunction } from "./0004-reserve-function.js";
import { Migration0005OrderListIndexes } from "./0005-order-list-indexes.js";
import { Migration0006HoldSettlements } from "./0006-hold-settlements.js";

/** Every migration, in order. Listed explicitly: no globbing, so bundles and tsx behave the same. */
export const migrations: MigrationObject[] = [
  { name: "0001-inventory", class: Migration0001Inventory },
  { name: "0002-reservations", class: Migration0002Reservations },
  { name: "0003-orders", class: Migration0003Orders },
  { name: "0004-reserve-function", class: Migration0004ReserveFunction },
  { name: "0005-order-list-indexes", class: Migration0005OrderListIndexes },
  { name: "0006-hold-settlements", class: Migration0006HoldSettlements },
];
