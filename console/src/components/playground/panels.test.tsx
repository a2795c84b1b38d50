import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { BackendConfig, Session } from "../../api/client";
import { ImageGenerationPanel } from "./ImageGenerationPanel";
import { ImageQuestionPanel } from "./ImageQuestionPanel";

const attr = (element: Element, name: string) => element.getAttribute(name);
const text = (element: Element) => element.textContent ?? "";

const session: Session = { token: "test-token", onUnauthorized: () => {}, onCredits: () => {} };
const config = (backend_type: "image" | "multimodal", provider: string, model: string): BackendConfig => ({
  backend_type,
  provider,
  model,
  temperature: null,
  mode: "byok",
  options: {},
  base_url: "",
  version: 1,
  api_key: { is_set: true, hint: "…abcd", fingerprint: "f", provider },
  updated_at: null,
});

/** A server-sent event stream the test writes to, one event at a time. */
class EventStream {
  controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly body = new ReadableStream<Uint8Array>({ start: (c) => void (this.controller = c) });
  send(event: string, data: unknown) {
    const text = `event: ${event}\ndata: ${typeof data === "string" ? data : JSON.stringify({ type: event, ...(data as object) })}\n\n`;
    this.controller.enqueue(new TextEncoder().encode(text));
  }
  done() {
    this.controller.enqueue(new TextEncoder().encode("data: [DONE]\n\n"));
    this.controller.close();
  }
}

interface Sent {
  path: string;
  body: Record<string, unknown>;
  signal: AbortSignal | null | undefined;
}
let sent: Sent[];
let answer: (sent: Sent) => Response;
let open: EventStream | null = null;

beforeEach(() => {
  sent = [];
  open = null;
  vi.stubGlobal("fetch", async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const call = { path: String(input), body: JSON.parse(String(init.body ?? "{}")), signal: init.signal };
    sent.push(call);
    const response = answer(call);
    // Like a browser: aborting the request errors the body being read.
    init.signal?.addEventListener("abort", () => open?.controller.error(new DOMException("The user aborted a request.", "AbortError")));
    return response;
  });
});

afterEach(() => vi.unstubAllGlobals());

const refusal = (status: number, message: string) =>
  new Response(JSON.stringify({ error: { message, type: "invalid_request_error", code: null, param: null } }), {
    status,
    headers: { "content-type": "application/json" },
  });
const streaming = (stream: EventStream) => {
  open = stream;
  return new Response(stream.body, { status: 200, headers: { "content-type": "text/event-stream" } });
};

