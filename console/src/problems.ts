// A refusal in words a user can act on: what happened, and what to do next. One place, so the
// chat, the image question, image generation and the connection checks say the same things.
import { ApiError } from "./api/client";

export interface Problem {
  text: string;
  /** Where the fix is: the settings tab to open (a button next to the message). */
  openSettings?: "text" | "multimodal" | "image";
}

/** Any refusal of a call (status + the gateway's message). */
export function explain(status: number, message: string): string {
  if (status === 402) return `Not enough credits. ${message}`;
  if (status === 429) return `Too many requests right now: wait a moment and try again. (${message})`;
  if (status === 401) return "Your sign-in has expired: sign in again.";
  if (status === 503) return `The service is not reachable right now: try again in a moment. (${message})`;
  if (status >= 500) return `The provider or the platform failed: ${message}`;
  return message;
}

/** The intake's place in the request ("messages[0].content[1]: ") means nothing to a person. */
function withoutPlace(message: string): string {
  return message.replace(/^messages\[\d+\]\.content\[\d+\](\.[\w.]+)?:\s*/, "");
}

/** A refusal of an image question: the image's size and format problems first. */
export function explainImageQuestion(status: number, message: string): string {
  if (status === 413) {
    return `The image is too large to send (${withoutPlace(message)}). Choose a smaller image or a smaller export of it.`;
  }
  if (status === 400 && /image|data: URL|pixels|bytes/i.test(message)) {
    return `The image was refused: ${withoutPlace(message)}. Use a PNG, JPEG, WEBP or GIF of a few megabytes at most.`;
  }
  return explain(status, message);
}

/** A refusal of image generation; member mode off comes with the settings tab to fix it. */
export function explainImageGeneration(status: number, message: string): Problem {
  if (status === 403) {
    return {
      // The gateway's message names API routes; a person needs the settings tab instead.
      text: "Image generation needs your own API key: member mode is off for images on this platform. Choose BYOK in the Image tab of LLM settings and save your provider's key.",
      openSettings: "image",
    };
  }
  if (status === 402) return { text: `Not enough credits for these images. ${message}` };
  return { text: explain(status, message) };
}

/** A failed connection check (the /status route refused). */
export function explainStatusError(error: unknown, fallback: string): string {
  if (!(error instanceof ApiError)) return fallback;
  if (error.status === 403) return `${error.message}: choose BYOK and save your own API key.`;
  if (error.status === 404) return `${error.message}: choose another model or provider in LLM settings.`;
  return explain(error.status, error.message);
}
