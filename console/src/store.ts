// The console's state: the signed-in session, the three configs (with their versions), the
// presets, the balance and each backend's status. One hook, used by App; the parts get props.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { checkStatus } from "./api/backendRoutes";
import {
  ApiError,
  call,
  type AllConfigs,
  type BackendConfig,
  type BackendType,
  type Preset,
  type ProviderStatus,
  type Session,
} from "./api/client";
import { forgetToken, readClaims } from "./auth";
import { BACKENDS } from "./backends";
import { explainStatusError } from "./problems";
import { onSettingsChange } from "./sync";

export type StatusState =
  | { state: "checking" }
  | { state: "ok"; status: ProviderStatus }
  | { state: "failed"; detail: string; status?: ProviderStatus }
  | { state: "unavailable"; detail: string };

export interface ConsoleState {
  session: Session;
  user: string;
  member: boolean;
  configs: AllConfigs | null;
  presets: Preset[];
  balanceMicros: number | null;
  statuses: Record<BackendType, StatusState>;
  /** The image route answered 403 to member mode: image-svc's member switch is off. */
  imageMemberOff: boolean;
  /** Notes a refusal of the image route (a generation's, or a status check's). */
  noteImageRefusal: (status: number) => void;
  loadError: string | null;
  /** Set when another tab saved: the backend type and the version it saved. */
  remoteChange: { backendType: BackendType | "all"; version: number } | null;
  reloadConfigs: () => Promise<AllConfigs | null>;
  replaceConfig: (config: BackendConfig) => void;
  refreshBalance: () => Promise<void>;
  refreshStatus: (backendType: BackendType) => Promise<void>;
}

export function useConsoleState(token: string, signOut: (reason: string) => void): ConsoleState {
  const claims = useMemo(() => readClaims(token), [token]);
  const [configs, setConfigs] = useState<AllConfigs | null>(null);
  const [presets, setPresets] = useState<Preset[]>([]);
  const [balanceMicros, setBalance] = useState<number | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [remoteChange, setRemoteChange] = useState<ConsoleState["remoteChange"]>(null);
  const [statuses, setStatuses] = useState<Record<BackendType, StatusState>>(() => initialStatuses());
  const [imageMemberOff, setImageMemberOff] = useState(false);
  // Only a member's 403 says the switch is off; it stays known for the session (a BYOK config's
  // checks no longer ask member mode).
  const noteImageRefusal = useCallback((status: number) => {
    if (status === 403) setImageMemberOff(true);
  }, []);
  const signOutRef = useRef(signOut);
  signOutRef.current = signOut;

  const session = useMemo<Session>(
    () => ({
      token,
      onUnauthorized: () => {
        forgetToken();
        signOutRef.current("Your sign-in has expired or was refused: sign in again.");
      },
      onCredits: (micros) => setBalance(micros),
    }),
    [token],
  );

  const reloadConfigs = useCallback(async () => {
    try {
      const { data } = await call(session, "get", "/api/settings/llm");
      setConfigs(data);
      setLoadError(null);
      return data;
    } catch (error) {
      setLoadError(describe(error));
      return null;
    }
  }, [session]);

  const refreshBalance = useCallback(async () => {
    try {
      const { data } = await call(session, "get", "/api/billing/balance");
      setBalance(data.balance_micros);
    } catch {
      // The top bar shows "—"; every call that spends credits updates it again.
    }
  }, [session]);

  const refreshStatus = useCallback(
    async (backendType: BackendType) => {
      const info = BACKENDS.find((backend) => backend.type === backendType)!;
      if (!info.live) return;
      setStatuses((current) => ({ ...current, [backendType]: { state: "checking" } }));
      let next: StatusState;
      try {
        const status = await checkStatus(session, backendType);
        if (status === null) next = { state: "unavailable", detail: `coming with ${info.service}` };
        else if (status.ok) next = { state: "ok", status };
        else next = { state: "failed", detail: status.detail || "the provider did not answer", status };
      } catch (error) {
        next = { state: "failed", detail: explainStatusError(error, describe(error)) };
        if (backendType === "image" && error instanceof ApiError) noteImageRefusal(error.status);
      }
      setStatuses((current) => ({ ...current, [backendType]: next }));
    },
    [session, noteImageRefusal],
  );

  const replaceConfig = useCallback((config: BackendConfig) => {
    setConfigs((current) => (current ? { ...current, [config.backend_type]: config } : current));
  }, []);

  useEffect(() => {
    void reloadConfigs();
    void refreshBalance();
    call(session, "get", "/api/settings/llm/presets")
      .then(({ data }) => setPresets(data.presets))
      .catch((error: unknown) => setLoadError(describe(error)));
    for (const backend of BACKENDS) void refreshStatus(backend.type);
  }, [session, reloadConfigs, refreshBalance, refreshStatus]);

  useEffect(
    () =>
      onSettingsChange((change) => {
        setRemoteChange({ backendType: change.backendType, version: change.version });
        void reloadConfigs();
        if (change.backendType === "all") for (const backend of BACKENDS) void refreshStatus(backend.type);
        else void refreshStatus(change.backendType);
      }),
    [reloadConfigs, refreshStatus],
  );

  return {
    session,
    user: claims.sub ?? "",
    member: claims.member !== false,
    configs,
    presets,
    balanceMicros,
    statuses,
    imageMemberOff,
    noteImageRefusal,
    loadError,
    remoteChange,
    reloadConfigs,
    replaceConfig,
    refreshBalance,
    refreshStatus,
  };
}

function initialStatuses(): Record<BackendType, StatusState> {
  const entries = BACKENDS.map((backend) => [
    backend.type,
    backend.live
      ? ({ state: "checking" } as StatusState)
      : ({ state: "unavailable", detail: `coming with ${backend.service}` } as StatusState),
  ]);
  return Object.fromEntries(entries) as Record<BackendType, StatusState>;
}

export function describe(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return "The gateway could not be reached: check your connection and try again.";
  if (error instanceof Error) return error.message;
  return String(error);
}