describe("ImageGenerationPanel", () => {
  async function generate(onOpenSettings = vi.fn()) {
    const user = userEvent.setup();
    render(<ImageGenerationPanel session={session} config={config("image", "comfyui", "sdxl")} onCallDone={() => {}} onOpenSettings={onOpenSettings} />);
    await user.type(screen.getByLabelText("Prompt"), "a lighthouse");
    await user.click(screen.getByRole("button", { name: "Generate" }));
    return user;
  }

  it("moves the progress bar with the events, shows the preview, then the image in the gallery", async () => {
    const stream = new EventStream();
    answer = () => streaming(stream);
    await generate();
    expect(sent[0]).toMatchObject({ path: "/api/image-proxy/v1/images/generations", body: { prompt: "a lighthouse", model: "sdxl", n: 1, stream: true } });

    stream.send("image_generation.queued", { position: 2 });
    const bar = await screen.findByRole("progressbar", { name: "Image generation progress" });
    await waitFor(() => expect(attr(bar, "aria-valuetext")).toBe("Queued: position 2"));
    stream.send("image_generation.progress", { step: 3, total: 10, eta_seconds: 2.5, image_index: 0 });
    await waitFor(() => expect(attr(bar, "aria-valuenow")).toBe("3"));
    expect(attr(bar, "aria-valuemax")).toBe("10");
    expect(attr(bar, "aria-valuetext")).toBe("step 3 of 10, about 3 s left");
    stream.send("image_generation.preview", { b64_json: "QUJD", media_type: "image/jpeg", image_index: 0 });
    expect(attr(await screen.findByTestId("preview"), "src")).toBe("data:image/jpeg;base64,QUJD");
    stream.send("image_generation.progress", { step: 8, total: 10, eta_seconds: 0.5, image_index: 0 });
    await waitFor(() => expect(attr(bar, "aria-valuenow")).toBe("8"));
    stream.send("image_generation.completed", { b64_json: "RkFJTA==", output_format: "png", image_index: 0 });
    stream.done();
    const image = await screen.findByRole("img", { name: "Generated: a lighthouse" });
    expect(attr(image, "src")).toBe("data:image/png;base64,RkFJTA==");
    await waitFor(() => expect(text(screen.getByTestId("generation-status"))).toContain("Done."));
    expect(screen.queryByTestId("preview")).toBeNull();
    expect(screen.getByRole("button", { name: "Generate" }).hasAttribute("disabled")).toBe(false);
  });

  it("cancel aborts the request and says so", async () => {
    const stream = new EventStream();
    answer = () => streaming(stream);
    const user = await generate();
    stream.send("image_generation.progress", { step: 1, total: 10, image_index: 0 });
    await waitFor(() => expect(attr(screen.getByRole("progressbar"), "aria-valuenow")).toBe("1"));
    await user.click(screen.getByRole("button", { name: "Cancel" }));
    expect(sent[0]!.signal?.aborted).toBe(true);
    await waitFor(() => expect(text(screen.getByTestId("generation-status"))).toContain("Cancelled."));
    expect(screen.getByRole("button", { name: "Generate" }).hasAttribute("disabled")).toBe(false);
  });

  it("member mode off (403): says image generation needs your own key, with a button to the Image tab", async () => {
    answer = () => refusal(403, "image generation is not offered in member mode");
    const onOpenSettings = vi.fn();
    const user = await generate(onOpenSettings);
    expect(text(await screen.findByRole("alert"))).toMatch(/^Image generation needs your own API key/);
    await user.click(screen.getByRole("button", { name: "Open the Image tab of LLM settings" }));
    expect(onOpenSettings).toHaveBeenCalledWith("image");
    expect(screen.queryByRole("progressbar")).toBeNull();
  });

  it.each([
    [402, "insufficient credits: 0.20 needed", /^Not enough credits for these images\. insufficient credits/],
    [429, "rate limit reached", /^Too many requests right now: wait a moment/],
    [502, "Stability answered 500", /^The provider or the platform failed: Stability answered 500/],
  ])("a %i is a message, not a broken panel", async (status, message, expected) => {
    answer = () => refusal(status, message);
    await generate();
    expect(text(await screen.findByRole("alert"))).toMatch(expected);
    expect(screen.queryByRole("button", { name: "Open the Image tab of LLM settings" })).toBeNull();
  });

  it("an error event mid-job stops the bar and shows the provider's words", async () => {
    const stream = new EventStream();
    answer = () => streaming(stream);
    await generate();
    stream.send("image_generation.progress", { step: 2, total: 10, image_index: 0 });
    stream.send("error", { error: { message: "the sampler ran out of memory", code: "upstream_error" } });
    stream.done();
    expect(text(await screen.findByRole("alert"))).toContain("The generation stopped: the sampler ran out of memory");
  });
});

describe("ImageQuestionPanel", () => {
  const png = () => new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])], "dot.png", { type: "image/png" });

  async function ask() {
    const user = userEvent.setup();
    render(<ImageQuestionPanel session={session} config={config("multimodal", "openai", "gpt-4o")} onCallDone={() => {}} />);
    await user.upload(screen.getByLabelText("Choose an image"), png());
    expect(await screen.findByRole("img", { name: "The image you chose: dot.png" })).toBeTruthy();
    await user.click(screen.getByRole("button", { name: "Ask" }));
  }

  it("sends the image as a data: URL content part and streams the answer", async () => {
    const stream = new EventStream();
    answer = () => streaming(stream);
    await ask();
    const body = sent[0]!.body as { messages: { content: { type: string; image_url?: { url: string } }[] }[]; stream: boolean; model: string };
    expect(sent[0]!.path).toBe("/api/multimodal-proxy/v1/chat/completions");
    expect(body.stream).toBe(true);
    expect(body.model).toBe("gpt-4o");
    expect(body.messages[0]!.content[0]).toEqual({ type: "text", text: "What is in this image?" });
    expect(body.messages[0]!.content[1]!.image_url!.url).toMatch(/^data:image\/png;base64,iVBORw0KGgo=?$/);
    stream.send("message", JSON.stringify({ choices: [{ delta: { content: "I see " } }] }));
    stream.send("message", JSON.stringify({ choices: [{ delta: { content: "image:png:1x1:red" } }] }));
    stream.done();
    await waitFor(() => expect(text(screen.getByTestId("image-answer"))).toContain("I see image:png:1x1:red"));
  });

  it.each([
    [400, "messages[0].content[1]: the image is larger than 20971520 bytes", /^The image was refused: the image is larger than 20971520 bytes\. Use a PNG, JPEG, WEBP or GIF/],
    [400, "messages[0].content[1]: unsupported image format: send PNG, JPEG, WEBP or GIF", /^The image was refused: unsupported image format/],
    [400, "messages[0].content[1]: the image has too many pixels (9000x9000); at most 40000000", /^The image was refused: the image has too many pixels \(9000x9000\)/],
    [413, "the request body is larger than 26214400 bytes", /^The image is too large to send \(the request body is larger/],
  ])("the intake's refusal (%i) is said plainly", async (status, message, expected) => {
    answer = () => refusal(status, message);
    await ask();
    expect(text(await screen.findByRole("alert"))).toMatch(expected);
  });
});
