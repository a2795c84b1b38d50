import { useState } from "react";

/** Paste a token (or open the link `make run` prints, which carries it in the fragment). */
export function SignIn({ reason, onToken }: { reason: string | null; onToken: (token: string) => void }) {
  const [token, setToken] = useState("");
  return (
    <main className="sign-in">
      <h1>Model console</h1>
      {reason && (
        <p className="form-error" role="alert">
          {reason}
        </p>
      )}
      <p>
        Open the console link that <code>make run</code> prints, or paste a token (<code>make token USER=alice</code>
        prints one; in production your identity provider issues it).
      </p>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (token.trim()) onToken(token.trim());
        }}
      >
        <label htmlFor="token-input">Token</label>
        <textarea
          id="token-input"
          rows={3}
          value={token}
          spellCheck={false}
          autoComplete="off"
          onChange={(event) => setToken(event.target.value)}
        />
        <button type="submit" className="primary" disabled={!token.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}
