// A stand-in for the gateway's settings routes in component tests: the same paths, status
// codes, ETags and error shape (gateway/src/gateway/routes/settings.py), kept in memory.
import type { AllConfigs, BackendConfig, BackendType, ConfigUpdate, Preset } from "../api/client";

const preset = (p: Partial<Preset> & Pick<Preset, "provider" | "backend_type">): Preset => ({
  display_name: p.provider,
  api_style: "openai",
  models: ["model-a"],
  default_model: "model-a",
  temperature_min: 0,
  temperature_max: 2,
  default_temperature: 0.7,
  member_allowed: true,
  user_base_url_allowed: false,
  default_base_url: "",
  ...p,
});

export const PRESETS: Preset[] = [
  preset({ provider: "openai", backend_type: "text", display_name: "OpenAI", models: ["gpt-4o-mini", "gpt-4o"], default_model: "gpt-4o-mini" }),
  preset({ provider: "anthropic", backend_type: "text", display_name: "Anthropic", models: ["claude-3-5-haiku-latest"], default_model: "claude-3-5-haiku-latest", temperature_max: 1 }),
  preset({ provider: "ollama", backend_type: "text", display_name: "Ollama (local)", models: ["llama3.1"], default_model: "llama3.1", member_allowed: false, user_base_url_allowed: true, default_base_url: "http://localhost:11434" }),
  preset({ provider: "openai", backend_type: "multimodal", display_name: "OpenAI vision", models: ["gpt-4o"], default_model: "gpt-4o" }),
  preset({ provider: "openai", backend_type: "image", display_name: "OpenAI images", models: ["gpt-image-1", "dall-e-3"], default_model: "gpt-image-1", temperature_min: 0, temperature_max: 0, default_temperature: 0, member_allowed: false }),
];

function config(backend_type: BackendType, changes: Partial<BackendConfig> = {}): BackendConfig {
  const first = PRESETS.find((p) => p.backend_type === backend_type)!;
  return {
    backend_type,
    provider: first.provider,
    model: first.default_model,
    temperature: backend_type === "image" ? null : 0.7,
    mode: backend_type === "image" ? "byok" : "member",
    options: {},
    base_url: "",
    version: 0,
    api_key: { is_set: false, hint: "", fingerprint: "", provider: "" },
    updated_at: null,
    ...changes,
  };
}

export interface Call {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

export class FakeGateway {
  configs: AllConfigs = { text: config("text"), multimodal: config("multimodal"), image: config("image") };
  presets = PRESETS;
  calls: Call[] = [];
  /** A refusal for the next PUT of a config: [status, message, param]. */
  refuseNext: [number, string, string | null] | null = null;

  /** Another tab or device saves first. */
  saveElsewhere(backendType: BackendType, changes: Partial<BackendConfig>): BackendConfig {
    const current = this.configs[backendType];
    const saved = { ...current, ...changes, version: current.version + 1 };
    this.configs = { ...this.configs, [backendType]: saved };
    return saved;
  }

  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const path = String(input);
    const method = (init.method ?? "GET").toUpperCase();
    const headers = Object.fromEntries(Object.entries((init.headers ?? {}) as Record<string, string>).map(([k, v]) => [k.toLowerCase(), v]));
    const body = init.body ? JSON.parse(String(init.body)) : undefined;
    this.calls.push({ method, path, headers, body });
    if (headers.authorization !== "Bearer test-token") return error(401, "sign in", null);
    if (path === "/api/settings/llm" && method === "GET") return json(this.configs);
    if (path.startsWith("/api/settings/llm/presets")) return json({ presets: this.presets });
    const match = /^\/api\/settings\/llm\/(text|multimodal|image)(\/api-key)?$/.exec(path);
    if (!match) return error(404, `no route ${path}`, null);
    const backendType = match[1] as BackendType;
    const current = this.configs[backendType];
    if (match[2]) {
      if (method !== "DELETE") return error(405, "method", null);
      this.configs = { ...this.configs, [backendType]: { ...current, api_key: { is_set: false, hint: "", fingerprint: "", provider: "" } } };
      return new Response(null, { status: 204 });
    }
    if (method === "GET") return json(current, { etag: `"${current.version}"` });
    if (method === "PUT") {
      if (this.refuseNext) {
        const [status, message, param] = this.refuseNext;
        this.refuseNext = null;
        return error(status, message, param);
      }
      const expected = Number((headers["if-match"] ?? "").replace(/"/g, ""));
      if (expected !== current.version) return error(409, `the config changed since version ${expected}`, null);
      const update = body as ConfigUpdate;
      const key = update.api_key;
      const saved: BackendConfig = {
        ...current,
        provider: update.provider,
        model: update.model ?? "",
        temperature: update.temperature ?? null,
        mode: update.mode ?? null,
        base_url: update.base_url ?? "",
        version: current.version + 1,
        api_key: key ? { is_set: true, hint: `…${key.slice(-4)}`, fingerprint: "f", provider: update.provider } : current.api_key,
      };
      this.configs = { ...this.configs, [backendType]: saved };
      return json(saved, { etag: `"${saved.version}"` });
    }
    return error(405, "method", null);
  };
}

function json(body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json", ...headers } });
}

function error(status: number, message: string, param: string | null): Response {
  return new Response(JSON.stringify({ error: { message, type: "invalid_request_error", code: null, param } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}
