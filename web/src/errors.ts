import { ConnectError } from "@connectrpc/connect";
import { byId } from "./dom.js";

const banner = byId<HTMLParagraphElement>("error");

/** Shows what went wrong: the API's own message (never a stack trace). */
export function showError(error: unknown): void {
  banner.textContent = ConnectError.from(error).message;
  banner.hidden = false;
}

export function clearError(): void {
  banner.hidden = true;
  banner.textContent = "";
}

/** Runs `action` for a click: the button is disabled meanwhile, and a failure is shown. */
export async function whileBusy(button: HTMLButtonElement, action: () => Promise<void>): Promise<void> {
  button.disabled = true;
  clearError();
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}
