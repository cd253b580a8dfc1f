import { defineEntity, p } from "@mikro-orm/core";

/** The first answer to a mutating request, kept under its (scope, key). */
export const IdempotencyRecord = defineEntity({
  name: "IdempotencyRecord",
  tableName: "idempotency_records",
  properties: {
    scope: p.string().primary(),
    key: p.string().primary(),
    requestHash: p.string(),
    response: p.json(),
    createdAt: p.datetime(),
  },
});
