// Typed calls to the gateway. Paths, bodies and answers come from schema.d.ts, which
// openapi-typescript generates from openapi.json, itself exported from the gateway's routes
// (console/scripts/export_openapi.py; tests/test_console_openapi.py fails when it is stale).
// A renamed route or a changed field is then a type error in `npm run build`, not a broken page.
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type BackendType = Schemas["BackendConfig"]["backend_type"];
export type Mode = NonNullable<Schemas["BackendConfig"]["mode"]>;
export type BackendConfig = Schemas["BackendConfig"];
export type AllConfigs = Schemas["AllConfigs"];
export type ConfigUpdate = Schemas["ConfigUpdate"];
export type Preset = Schemas["Preset"];
export type Balance = Schemas["Balance"];
export type Usage = Schemas["Usage"];
export type UsageTotal = Schemas["UsageTotal"];
export type ProviderStatus = Schemas["ProviderStatus"];
export type ModelList = Schemas["ModelList"];
export type ErrorResponse = Schemas["ErrorResponse"];

type Method = "get" | "put" | "post" | "delete";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends undefined ? never : P;
}[keyof paths];

type JsonContent<R> = R extends { content: { "application/json": infer J } } ? J : null;
export type Answer<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { responses: infer R }
    ? 200 extends keyof R
      ? JsonContent<R[200]>
      : null
    : never;
type RequestBody<O> = O extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : O extends { requestBody?: { content: { "application/json": infer B } } }
    ? B
    : never;
type PathParams<O> = O extends { parameters: { path: infer PP } } ? PP : never;
type QueryParams<O> = O extends { parameters: { query?: infer Q } } ? Q : never;

export interface CallOptions<O> {
  path?: PathParams<O>;
  query?: QueryParams<O>;
  body?: RequestBody<O>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A refusal from the gateway, in its one error shape: what to change is in `message`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export const CREDITS_HEADER = "x-credits-remaining";

export interface Session {
  token: string;
  onUnauthorized: () => void;
  onCredits: (micros: number) => void;
}

export function url(template: string, params?: object, query?: object): string {
  let path = template.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = (params as Record<string, unknown> | undefined)?.[name];
    return encodeURIComponent(String(value));
  });
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const qs = search.toString();
  if (qs) path += `?${qs}`;
  return path;
}

/** Reads the gateway's JSON error shape, whatever the status. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let message = `the gateway answered ${response.status} ${response.statusText}`.trim();
  let code: string | null = null;
  let param: string | null = null;
  try {
    const body = (await response.json()) as Partial<ErrorResponse>;
    if (body.error) {
      message = body.error.message;
      code = body.error.code ?? null;
      param = body.error.param ?? null;
    }
  } catch {
    // Not JSON (a proxy's page): the status line is all there is.
  }
  return new ApiError(response.status, message, code, param);
}

export function authHeaders(session: Session): Record<string, string> {
  return { authorization: `Bearer ${session.token}` };
}

/** Calls the gateway; the answer's type is the route's 200 body (null for 204). */
export async function call<P extends PathsWith<M>, M extends Method>(
  session: Session,
  method: M,
  path: P,
  options: CallOptions<Operation<P, M>> = {},
): Promise<{ data: Answer<P, M>; etag: string | null }> {
  const headers: Record<string, string> = { ...authHeaders(session), ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url(path as string, options.path ?? {}, options.query ?? {}), {
    method: method.toUpperCase(),
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  noteCredits(session, response);
  if (response.status === 401) session.onUnauthorized();
  if (!response.ok) throw await errorFrom(response);
  const data = response.status === 204 ? null : await response.json();
  return { data: data as Answer<P, M>, etag: response.headers.get("etag") };
}

export function noteCredits(session: Session, response: Response): void {
  const remaining = response.headers.get(CREDITS_HEADER);
  if (remaining !== null && /^\d+$/.test(remaining)) session.onCredits(Number(remaining));
}

/** Micro-credits as credits for people: 4250000 -> "4.25". */
export function formatCredits(micros: number): string {
  const credits = micros / 1_000_000;
  return credits.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
}
