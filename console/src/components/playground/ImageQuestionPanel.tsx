// The image question: drop, paste or pick an image, ask about it; the image goes to the
// multimodal route as a data: URL content part and the answer streams in. The route's intake
// refuses images that are too large, of another format or with too many pixels (400/413): those
// are said in words, with what to do.
import { useRef, useState, type ClipboardEvent, type DragEvent } from "react";
import { authHeaders, errorFrom, noteCredits, type BackendConfig, type Schemas, type Session } from "../../api/client";
import type { paths } from "../../api/schema";
import { readEvents } from "../../api/sse";
import { explainImageQuestion } from "../../problems";
import { describe } from "../../store";

const QUESTION_PATH: keyof paths = "/api/multimodal-proxy/v1/chat/completions";

// OpenAI's image content part, which the multimodal route takes beside text parts.
interface ImagePart {
  type: "image_url";
  image_url: { url: string };
}
type QuestionRequest = Omit<Schemas["ChatCompletionRequest"], "messages"> & {
  messages: { role: "user"; content: (Schemas["TextPart"] | ImagePart)[] }[];
};

export interface ChosenImage {
  name: string;
  dataUrl: string;
  bytes: number;
}

export function readImage(file: File): Promise<ChosenImage> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name || "pasted image", dataUrl: String(reader.result), bytes: file.size });
    reader.onerror = () => reject(new Error("The file could not be read: choose it again."));
    reader.readAsDataURL(file);
  });
}

interface Props {
  session: Session;
  config: BackendConfig | null;
  onCallDone: () => void;
}

export function ImageQuestionPanel({ session, config, onCallDone }: Props) {
  const [image, setImage] = useState<ChosenImage | null>(null);
  const [question, setQuestion] = useState("What is in this image?");
  const [answer, setAnswer] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [streaming, setStreaming] = useState(false);
  const [dragging, setDragging] = useState(false);
  const abort = useRef<AbortController | null>(null);

  const take = async (file: File | undefined | null) => {
    if (!file) return;
    setError(null);
    setAnswer("");
    try {
      setImage(await readImage(file));
    } catch (err) {
      setError(describe(err));
    }
  };

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    void take(event.dataTransfer.files[0]);
  };
  const onPaste = (event: ClipboardEvent) => {
    const file = Array.from(event.clipboardData.files).find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      void take(file);
    }
  };

  const ask = async () => {
    if (!image || !question.trim() || streaming) return;
    setAnswer("");
    setError(null);
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    try {
      const request: QuestionRequest = {
        model: config?.model || null,
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: question.trim() },
              { type: "image_url", image_url: { url: image.dataUrl } },
            ],
          },
        ],
        stream: true,
        stream_options: { include_usage: true },
      };
      const response = await fetch(QUESTION_PATH, {
        method: "POST",
        headers: { ...authHeaders(session), "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      noteCredits(session, response);
      if (response.status === 401) session.onUnauthorized();
      if (!response.ok || !response.body) {
        const refusal = await errorFrom(response);
        setError(explainImageQuestion(refusal.status, refusal.message));
        return;
      }
      for await (const event of readEvents(response.body)) {
        if (event.data === "[DONE]") break;
        const chunk = JSON.parse(event.data) as {
          choices?: { delta?: { content?: string } }[];
          error?: { message: string };
        };
        if (chunk.error) {
          setError(`The answer stopped: ${chunk.error.message}`);
          break;
        }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) setAnswer((text) => text + delta);
      }
    } catch (err) {
      setError(controller.signal.aborted ? "Stopped." : describe(err));
    } finally {
      setStreaming(false);
      abort.current = null;
      onCallDone();
    }
  };

  return (
    <div className="image-question" onPaste={onPaste}>
      <p className="hint">
        Multimodal config: {config ? `${config.provider} · ${config.model} · ${config.mode === "byok" ? "BYOK" : "member"}` : "loading…"}
      </p>
      <div
        className={`drop-zone${dragging ? " dragging" : ""}`}
        data-testid="drop-zone"
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        {image ? (
          <img src={image.dataUrl} alt={`The image you chose: ${image.name}`} className="chosen-image" />
        ) : (
          <p>Drop an image here, paste one, or choose a file.</p>
        )}
        <label htmlFor="image-file" className="file-label">
          {image ? "Choose another image" : "Choose an image"}
        </label>
        <input
          id="image-file"
          type="file"
          accept="image/png,image/jpeg,image/webp,image/gif"
          onChange={(event) => {
            void take(event.target.files?.[0]);
            event.target.value = "";
          }}
        />
        {image && (
          <p className="hint">
            {image.name} · {formatBytes(image.bytes)}
          </p>
        )}
      </div>
      <form
        className="composer"
        onSubmit={(event) => {
          event.preventDefault();
          void ask();
        }}
      >
        <label htmlFor="image-question" className="visually-hidden">
          Question about the image
        </label>
        <textarea id="image-question" rows={2} value={question} onChange={(event) => setQuestion(event.target.value)} />
        {streaming ? (
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
            Stop
          </button>
        ) : (
          <button type="submit" key="start" className="primary" disabled={!image || !question.trim()}>
            Ask
          </button>
        )}
      </form>
      <section className="image-answer" aria-live="polite" aria-label="Answer">
        {answer && <p data-testid="image-answer">{answer}</p>}
        {streaming && !answer && <p className="hint">…</p>}
      </section>
      {error && (
        <p className="message-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
