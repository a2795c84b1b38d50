// Models and connection status per backend type, from that backend's proxy routes.
import { call, type BackendType, type ProviderStatus, type Session } from "./client";

/** The models of the caller's config. */
export async function listModels(session: Session, backendType: BackendType): Promise<string[] | null> {
  switch (backendType) {
    case "text": {
      const { data } = await call(session, "get", "/api/text-proxy/v1/models");
      return data.data.map((model) => model.id);
    }
    case "multimodal": {
      const { data } = await call(session, "get", "/api/multimodal-proxy/v1/models");
      return data.data.map((model) => model.id);
    }
    case "image": {
      const { data } = await call(session, "get", "/api/image-proxy/v1/models");
      return data.data.map((model) => model.id);
    }
    default:
      return null;
  }
}

/** A connection check of the caller's saved config. */
export async function checkStatus(session: Session, backendType: BackendType): Promise<ProviderStatus | null> {
  switch (backendType) {
    case "text":
      return (await call(session, "get", "/api/text-proxy/status")).data;
    case "multimodal":
      return (await call(session, "get", "/api/multimodal-proxy/status")).data;
    case "image":
      return (await call(session, "get", "/api/image-proxy/status")).data;
    default:
      return null;
  }
}
