// Live audio, the parts with no browser audio in them: the live-audio WebSocket's frames, PCM to float
// samples, the worklet's jitter buffer, and how far behind the live edge a listener is.

import type { AudioFormat } from "./types";

/** Within this much of the live edge the player says "LIVE". */
export const LIVE_WITHIN_S = 1.5;

export const blockAlign = (f: AudioFormat): number => f.channels * (f.bits / 8);
export const byteRate = (f: AudioFormat): number => f.sample_rate * blockAlign(f);

/** A binary message of the live-audio socket: an 8-byte little-endian offset within the recording's PCM
 * data, then whole frames of PCM starting there. */
export function decodeFrame(message: ArrayBuffer): { offset: number; pcm: Uint8Array } {
  if (message.byteLength < 8) throw new Error(`a live-audio message of ${message.byteLength} bytes has no offset`);
  const view = new DataView(message);
  const offset = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  return { offset, pcm: new Uint8Array(message, 8) };
}

/** Little-endian integer PCM (8-bit unsigned, 16/24/32-bit signed) as interleaved floats in [-1, 1). */
export function toFloat32(pcm: Uint8Array, bits: number): Float32Array {
  const width = bits / 8;
  const out = new Float32Array(Math.floor(pcm.length / width));
  const view = new DataView(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  for (let i = 0; i < out.length; i++) {
    const at = i * width;
    switch (bits) {
      case 8:
        out[i] = (view.getUint8(at) - 128) / 128;
        break;
      case 16:
        out[i] = view.getInt16(at, true) / 32768;
        break;
      case 24:
        out[i] = ((view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16)) / 8388608);
        break;
      case 32:
        out[i] = view.getInt32(at, true) / 2147483648;
        break;
      default:
        throw new Error(`${bits}-bit PCM is not supported`);
    }
  }
  return out;
}

/** The worklet's queue of interleaved samples. It starts (and, after running dry, restarts) only once
 * `targetFrames` are queued, so a stream that arrives in uneven pieces plays without stutter; a whole
 * chunk arrives at once, so at the live edge that costs nothing. `played` counts the frames of the
 * stream gone by (handed to the output or skipped), which is how the page knows which sample is heard. */
export class JitterBuffer {
  private pieces: Float32Array[] = [];
  private head = 0; // samples of pieces[0] already played
  private queued = 0; // samples
  private primed = false;
  played = 0; // frames

  constructor(
    readonly channels: number,
    readonly targetFrames: number,
  ) {}

  get bufferedFrames(): number {
    return this.queued / this.channels;
  }

  push(samples: Float32Array): void {
    if (samples.length === 0) return;
    this.pieces.push(samples);
    this.queued += samples.length;
    if (this.bufferedFrames >= this.targetFrames) this.primed = true;
  }

  /** Fills `out` (one array per channel, `frames` long) and returns the frames that came from the
   * queue; the rest is silence. */
  pull(out: Float32Array[], frames: number): number {
    let written = 0;
    if (this.primed) {
      while (written < frames && this.pieces.length > 0) {
        const piece = this.pieces[0];
        const take = Math.min(frames - written, (piece.length - this.head) / this.channels);
        for (let f = 0; f < take; f++) {
          for (let c = 0; c < out.length; c++) {
            out[c][written + f] = piece[this.head + f * this.channels + Math.min(c, this.channels - 1)];
          }
        }
        written += take;
        this.head += take * this.channels;
        this.queued -= take * this.channels;
        if (this.head >= piece.length) {
          this.pieces.shift();
          this.head = 0;
        }
      }
      if (this.queued === 0) this.primed = false; // ran dry: wait for the target again
    }
    for (const channel of out) channel.fill(0, written, frames);
    this.played += written;
    return written;
  }

  /** Drops all but the newest `frames` queued frames (counted as played: positions stay true) and
   * returns how many it dropped. */
  keepNewest(frames: number): number {
    const dropped = Math.max(0, this.bufferedFrames - frames);
    let samples = dropped * this.channels;
    while (samples > 0) {
      const left = this.pieces[0].length - this.head;
      const take = Math.min(left, samples);
      this.head += take;
      this.queued -= take;
      samples -= take;
      if (take === left) {
        this.pieces.shift();
        this.head = 0;
      }
    }
    if (this.queued === 0) this.primed = false;
    this.played += dropped;
    return dropped;
  }

  skipQueued(): number {
    return this.keepNewest(0);
  }
}

/** Where a listener with no delay at all would be: it reaches each byte of audio the moment the
 * recording holds it, then plays on in real time, and waits at the edge. The distance from there to what
 * is being heard is how far behind live the listener is. A chunk arrives whole, so the edge jumps ahead
 * by a chunk at a time; measuring from the edge itself would call a listener who hears each chunk the
 * instant it arrives a whole chunk late. */
export class LiveClock {
  private edge = -1; // bytes of PCM the recording is known to hold
  private live = 0; // where the ideal listener was at `at`
  private at = 0;

  constructor(readonly bytesPerSecond: number) {}

  /** The recording holds at least `edge` bytes of PCM, as learnt at `now` (seconds). */
  seen(edge: number, now: number): void {
    if (this.edge < 0) {
      this.edge = this.live = edge; // first news: a live listener would be at the edge
      this.at = now;
      return;
    }
    if (edge <= this.edge) return;
    this.live = this.position(now);
    this.at = now;
    this.edge = edge;
  }

  /** The ideal listener's position (bytes) at `now`; -1 before the edge is known. */
  position(now: number): number {
    if (this.edge < 0) return -1;
    return Math.min(this.edge, this.live + Math.max(0, now - this.at) * this.bytesPerSecond);
  }

  /** Seconds between the ideal listener and a listener at `heard` bytes; null before the edge is known. */
  behind(heard: number, now: number): number | null {
    const live = this.position(now);
    return live < 0 ? null : Math.max(0, (live - heard) / this.bytesPerSecond);
  }
}

/** The badge: "● LIVE" within LIVE_WITHIN_S of the edge, otherwise how far behind. */
export function liveBadge(behind: number | null): { live: boolean; text: string } {
  if (behind === null) return { live: false, text: "…" };
  if (behind <= LIVE_WITHIN_S) return { live: true, text: "● LIVE" };
  const s = Math.round(behind);
  const text = s < 60 ? `${s} s` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  return { live: false, text: `${text} behind live` };
}
