import { invalidArgument } from "../errors.js";
import { checkString, type StringRule } from "../validation.js";

/** Every limit of the inventory API, in one place (the .proto comments state the same numbers). */
export const INVENTORY_LIMITS = {
  sku: {
    min: 1,
    max: 64,
    pattern: /^[A-Za-z0-9][A-Za-z0-9._\-/]*$/,
    patternHint: "may contain letters, digits, '.', '_', '-', '/'",
  },
  name: { min: 1, max: 200 },
  description: { max: 4000 },
  category: { max: 100 },
  warehouseId: {
    min: 1,
    max: 64,
    pattern: /^[A-Za-z0-9._-]+$/,
    patternHint: "may contain letters, digits, '.', '_', '-'",
  },
  reason: { min: 1, max: 200 },
  nameContains: { max: 100 },
  maxPriceMinor: 1_000_000_000_000, // 10^12 minor units
  maxQuantity: 1_000_000_000,
  maxInitialWarehouses: 50,
  maxAvailabilityIds: 200,
  defaultPageSize: 20,
  maxPageSize: 100,
} as const satisfies Record<string, StringRule | number>;

/** Rejects a list of warehouses that names one twice (the first repeat is named). */
export function checkDistinctWarehouses(warehouseIds: string[], field: string): void {
  const seen = new Set<string>();
  warehouseIds.forEach((id, i) => {
    if (seen.has(id)) throw invalidArgument(`${field}[${i}].warehouse_id`, "names a warehouse twice");
    seen.add(id);
  });
}

export function checkWarehouseId(value: string, field: string): string {
  return checkString(value, field, INVENTORY_LIMITS.warehouseId);
}

/** Stock movement deltas per kind: how each column moves for `quantity` units. */
export const MOVEMENT_DELTAS = {
  received: { available: 1, held: 0, sold: 0, received: 1, writtenOff: 0 },
  written_off: { available: -1, held: 0, sold: 0, received: 0, writtenOff: 1 },
  held: { available: -1, held: 1, sold: 0, received: 0, writtenOff: 0 },
  released: { available: 1, held: -1, sold: 0, received: 0, writtenOff: 0 },
  sold: { available: 0, held: -1, sold: 1, received: 0, writtenOff: 0 },
  returned: { available: 1, held: 0, sold: -1, received: 0, writtenOff: 0 },
} as const;
