import { BackendConfigForm, type BackendTabProps } from "./BackendConfigForm";

/** Multimodal (image + text in): the same controls as text. Its settings work today; the
 * connection check and the playground's image question come with multimodal-svc. */
export function MultimodalTab(props: BackendTabProps) {
  return <BackendConfigForm {...props} backendType="multimodal" />;
}
