import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { passThrough } from "../../src/server/interceptors.js";

/** A source that records how it was ended. */
function source(items: number[], opts: { failAfter?: Error } = {}) {
  const seen = { finally: 0, caught: [] as unknown[] };
  async function* gen() {
    try {
      for (const i of items) yield i;
      if (opts.failAfter) throw opts.failAfter;
    } catch (e) {
      seen.caught.push(e);
      throw e;
    } finally {
      seen.finally++;
    }
  }
  return { iterable: gen(), seen };
}

function ends() {
  const calls: unknown[] = [];
  return { calls, end: (e: unknown) => void calls.push(e) };
}

describe("passThrough", () => {
  it("passes every item on in order and reports completion once", async () => {
    const { iterable, seen } = source([1, 2, 3]);
    const { calls, end } = ends();
    const got: number[] = [];
    for await (const i of passThrough(iterable, { end })) got.push(i);
    expect(got).toEqual([1, 2, 3]);
    expect(calls).toEqual([undefined]);
    expect(seen.finally).toBe(1);
  });

  it("maps the source's error, reports it once, and is done afterwards", async () => {
    const boom = new Error("boom");
    const { iterable } = source([1], { failAfter: boom });
    const { calls, end } = ends();
    const mapped = new ConnectError("mapped", Code.Unavailable);
    const it = passThrough(iterable, { end, mapError: (e) => (e === boom ? mapped : e) })[
      Symbol.asyncIterator
    ]();
    expect(await it.next()).toEqual({ done: false, value: 1 });
    await expect(it.next()).rejects.toBe(mapped);
    expect(calls).toEqual([mapped]);
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(calls).toHaveLength(1);
  });

  it("a consumer that stops (break, so return()) stops the source and ends the stream as CANCELED", async () => {
    const { iterable, seen } = source([1, 2, 3]);
    const { calls, end } = ends();
    for await (const i of passThrough(iterable, { end })) if (i === 2) break;
    expect(seen.finally).toBe(1);
    expect(calls).toHaveLength(1);
    expect(ConnectError.from(calls[0]).code).toBe(Code.Canceled);
  });

  it("throw() reaches the source, and its error ends the stream", async () => {
    const { iterable, seen } = source([1, 2, 3]);
    const { calls, end } = ends();
    const it = passThrough(iterable, { end })[Symbol.asyncIterator]();
    await it.next();
    const writeFailed = new Error("write failed");
    await expect(it.throw?.(writeFailed)).rejects.toBe(writeFailed);
    expect(seen.caught).toEqual([writeFailed]);
    expect(seen.finally).toBe(1);
    expect(calls).toEqual([writeFailed]);
  });

  it("throw() on a source without throw() stops it with return() and fails with the error", async () => {
    let returned = 0;
    const bare: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () => Promise.resolve({ done: false, value: 7 }),
        return: () => {
          returned++;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
    const { calls, end } = ends();
    const it = passThrough(bare, { end })[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: 7 });
    const e = new Error("write failed");
    await expect(it.throw?.(e)).rejects.toBe(e);
    expect(returned).toBe(1);
    expect(calls).toEqual([e]);
  });

  it("layers stack: each reports, inner errors are mapped on the way out", async () => {
    const boom = new Error("boom");
    const { iterable } = source([1, 2], { failAfter: boom });
    const inner = ends();
    const outer = ends();
    const mapped = new ConnectError("internal error", Code.Internal);
    const stacked = passThrough(passThrough(iterable, { mapError: () => mapped, end: inner.end }), {
      end: outer.end,
    });
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const i of stacked) got.push(i);
      })(),
    ).rejects.toBe(mapped);
    expect(got).toEqual([1, 2]);
    expect(inner.calls).toEqual([mapped]);
    expect(outer.calls).toEqual([mapped]);
  });
});
