// The three backend types as the console shows them: name, icon, colour, and which of their
// proxy routes exist yet.
import type { BackendType } from "./api/client";

export interface BackendInfo {
  type: BackendType;
  label: string;
  short: string;
  /** A glyph drawn as SVG (see BackendIcon); the colour is also a CSS class. */
  icon: "text" | "eye" | "image";
  /** The proxy routes (models, status, calls). False until that service lands. */
  live: boolean;
  /** The service whose routes the playground panel waits for. */
  service: string;
}

export const BACKENDS: readonly BackendInfo[] = [
  { type: "text", label: "Text Generation", short: "Text", icon: "text", live: true, service: "text-svc" },
  // MULTIMODAL: set live: true when multimodal-svc's /api/multimodal-proxy routes land (and add
  // them to api/models.ts and the playground's MultimodalPanel).
  { type: "multimodal", label: "Multimodal", short: "Multimodal", icon: "eye", live: false, service: "multimodal-svc" },
  // IMAGE: set live: true when image-svc's /api/image-proxy routes land (api/models.ts and the
  // playground's ImagePanel).
  { type: "image", label: "Image Generation", short: "Image", icon: "image", live: false, service: "image-svc" },
];

export function backendInfo(type: BackendType): BackendInfo {
  return BACKENDS.find((backend) => backend.type === type) ?? BACKENDS[0]!;
}
