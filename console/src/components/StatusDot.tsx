import type { BackendType } from "../api/client";
import { backendInfo } from "../backends";
import type { StatusState } from "../store";
import { BackendIcon } from "./BackendIndicator";

export function statusText(status: StatusState): string {
  switch (status.state) {
    case "checking":
      return "checking…";
    case "ok":
      return `connected (${status.status.latency_ms} ms)`;
    case "failed":
      return `not connected: ${status.detail}`;
    case "unavailable":
      return status.detail;
  }
}

/** One backend's connection as a coloured dot, with its state in words for everyone. */
export function StatusDot({ type, status }: { type: BackendType; status: StatusState }) {
  const info = backendInfo(type);
  const text = `${info.label}: ${statusText(status)}`;
  return (
    <span className="status-dot-wrap" title={text}>
      <span className={`status-dot status-${status.state}`} aria-hidden="true" />
      <BackendIcon type={type} size={14} />
      <span className="visually-hidden">{text}</span>
    </span>
  );
}
