import { describe, expect, it } from "vitest";
import { readClaims, storedToken, takeTokenFromFragment } from "./auth";

describe("sign-in from the URL fragment", () => {
  it("stores the token for this tab and removes it from the address bar", () => {
    window.history.replaceState(null, "", "/usage?x=1#token=abc.def.ghi");
    expect(takeTokenFromFragment(window.location, window.history)).toBe("abc.def.ghi");
    expect(storedToken()).toBe("abc.def.ghi");
    expect(window.location.hash).toBe("");
    expect(window.location.pathname + window.location.search).toBe("/usage?x=1");
  });

  it("leaves a URL without a token alone", () => {
    window.history.replaceState(null, "", "/#section");
    expect(takeTokenFromFragment(window.location, window.history)).toBeNull();
    expect(window.location.hash).toBe("#section");
  });

  it("reads the claims it shows (sub, member) without trusting them", () => {
    const payload = btoa(JSON.stringify({ sub: "alice", member: false })).replace(/=+$/, "");
    expect(readClaims(`h.${payload}.s`)).toMatchObject({ sub: "alice", member: false });
    expect(readClaims("not-a-jwt")).toEqual({});
  });
});
