import type { Preset } from "../../api/client";
import { BackendConfigForm, type BackendTabProps } from "./BackendConfigForm";

export const IMAGE_MEMBER_UNAVAILABLE =
  "Image generation is not offered in member mode yet (the operator has not switched it on): choose BYOK and use your own API key.";

/** Whether any image provider may be used on the platform's credits (the operator's switch). */
export function imageMemberAllowed(presets: Preset[]): boolean {
  return presets.some((preset) => preset.backend_type === "image" && preset.member_allowed);
}

/** Image: BYOK with model + API key; in member mode the controls are disabled with the reason,
 * unless the operator's switch is on. The switch is image-svc's (IMAGE_SVC_MEMBER_MODE): the
 * presets may allow member mode while the image route still answers 403, which the console
 * learns from the route (memberModeOff). No temperature. */
export function ImageGenerationTab(props: BackendTabProps) {
  return (
    <BackendConfigForm
      {...props}
      backendType="image"
      memberUnavailable={imageMemberAllowed(props.presets) && !props.memberModeOff ? undefined : IMAGE_MEMBER_UNAVAILABLE}
    />
  );
}
