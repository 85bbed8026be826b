// The live-audio WebSocket: PCM of the recording from the live edge, resumed after a drop from the byte
// offset where the last message ended, so that nothing is missed or heard twice.

import { backoffMs } from "./socket";
import { decodeFrame } from "./pcm";
import type { AudioFormat } from "./types";

/** Where to start: the live edge (`backMs` before it), or a byte offset within the recording's data. */
export type LiveFrom = { live: true; backMs: number } | { offset: number };

export type LiveAudioState =
  | { status: "connecting"; attempt: number }
  | { status: "open" }
  | { status: "waiting"; retryInMs: number; reason: string }
  | { status: "ended"; reason: string }
  | { status: "failed"; code: string; message: string };

/** The server closes with 4000 + an HTTP status; a full gateway (4429), a recording not there yet (4404
 * no_recording_yet), a read failure (1011) and network drops are worth another try. */
export function liveCloseDecision(code: number, error: string | null): "reconnect" | "fatal" {
  if (code === 4429 || (code === 4404 && error === "no_recording_yet")) return "reconnect";
  return code >= 4000 && code < 5000 ? "fatal" : "reconnect";
}

export interface LiveAudioOptions {
  url: (from: LiveFrom) => string;
  onStart: (format: AudioFormat, offset: number, edge: number) => void;
  onPcm: (offset: number, pcm: Uint8Array) => void; // contiguous: each continues where the last ended
  onState: (state: LiveAudioState) => void;
  WebSocketImpl?: typeof WebSocket;
}

export class LiveAudioConnection {
  private ws: WebSocket | null = null;
  private next: number | null = null; // offset the next byte must have (null before the first start)
  private attempt = 0;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private error: { code: string; message: string } | null = null;
  private ended: string | null = null;
  private readonly WS: typeof WebSocket;

  constructor(
    private readonly options: LiveAudioOptions,
    private readonly first: LiveFrom,
  ) {
    this.WS = options.WebSocketImpl ?? WebSocket;
  }

  /** The offset a reconnect resumes from: the end of what was received. */
  get received(): number | null {
    return this.next;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onmessage = ws.onerror = ws.onclose = null;
    if (ws.readyState === this.WS.CONNECTING) ws.onopen = () => ws.close(1000);
    else ws.close(1000);
  }

  private connect(): void {
    if (this.ws) return;
    this.attempt += 1;
    this.error = null;
    this.options.onState({ status: "connecting", attempt: this.attempt });
    const ws = new this.WS(this.options.url(this.next === null ? this.first : { offset: this.next }));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.options.onState({ status: "open" });
    };
    ws.onmessage = (message) => this.receive(message.data as ArrayBuffer | string);
    ws.onerror = () => {}; // the close that follows says what happened
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  private receive(data: ArrayBuffer | string): void {
    if (this.error?.code === "out_of_order") return; // closing to resync: the rest comes again
    if (typeof data === "string") {
      const body = JSON.parse(data) as {
        type?: string;
        reason?: string;
        format?: AudioFormat;
        offset?: number;
        edge?: number;
        error?: { code: string; message: string };
      };
      if (body.error) this.error = body.error;
      else if (body.type === "end") this.ended = body.reason ?? "ended";
      else if (body.type === "start" && body.format && body.offset !== undefined && body.edge !== undefined) {
        if (this.next !== null && body.offset !== this.next) {
          this.resync(`live audio resumed at byte ${body.offset}, not ${this.next}`);
          return;
        }
        this.next = body.offset;
        this.options.onStart(body.format, body.offset, body.edge);
      }
      return;
    }
    const { offset, pcm } = decodeFrame(data);
    const expected = this.next ?? offset;
    if (offset > expected) {
      this.resync(`live audio skipped bytes ${expected}–${offset}`);
      return;
    }
    const fresh = pcm.subarray(Math.min(pcm.length, expected - offset)); // drop what was already received
    if (fresh.length === 0) return;
    this.next = expected + fresh.length;
    this.options.onPcm(expected, fresh);
  }

  /** Something arrived out of place (never expected): start again from the end of what was received. */
  private resync(why: string): void {
    this.error = { code: "out_of_order", message: why };
    this.ws?.close(1000, "resync");
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) return;
    if (this.ended !== null) {
      this.options.onState({ status: "ended", reason: this.ended });
      return;
    }
    const error = this.error;
    if (liveCloseDecision(code, error?.code ?? null) === "fatal") {
      this.options.onState({
        status: "failed",
        code: error?.code ?? `close_${code}`,
        message: error?.message ?? (reason || `closed with code ${code}`),
      });
      return;
    }
    const retryInMs = backoffMs(Math.max(1, this.attempt));
    this.options.onState({ status: "waiting", retryInMs, reason: error?.message ?? (reason || `connection closed (${code})`) });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, retryInMs);
  }
}
