// Image generation as the playground shows it: one job's state, built from the gateway's image
// events (gateway/src/gateway/routes/images.py, ImageEventWriter). Pure, so the rules of the
// progress bar are tested without a browser.

export type Phase = "starting" | "queued" | "running" | "done" | "cancelled" | "failed";

export interface GalleryImage {
  /** A data: URL, or a signed gateway URL (fetched with the bearer token into a blob: URL). */
  src: string;
  index: number;
  revisedPrompt?: string;
}

export interface Generation {
  phase: Phase;
  /** Images asked for (n). */
  count: number;
  /** Place in the provider's queue while waiting (1 = next). */
  position: number | null;
  imageIndex: number;
  step: number;
  total: number;
  etaSeconds: number | null;
  /** The latest in-progress image per image index (previews and OpenAI's partial images). */
  previews: Record<number, string>;
  images: GalleryImage[];
  error: string | null;
}

export function started(count: number): Generation {
  return {
    phase: "starting",
    count: Math.max(1, count),
    position: null,
    imageIndex: 0,
    step: 0,
    total: 0,
    etaSeconds: null,
    previews: {},
    images: [],
    error: null,
  };
}

interface EventData {
  position?: number;
  step?: number;
  total?: number;
  eta_seconds?: number | null;
  image_index?: number;
  partial_image_index?: number;
  b64_json?: string;
  url?: string;
  media_type?: string;
  output_format?: string;
  revised_prompt?: string;
  error?: { message?: string };
}

function dataUrl(b64: string, mediaType: string | undefined, format: string | undefined): string {
  const type = mediaType || `image/${format === "jpg" ? "jpeg" : format || "png"}`;
  return `data:${type};base64,${b64}`;
}

/** The job after one server-sent event. Unknown events change nothing. */
export function applyEvent(job: Generation, event: string, raw: string): Generation {
  if (raw === "[DONE]") return job.phase === "failed" ? job : { ...job, phase: "done" };
  let data: EventData;
  try {
    data = JSON.parse(raw) as EventData;
  } catch {
    return job;
  }
  switch (event) {
    case "image_generation.queued":
      return { ...job, phase: "queued", position: data.position ?? null };
    case "image_generation.progress": {
      const imageIndex = data.image_index ?? 0;
      // Steps only move forward: a late event from an earlier image never pulls the bar back.
      if (imageIndex < job.imageIndex || (imageIndex === job.imageIndex && (data.step ?? 0) < job.step)) return job;
      return {
        ...job,
        phase: "running",
        position: null,
        imageIndex,
        step: data.step ?? 0,
        total: data.total ?? job.total,
        etaSeconds: data.eta_seconds ?? null,
      };
    }
    case "image_generation.preview":
    case "image_generation.partial_image": {
      if (!data.b64_json) return job;
      const index = data.image_index ?? 0;
      const src = dataUrl(data.b64_json, data.media_type, data.output_format);
      return { ...job, phase: job.phase === "done" ? job.phase : "running", position: null, previews: { ...job.previews, [index]: src } };
    }
    case "image_generation.completed": {
      const index = data.image_index ?? job.images.length;
      const src = data.b64_json ? dataUrl(data.b64_json, undefined, data.output_format) : data.url;
      if (!src) return job;
      const previews = { ...job.previews };
      delete previews[index];
      const image: GalleryImage = { src, index, revisedPrompt: data.revised_prompt };
      return { ...job, previews, images: [...job.images, image] };
    }
    case "error":
      return { ...job, phase: "failed", error: `The generation stopped: ${data.error?.message ?? "the provider failed"}` };
    default:
      return job;
  }
}

/** The progress bar's numbers: steps done of all steps (every image), as ARIA wants them. */
export function progress(job: Generation): { now: number; max: number; text: string } | null {
  if (job.phase === "queued") {
    return { now: 0, max: 1, text: job.position ? `Queued: position ${job.position}` : "Queued" };
  }
  if (job.phase === "starting") return { now: 0, max: 1, text: "Starting…" };
  if (job.total <= 0) return job.phase === "running" ? { now: 0, max: 1, text: "Generating…" } : null;
  const max = job.total * job.count;
  const now = job.phase === "done" ? max : Math.min(max, job.imageIndex * job.total + job.step);
  const image = job.count > 1 ? `Image ${job.imageIndex + 1} of ${job.count}, ` : "";
  const eta = job.etaSeconds !== null && job.phase === "running" ? `, about ${formatEta(job.etaSeconds)} left` : "";
  return { now, max, text: `${image}step ${job.step} of ${job.total}${eta}` };
}

export function formatEta(seconds: number): string {
  if (seconds < 1) return "under a second";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.round(seconds / 60)} min`;
}
