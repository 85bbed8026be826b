// The AudioWorklet that plays the live-audio stream: samples posted by the page go through a jitter
// buffer to the output; every few render quanta it tells the page how many frames it has played.

import { JitterBuffer } from "./pcm";

// The AudioWorkletGlobalScope, which the DOM typings do not describe.
declare const currentFrame: number;
declare function registerProcessor(name: string, processor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: { processorOptions?: unknown });
}

export interface WorkletOptions {
  channels: number;
  targetFrames: number;
  reportFrames: number;
}

// `skipQueued`: drop what is still queued first (the lead-in before the live edge, once the edge moves);
// `keepNewest`: drop all but the newest frames (what queued while the browser held the sound back).
export type ToWorklet = { type: "pcm"; samples: Float32Array; skipQueued: boolean } | { type: "keepNewest"; frames: number };
export type FromWorklet = { type: "played"; played: number; buffered: number; frame: number };

class PcmPlayer extends AudioWorkletProcessor {
  private readonly buffer: JitterBuffer;
  private readonly reportFrames: number;
  private reportedAt = -Infinity;
  private reportedPlayed = -1;
  private reportedBuffered = -1;

  constructor(options: { processorOptions: WorkletOptions }) {
    super(options);
    const { channels, targetFrames, reportFrames } = options.processorOptions;
    this.buffer = new JitterBuffer(channels, targetFrames);
    this.reportFrames = reportFrames;
    this.port.onmessage = (event: MessageEvent<ToWorklet>) => {
      const message = event.data;
      if (message.type === "keepNewest") {
        this.buffer.keepNewest(message.frames);
        return;
      }
      if (message.skipQueued) this.buffer.skipQueued();
      this.buffer.push(message.samples);
    };
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const out = outputs[0];
    this.buffer.pull(out, out[0].length);
    const { played, bufferedFrames: buffered } = this.buffer;
    const changed = played !== this.reportedPlayed || buffered !== this.reportedBuffered;
    if (changed && currentFrame - this.reportedAt >= this.reportFrames) {
      this.reportedAt = currentFrame;
      this.reportedPlayed = played;
      this.reportedBuffered = buffered;
      const report: FromWorklet = { type: "played", played, buffered, frame: currentFrame };
      this.port.postMessage(report);
    }
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
