// Plays the live-audio WebSocket through an AudioWorklet at the meeting's own sample rate (the browser
// resamples to the device), and reports which byte of the recording is being heard.

import { LiveAudioConnection, type LiveAudioState, type LiveFrom } from "./liveAudio";
import { blockAlign, byteRate, toFloat32 } from "./pcm";
import type { FromWorklet, ToWorklet, WorkletOptions } from "./pcm-worklet";
import workletUrl from "./pcm-worklet.ts?worker&url";
import type { AudioFormat } from "./types";

/** Queued before the worklet starts (and after it runs dry): evens out uneven arrival. */
export const JITTER_S = 0.08;
/** "Go live" starts this far before the edge, so there is something to hear at once; when newer audio
 * arrives, what is left of this lead-in is skipped, so each chunk is heard the moment it arrives. */
export const LEAD_IN_MS = 1000;
const REPORT_FRAMES = 512; // four render quanta: ~30 ms at 16 kHz

export interface LivePlayerOptions {
  url: (from: LiveFrom) => string;
  from: LiveFrom;
  onFormat: (format: AudioFormat) => void; // the stream's, before anything else
  onHeard: (seconds: number) => void; // position in the recording of what is coming out now
  onEdge: (edge: number) => void; // the recording holds at least this many bytes of PCM
  onState: (state: LiveAudioState) => void;
  onBlocked: (blocked: boolean) => void; // the browser wants a gesture before it plays
  onDrained: () => void; // the meeting ended and everything it sent has been played
  onProblem: (message: string) => void;
}

export class LivePlayer {
  private readonly connection: LiveAudioConnection;
  private context: AudioContext | null = null;
  private node: AudioWorkletNode | null = null;
  private format: AudioFormat | null = null;
  private base = 0; // byte offset of the first sample played
  private leadInEnd = 0; // the live edge when playback started: what comes before it is a lead-in
  private pending: { samples: Float32Array; skipQueued: boolean }[] = []; // before the worklet is ready
  private ended = false;

  constructor(private readonly options: LivePlayerOptions) {
    this.connection = new LiveAudioConnection(
      {
        url: options.url,
        onStart: (format, offset, edge) => this.begin(format, offset, edge),
        onPcm: (offset, pcm) => this.feed(offset, pcm),
        onState: (state) => {
          if (state.status === "ended") this.ended = true;
          options.onState(state);
        },
      },
      options.from,
    );
  }

  start(): void {
    this.connection.start();
  }

  /** Call from a click: lets a context the browser held back play, from the lead-in before the newest
   * audio rather than from what queued while it was held back. */
  resume(): void {
    const { context, format, node } = this;
    if (!context || !format || context.state !== "suspended") return;
    void context.resume();
    const message: ToWorklet = { type: "keepNewest", frames: Math.round((LEAD_IN_MS / 1000) * format.sample_rate) };
    node?.port.postMessage(message);
  }

  stop(): void {
    this.connection.stop();
    this.node?.port.close();
    this.node?.disconnect();
    void this.context?.close();
    this.context = this.node = null;
  }

  private begin(format: AudioFormat, offset: number, edge: number): void {
    if (this.format === null) this.options.onFormat(format);
    this.options.onEdge(edge);
    if (this.format !== null) return; // a resumed connection: the same stream goes on
    this.format = format;
    this.base = offset;
    this.leadInEnd = offset < edge ? edge : 0;
    this.options.onHeard(offset / byteRate(format));
    let context: AudioContext;
    try {
      context = new AudioContext({ sampleRate: format.sample_rate, latencyHint: "interactive" });
    } catch (err) {
      this.options.onProblem(`audio: this browser cannot play ${format.sample_rate} Hz (${(err as Error).message})`);
      return;
    }
    this.context = context;
    context.onstatechange = () => this.options.onBlocked(context.state === "suspended");
    context.audioWorklet.addModule(workletUrl).then(
      () => {
        if (this.context !== context) return; // stopped meanwhile
        const processorOptions: WorkletOptions = {
          channels: format.channels,
          targetFrames: Math.round(JITTER_S * format.sample_rate),
          reportFrames: REPORT_FRAMES,
        };
        const node = new AudioWorkletNode(context, "pcm-player", {
          numberOfInputs: 0,
          outputChannelCount: [format.channels],
          processorOptions,
        });
        node.port.onmessage = (event: MessageEvent<FromWorklet>) => this.report(event.data);
        node.connect(context.destination);
        this.node = node;
        for (const piece of this.pending) this.post(piece);
        this.pending = [];
        this.options.onBlocked(context.state === "suspended");
      },
      (err: Error) => this.options.onProblem(`audio: the player could not start (${err.message})`),
    );
  }

  private feed(offset: number, pcm: Uint8Array): void {
    if (!this.format) return;
    this.options.onEdge(offset + pcm.length);
    // The lead-in gives something to hear at once; once newer audio comes, what is left of it is skipped
    // (it was said before "Go live"), or every later chunk would be heard that much later.
    const skipQueued = this.leadInEnd > 0 && offset >= this.leadInEnd;
    if (skipQueued) this.leadInEnd = 0;
    const piece = { samples: toFloat32(pcm, this.format.bits), skipQueued };
    if (this.node) this.post(piece);
    else this.pending.push(piece);
  }

  private post(piece: { samples: Float32Array; skipQueued: boolean }): void {
    const message: ToWorklet = { type: "pcm", ...piece };
    this.node?.port.postMessage(message, [piece.samples.buffer]);
  }

  private report(report: FromWorklet): void {
    if (!this.format || !this.context) return;
    // What is coming out of the speakers now was played by the worklet `outputLatency` ago.
    const latency = Math.round((this.context.outputLatency || 0) * this.format.sample_rate);
    const heard = Math.max(0, report.played - latency);
    this.options.onHeard((this.base + heard * blockAlign(this.format)) / byteRate(this.format));
    if (this.ended && report.buffered === 0) this.options.onDrained();
  }
}
