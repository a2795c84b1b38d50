import type { BackendType } from "../api/client";
import { backendInfo } from "../backends";

/** The backend type's icon in its colour; the name is announced to screen readers. */
export function BackendIcon({ type, size = 18 }: { type: BackendType; size?: number }) {
  const info = backendInfo(type);
  return (
    <svg
      className={`backend-icon backend-${type}`}
      width={size}
      height={size}
      viewBox="0 0 24 24"
      aria-hidden="true"
      focusable="false"
    >
      {info.icon === "text" && (
        <path d="M4 5h16M4 10h16M4 15h10M4 20h7" stroke="currentColor" strokeWidth="2.2" strokeLinecap="round" fill="none" />
      )}
      {info.icon === "eye" && (
        <g stroke="currentColor" strokeWidth="2" fill="none">
          <path d="M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z" />
          <circle cx="12" cy="12" r="3.2" />
        </g>
      )}
      {info.icon === "image" && (
        <g stroke="currentColor" strokeWidth="2" fill="none" strokeLinejoin="round">
          <rect x="3" y="4" width="18" height="16" rx="2" />
          <circle cx="8.5" cy="9.5" r="1.8" />
          <path d="M21 16l-5.5-5.5L5 20" />
        </g>
      )}
    </svg>
  );
}

export function BackendIndicator({ type }: { type: BackendType }) {
  const info = backendInfo(type);
  return (
    <span className={`backend-indicator backend-${type}`}>
      <BackendIcon type={type} />
      <span className="backend-indicator-label" aria-hidden="true">
        {info.short}
      </span>
      <span className="visually-hidden">Active backend: {info.label}</span>
    </span>
  );
}
