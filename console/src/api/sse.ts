// Server-sent events from a fetch body: the chat stream is a POST with a bearer token, which
// EventSource cannot send.

export interface SseEvent {
  event: string;
  data: string;
}

/** Splits a byte stream into events (WHATWG rules: blank line ends an event, data: lines join). */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  // The DOM typings of TextDecoderStream take any BufferSource: bytes are one of them.
  const decoder = new TextDecoderStream() as unknown as ReadableWritablePair<string, Uint8Array>;
  const reader = body.pipeThrough(decoder).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = nextBoundary(buffer)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^(\r\n\r\n|\n\n|\r\r)/, "");
        const parsed = parseBlock(block);
        if (parsed) yield parsed;
      }
    }
    const last = parseBlock(buffer);
    if (last) yield last;
  } finally {
    reader.releaseLock();
  }
}

function nextBoundary(buffer: string): number {
  const candidates = ["\r\n\r\n", "\n\n", "\r\r"]
    .map((separator) => buffer.indexOf(separator))
    .filter((index) => index >= 0);
  return candidates.length ? Math.min(...candidates) : -1;
}

function parseBlock(block: string): SseEvent | null {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
  }
  return data.length ? { event, data: data.join("\n") } : null;
}
