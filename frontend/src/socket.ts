// One meeting's event WebSocket: exactly one socket at a time, resumed with `since` after a drop.

import { compareIds } from "./state";
import type { ServerEvent } from "./types";

export type ConnectionState =
  | { status: "connecting"; attempt: number; since: string | null }
  | { status: "open"; since: string | null }
  | { status: "waiting"; attempt: number; retryInMs: number; reason: string }
  | { status: "failed"; code: string; message: string }
  | { status: "closed" };

export type CloseDecision = "reconnect" | "replay" | "fatal";

/** What to do when the socket closes with `code`. The server closes with 4000 + the HTTP status of the
 * error (4401 bad token, 4404 unknown meeting: retrying cannot help; 4400 bad `since`: replay everything,
 * duplicates are dropped by id) and 1011 when its event source failed (reconnect with `since`). Anything
 * else (network drop 1006, server restart 1001/1012) is worth a reconnect too. */
export function closeDecision(code: number): CloseDecision {
  if (code === 4400) return "replay";
  if (code >= 4000 && code < 5000) return "fatal";
  return "reconnect";
}

/** Delay before reconnect attempt `attempt` (1, 2, …): 0.5 s doubling to 8 s. */
export function backoffMs(attempt: number): number {
  return Math.min(8000, 500 * 2 ** Math.max(0, attempt - 1));
}

export interface ConnectionOptions {
  url: (since: string | null) => string;
  onEvents: (events: ServerEvent[]) => void;
  onState: (state: ConnectionState) => void;
  since?: string | null;
  flushMs?: number; // events are handed over in batches, so a replay of thousands renders a few times
  WebSocketImpl?: typeof WebSocket;
}

export class EventConnection {
  private ws: WebSocket | null = null;
  private cursor: string | null;
  private attempt = 0;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private queue: ServerEvent[] = [];
  private serverError: { code: string; message: string } | null = null;
  private readonly WS: typeof WebSocket;

  constructor(private readonly options: ConnectionOptions) {
    this.cursor = options.since ?? null;
    this.WS = options.WebSocketImpl ?? WebSocket;
  }

  /** The id of the last event received: where a reconnect resumes. */
  get since(): string | null {
    return this.cursor;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  /** Closes the socket for good (the page left this meeting); nothing is delivered after this. */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.queue = [];
    this.discard();
    this.options.onState({ status: "closed" });
  }

  /** Reconnects now instead of waiting for the backoff (e.g. the browser came back online). */
  retryNow(): void {
    if (this.stopped || this.ws || !this.retryTimer) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  private connect(): void {
    if (this.ws) return; // never two sockets
    this.serverError = null;
    this.attempt += 1;
    const since = this.cursor;
    this.options.onState({ status: "connecting", attempt: this.attempt, since });
    const ws = new this.WS(this.options.url(since));
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.options.onState({ status: "open", since });
    };
    ws.onmessage = (message) => this.receive(String(message.data));
    ws.onerror = () => {}; // the close event that follows says what happened
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  private receive(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    const body = parsed as { error?: { code: string; message: string } } & Partial<ServerEvent>;
    if (body.error) {
      this.serverError = body.error; // the close that follows carries only its code
      return;
    }
    if (typeof body.id !== "string" || typeof body.type !== "string") return;
    if (this.cursor === null || compareIds(body.id, this.cursor) > 0) this.cursor = body.id;
    this.queue.push(body as ServerEvent);
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), this.options.flushMs ?? 50);
  }

  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.queue.length === 0 || this.stopped) return;
    const batch = this.queue;
    this.queue = [];
    this.options.onEvents(batch);
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.flush();
    if (this.stopped) return;
    const decision = closeDecision(code);
    if (decision === "fatal") {
      const error = this.serverError ?? { code: `close_${code}`, message: reason || `closed with code ${code}` };
      this.options.onState({ status: "failed", ...error });
      return;
    }
    if (decision === "replay") this.cursor = null;
    const retryInMs = backoffMs(this.attempt);
    const why = this.serverError?.message ?? (reason || `connection closed (${code})`);
    this.options.onState({ status: "waiting", attempt: this.attempt, retryInMs, reason: why });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, retryInMs);
  }

  private discard(): void {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
    if (ws.readyState === this.WS.CONNECTING) {
      ws.onopen = () => ws.close(1000); // closing before open makes the browser log an error
    } else {
      ws.onopen = null;
      ws.close(1000);
    }
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.retryTimer = this.flushTimer = null;
  }
}
