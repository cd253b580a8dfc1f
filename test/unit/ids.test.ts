import { describe, expect, it } from "vitest";
import { DomainError } from "../../src/errors.js";
import { firstIdAt, type IdKind, newId, parseId } from "../../src/shard/ids.js";

const KINDS: IdKind[] = ["prd", "mov", "res", "hld", "ord", "pay", "evt"];
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ID_PATTERN = /^[a-z]{3}_[0-9A-HJKMNP-TV-Z]{26}$/;
const MAX_TIME = 2 ** 48 - 1;

/** An encoder written independently of the one under test: 16 bytes -> 26 Crockford characters. */
function encodeBody(bytes: Uint8Array): string {
  let bits = "00"; // two zero padding bits make 130 bits, 26 characters of 5
  for (const byte of bytes) bits += byte.toString(2).padStart(8, "0");
  let out = "";
  for (let i = 0; i < bits.length; i += 5) out += CROCKFORD[Number.parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

/** Builds the 16 bytes of an id by hand. */
function idBytes(timeMs: number, bucket: number, random = 0xab): Uint8Array {
  const bytes = new Uint8Array(16).fill(random);
  new DataView(bytes.buffer).setUint16(6, bucket);
  let t = timeMs;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  return bytes;
}

function expectInvalid(id: string, kind: IdKind, field: string): void {
  let caught: unknown;
  try {
    parseId(id, kind, field);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DomainError);
  const err = caught as DomainError;
  expect(err.reason).toBe("invalid_argument");
  expect(err.field).toBe(field);
  expect(err.message.startsWith(`${field}: `)).toBe(true);
}

describe("newId / parseId round trip", () => {
  it.each(KINDS)("round-trips kind %s", (kind) => {
    const id = newId(kind, 5, 1_700_000_000_000);
    expect(id.startsWith(`${kind}_`)).toBe(true);
    expect(parseId(id, kind, "id")).toEqual({ kind, bucket: 5, timeMs: 1_700_000_000_000 });
  });

  it.each([0, 1, 2, 255, 256, 511, 512, 1022, 1023])("round-trips bucket %i", (bucket) => {
    const id = newId("ord", bucket, 1_234_567_890_123);
    expect(parseId(id, "ord", "order_id").bucket).toBe(bucket);
  });

  it.each([0, 1, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 1_700_000_000_000, MAX_TIME])(
    "round-trips time %i",
    (timeMs) => {
      const parsed = parseId(newId("res", 1023, timeMs), "res", "reservation_id");
      expect(parsed.timeMs).toBe(timeMs);
      expect(parsed.bucket).toBe(1023);
    },
  );

  it("defaults the time to now", () => {
    const before = Date.now();
    const id = newId("evt", 1);
    const after = Date.now();
    const { timeMs } = parseId(id, "evt", "event_id");
    expect(timeMs).toBeGreaterThanOrEqual(before);
    expect(timeMs).toBeLessThanOrEqual(after);
  });

  it("lays out time | bucket | random as documented, checked with an independent encoder", () => {
    const id = newId("pay", 0x2a5, 0x0123_4567_89ab);
    const body = id.slice(4);
    // Decode by hand: 130 bits, the first two are padding.
    let bits = "";
    for (const c of body) bits += CROCKFORD.indexOf(c).toString(2).padStart(5, "0");
    expect(bits.slice(0, 2)).toBe("00");
    expect(Number.parseInt(bits.slice(2, 50), 2)).toBe(0x0123_4567_89ab);
    expect(Number.parseInt(bits.slice(50, 66), 2)).toBe(0x2a5);
    // And the independent encoder, given the same bytes, produces an id the code under test parses.
    expect(parseId(`pay_${encodeBody(idBytes(0x0123_4567_89ab, 0x2a5))}`, "pay", "x")).toEqual({
      kind: "pay",
      bucket: 0x2a5,
      timeMs: 0x0123_4567_89ab,
    });
  });

  it.each([-1, 1024, 1.5, Number.NaN])("newId rejects bucket %s", (bucket) => {
    expect(() => newId("prd", bucket, 0)).toThrow(RangeError);
  });

  it.each([-1, 2 ** 48])("newId rejects time %s outside 48 bits", (timeMs) => {
    expect(() => newId("prd", 0, timeMs)).toThrow(RangeError);
  });
});

describe("id format and ordering", () => {
  it("is <kind>_ followed by 26 Crockford characters whose first is at most 7", () => {
    for (const kind of KINDS) {
      for (let i = 0; i < 200; i++) {
        const id = newId(kind, i % 1024, MAX_TIME - i);
        expect(id).toMatch(ID_PATTERN);
        expect(id.length).toBe(30);
        expect(id.startsWith(`${kind}_`)).toBe(true);
        expect(id[4] !== undefined && id[4] <= "7").toBe(true);
      }
    }
  });

  it("sorts by creation time as plain strings, across byte and character boundaries", () => {
    const times = new Set<number>([0, MAX_TIME, 1_700_000_000_000, 1_700_000_000_001]);
    for (let k = 0; k < 48; k++) {
      times.add(2 ** k - 1);
      times.add(2 ** k);
      times.add(2 ** k + 1);
    }
    const ascending = [...times].filter((t) => t <= MAX_TIME).sort((a, b) => a - b);
    // Random buckets, so the bucket bits cannot be what orders them.
    const ids = ascending.map((t, i) => newId("ord", (i * 389) % 1024, t));
    const sorted = [...ids].sort();
    expect(sorted).toEqual(ids);
    expect(sorted.map((id) => parseId(id, "ord", "order_id").timeMs)).toEqual(ascending);
    // String comparison, not just the default sort.
    for (let i = 1; i < ids.length; i++) expect((ids[i - 1] ?? "") < (ids[i] ?? "")).toBe(true);
  });

  it("sorts consecutive milliseconds regardless of bucket", () => {
    const start = 1_700_000_000_000;
    const ids = Array.from({ length: 2000 }, (_, i) => newId("hld", 1023 - (i % 1024), start + i));
    expect([...ids].sort()).toEqual(ids);
  });

  it("firstIdAt sorts above every id made before its millisecond and at or below every id made from it", () => {
    const at = 1_700_000_000_123;
    const floor = firstIdAt("res", at);
    expect(floor).toBe(`res_${encodeBody(idBytes(at, 0, 0))}`);
    for (let i = 0; i < 500; i++) {
      const bucket = i % 1024;
      expect(newId("res", 1023 - bucket, at - 1) < floor).toBe(true);
      expect(newId("res", bucket, at) >= floor).toBe(true);
      expect(newId("res", bucket, at + 1) > floor).toBe(true);
    }
  });

  it("makes 10,000 unique ids in the same millisecond and bucket", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) ids.add(newId("mov", 7, 1_700_000_000_000));
    expect(ids.size).toBe(10_000);
  });
});

