import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useState } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AllConfigs, BackendType, Session } from "../../api/client";
import type { StatusState } from "../../store";
import { FakeGateway } from "../../test/fakeGateway";
import { LLMSettingsModal } from "./LLMSettingsModal";

const SECRET_KEY = "sk-user-secret-key-abcd1234WXYZ";

let gateway: FakeGateway;

beforeEach(() => {
  gateway = new FakeGateway();
  vi.stubGlobal("fetch", gateway.fetch);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

const session: Session = { token: "test-token", onUnauthorized: () => {}, onCredits: () => {} };
const statuses: Record<BackendType, StatusState> = {
  text: { state: "ok", status: { ok: true, provider: "openai", model: "gpt-4o-mini", detail: "", latency_ms: 12 } },
  multimodal: { state: "unavailable", detail: "coming with multimodal-svc" },
  image: { state: "unavailable", detail: "coming with image-svc" },
};

/** The modal as App uses it: it owns the configs and takes what a save returns. */
function Harness({
  initialTab,
  memberAccount = true,
  imageMemberOff = false,
}: {
  initialTab?: BackendType;
  memberAccount?: boolean;
  imageMemberOff?: boolean;
}) {
  const [configs, setConfigs] = useState<AllConfigs>(gateway.configs);
  return (
    <LLMSettingsModal
      session={session}
      configs={configs}
      presets={gateway.presets}
      memberAccount={memberAccount}
      imageMemberOff={imageMemberOff}
      statuses={statuses}
      initialTab={initialTab}
      onCheckStatus={async () => {}}
      onSaved={(config) => setConfigs((current) => ({ ...current, [config.backend_type]: config }))}
      onClose={() => {}}
    />
  );
}

const panel = (name: RegExp) => {
  const tab = screen.getByRole("tab", { name });
  return document.getElementById(tab.getAttribute("aria-controls")!)!;
};

async function openTab(user: ReturnType<typeof userEvent.setup>, name: RegExp) {
  await user.click(screen.getByRole("tab", { name }));
  return within(panel(name));
}

describe("LLMSettingsModal", () => {
  it("shows model and temperature in member mode, and no API key field", () => {
    render(<Harness />);
    const text = within(panel(/Text Generation/));
    expect(text.getByRole("radio", { name: /Member/ })).toHaveProperty("checked", true);
    expect(text.getByLabelText("Model")).toBeTruthy();
    expect(text.getByRole("slider", { name: /Temperature/ })).toBeTruthy();
    expect(text.queryByLabelText("API key")).toBeNull();
    expect(text.queryByLabelText("Base URL")).toBeNull();
  });

  it("shows an API key field in BYOK mode on each of the three tabs", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    for (const name of [/Text Generation/, /Multimodal/, /Image Generation/]) {
      const tab = await openTab(user, name);
      await user.click(tab.getByRole("radio", { name: /BYOK/ }));
      expect(tab.getByLabelText("API key")).toHaveProperty("type", "password");
      expect(tab.getByLabelText("Model")).toBeTruthy();
    }
  });

  it("hides temperature where the backend has none (image generation)", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const image = await openTab(user, /Image Generation/);
    expect(image.queryByRole("slider")).toBeNull();
    const multimodal = await openTab(user, /Multimodal/);
    expect(multimodal.getByRole("slider", { name: /Temperature/ })).toBeTruthy();
  });

  it("disables the Image tab's controls in member mode and says why", async () => {
    gateway.saveElsewhere("image", { mode: "member" });
    const user = userEvent.setup();
    render(<Harness initialTab="image" />);
    expect(screen.getByRole("tab", { name: /Image Generation/ }).textContent).toContain("BYOK only");
    const image = within(panel(/Image Generation/));
    expect(image.getByTestId("member-unavailable").textContent).toMatch(/not offered in member mode.*choose BYOK/);
    // Inside a disabled fieldset: the browser (and assistive technology) treat it as disabled.
    expect(image.getByLabelText("Model").matches(":disabled")).toBe(true);
    expect(image.getByRole("button", { name: "Save" })).toHaveProperty("disabled", true);
    // The way out stays open: BYOK enables the controls.
    await user.click(image.getByRole("radio", { name: /BYOK/ }));
    expect(image.queryByTestId("member-unavailable")).toBeNull();
    expect(image.getByLabelText("Model").matches(":disabled")).toBe(false);
    // Text and multimodal stay usable in member mode.
    const text = await openTab(user, /Text Generation/);
    expect(text.getByLabelText("Model").matches(":disabled")).toBe(false);
  });

  it("offers member mode on the Image tab when the operator's switch is on", () => {
    gateway.presets = gateway.presets.map((p) => (p.backend_type === "image" ? { ...p, member_allowed: true } : p));
    gateway.saveElsewhere("image", { mode: "member" });
    render(<Harness initialTab="image" />);
    const image = within(panel(/Image Generation/));
    expect(image.queryByTestId("member-unavailable")).toBeNull();
    expect(image.getByLabelText("Model").matches(":disabled")).toBe(false);
  });

  it("disables member mode on the Image tab when the image route refused it (403), even where presets allow it", () => {
    gateway.presets = gateway.presets.map((p) => (p.backend_type === "image" ? { ...p, member_allowed: true } : p));
    gateway.saveElsewhere("image", { mode: "member" });
    render(<Harness initialTab="image" imageMemberOff />);
    expect(screen.getByRole("tab", { name: /Image Generation/ }).textContent).toContain("BYOK only");
    const image = within(panel(/Image Generation/));
    expect(image.getByTestId("member-unavailable").textContent).toMatch(/choose BYOK/);
    expect(image.getByLabelText("Model").matches(":disabled")).toBe(true);
  });

  it("never shows a saved key again: only its hint, with a delete button", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const text = within(panel(/Text Generation/));
    await user.click(text.getByRole("radio", { name: /BYOK/ }));
    await user.type(text.getByLabelText("API key"), SECRET_KEY);
    await user.click(text.getByRole("button", { name: "Save" }));
    await text.findByText(/Saved \(version 1\)/);
    expect(gateway.calls.at(-1)!.body).toMatchObject({ mode: "byok", api_key: SECRET_KEY });
    expect(gateway.calls.at(-1)!.headers["if-match"]).toBe('"0"');
    expect(text.getByLabelText("API key")).toHaveProperty("value", "");
    expect(text.getByTestId("key-hint").textContent).toContain("…WXYZ");
    expect(document.body.innerHTML).not.toContain(SECRET_KEY);

    await user.click(text.getByRole("button", { name: "Delete key" }));
    await text.findByText("API key deleted.");
    expect(gateway.calls.some((c) => c.method === "DELETE" && c.path === "/api/settings/llm/text/api-key")).toBe(true);
    expect(text.queryByTestId("key-hint")).toBeNull();
  });

  it("shows the server's refusal of a base URL next to the field", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const text = within(panel(/Text Generation/));
    await user.click(text.getByRole("radio", { name: /BYOK/ }));
    await user.selectOptions(text.getByLabelText("Provider"), "ollama");
    await user.type(text.getByLabelText("Base URL"), "http://169.254.169.254/");
    gateway.refuseNext = [400, "base_url may not point at a link-local address", "base_url"];
    await user.click(text.getByRole("button", { name: "Save" }));
    const refusal = await text.findByText(/may not point at a link-local address/);
    expect(text.getByLabelText("Base URL").getAttribute("aria-describedby")).toBe(refusal.id);
  });

  it("on a 409 shows what the other save changed and lets the user choose", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const text = within(panel(/Text Generation/));
    await user.selectOptions(text.getByLabelText("Model"), "gpt-4o");
    // Another device saves first.
    gateway.saveElsewhere("text", { provider: "anthropic", model: "claude-3-5-haiku-latest" });
    await user.click(text.getByRole("button", { name: "Save" }));

    const conflict = within(await text.findByRole("alert"));
    expect(conflict.getByText(/Saved elsewhere first \(now version 1\)/)).toBeTruthy();
    const modelRow = conflict.getByRole("row", { name: /Model/ });
    expect(modelRow.textContent).toContain("claude-3-5-haiku-latest");
    expect(modelRow.textContent).toContain("gpt-4o");
    expect(conflict.getByRole("row", { name: /Provider/ }).textContent).toContain("anthropic");
    expect(gateway.configs.text.model).toBe("claude-3-5-haiku-latest"); // nothing overwritten

    await user.click(conflict.getByRole("button", { name: /Keep mine/ }));
    await text.findByText(/Saved \(version 2\)/);
    expect(gateway.calls.at(-1)!.headers["if-match"]).toBe('"1"');
    expect(gateway.configs.text.model).toBe("gpt-4o");
  });

  it("on a 409 can take the saved version instead", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const text = within(panel(/Text Generation/));
    await user.selectOptions(text.getByLabelText("Model"), "gpt-4o");
    gateway.saveElsewhere("text", { model: "gpt-4o-mini", temperature: 1.5 });
    await user.click(text.getByRole("button", { name: "Save" }));
    await user.click(await text.findByRole("button", { name: "Use the saved version" }));
    expect(text.getByLabelText("Model")).toHaveProperty("value", "gpt-4o-mini");
    expect(text.getByRole("slider", { name: /Temperature/ })).toHaveProperty("value", "1.5");
    expect(gateway.configs.text.version).toBe(1);
  });

  it("moves between tabs with the arrow keys, Home and End (one tab stop)", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    const tabs = screen.getAllByRole("tab");
    expect(tabs.map((t) => t.tabIndex)).toEqual([0, -1, -1]);
    await waitFor(() => expect(document.activeElement).toBe(tabs[0]));
    await user.keyboard("{ArrowRight}");
    expect(document.activeElement).toBe(tabs[1]);
    expect(tabs[1]!.getAttribute("aria-selected")).toBe("true");
    expect(panel(/Multimodal/).hidden).toBe(false);
    expect(panel(/Text Generation/).hidden).toBe(true);
    await user.keyboard("{ArrowRight}{ArrowRight}");
    expect(document.activeElement).toBe(tabs[0]);
    await user.keyboard("{ArrowLeft}");
    expect(document.activeElement).toBe(tabs[2]);
    await user.keyboard("{Home}");
    expect(document.activeElement).toBe(tabs[0]);
    await user.keyboard("{End}");
    expect(tabs[2]!.getAttribute("aria-selected")).toBe("true");
  });

  it("keeps a draft on another tab while the user looks elsewhere", async () => {
    const user = userEvent.setup();
    render(<Harness />);
    let text = within(panel(/Text Generation/));
    await user.selectOptions(text.getByLabelText("Model"), "gpt-4o");
    await openTab(user, /Multimodal/);
    text = await openTab(user, /Text Generation/);
    expect(text.getByLabelText("Model")).toHaveProperty("value", "gpt-4o");
  });

  it("takes a change saved in another tab when there is no unsaved edit, keeps edits otherwise", () => {
    const props = {
      session,
      presets: gateway.presets,
      memberAccount: true,
      statuses,
      onCheckStatus: async () => {},
      onSaved: () => {},
      onClose: () => {},
    };
    const { rerender } = render(<LLMSettingsModal {...props} configs={gateway.configs} />);
    // What App does when another tab announces a save: the refetched config comes in as a prop.
    rerender(<LLMSettingsModal {...props} configs={{ ...gateway.configs, text: gateway.saveElsewhere("text", { model: "gpt-4o" }) }} />);
    const text = within(panel(/Text Generation/));
    expect(text.getByLabelText("Model")).toHaveProperty("value", "gpt-4o");
  });

  it("keeps unsaved edits when another tab saves, and says so", async () => {
    const user = userEvent.setup();
    const props = {
      session,
      presets: gateway.presets,
      memberAccount: true,
      statuses,
      onCheckStatus: async () => {},
      onSaved: () => {},
      onClose: () => {},
    };
    const { rerender } = render(<LLMSettingsModal {...props} configs={gateway.configs} />);
    const text = within(panel(/Text Generation/));
    await user.selectOptions(text.getByLabelText("Model"), "gpt-4o");
    rerender(
      <LLMSettingsModal {...props} configs={{ ...gateway.configs, text: gateway.saveElsewhere("text", { provider: "anthropic", model: "claude-3-5-haiku-latest" }) }} />,
    );
    expect(text.getByLabelText("Model")).toHaveProperty("value", "gpt-4o");
    expect(text.getByText(/saved elsewhere \(version 1\) while you were editing/)).toBeTruthy();
  });

  it("lets an account without member access choose BYOK only", async () => {
    render(<Harness memberAccount={false} />);
    const text = within(panel(/Text Generation/));
    expect(text.getByTestId("member-unavailable").textContent).toMatch(/cannot spend the platform's credits/);
    expect(text.getByRole("button", { name: "Save" })).toHaveProperty("disabled", true);
  });
});
