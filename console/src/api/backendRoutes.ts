// Models and connection status per backend type, from that backend's proxy routes.
import { call, type BackendType, type ProviderStatus, type Session } from "./client";

/** The models of the caller's config, or null where the backend's routes have not landed. */
export async function listModels(session: Session, backendType: BackendType): Promise<string[] | null> {
  switch (backendType) {
    case "text": {
      const { data } = await call(session, "get", "/api/text-proxy/v1/models");
      return data.data.map((model) => model.id);
    }
    // MULTIMODAL: "/api/multimodal-proxy/v1/models" when multimodal-svc lands.
    // IMAGE: "/api/image-proxy/v1/models" when image-svc lands.
    default:
      return null;
  }
}

/** A connection check of the caller's saved config, or null where the routes have not landed. */
export async function checkStatus(session: Session, backendType: BackendType): Promise<ProviderStatus | null> {
  switch (backendType) {
    case "text": {
      const { data } = await call(session, "get", "/api/text-proxy/status");
      return data;
    }
    // MULTIMODAL: "/api/multimodal-proxy/status"; IMAGE: "/api/image-proxy/status".
    default:
      return null;
  }
}
