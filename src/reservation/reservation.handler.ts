import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ReservationSchema,
  type ReservationService as ReservationServiceDesc,
  ReservationStatus,
} from "../../gen/shop/reservation/v1/reservation_pb.js";
import { invalidArgument } from "../errors.js";
import { INVENTORY_LIMITS } from "../inventory/inventory.rules.js";
import { parseId } from "../shard/ids.js";
import { checkInt, checkPageSize, checkString, IDEMPOTENCY_KEY_RULE, USER_ID_RULE } from "../validation.js";
import type { ReservationView, ReservationStatus as Status } from "./reservation.model.js";
import { checkDistinctProducts, RESERVATION_LIMITS as L, ttlSeconds } from "./reservation.rules.js";
import type { ReservationService } from "./reservation.service.js";

const STATUS: Record<Status, ReservationStatus> = {
  pending: ReservationStatus.PENDING,
  active: ReservationStatus.ACTIVE,
  confirmed: ReservationStatus.CONFIRMED,
  released: ReservationStatus.RELEASED,
  expired: ReservationStatus.EXPIRED,
  failed: ReservationStatus.FAILED,
};
const FROM_PROTO = new Map(Object.entries(STATUS).map(([k, v]) => [v, k as Status]));

/** The ReservationService edge: protobuf in, validated plain values to the service, protobuf out. */
export function reservationHandler(
  service: ReservationService,
  ttl: { defaultS: number; maxS: number },
): ServiceImpl<typeof ReservationServiceDesc> {
  const userId = (v: string) => checkString(v, "user_id", USER_ID_RULE);
  const key = (v: string) => checkString(v, "idempotency_key", IDEMPOTENCY_KEY_RULE);
  const reservationId = (v: string) => {
    parseId(v, "res", "reservation_id");
    return v;
  };
  return {
    async createReservation(req) {
      const user = userId(req.userId);
      if (req.items.length === 0) throw invalidArgument("items", "is required");
      if (req.items.length > L.maxItems)
        throw invalidArgument("items", `must list at most ${L.maxItems} products`);
      const items = req.items.map((item, i) => {
        parseId(item.productId, "prd", `items[${i}].product_id`);
        return {
          productId: item.productId,
          quantity: checkInt(item.quantity, `items[${i}].quantity`, 1, L.maxQuantity),
          warehouseId:
            item.warehouseId === ""
              ? ""
              : checkString(item.warehouseId, `items[${i}].warehouse_id`, INVENTORY_LIMITS.warehouseId),
        };
      });
      checkDistinctProducts(
        items.map((i) => i.productId),
        "items",
      );
      const reservation = await service.reserve({
        userId: user,
        items,
        ttlSeconds: ttlSeconds(req.ttl, "ttl", ttl.defaultS, ttl.maxS),
        idempotencyKey: key(req.idempotencyKey),
      });
      return { reservation: reservationMsg(reservation) };
    },

    async getReservation(req) {
      return {
        reservation: reservationMsg(await service.get(userId(req.userId), reservationId(req.reservationId))),
      };
    },

    async listReservations(req) {
      const statuses = req.statuses.map((s, i) => {
        const status = FROM_PROTO.get(s);
        if (!status) throw invalidArgument(`statuses[${i}]`, "is not a known status");
        return status;
      });
      const page = await service.list({
        userId: userId(req.userId),
        statuses,
        pageSize: checkPageSize(req.pageSize, "page_size", L.defaultPageSize, L.maxPageSize),
        pageToken: checkString(req.pageToken, "page_token", { max: 1024 }),
      });
      return { reservations: page.items.map(reservationMsg), nextPageToken: page.nextPageToken };
    },

    async releaseReservation(req) {
      const r = await service.release(
        userId(req.userId),
        reservationId(req.reservationId),
        key(req.idempotencyKey),
      );
      return { reservation: reservationMsg(r) };
    },

    async extendReservation(req) {
      const user = userId(req.userId);
      const id = reservationId(req.reservationId);
      const seconds = ttlSeconds(req.ttl, "ttl", ttl.defaultS, ttl.maxS);
      return {
        reservation: reservationMsg(await service.extend(user, id, seconds, key(req.idempotencyKey))),
      };
    },
  };
}

function reservationMsg(r: ReservationView) {
  return create(ReservationSchema, {
    id: r.id,
    userId: r.userId,
    status: STATUS[r.status],
    items: r.items.map((i) => ({
      productId: i.productId,
      warehouseId: i.warehouseId,
      quantity: BigInt(i.quantity),
    })),
    expireTime: timestampFromDate(r.expiresAt),
    createTime: timestampFromDate(r.createdAt),
    updateTime: timestampFromDate(r.updatedAt),
    version: BigInt(r.version),
  });
}
