// Settings saved in one browser tab reach the user's other tabs without a reload: a
// BroadcastChannel message, and a localStorage write whose `storage` event other tabs get
// (for browsers without BroadcastChannel). Only "what changed" travels; each tab refetches.
import type { BackendType } from "./api/client";

const CHANNEL = "console.settings";
const STORAGE_KEY = "console.settings-changed";

export interface SettingsChange {
  backendType: BackendType | "all";
  version: number;
  sender: string;
}

const tabId = Math.random().toString(36).slice(2);

export function announceSettingsChange(backendType: BackendType | "all", version: number): void {
  const change: SettingsChange = { backendType, version, sender: tabId };
  if (typeof BroadcastChannel !== "undefined") {
    const channel = new BroadcastChannel(CHANNEL);
    channel.postMessage(change);
    channel.close();
  }
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...change, at: Date.now() }));
  } catch {
    // Storage may be full or disabled: the BroadcastChannel message is enough.
  }
}

export function onSettingsChange(listener: (change: SettingsChange) => void): () => void {
  const seen = new Set<string>();
  const deliver = (change: SettingsChange) => {
    if (change.sender === tabId) return;
    // Both paths may deliver the same change: once is enough.
    const key = `${change.sender}:${change.backendType}:${change.version}`;
    if (seen.has(key)) return;
    seen.add(key);
    listener(change);
  };
  const channel = typeof BroadcastChannel !== "undefined" ? new BroadcastChannel(CHANNEL) : null;
  if (channel) channel.onmessage = (event: MessageEvent<SettingsChange>) => deliver(event.data);
  const onStorage = (event: StorageEvent) => {
    if (event.key !== STORAGE_KEY || !event.newValue) return;
    try {
      deliver(JSON.parse(event.newValue) as SettingsChange);
    } catch {
      // Not ours.
    }
  };
  window.addEventListener("storage", onStorage);
  return () => {
    channel?.close();
    window.removeEventListener("storage", onStorage);
  };
}
