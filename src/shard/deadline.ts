import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The deadline of the call being served, carried to the database without threading it through
 * every function: the server's deadline interceptor runs the handler inside `withDeadline`, and
 * every EntityManager forked during the call gets the time left as its transactions'
 * statement_timeout (see shards.ts). Work outside a call (the sweeper) has no deadline.
 */
const storage = new AsyncLocalStorage<number>();

/** Runs `fn` with an absolute deadline (epoch ms) visible to everything it awaits. */
export function withDeadline<T>(deadlineMs: number, fn: () => T): T {
  return storage.run(deadlineMs, fn);
}

/** The deadline (epoch ms) of the call being served, or undefined outside a call. */
export function currentDeadline(): number | undefined {
  return storage.getStore();
}

/** Milliseconds a statement may run with `deadline` (epoch ms) ahead: see remainingMs. */
export function timeLeftMs(deadline: number, now = Date.now()): number {
  const left = deadline - now;
  return Math.max(1, Math.floor(left - Math.min(100, left / 10)));
}

/**
 * Milliseconds a statement started now may run (at least 1), or undefined outside a call. It stops
 * a little before the call's deadline (a tenth of the time left, at most 100 ms), so the database
 * cancels the work before the caller is told DEADLINE_EXCEEDED rather than just after.
 */
export function remainingMs(now = Date.now()): number | undefined {
  const deadline = storage.getStore();
  return deadline === undefined ? undefined : timeLeftMs(deadline, now);
}
