// The three backend types as the console shows them: name, icon, colour, and which of their
// proxy routes exist yet.
import type { BackendType } from "./api/client";

export interface BackendInfo {
  type: BackendType;
  label: string;
  short: string;
  /** A glyph drawn as SVG (see BackendIcon); the colour is also a CSS class. */
  icon: "text" | "eye" | "image";
  /** The proxy routes (models, status, calls) exist. A new backend type starts false until its
   * service lands; every type has them today. */
  live: boolean;
  /** The service whose routes the playground panel waits for. */
  service: string;
}

export const BACKENDS: readonly BackendInfo[] = [
  { type: "text", label: "Text Generation", short: "Text", icon: "text", live: true, service: "text-svc" },
  { type: "multimodal", label: "Multimodal", short: "Multimodal", icon: "eye", live: true, service: "multimodal-svc" },
  { type: "image", label: "Image Generation", short: "Image", icon: "image", live: true, service: "image-svc" },
];

export function backendInfo(type: BackendType): BackendInfo {
  return BACKENDS.find((backend) => backend.type === type) ?? BACKENDS[0]!;
}
