import { describe, expect, it } from "vitest";
import { readEvents } from "./sse";

function streamOf(...pieces: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(encoder.encode(piece));
      controller.close();
    },
  });
}

async function all(body: ReadableStream<Uint8Array>) {
  const events = [];
  for await (const event of readEvents(body)) events.push(event);
  return events;
}

describe("readEvents", () => {
  it("joins events split across reads and skips comments", async () => {
    const events = await all(streamOf('data: {"a"', ':1}\n\n: keep-alive\n\nda', "ta: [DONE]\n\n"));
    expect(events).toEqual([
      { event: "message", data: '{"a":1}' },
      { event: "message", data: "[DONE]" },
    ]);
  });

  it("takes CRLF line ends, multi-line data and named events", async () => {
    const events = await all(streamOf("event: progress\r\ndata: one\r\ndata: two\r\n\r\n"));
    expect(events).toEqual([{ event: "progress", data: "one\ntwo" }]);
  });
});
