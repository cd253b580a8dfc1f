import { randomBytes } from "node:crypto";
import { invalidArgument } from "../errors.js";
import { BUCKET_COUNT } from "./router.js";

/**
 * Entity ids: `<kind>_<26 Crockford base32 characters>` encoding 128 bits:
 * 48 bits of milliseconds since the epoch | 16 bits of logical bucket | 64 random bits.
 * The time comes first, so ids sort by creation time as plain strings; the bucket routes the id to
 * its shard without a lookup, and never changes when the bucket moves to another shard.
 */
export type IdKind = "prd" | "mov" | "res" | "hld" | "ord" | "pay" | "evt";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));
const BODY_LENGTH = 26;

/** Makes a new id of the given kind in the given bucket. */
export function newId(kind: IdKind, bucket: number, nowMs: number = Date.now()): string {
  if (!Number.isInteger(bucket) || bucket < 0 || bucket >= BUCKET_COUNT)
    throw new RangeError(`bucket ${bucket}`);
  if (!Number.isInteger(nowMs) || nowMs < 0 || nowMs >= 2 ** 48) throw new RangeError(`time ${nowMs}`);
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(nowMs, 0, 6);
  bytes.writeUInt16BE(bucket, 6);
  randomBytes(8).copy(bytes, 8);
  return `${kind}_${encode(bytes)}`;
}

/**
 * The smallest id of `kind` made at `timeMs` (bucket 0, random bits 0): every id made before that
 * millisecond sorts below it, every id made at or after it sorts at or above it.
 */
export function firstIdAt(kind: IdKind, timeMs: number): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(Math.max(0, Math.floor(timeMs)), 0, 6);
  return `${kind}_${encode(bytes)}`;
}

/** What an id carries. */
export interface ParsedId {
  kind: IdKind;
  bucket: number;
  timeMs: number;
}

/**
 * Parses an id of the expected kind; anything else is INVALID_ARGUMENT naming `field`. A
 * syntactically valid id that names nothing is for the caller to answer with NOT_FOUND.
 */
export function parseId(id: string, kind: IdKind, field: string): ParsedId {
  if (id === "") throw invalidArgument(field, "is required");
  const prefix = `${kind}_`;
  const body = id.startsWith(prefix) ? id.slice(prefix.length) : "";
  const bytes = body.length === BODY_LENGTH ? decode(body) : null;
  if (!bytes) throw invalidArgument(field, `is not a valid ${kind} id`);
  const bucket = bytes.readUInt16BE(6);
  if (bucket >= BUCKET_COUNT) throw invalidArgument(field, `is not a valid ${kind} id`);
  return { kind, bucket, timeMs: bytes.readUIntBE(0, 6) };
}

function encode(bytes: Buffer): string {
  // 128 bits -> 26 characters of 5 bits: the value is left-padded with 2 zero bits.
  let value = BigInt(`0x${bytes.toString("hex")}`);
  const out: string[] = new Array(BODY_LENGTH);
  for (let i = BODY_LENGTH - 1; i >= 0; i--) {
    out[i] = ALPHABET[Number(value & 31n)] as string;
    value >>= 5n;
  }
  return out.join("");
}

function decode(body: string): Buffer | null {
  let value = 0n;
  for (const c of body) {
    const digit = DECODE.get(c);
    if (digit === undefined) return null;
    value = (value << 5n) | BigInt(digit);
  }
  if (value >> 128n !== 0n) return null; // the two padding bits must be zero
  return Buffer.from(value.toString(16).padStart(32, "0"), "hex");
}
