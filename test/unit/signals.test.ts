import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { linkSignals } from "../../src/server/signals.js";

describe("linkSignals", () => {
  it("aborts with the reason of the first source to abort, and unlinks from every source", () => {
    const [a, b] = [new AbortController(), new AbortController()];
    const linked = linkSignals(a.signal, b.signal);
    expect(linked.signal.aborted).toBe(false);
    expect(getEventListeners(a.signal, "abort")).toHaveLength(1);
    const reason = new Error("caller went away");
    b.abort(reason);
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe(reason);
    expect(getEventListeners(a.signal, "abort")).toHaveLength(0);
    a.abort(new Error("later"));
    expect(linked.signal.reason).toBe(reason);
  });

  it("is aborted at once when a source already is, without listening to any", () => {
    const live = new AbortController();
    const reason = new Error("deadline");
    const linked = linkSignals(live.signal, AbortSignal.abort(reason));
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe(reason);
    expect(getEventListeners(live.signal, "abort")).toHaveLength(0);
  });

  it("dispose() leaves a long-lived source with no listener, and the signal no longer follows it", () => {
    const shutdown = new AbortController();
    const calls = Array.from({ length: 100 }, () =>
      linkSignals(new AbortController().signal, shutdown.signal),
    );
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(100);
    for (const c of calls) c.dispose();
    for (const c of calls) c.dispose(); // idempotent
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
    shutdown.abort();
    expect(calls.some((c) => c.signal.aborted)).toBe(false);
  });
});
