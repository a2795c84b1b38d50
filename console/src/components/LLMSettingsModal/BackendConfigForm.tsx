// One backend type's config: provider, model, temperature, mode, and in BYOK mode the API key
// (write-only) and, where the operator allows it, a base URL. Saves with the version it was
// read at; a 409 shows what the other save changed and lets the user choose.
import { useEffect, useId, useMemo, useState } from "react";
import {
  ApiError,
  call,
  type BackendConfig,
  type BackendType,
  type ConfigUpdate,
  type Mode,
  type Preset,
  type Session,
} from "../../api/client";
import { backendInfo } from "../../backends";
import { describe, type StatusState } from "../../store";
import { announceSettingsChange } from "../../sync";
import { statusText } from "../StatusDot";

export interface BackendTabProps {
  session: Session;
  config: BackendConfig;
  /** Every preset; the form keeps its backend type's. */
  presets: Preset[];
  /** The signed-in user may use member mode (the token's `member` claim). */
  memberAccount: boolean;
  /** The platform refused member mode for this backend type (the image route's 403). */
  memberModeOff?: boolean;
  status: StatusState;
  onCheckStatus: () => Promise<void>;
  onSaved: (config: BackendConfig) => void;
}

interface FormProps extends BackendTabProps {
  backendType: BackendType;
  /** Why member mode cannot be used for this backend type, when it cannot (the Image tab). */
  memberUnavailable?: string;
}

interface Draft {
  provider: string;
  model: string;
  temperature: number | null;
  mode: Mode;
  base_url: string;
}

const FIELD_LABELS: Record<keyof Draft, string> = {
  provider: "Provider",
  model: "Model",
  temperature: "Temperature",
  mode: "Mode",
  base_url: "Base URL",
};

function draftOf(config: BackendConfig): Draft {
  return {
    provider: config.provider,
    model: config.model,
    temperature: config.temperature,
    mode: config.mode ?? "member",
    base_url: config.base_url,
  };
}

function sameDraft(a: Draft, b: Draft): boolean {
  return (Object.keys(FIELD_LABELS) as (keyof Draft)[]).every((key) => a[key] === b[key]);
}

export function hasTemperature(preset: Preset | undefined): boolean {
  return !!preset && preset.temperature_max > preset.temperature_min;
}

interface Conflict {
  theirs: BackendConfig;
  changes: { field: string; theirs: string; yours: string }[];
}

function shown(value: unknown): string {
  if (value === null || value === undefined || value === "") return "(none)";
  return String(value);
}

