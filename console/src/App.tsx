import { useCallback, useEffect, useState } from "react";
import { call, type BackendType } from "./api/client";
import { forgetToken, storedToken, storeToken, takeTokenFromFragment } from "./auth";
import { LLMSettingsModal } from "./components/LLMSettingsModal/LLMSettingsModal";
import { Playground } from "./components/Playground";
import { SignIn } from "./components/SignIn";
import { TopBar } from "./components/TopBar";
import { Usage } from "./components/Usage";
import { describe, useConsoleState } from "./store";
import { announceSettingsChange } from "./sync";

type Page = "playground" | "usage";

const pageOf = (path: string): Page => (path.startsWith("/usage") ? "usage" : "playground");

export function App() {
  const [token, setToken] = useState<string | null>(
    () => takeTokenFromFragment(window.location, window.history) ?? storedToken(),
  );
  const [reason, setReason] = useState<string | null>(null);
  if (!token) {
    return (
      <SignIn
        reason={reason}
        onToken={(value) => {
          storeToken(value);
          setReason(null);
          setToken(value);
        }}
      />
    );
  }
  return (
    <SignedIn
      token={token}
      onSignOut={(why) => {
        forgetToken();
        setReason(why);
        setToken(null);
      }}
    />
  );
}

function SignedIn({ token, onSignOut }: { token: string; onSignOut: (reason: string | null) => void }) {
  const state = useConsoleState(token, onSignOut);
  const [page, setPage] = useState<Page>(() => pageOf(window.location.pathname));
  const [activeBackend, setActiveBackend] = useState<BackendType>("text");
  const [settingsOpen, setSettingsOpen] = useState(false);
  const [settingsTab, setSettingsTab] = useState<BackendType | null>(null);
  const openSettings = (tab: BackendType | null) => {
    setSettingsTab(tab);
    setSettingsOpen(true);
  };
  const [topBarError, setTopBarError] = useState<string | null>(null);

  useEffect(() => {
    const onPop = () => setPage(pageOf(window.location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const navigate = (next: Page) => {
    window.history.pushState(null, "", next === "usage" ? "/usage" : "/");
    setPage(next);
    // A call's hold is settled after its answer: the balance route has the settled amount by now.
    void state.refreshBalance();
  };

  const { session, configs, replaceConfig, reloadConfigs, refreshStatus } = state;
  const chooseModel = useCallback(
    async (model: string) => {
      const config = configs?.[activeBackend];
      if (!config) return;
      setTopBarError(null);
      try {
        const { data } = await call(session, "put", "/api/settings/llm/{backend_type}", {
          path: { backend_type: activeBackend },
          body: {
            provider: config.provider,
            model,
            mode: config.mode,
            temperature: config.temperature,
            base_url: config.base_url,
            options: config.options,
          },
          headers: { "if-match": `"${config.version}"` },
        });
        replaceConfig(data);
        announceSettingsChange(activeBackend, data.version);
        void refreshStatus(activeBackend);
      } catch (error) {
        setTopBarError(`The model was not saved: ${describe(error)}`);
        void reloadConfigs();
      }
    },
    [configs, activeBackend, session, replaceConfig, reloadConfigs, refreshStatus],
  );

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <TopBar
        session={session}
        user={state.user}
        activeBackend={activeBackend}
        config={configs?.[activeBackend] ?? null}
        presets={state.presets}
        balanceMicros={state.balanceMicros}
        statuses={state.statuses}
        page={page}
        onNavigate={navigate}
        onOpenSettings={() => openSettings(null)}
        onChooseModel={chooseModel}
        onSignOut={() => onSignOut(null)}
      />
      {topBarError && (
        <p className="form-error banner" role="alert">
          {topBarError}
        </p>
      )}
      {state.loadError && !configs && (
        <p className="form-error banner" role="alert">
          {state.loadError}
        </p>
      )}
      <main id="main" tabIndex={-1}>
        {page === "playground" ? (
          <Playground
            session={session}
            activeBackend={activeBackend}
            onSelectBackend={setActiveBackend}
            configs={configs}
            onCallDone={() => void state.refreshBalance()}
            onOpenSettings={openSettings}
            onImageRefusal={state.noteImageRefusal}
          />
        ) : (
          <Usage session={session} />
        )}
      </main>
      {settingsOpen && (
        <LLMSettingsModal
          session={session}
          configs={configs}
          presets={state.presets}
          memberAccount={state.member}
          imageMemberOff={state.imageMemberOff}
          statuses={state.statuses}
          initialTab={settingsTab ?? activeBackend}
          loadError={state.loadError}
          onCheckStatus={refreshStatus}
          onSaved={(config) => {
            replaceConfig(config);
            void refreshStatus(config.backend_type);
          }}
          onClose={() => setSettingsOpen(false)}
        />
      )}
    </div>
  );
}
