// The playground: a panel per backend type: a streamed chat, an image question, image generation.
import { useRef, useState } from "react";
import {
  authHeaders,
  errorFrom,
  noteCredits,
  type BackendConfig,
  type BackendType,
  type Schemas,
  type Session,
} from "../api/client";
import type { paths } from "../api/schema";
import { readEvents } from "../api/sse";
import { explain } from "../problems";
import { describe } from "../store";
import { BackendTypeSelector, panelId, tabId } from "./LLMSettingsModal/BackendTypeSelector";
import { ImageGenerationPanel } from "./playground/ImageGenerationPanel";
import { ImageQuestionPanel } from "./playground/ImageQuestionPanel";

interface Props {
  session: Session;
  activeBackend: BackendType;
  onSelectBackend: (type: BackendType) => void;
  configs: Record<BackendType, BackendConfig> | null;
  onCallDone: () => void;
  /** Opens LLM settings on a tab (where a refusal's fix is). */
  onOpenSettings: (tab: BackendType) => void;
  onImageRefusal?: (status: number) => void;
}

const ID = "playground";
// Typed against the OpenAPI document like every other call: a renamed route fails the build.
const CHAT_PATH: keyof paths = "/api/text-proxy/v1/chat/completions";

export function Playground(props: Props) {
  return (
    <section className="playground" aria-labelledby={`${ID}-title`}>
      <h1 id={`${ID}-title`}>Playground</h1>
      <BackendTypeSelector idPrefix={ID} label="Playground" selected={props.activeBackend} onSelect={props.onSelectBackend} />
      {/* Every panel stays mounted (hidden when not selected): a running generation, its gallery
          and a typed question survive a look at another tab. */}
      {(["text", "multimodal", "image"] as const).map((type) => (
        <div
          key={type}
          role="tabpanel"
          id={panelId(ID, type)}
          aria-labelledby={tabId(ID, type)}
          className={`tab-panel backend-${type}`}
          hidden={props.activeBackend !== type}
        >
          {type === "text" && <ChatPanel session={props.session} config={props.configs?.text ?? null} onCallDone={props.onCallDone} />}
          {type === "multimodal" && (
            <ImageQuestionPanel session={props.session} config={props.configs?.multimodal ?? null} onCallDone={props.onCallDone} />
          )}
          {type === "image" && (
            <ImageGenerationPanel
              session={props.session}
              config={props.configs?.image ?? null}
              onCallDone={props.onCallDone}
              onOpenSettings={props.onOpenSettings}
              onRefusal={props.onImageRefusal}
            />
          )}
        </div>
      ))}
    </section>
  );
}

interface Message {
  role: "user" | "assistant";
  content: string;
  error?: string;
}

export function ChatPanel({ session, config, onCallDone }: { session: Session; config: BackendConfig | null; onCallDone: () => void }) {
  const [messages, setMessages] = useState<Message[]>([]);
  const [input, setInput] = useState("");
  const [streaming, setStreaming] = useState(false);
  const abort = useRef<AbortController | null>(null);

  const setLast = (change: (message: Message) => Message) =>
    setMessages((current) => [...current.slice(0, -1), change(current[current.length - 1]!)]);

  const send = async () => {
    const text = input.trim();
    if (!text || streaming) return;
    const history = [...messages.filter((m) => !m.error), { role: "user" as const, content: text }];
    setMessages([...history, { role: "assistant", content: "" }]);
    setInput("");
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    try {
      const request: Schemas["ChatCompletionRequest"] = {
        model: config?.model || null,
        messages: history.map(({ role, content }) => ({ role, content })),
        stream: true,
        stream_options: { include_usage: true },
      };
      const response = await fetch(CHAT_PATH, {
        method: "POST",
        headers: { ...authHeaders(session), "content-type": "application/json", accept: "text/event-stream" },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      noteCredits(session, response);
      if (response.status === 401) session.onUnauthorized();
      if (!response.ok || !response.body) {
        const error = await errorFrom(response);
        setLast((m) => ({ ...m, error: explain(error.status, error.message) }));
        return;
      }
      for await (const event of readEvents(response.body)) {
        if (event.data === "[DONE]") break;
        const chunk = JSON.parse(event.data) as {
          choices?: { delta?: { content?: string } }[];
          error?: { message: string; code?: string };
        };
        if (chunk.error) {
          setLast((m) => ({ ...m, error: `The answer stopped: ${chunk.error!.message}` }));
          break;
        }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) setLast((m) => ({ ...m, content: m.content + delta }));
      }
    } catch (error) {
      if (controller.signal.aborted) setLast((m) => ({ ...m, error: "Stopped." }));
      else setLast((m) => ({ ...m, error: describe(error) }));
    } finally {
      setStreaming(false);
      abort.current = null;
      onCallDone();
    }
  };

  return (
    <div className="chat">
      <p className="hint">
        Text config: {config ? `${config.provider} · ${config.model} · ${config.mode === "byok" ? "BYOK" : "member"}` : "loading…"}
      </p>
      <ol className="messages" aria-live="polite" aria-label="Conversation">
        {messages.map((message, index) => (
          <li key={index} className={`message message-${message.role}`}>
            <span className="visually-hidden">{message.role === "user" ? "You" : "Assistant"}: </span>
            {message.content && <p>{message.content}</p>}
            {message.role === "assistant" && !message.content && !message.error && streaming && index === messages.length - 1 && (
              <p className="hint">…</p>
            )}
            {message.error && (
              <p className="message-error" role="alert">
                {message.error}
              </p>
            )}
          </li>
        ))}
      </ol>
      <form
        className="composer"
        onSubmit={(event) => {
          event.preventDefault();
          void send();
        }}
      >
        <label htmlFor="chat-input" className="visually-hidden">
          Message
        </label>
        <textarea
          id="chat-input"
          rows={2}
          value={input}
          placeholder="Ask something… (Enter sends, Shift+Enter for a new line)"
          onChange={(event) => setInput(event.target.value)}
          onKeyDown={(event) => {
            if (event.key === "Enter" && !event.shiftKey) {
              event.preventDefault();
              void send();
            }
          }}
        />
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
          <button type="submit" key="start" className="primary" disabled={!input.trim()}>
            Send
          </button>
        )}
      </form>
    </div>
  );
}
