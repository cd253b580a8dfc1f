import type { MigrationObject } from "@mikro-orm/core";
import { Migration0001Inventory } from "./0001-inventory.js";

/** Every migration, in order. Listed explicitly: no globbing, so bundles and tsx behave the same. */
export const migrations: MigrationObject[] = [{ name: "0001-inventory", class: Migration0001Inventory }];
