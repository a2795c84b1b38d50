import type { BackendConfig, BackendType, Preset, Session } from "../api/client";
import { formatCredits } from "../api/client";
import { BACKENDS } from "../backends";
import type { StatusState } from "../store";
import { ModelSelector } from "./ModelSelector";
import { StatusDot } from "./StatusDot";

interface Props {
  session: Session;
  user: string;
  activeBackend: BackendType;
  config: BackendConfig | null;
  presets: Preset[];
  balanceMicros: number | null;
  statuses: Record<BackendType, StatusState>;
  page: string;
  onNavigate: (page: "playground" | "usage") => void;
  onOpenSettings: () => void;
  onChooseModel: (model: string) => Promise<void>;
  onSignOut: () => void;
}

export function TopBar(props: Props) {
  const { config } = props;
  const mode = config?.mode === "byok" ? "BYOK" : config?.mode === "member" ? "Member" : "—";
  return (
    <header className="top-bar">
      <div className="brand">Model console</div>
      <nav aria-label="Pages" className="pages">
        {(["playground", "usage"] as const).map((page) => (
          <a
            key={page}
            href={page === "playground" ? "/" : "/usage"}
            aria-current={props.page === page ? "page" : undefined}
            onClick={(event) => {
              event.preventDefault();
              props.onNavigate(page);
            }}
          >
            {page === "playground" ? "Playground" : "Usage"}
          </a>
        ))}
      </nav>
      <ModelSelector
        session={props.session}
        backendType={props.activeBackend}
        config={config}
        presets={props.presets}
        onChoose={props.onChooseModel}
      />
      <span className={`mode-badge mode-${config?.mode ?? "none"}`} title="Mode of the active backend type">
        <span className="visually-hidden">Mode: </span>
        {mode}
      </span>
      <span className="balance" aria-live="polite">
        <span className="balance-label">Balance</span>{" "}
        <strong data-testid="balance">
          {props.balanceMicros === null ? "—" : formatCredits(props.balanceMicros)}
        </strong>{" "}
        credits
      </span>
      <span className="statuses" role="group" aria-label="Backend status">
        {BACKENDS.map((backend) => (
          <StatusDot key={backend.type} type={backend.type} status={props.statuses[backend.type]} />
        ))}
      </span>
      <button type="button" className="primary" onClick={props.onOpenSettings}>
        LLM settings
      </button>
      <button type="button" className="link" onClick={props.onSignOut} title={props.user ? `Signed in as ${props.user}` : undefined}>
        Sign out{props.user ? ` (${props.user})` : ""}
      </button>
    </header>
  );
}
