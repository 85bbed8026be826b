// The reader API: the token, fetch with the bearer header, and URLs for the audio element and WebSocket.

import type { LiveFrom } from "./liveAudio";

const TOKEN_KEY = "audioflow.token";

/** Takes `?token=` from the address bar into sessionStorage and removes it from the visible URL
 * (history.replaceState); returns the token to use, if any. */
export function takeToken(
  location: Location = window.location,
  storage: Storage = window.sessionStorage,
  history: History = window.history,
): string | null {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    storage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return storage.getItem(TOKEN_KEY);
}

export function saveToken(token: string, storage: Storage = window.sessionStorage): void {
  storage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The server's `{"error": {code, message}}` as an ApiError (or a generic one for other bodies). */
export async function errorOf(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body?.error?.code) {
      code = String(body.error.code);
      message = String(body.error.message ?? code);
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message);
}

export async function apiFetch(path: string, token: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(path, {
      ...init,
      headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network", `the gateway cannot be reached (${(err as Error).message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

const enc = encodeURIComponent;

export function meetingPath(meetingId: string): string {
  return `/v1/meetings/${enc(meetingId)}`;
}

/** For the audio element, which cannot send headers: the token goes in the query. */
export function audioUrl(
  meetingId: string,
  kind: "recording" | "live",
  token: string,
  extra: Record<string, string> = {},
): string {
  const query = new URLSearchParams({ token, ...extra });
  return `${meetingPath(meetingId)}/${kind}.wav?${query}`;
}

/** A WebSocket URL on the page's own origin (ws: or wss:), carrying the token and `params`. */
function socketUrl(base: string, path: string, token: string, params: Record<string, string> = {}): string {
  const url = new URL(path, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", token);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

/** The events WebSocket; `since` resumes after that event id (omitted: replay everything). */
export function eventsUrl(base: string, meetingId: string, token: string, since: string | null): string {
  return socketUrl(base, `${meetingPath(meetingId)}/events`, token, since ? { since } : {});
}

/** The meeting list, pushed whenever it changes. */
export function meetingListUrl(base: string, token: string): string {
  return socketUrl(base, "/v1/meetings", token);
}

/** The live-audio WebSocket: PCM from the live edge (`backMs` before it) or from a byte offset within the
 * recording's data (a reconnect resumes where it stopped). */
export function liveAudioUrl(base: string, meetingId: string, token: string, from: LiveFrom): string {
  const params: Record<string, string> =
    "offset" in from ? { from: String(from.offset) } : { from: "live", ...(from.backMs > 0 ? { back_ms: String(Math.round(from.backMs)) } : {}) };
  return socketUrl(base, `${meetingPath(meetingId)}/live-audio`, token, params);
}

/** Fetches a file with the bearer header and saves it under `filename` (errors are thrown, not saved). */
export async function download(path: string, token: string, filename: string): Promise<void> {
  const blob = await (await apiFetch(path, token)).blob();
  const href = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}
