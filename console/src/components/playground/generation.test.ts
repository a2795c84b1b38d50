import { describe, expect, it } from "vitest";
import { applyEvent, progress, started, type Generation } from "./generation";

const run = (job: Generation, ...events: [string, unknown][]) =>
  events.reduce((current, [event, data]) => applyEvent(current, event, typeof data === "string" ? data : JSON.stringify(data)), job);

describe("the image generation's progress bar", () => {
  it("says the queue position, then step / total with the ETA", () => {
    let job = run(started(1), ["image_generation.queued", { type: "image_generation.queued", position: 2 }]);
    expect(job.phase).toBe("queued");
    expect(progress(job)).toEqual({ now: 0, max: 1, text: "Queued: position 2" });

    job = run(job, ["image_generation.progress", { step: 3, total: 20, eta_seconds: 4.2, image_index: 0 }]);
    expect(job.phase).toBe("running");
    expect(progress(job)).toEqual({ now: 3, max: 20, text: "step 3 of 20, about 4 s left" });

    job = run(job, ["image_generation.progress", { step: 7, total: 20, eta_seconds: null, image_index: 0 }]);
    expect(progress(job)).toEqual({ now: 7, max: 20, text: "step 7 of 20" });
  });

  it("counts every image's steps, and never moves back on a late event", () => {
    let job = run(
      started(2),
      ["image_generation.progress", { step: 10, total: 10, image_index: 0 }],
      ["image_generation.progress", { step: 4, total: 10, image_index: 1 }],
    );
    expect(progress(job)?.now).toBe(14);
    expect(progress(job)?.max).toBe(20);
    expect(progress(job)?.text).toMatch(/^Image 2 of 2, step 4 of 10/);
    job = run(job, ["image_generation.progress", { step: 9, total: 10, image_index: 0 }]);
    expect(progress(job)?.now).toBe(14);
    job = run(job, ["image_generation.progress", { step: 2, total: 10, image_index: 1 }]);
    expect(progress(job)?.now).toBe(14);
  });

  it("shows previews while running; a completed image replaces its preview and the bar is full at [DONE]", () => {
    let job = run(
      started(1),
      ["image_generation.progress", { step: 5, total: 10, image_index: 0 }],
      ["image_generation.preview", { b64_json: "QUJD", media_type: "image/jpeg", image_index: 0 }],
    );
    expect(job.previews[0]).toBe("data:image/jpeg;base64,QUJD");
    job = run(job, ["image_generation.completed", { b64_json: "RkFJTA==", output_format: "png", image_index: 0 }]);
    expect(job.previews).toEqual({});
    expect(job.images).toEqual([{ src: "data:image/png;base64,RkFJTA==", index: 0, revisedPrompt: undefined }]);
    job = run(job, ["message", "[DONE]"]);
    expect(job.phase).toBe("done");
    expect(progress(job)?.now).toBe(10);
  });

  it("takes OpenAI's partial images as previews and a signed URL as the result", () => {
    const job = run(
      started(1),
      ["image_generation.partial_image", { b64_json: "UEFS", output_format: "webp", partial_image_index: 0 }],
      ["image_generation.completed", { url: "https://gw/api/image-proxy/v1/images/files/x?expires=1&signature=s", image_index: 0 }],
    );
    expect(job.images[0]?.src).toContain("/images/files/x");
    const partial = run(started(1), ["image_generation.partial_image", { b64_json: "UEFS", output_format: "webp" }]);
    expect(partial.previews[0]).toBe("data:image/webp;base64,UEFS");
  });

  it("ends on an error event with the provider's words", () => {
    const job = run(
      started(1),
      ["image_generation.progress", { step: 2, total: 10 }],
      ["error", { error: { message: "ComfyUI failed: out of memory", code: "upstream_error" } }],
      ["message", "[DONE]"],
    );
    expect(job.phase).toBe("failed");
    expect(job.error).toBe("The generation stopped: ComfyUI failed: out of memory");
  });
});