export function BackendConfigForm(props: FormProps) {
  const { session, config, backendType, memberUnavailable } = props;
  const info = backendInfo(backendType);
  const uid = useId();
  const presets = useMemo(
    () => props.presets.filter((preset) => preset.backend_type === backendType),
    [props.presets, backendType],
  );
  const [draft, setDraft] = useState<Draft>(() => draftOf(config));
  const [baseVersion, setBaseVersion] = useState(config.version);
  const [baseDraft, setBaseDraft] = useState<Draft>(() => draftOf(config));
  const [newKey, setNewKey] = useState("");
  const [saving, setSaving] = useState(false);
  const [message, setMessage] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [conflict, setConflict] = useState<Conflict | null>(null);
  const [staleNotice, setStaleNotice] = useState<number | null>(null);
  const [checking, setChecking] = useState(false);

  const dirty = !sameDraft(draft, baseDraft) || newKey !== "";

  // A newer saved config (another tab, the top bar, a reload): taken as it is unless the user
  // has unsaved edits, which are kept; the save then shows the conflict.
  useEffect(() => {
    if (config.version === baseVersion) return;
    if (dirty) {
      setStaleNotice(config.version);
      return;
    }
    setDraft(draftOf(config));
    setBaseDraft(draftOf(config));
    setBaseVersion(config.version);
    setStaleNotice(null);
    // Only a new version is news.
  }, [config.version]);

  const preset = presets.find((p) => p.provider === draft.provider);
  const memberBlocked = draft.mode === "member" && (memberUnavailable || !props.memberAccount);
  const memberReason = memberUnavailable
    ? memberUnavailable
    : !props.memberAccount
      ? "Your account cannot spend the platform's credits (member mode): choose BYOK and use your own API key."
      : null;
  const providers = draft.mode === "member" ? presets.filter((p) => p.member_allowed) : presets;
  const providerOptions = providers.some((p) => p.provider === draft.provider)
    ? providers
    : [...providers, ...presets.filter((p) => p.provider === draft.provider)];
  const models = preset?.models ?? [];
  const modelOptions = draft.model && !models.includes(draft.model) ? [draft.model, ...models] : models;
  const showBaseUrl = draft.mode === "byok" && !!preset?.user_base_url_allowed;
  const showTemperature = hasTemperature(preset);

  const update = (changes: Partial<Draft>) => {
    setDraft((current) => ({ ...current, ...changes }));
    setMessage(null);
  };

  const chooseProvider = (provider: string) => {
    const next = presets.find((p) => p.provider === provider);
    update({
      provider,
      model: next?.default_model ?? "",
      temperature: hasTemperature(next) ? (next?.default_temperature ?? null) : null,
      base_url: "",
    });
  };

  const chooseMode = (mode: Mode) => {
    const changes: Partial<Draft> = { mode };
    if (mode === "member" && preset && !preset.member_allowed) {
      // Local servers are BYOK only: member mode starts from a provider that offers it.
      const first = presets.find((p) => p.member_allowed);
      if (first) {
        changes.provider = first.provider;
        changes.model = first.default_model;
        changes.temperature = hasTemperature(first) ? first.default_temperature : null;
      }
    }
    if (mode === "member") changes.base_url = "";
    update(changes);
  };

  const body = (): ConfigUpdate => {
    const update: ConfigUpdate = {
      provider: draft.provider,
      model: draft.model,
      mode: draft.mode,
      base_url: showBaseUrl ? draft.base_url.trim() : "",
      temperature: showTemperature ? draft.temperature : null,
    };
    if (draft.mode === "byok" && newKey.trim()) update.api_key = newKey.trim();
    return update;
  };

  const save = async (version: number) => {
    setSaving(true);
    setMessage(null);
    setFieldErrors({});
    try {
      const { data } = await call(session, "put", "/api/settings/llm/{backend_type}", {
        path: { backend_type: backendType },
        body: body(),
        headers: { "if-match": `"${version}"` },
      });
      setNewKey("");
      setConflict(null);
      setStaleNotice(null);
      setDraft(draftOf(data));
      setBaseDraft(draftOf(data));
      setBaseVersion(data.version);
      props.onSaved(data);
      announceSettingsChange(backendType, data.version);
      setMessage({ kind: "ok", text: `Saved (version ${data.version}).` });
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) {
        await showConflict();
      } else if (error instanceof ApiError && error.param && error.param in FIELD_LABELS) {
        setFieldErrors({ [error.param]: error.message });
      } else if (error instanceof ApiError && error.param === "api_key") {
        setFieldErrors({ api_key: error.message });
      } else {
        setMessage({ kind: "error", text: describe(error) });
      }
    } finally {
      setSaving(false);
    }
  };

  const showConflict = async () => {
    try {
      const { data: theirs } = await call(session, "get", "/api/settings/llm/{backend_type}", {
        path: { backend_type: backendType },
      });
      const theirDraft = draftOf(theirs);
      const changes = (Object.keys(FIELD_LABELS) as (keyof Draft)[])
        .filter((key) => theirDraft[key] !== draft[key])
        .map((key) => ({ field: FIELD_LABELS[key], theirs: shown(theirDraft[key]), yours: shown(draft[key]) }));
      if (theirs.api_key.hint !== config.api_key.hint) {
        changes.push({
          field: "API key",
          theirs: theirs.api_key.is_set ? theirs.api_key.hint : "(none)",
          yours: newKey ? "your new key" : config.api_key.is_set ? config.api_key.hint : "(none)",
        });
      }
      setConflict({ theirs, changes });
    } catch (error) {
      setMessage({ kind: "error", text: describe(error) });
    }
  };

  const useTheirs = () => {
    if (!conflict) return;
    setDraft(draftOf(conflict.theirs));
    setBaseDraft(draftOf(conflict.theirs));
    setBaseVersion(conflict.theirs.version);
    setNewKey("");
    props.onSaved(conflict.theirs);
    setConflict(null);
    setStaleNotice(null);
    setMessage({ kind: "ok", text: `Loaded the saved version ${conflict.theirs.version}.` });
  };

  const deleteKey = async () => {
    setSaving(true);
    setMessage(null);
    try {
      await call(session, "delete", "/api/settings/llm/{backend_type}/api-key", {
        path: { backend_type: backendType },
      });
      const { data } = await call(session, "get", "/api/settings/llm/{backend_type}", {
        path: { backend_type: backendType },
      });
      props.onSaved(data);
      announceSettingsChange(backendType, data.version);
      setMessage({ kind: "ok", text: "API key deleted." });
    } catch (error) {
      setMessage({ kind: "error", text: describe(error) });
    } finally {
      setSaving(false);
    }
  };

  const checkConnection = async () => {
    setChecking(true);
    try {
      await props.onCheckStatus();
    } finally {
      setChecking(false);
    }
  };

  const id = (name: string) => `${uid}-${name}`;
  const errorOf = (field: string) =>
    fieldErrors[field] ? (
      <p className="field-error" id={id(`${field}-error`)} role="alert">
        {fieldErrors[field]}
      </p>
    ) : null;

  return (
    <form
      className="backend-form"
      aria-label={`${info.label} settings`}
      onSubmit={(event) => {
        event.preventDefault();
        void save(baseVersion);
      }}
    >
      <fieldset className="mode-choice">
        <legend>Mode</legend>
        <label>
          <input
            type="radio"
            name={id("mode")}
            value="member"
            checked={draft.mode === "member"}
            onChange={() => chooseMode("member")}
          />
          Member <span className="hint">(the platform's account; spends credits)</span>
        </label>
        <label>
          <input
            type="radio"
            name={id("mode")}
            value="byok"
            checked={draft.mode === "byok"}
            onChange={() => chooseMode("byok")}
          />
          BYOK <span className="hint">(your own API key; no credits)</span>
        </label>
        {errorOf("mode")}
      </fieldset>

      {memberBlocked && memberReason && (
        <p className="notice notice-blocked" role="note" data-testid="member-unavailable">
          {memberReason}
        </p>
      )}

      <fieldset className="controls" disabled={!!memberBlocked}>
        <legend className="visually-hidden">{info.label} model</legend>
        <div className="field">
          <label htmlFor={id("provider")}>Provider</label>
          <select id={id("provider")} value={draft.provider} onChange={(event) => chooseProvider(event.target.value)}>
            {providerOptions.map((p) => (
              <option key={p.provider} value={p.provider}>
                {p.display_name}
              </option>
            ))}
          </select>
          {errorOf("provider")}
        </div>
        <div className="field">
          <label htmlFor={id("model")}>Model</label>
          <select id={id("model")} value={draft.model} onChange={(event) => update({ model: event.target.value })}>
            {modelOptions.map((model) => (
              <option key={model}>{model}</option>
            ))}
          </select>
          {errorOf("model")}
        </div>
        {showTemperature && preset && (
          <div className="field">
            <label htmlFor={id("temperature")}>
              Temperature <output htmlFor={id("temperature")}>{(draft.temperature ?? preset.default_temperature).toFixed(1)}</output>
            </label>
            <input
              id={id("temperature")}
              type="range"
              min={preset.temperature_min}
              max={preset.temperature_max}
              step={0.1}
              value={draft.temperature ?? preset.default_temperature}
              onChange={(event) => update({ temperature: Number(event.target.value) })}
              aria-describedby={id("temperature-range")}
            />
            <span className="hint" id={id("temperature-range")}>
              {preset.display_name}: {preset.temperature_min} to {preset.temperature_max}
            </span>
            {errorOf("temperature")}
          </div>
        )}

        {draft.mode === "byok" && (
          <div className="field">
            <label htmlFor={id("api-key")}>API key</label>
            {config.api_key.is_set && (
              <p className="key-hint" data-testid="key-hint">
                A key is saved: <code>{config.api_key.hint}</code>{" "}
                <button type="button" className="danger small" onClick={() => void deleteKey()} disabled={saving}>
                  Delete key
                </button>
              </p>
            )}
            <input
              id={id("api-key")}
              type="password"
              autoComplete="off"
              spellCheck={false}
              value={newKey}
              placeholder={config.api_key.is_set ? "Paste a new key to replace it" : "Paste your key"}
              onChange={(event) => {
                setNewKey(event.target.value);
                setMessage(null);
              }}
              aria-describedby={id("api-key-help")}
            />
            <span className="hint" id={id("api-key-help")}>
              Write-only: after saving, only its last characters are shown.
            </span>
            {errorOf("api_key")}
          </div>
        )}

        {showBaseUrl && (
          <div className="field">
            <label htmlFor={id("base-url")}>Base URL</label>
            <input
              id={id("base-url")}
              type="url"
              value={draft.base_url}
              placeholder={preset?.default_base_url || "https://…"}
              onChange={(event) => update({ base_url: event.target.value })}
              aria-invalid={!!fieldErrors.base_url}
              aria-describedby={fieldErrors.base_url ? id("base_url-error") : undefined}
            />
            {errorOf("base_url")}
          </div>
        )}
      </fieldset>

      {staleNotice !== null && !conflict && (
        <p className="notice" role="status">
          This config was saved elsewhere (version {staleNotice}) while you were editing. Your changes are kept; saving
          shows what differs.
        </p>
      )}

      {conflict && (
        <section className="conflict" role="alert" aria-labelledby={id("conflict-title")}>
          <h3 id={id("conflict-title")}>Saved elsewhere first (now version {conflict.theirs.version})</h3>
          <p>Another tab or device saved this config after you opened it. What differs:</p>
          <table>
            <thead>
              <tr>
                <th scope="col">Setting</th>
                <th scope="col">Saved</th>
                <th scope="col">Yours</th>
              </tr>
            </thead>
            <tbody>
              {conflict.changes.length === 0 && (
                <tr>
                  <td colSpan={3}>Nothing you can see: only its version changed.</td>
                </tr>
              )}
              {conflict.changes.map((change) => (
                <tr key={change.field}>
                  <th scope="row">{change.field}</th>
                  <td>{change.theirs}</td>
                  <td>{change.yours}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="actions">
            <button type="button" className="primary" onClick={() => void save(conflict.theirs.version)} disabled={saving}>
              Keep mine (save over it)
            </button>
            <button type="button" onClick={useTheirs} disabled={saving}>
              Use the saved version
            </button>
          </div>
        </section>
      )}

      <div className="form-footer">
        <div className="connection" aria-live="polite">
          {info.live ? (
            <>
              <button type="button" onClick={() => void checkConnection()} disabled={checking}>
                Check connection
              </button>{" "}
              <span className={`connection-result status-${props.status.state}`} data-testid="connection">
                {checking ? "checking…" : statusText(props.status)}
              </span>
              <span className="hint"> (of the saved settings)</span>
            </>
          ) : (
            <span className="hint">Connection checks for {info.label} come with {info.service}.</span>
          )}
        </div>
        <div className="actions">
          {message && (
            <span className={message.kind === "ok" ? "saved" : "form-error"} role={message.kind === "ok" ? "status" : "alert"}>
              {message.text}
            </span>
          )}
          <button type="submit" className="primary" disabled={saving || !!memberBlocked || !!conflict || !dirty}>
            {saving ? "Saving…" : "Save"}
          </button>
        </div>
      </div>
    </form>
  );
}
