import { Code, ConnectError } from "@connectrpc/connect";
import { type Order, type OrderEvent, OrderStatus } from "../../gen/shop/order/v1/order_pb.js";
import { orders } from "./api.js";
import { byId, h } from "./dom.js";
import { showError } from "./errors.js";
import { formatMoney, formatTime, isoTime, orderStatusName } from "./format.js";

/** Reconnect delays after a dropped stream: doubling from the first to the last. */
const retryDelayMs = { first: 500, max: 15_000 };

/** What the stream is doing, shown next to the status (and read by the end-to-end test). */
type StreamState = "connecting" | "live" | "reconnecting" | "stopped";

/**
 * The order panel: number, total, current status and status history, kept current by WatchOrder.
 * The stream replays the history, then sends live changes; after a drop it resumes from the last
 * version shown, so nothing is missed or shown twice.
 */
export function initOrderView() {
  const section = byId<HTMLElement>("order");
  const statusEl = byId("order-status");
  const streamEl = byId("stream-state");
  const historyEl = byId<HTMLOListElement>("order-history");
  let watching: AbortController | undefined;
  /** The newest order version on screen: an older answer never overwrites a newer status. */
  let shownVersion = 0n;

  function setStatus(status: OrderStatus, version: bigint): void {
    if (version < shownVersion || status === OrderStatus.UNSPECIFIED) return;
    shownVersion = version;
    statusEl.textContent = orderStatusName(status);
    section.dataset.version = String(version);
  }

  function setStream(state: StreamState): void {
    streamEl.textContent = state;
    streamEl.dataset.state = state;
  }

  function showOrder(order: Order): void {
    byId("order-number").textContent = order.orderNumber;
    byId("order-total").textContent = formatMoney(order.total);
    setStatus(order.status, order.version);
  }

  function appendEvent(event: OrderEvent): void {
    historyEl.append(historyEntry(event));
    setStatus(event.toStatus, event.version);
  }

  async function watch(userId: string, orderId: string, signal: AbortSignal): Promise<void> {
    let afterVersion = 0n;
    let delayMs = retryDelayMs.first;
    while (!signal.aborted) {
      setStream("connecting");
      try {
        for await (const res of orders.watchOrder({ userId, orderId, afterVersion }, { signal })) {
          setStream("live");
          delayMs = retryDelayMs.first;
          if (res.message.case !== "event") continue; // a heartbeat
          const event = res.message.value;
          if (event.version <= afterVersion) continue;
          afterVersion = event.version;
          appendEvent(event);
        }
        // The server ended the stream (it is draining): reconnect, resuming after afterVersion.
      } catch (error) {
        if (signal.aborted) return;
        const code = ConnectError.from(error).code;
        if (code === Code.NotFound || code === Code.InvalidArgument || code === Code.PermissionDenied) {
          showError(error);
          setStream("stopped");
          return;
        }
      }
      setStream("reconnecting");
      await sleep(delayMs, signal);
      delayMs = Math.min(delayMs * 2, retryDelayMs.max);
    }
  }

  return {
    /** Shows an order and watches it; `order` is what the caller already has (or undefined). */
    open(userId: string, orderId: string, order?: Order): void {
      watching?.abort();
      watching = new AbortController();
      const { signal } = watching;
      shownVersion = 0n;
      historyEl.replaceChildren();
      statusEl.textContent = "";
      section.dataset.orderId = orderId;
      section.hidden = false;
      window.history.replaceState(null, "", `#order=${encodeURIComponent(orderId)}`);
      if (order) {
        showOrder(order);
      } else {
        orders.getOrder({ userId, orderId }, { signal }).then(
          (res) => res.order && showOrder(res.order),
          (error: unknown) => signal.aborted || showError(error),
        );
      }
      void watch(userId, orderId, signal);
    },
    close(): void {
      watching?.abort();
      watching = undefined;
      section.hidden = true;
      window.history.replaceState(null, "", window.location.pathname);
    },
  };
}

function historyEntry(event: OrderEvent): HTMLLIElement {
  const change =
    event.kind === "created"
      ? `created as ${orderStatusName(event.toStatus)}`
      : event.fromStatus === event.toStatus
        ? event.kind
        : `${orderStatusName(event.fromStatus)} → ${orderStatusName(event.toStatus)}`;
  const time = h("time", { datetime: isoTime(event.createTime) }, formatTime(event.createTime));
  return h(
    "li",
    {
      "data-testid": "history-entry",
      "data-version": String(event.version),
      "data-to-status": orderStatusName(event.toStatus),
    },
    time,
    ` ${change}`,
    event.reason ? ` (${event.reason})` : "",
    event.actor ? ` by ${event.actor}` : "",
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
