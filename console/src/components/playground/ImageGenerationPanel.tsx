// Image generation in the playground: a prompt, a progress bar from the stream's events (queue
// position, step / total, ETA), previews as they arrive, a Cancel that aborts the request (the
// gateway sees the client leave and cancels the job at the provider), and a gallery.
import { useEffect, useRef, useState } from "react";
import { authHeaders, errorFrom, noteCredits, type BackendConfig, type Session } from "../../api/client";
import type { paths } from "../../api/schema";
import { readEvents } from "../../api/sse";
import { explainImageGeneration, type Problem } from "../../problems";
import { describe } from "../../store";
import { applyEvent, progress, started, type GalleryImage, type Generation } from "./generation";

// Typed against the OpenAPI document like every other call: a renamed route fails the build.
const GENERATIONS_PATH: keyof paths = "/api/image-proxy/v1/images/generations";
type ImageRequest = NonNullable<paths["/api/image-proxy/v1/images/generations"]["post"]["requestBody"]>["content"]["application/json"];
const SIZES = ["", "512x512", "768x768", "1024x1024"];

interface Props {
  session: Session;
  config: BackendConfig | null;
  onCallDone: () => void;
  onOpenSettings: (tab: "image") => void;
  /** Tells the console a refusal's status (a 403: member mode is off for images). */
  onRefusal?: (status: number) => void;
}