describe("parseId rejects malformed ids", () => {
  const valid = newId("prd", 42, 1_700_000_000_000);
  const body = valid.slice(4);

  it("accepts the valid control id", () => {
    expect(parseId(valid, "prd", "product_id").bucket).toBe(42);
  });

  it("rejects an empty string as required", () => {
    expectInvalid("", "prd", "product_id");
    expect(() => parseId("", "prd", "product_id")).toThrow("product_id: is required");
  });

  it("names the field as given, including dotted paths", () => {
    expectInvalid("nope", "prd", "items[2].product_id");
    expect(() => parseId("nope", "prd", "items[2].product_id")).toThrow(
      "items[2].product_id: is not a valid prd id",
    );
  });

  it.each([
    ["a wrong kind prefix", `ord_${body}`],
    ["an upper-case kind prefix", `PRD_${body}`],
    ["a wrong separator", `prd-${body}`],
    ["no prefix", body],
    ["the prefix only", "prd_"],
    ["a body one character short", `prd_${body.slice(0, 25)}`],
    ["a body one character long", `prd_${body}0`],
    ["a very long string", `prd_${"0".repeat(1_000_000)}`],
    ["a very long prefix-less string", "x".repeat(100_000)],
    ["a leading space", ` ${valid}`],
    ["a trailing space", `${valid} `],
    ["a trailing newline", `${valid}\n`],
    ["a space inside", `prd_${body.slice(0, 10)} ${body.slice(11)}`],
    ["a tab inside", `prd_${body.slice(0, 10)}\t${body.slice(11)}`],
    ["a non-ASCII character", `prd_${body.slice(0, 25)}é`],
    ["an astral character replacing two", `prd_${body.slice(0, 24)}😀`],
    ["a hyphen", `prd_${body.slice(0, 25)}-`],
  ])("rejects %s", (_name, id) => {
    expectInvalid(id, "prd", "product_id");
  });

  it.each(["a", "z", "b", "h"])("rejects lower-case %s where the upper-case letter parses", (c) => {
    const upper = `prd_${body.slice(0, 25)}${c.toUpperCase()}`;
    expect(parseId(upper, "prd", "product_id").bucket).toBe(42);
    expectInvalid(`prd_${body.slice(0, 25)}${c}`, "prd", "product_id");
  });

  it.each(["I", "L", "O", "U", "i", "l", "o", "u"])("rejects the excluded letter %s", (c) => {
    expectInvalid(`prd_${body.slice(0, 25)}${c}`, "prd", "product_id");
  });

  it.each(["8", "9", "A", "Z"])("rejects a nonzero padding bit (first character %s)", (first) => {
    // The same body with the first character at most 7 parses; raising it sets a padding bit.
    const ok = `prd_7${body.slice(1)}`;
    expect(() => parseId(ok, "prd", "product_id")).not.toThrow();
    expectInvalid(`prd_${first}${body.slice(1)}`, "prd", "product_id");
  });

  it("accepts bucket 1023 but rejects buckets 1024 and 65535 crafted by hand", () => {
    const time = 1_700_000_000_000;
    expect(parseId(`res_${encodeBody(idBytes(time, 1023))}`, "res", "reservation_id")).toEqual({
      kind: "res",
      bucket: 1023,
      timeMs: time,
    });
    expectInvalid(`res_${encodeBody(idBytes(time, 1024))}`, "res", "reservation_id");
    expectInvalid(`res_${encodeBody(idBytes(time, 0xffff))}`, "res", "reservation_id");
  });
});
