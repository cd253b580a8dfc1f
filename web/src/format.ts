import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import type { Money } from "../../gen/shop/common/v1/money_pb.js";
import { OrderStatus } from "../../gen/shop/order/v1/order_pb.js";
import { ReservationStatus } from "../../gen/shop/reservation/v1/reservation_pb.js";

/** 1299 EUR minor units -> "€12.99" in the browser's locale. */
export function formatMoney(money: Money | undefined): string {
  if (!money) return "";
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency: money.currencyCode });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  // Minor units are exact integers; dividing once here is only for display.
  return format.format(Number(money.amountMinor) / 10 ** digits);
}

/** OrderStatus.CONFIRMED -> "CONFIRMED". */
export function orderStatusName(status: OrderStatus): string {
  return OrderStatus[status] ?? String(status);
}

export function reservationStatusName(status: ReservationStatus): string {
  return ReservationStatus[status] ?? String(status);
}

export function formatTime(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toLocaleString() : "";
}

export function isoTime(ts: Timestamp | undefined): string {
  return ts ? timestampDate(ts).toISOString() : "";
}
