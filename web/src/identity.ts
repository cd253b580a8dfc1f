/**
 * Who the buyer is, kept in this one place: the bearer token the page sends with every call (pasted
 * into the "Token" field; `npm run dev` prints a dev buyer token) and the user id it names (`sub`).
 * The page never decides who the user is: the server verifies the token and takes the id from it;
 * the page only reads `sub` to show it and to fill request fields.
 */
const storageKey = "shop.token";

let token = localStorage.getItem(storageKey) ?? "";

/** The bearer token for every request ('' when signed out). */
export function currentToken(): string {
  return token;
}

/** The user id the token names ('' when there is no readable token). */
export function currentUserId(): string {
  return subjectOf(token);
}

/** Binds the "Token" input and the user id display: a new token switches buyers. */
export function bindTokenInput(input: HTMLInputElement, shown: HTMLElement, onChange: () => void): void {
  input.value = token;
  shown.textContent = currentUserId() || "signed out";
  input.addEventListener("change", () => {
    const next = input.value.trim();
    if (next === token) return;
    token = next;
    if (token === "") localStorage.removeItem(storageKey);
    else localStorage.setItem(storageKey, token);
    shown.textContent = currentUserId() || "signed out";
    onChange();
  });
}

/** The `sub` claim of a JWT, read without verifying (the server verifies); '' if unreadable. */
function subjectOf(jwt: string): string {
  const payload = jwt.split(".")[1];
  if (!payload) return "";
  try {
    const json = atob(payload.replaceAll("-", "+").replaceAll("_", "/"));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : "";
  } catch {
    return "";
  }
}

/**
 * A random id such as `order-3f9c…` (idempotency keys). Uses getRandomValues, which (unlike
 * randomUUID) also works on pages served over plain http from a LAN address in development.
 */
export function randomId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