export function ImageGenerationPanel({ session, config, onCallDone, onOpenSettings, onRefusal }: Props) {
  const [prompt, setPrompt] = useState("");
  const [size, setSize] = useState("");
  const [count, setCount] = useState(1);
  const [job, setJob] = useState<Generation | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [gallery, setGallery] = useState<(GalleryImage & { prompt: string })[]>([]);
  const abort = useRef<AbortController | null>(null);
  const running = job !== null && ["starting", "queued", "running"].includes(job.phase);

  // A refusal was about the settings the user has now changed: it no longer applies.
  const version = config?.version;
  useEffect(() => setProblem(null), [version]);

  // Leaving the page stops a running job too.
  useEffect(() => () => abort.current?.abort(), []);

  const generate = async () => {
    const text = prompt.trim();
    if (!text || running) return;
    setProblem(null);
    const controller = new AbortController();
    abort.current = controller;
    let current = started(count);
    setJob(current);
    const kept = new Set<number>();
    try {
      const request: ImageRequest = {
        prompt: text,
        model: config?.model || null,
        n: count,
        size: size || null,
        stream: true,
      };
      const response = await fetch(GENERATIONS_PATH, {
        method: "POST",
        headers: { ...authHeaders(session), "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      noteCredits(session, response);
      if (response.status === 401) session.onUnauthorized();
      if (!response.ok || !response.body) {
        const error = await errorFrom(response);
        setProblem(explainImageGeneration(error.status, error.message));
        onRefusal?.(error.status);
        setJob(null);
        return;
      }
      for await (const event of readEvents(response.body)) {
        current = applyEvent(current, event.event, event.data);
        setJob(current);
        // Each finished image joins the gallery at once, before the others are done.
        const fresh = current.images.filter((image) => !kept.has(image.index));
        if (fresh.length) {
          fresh.forEach((image) => kept.add(image.index));
          setGallery((shown) => [...fresh.map((image) => ({ ...image, prompt: text })), ...shown]);
        }
        if (event.data === "[DONE]" || current.phase === "failed") break;
      }
      if (current.phase === "failed") setProblem({ text: current.error ?? "The generation stopped." });
      else if (current.phase !== "done") setJob({ ...current, phase: "done" });
    } catch (error) {
      if (controller.signal.aborted) setJob({ ...current, phase: "cancelled" });
      else {
        setProblem({ text: describe(error) });
        setJob({ ...current, phase: "failed" });
      }
    } finally {
      abort.current = null;
      onCallDone();
    }
  };

  const bar = job ? progress(job) : null;
  const previews = job && running ? Object.entries(job.previews) : [];
  return (
    <div className="image-generation">
      <p className="hint">
        Image config: {config ? `${config.provider} · ${config.model} · ${config.mode === "byok" ? "BYOK" : "member"}` : "loading…"}
      </p>
      <form
        className="image-form"
        onSubmit={(event) => {
          event.preventDefault();
          void generate();
        }}
      >
        <label htmlFor="image-prompt">Prompt</label>
        <textarea
          id="image-prompt"
          rows={2}
          value={prompt}
          placeholder="A lighthouse at dusk, watercolour"
          onChange={(event) => setPrompt(event.target.value)}
        />
        <div className="image-options">
          <label htmlFor="image-size">Size</label>
          <select id="image-size" value={size} onChange={(event) => setSize(event.target.value)}>
            {SIZES.map((value) => (
              <option key={value} value={value}>
                {value || "The model's default"}
              </option>
            ))}
          </select>
          <label htmlFor="image-count">Images</label>
          <select id="image-count" value={count} onChange={(event) => setCount(Number(event.target.value))}>
            {[1, 2, 3, 4].map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
          {running ? (
            <button
            type="button"
            key="stop"
            onClick={(event) => {
              // The stop settles the call within this click (microtasks), and the idle button
              // that replaces this one must not take the click as a submit.
              event.preventDefault();
              abort.current?.abort();
            }}
          >
              Cancel
            </button>
          ) : (
            <button type="submit" key="start" className="primary" disabled={!prompt.trim()}>
              Generate
            </button>
          )}
        </div>
      </form>

      {problem && (
        <div className="message-error" role="alert">
          <p>{problem.text}</p>
          {problem.openSettings && (
            <button type="button" onClick={() => onOpenSettings("image")}>
              Open the Image tab of LLM settings
            </button>
          )}
        </div>
      )}

      {job && bar && (
        <div className="generation-progress">
          <div
            className="progress"
            role="progressbar"
            aria-label="Image generation progress"
            aria-valuemin={0}
            aria-valuemax={bar.max}
            aria-valuenow={bar.now}
            aria-valuetext={bar.text}
          >
            <div className="progress-fill" style={{ width: `${(100 * bar.now) / bar.max}%` }} />
          </div>
          <p className="hint" aria-live="polite" data-testid="generation-status">
            {job.phase === "cancelled" ? "Cancelled." : job.phase === "done" ? "Done." : bar.text}
          </p>
        </div>
      )}

      {previews.length > 0 && (
        <div className="previews">
          {previews.map(([index, src]) => (
            <img key={index} src={src} alt={`Preview of image ${Number(index) + 1}, still generating`} data-testid="preview" />
          ))}
        </div>
      )}

      <section className="gallery" aria-label="Generated images">
        {gallery.length === 0 ? (
          <p className="hint">Generated images appear here.</p>
        ) : (
          <ul>
            {gallery.map((image, i) => (
              <li key={`${image.src.slice(-32)}-${i}`}>
                <GalleryPicture session={session} image={image} alt={`Generated: ${image.revisedPrompt ?? image.prompt}`} />
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

/** A data: image as is; a signed gateway URL needs the bearer token, so it is fetched first. */
function GalleryPicture({ session, image, alt }: { session: Session; image: GalleryImage; alt: string }) {
  const [src, setSrc] = useState(image.src.startsWith("data:") ? image.src : "");
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    if (image.src.startsWith("data:")) return;
    let objectUrl = "";
    fetch(image.src, { headers: authHeaders(session) })
      .then(async (response) => {
        if (!response.ok) throw new Error(String(response.status));
        objectUrl = URL.createObjectURL(await response.blob());
        setSrc(objectUrl);
      })
      .catch(() => setFailed(true));
    return () => {
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [image.src, session]);
  if (failed) return <p className="inline-error">This image's link has expired.</p>;
  return src ? <img src={src} alt={alt} data-testid="gallery-image" /> : <p className="hint">Loading…</p>;
}
