import { useEffect, useState } from "react";
import { listModels } from "../api/backendRoutes";
import type { BackendConfig, BackendType, Preset, Session } from "../api/client";
import { backendInfo } from "../backends";
import { describe } from "../store";
import { BackendIndicator } from "./BackendIndicator";

interface Props {
  session: Session;
  backendType: BackendType;
  config: BackendConfig | null;
  presets: Preset[];
  /** Saves the chosen model into the backend type's config. */
  onChoose: (model: string) => Promise<void>;
}

/** The active backend type's model: its indicator, and the models of its config's provider. */
export function ModelSelector({ session, backendType, config, presets, onChoose }: Props) {
  const info = backendInfo(backendType);
  const [models, setModels] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const provider = config?.provider ?? "";
  const version = config?.version ?? -1;

  useEffect(() => {
    let cancelled = false;
    setModels(null);
    setError(null);
    const fromPreset = () =>
      presets.find((p) => p.backend_type === backendType && p.provider === provider)?.models ?? [];
    const load = info.live ? listModels(session, backendType) : Promise.resolve(null);
    load
      .then((list) => {
        if (!cancelled) setModels(list ?? fromPreset());
      })
      .catch((err: unknown) => {
        if (cancelled) return;
        setError(describe(err));
        setModels(fromPreset());
      });
    return () => {
      cancelled = true;
    };
    // The list follows the saved config (its version), not every render.
  }, [session, backendType, provider, version, presets, info.live]);

  const current = config?.model ?? "";
  const options = models && current && !models.includes(current) ? [current, ...models] : (models ?? []);
  const id = `model-selector-${backendType}`;
  return (
    <div className={`model-selector backend-${backendType}`}>
      <BackendIndicator type={backendType} />
      <label htmlFor={id} className="visually-hidden">
        {info.label} model
      </label>
      <select
        id={id}
        value={current}
        disabled={models === null || saving || !config}
        aria-busy={models === null}
        onChange={(event) => {
          setSaving(true);
          onChoose(event.target.value)
            .catch((err: unknown) => setError(describe(err)))
            .finally(() => setSaving(false));
        }}
      >
        {models === null && <option value={current}>Loading models…</option>}
        {models !== null && options.map((model) => <option key={model}>{model}</option>)}
      </select>
      {error && (
        <span className="inline-error" role="status">
          {error}
        </span>
      )}
    </div>
  );
}
