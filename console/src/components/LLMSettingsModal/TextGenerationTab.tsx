import { BackendConfigForm, type BackendTabProps } from "./BackendConfigForm";

/** Text: member (model + temperature) or BYOK (+ API key, base URL for local servers). */
export function TextGenerationTab(props: BackendTabProps) {
  return <BackendConfigForm {...props} backendType="text" />;
}
