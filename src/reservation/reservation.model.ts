/** Plain domain values of the reservation module. */

export type ReservationStatus = "pending" | "active" | "confirmed" | "released" | "expired" | "failed";

export interface ReservedItem {
  productId: string;
  /** The warehouse the stock is held in ('' while a pending reservation has not held it yet). */
  warehouseId: string;
  quantity: number;
}

export interface ReservationView {
  id: string;
  userId: string;
  status: ReservationStatus;
  items: ReservedItem[];
  expiresAt: Date;
  createdAt: Date;
  updatedAt: Date;
  version: number;
}

export interface ReserveInput {
  userId: string;
  items: { productId: string; quantity: number; warehouseId: string }[];
  /** Seconds, already defaulted and capped. */
  ttlSeconds: number;
  idempotencyKey: string;
}

export interface ListReservationsInput {
  userId: string;
  statuses: ReservationStatus[];
  pageSize: number;
  pageToken: string;
}

/** Statuses from which nothing changes any more. */
export const TERMINAL: ReadonlySet<ReservationStatus> = new Set([
  "confirmed",
  "released",
  "expired",
  "failed",
]);
