// Sign-in: a user JWT, kept for this browser tab only (sessionStorage).
//
// Development: `make run` prints a link with the token in the URL fragment (/#token=...). A
// fragment never leaves the browser (not in a request line, so not in a server's access log or a
// Referer); the console stores it and removes it from the address bar and the history.
// Production: the operator's identity provider issues the JWT; its sign-in page redirects to
// the console with the same fragment, or the user pastes the token.

const KEY = "console.token";

export function takeTokenFromFragment(location: Location, history: History): string | null {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = fragment.get("token");
  if (!token) return null;
  storeToken(token);
  history.replaceState(history.state, "", location.pathname + location.search);
  return token;
}

export function storedToken(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}

export interface TokenClaims {
  sub?: string;
  member?: boolean;
  exp?: number;
}

/** What the console shows about the signed-in user; the gateway alone verifies the token. */
export function readClaims(token: string): TokenClaims {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json) as TokenClaims;
  } catch {
    return {};
  }
}
