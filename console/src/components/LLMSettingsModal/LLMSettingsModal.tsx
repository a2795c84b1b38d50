import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { AllConfigs, BackendConfig, BackendType, Preset, Session } from "../../api/client";
import { BACKENDS } from "../../backends";
import type { StatusState } from "../../store";
import { BackendTypeSelector, panelId, tabId } from "./BackendTypeSelector";
import { ImageGenerationTab, imageMemberAllowed } from "./ImageGenerationTab";
import { MultimodalTab } from "./MultimodalTab";
import { TextGenerationTab } from "./TextGenerationTab";

interface Props {
  session: Session;
  configs: AllConfigs | null;
  presets: Preset[];
  memberAccount: boolean;
  /** The image route refused member mode (image-svc's switch is off): learnt from its 403. */
  imageMemberOff?: boolean;
  statuses: Record<BackendType, StatusState>;
  initialTab?: BackendType;
  loadError?: string | null;
  onCheckStatus: (backendType: BackendType) => Promise<void>;
  onSaved: (config: BackendConfig) => void;
  onClose: () => void;
}

const ID = "llm-settings";
const TABS = { text: TextGenerationTab, multimodal: MultimodalTab, image: ImageGenerationTab } as const;

/** The settings of the three backend types, one tab each, in a modal dialog. */
export function LLMSettingsModal(props: Props) {
  const [selected, setSelected] = useState<BackendType>(props.initialTab ?? "text");
  const dialog = useRef<HTMLDivElement>(null);
  const opener = useRef<Element | null>(null);

  useEffect(() => {
    opener.current = document.activeElement;
    dialog.current?.querySelector<HTMLElement>('[role="tab"][aria-selected="true"]')?.focus();
    return () => {
      if (opener.current instanceof HTMLElement) opener.current.focus();
    };
  }, []);

  // Escape closes, wherever the focus is (a save disables its button, and the focus with it).
  const { onClose } = props;
  useEffect(() => {
    const onEscape = (event: globalThis.KeyboardEvent) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      onClose();
    };
    window.addEventListener("keydown", onEscape);
    return () => window.removeEventListener("keydown", onEscape);
  }, [onClose]);

  // Tab stays inside the dialog.
  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (event.key !== "Tab" || !dialog.current) return;
    const focusable = Array.from(
      dialog.current.querySelectorAll<HTMLElement>(
        'button:not([disabled]), [href], input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])',
      ),
    ).filter((element) => !element.closest("[hidden]"));
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (!first || !last) return;
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  };

  const notes: Partial<Record<BackendType, string>> = {};
  if ((props.presets.length && !imageMemberAllowed(props.presets)) || props.imageMemberOff) notes.image = "BYOK only";

  return (
    <div className="modal-backdrop" onMouseDown={(event) => event.target === event.currentTarget && props.onClose()}>
      <div
        ref={dialog}
        className="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby={`${ID}-title`}
        onKeyDown={onKeyDown}
      >
        <header className="modal-header">
          <h2 id={`${ID}-title`}>LLM settings</h2>
          <button type="button" className="icon-button" onClick={props.onClose} aria-label="Close settings">
            ×
          </button>
        </header>
        <BackendTypeSelector idPrefix={ID} label="Backend type" selected={selected} onSelect={setSelected} notes={notes} />
        {BACKENDS.map(({ type }) => {
          const Tab = TABS[type];
          const config = props.configs?.[type];
          return (
            // Every panel stays mounted: a draft survives a look at another tab.
            <div
              key={type}
              role="tabpanel"
              id={panelId(ID, type)}
              aria-labelledby={tabId(ID, type)}
              hidden={type !== selected}
              tabIndex={0}
              className={`tab-panel backend-${type}`}
            >
              {props.loadError && !config && <p className="form-error" role="alert">{props.loadError}</p>}
              {!config && !props.loadError && <p aria-busy="true">Loading your settings…</p>}
              {config && (
                <Tab
                  session={props.session}
                  config={config}
                  presets={props.presets}
                  memberAccount={props.memberAccount}
                  memberModeOff={type === "image" && !!props.imageMemberOff}
                  status={props.statuses[type]}
                  onCheckStatus={() => props.onCheckStatus(type)}
                  onSaved={props.onSaved}
                />
              )}
            </div>
          );
        })}
      </div>
    </div>
  );
}
