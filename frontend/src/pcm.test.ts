import { describe, expect, it } from "vitest";
import { decodeFrame, JitterBuffer, LIVE_WITHIN_S, LiveClock, liveBadge, toFloat32 } from "./pcm";

const channels = (n: number, frames: number) => Array.from({ length: n }, () => new Float32Array(frames));
const ramp = (from: number, n: number) => Float32Array.from({ length: n }, (_, i) => from + i);

describe("decodeFrame", () => {
  it("reads the 8-byte little-endian offset, beyond 32 bits too, and the PCM after it", () => {
    const message = new ArrayBuffer(12);
    const view = new DataView(message);
    view.setUint32(0, 5, true);
    view.setUint32(4, 2, true); // 2 * 2^32 + 5
    view.setInt16(8, -2, true);
    view.setInt16(10, 7, true);
    const { offset, pcm } = decodeFrame(message);
    expect(offset).toBe(2 * 2 ** 32 + 5);
    expect([...pcm]).toEqual([0xfe, 0xff, 7, 0]);
  });

  it("refuses a message too short to carry an offset", () => {
    expect(() => decodeFrame(new ArrayBuffer(7))).toThrow(/no offset/);
  });
});

describe("toFloat32", () => {
  it("scales 16-bit little-endian samples to [-1, 1)", () => {
    const pcm = new Uint8Array(new Int16Array([0, 16384, -32768, 32767]).buffer);
    expect([...toFloat32(pcm, 16)]).toEqual([0, 0.5, -1, 32767 / 32768]);
  });

  it("reads 8-bit as unsigned and 24-bit as signed", () => {
    expect([...toFloat32(Uint8Array.from([128, 0, 192]), 8)]).toEqual([0, -1, 0.5]);
    expect([...toFloat32(Uint8Array.from([0, 0, 0x80, 0, 0, 0x40]), 24)]).toEqual([-1, 0.5]);
  });

  it("reads a view that does not start at its buffer's start (a frame after its offset)", () => {
    const bytes = new Uint8Array([9, 9, 0, 0x40]);
    expect([...toFloat32(bytes.subarray(2), 16)]).toEqual([0.5]);
  });
});

describe("JitterBuffer", () => {
  it("stays silent until the target is queued, then plays every sample once, in order", () => {
    const buffer = new JitterBuffer(1, 4);
    const out = channels(1, 3);
    buffer.push(ramp(1, 3));
    expect(buffer.pull(out, 3)).toBe(0);
    expect([...out[0]]).toEqual([0, 0, 0]);
    buffer.push(ramp(4, 3)); // 6 queued: past the target
    const heard: number[] = [];
    for (let i = 0; i < 3; i++) {
      buffer.pull(out, 3);
      heard.push(...out[0]);
    }
    expect(heard).toEqual([1, 2, 3, 4, 5, 6, 0, 0, 0]); // across pieces, no gap or repeat, then silence
    expect(buffer.played).toBe(6);
  });

  it("waits for the target again after running dry", () => {
    const buffer = new JitterBuffer(1, 2);
    const out = channels(1, 4);
    buffer.push(ramp(1, 2));
    expect(buffer.pull(out, 4)).toBe(2);
    buffer.push(ramp(3, 1));
    expect(buffer.pull(out, 4)).toBe(0);
    buffer.push(ramp(4, 1));
    expect(buffer.pull(out, 4)).toBe(2);
    expect([...out[0]]).toEqual([3, 4, 0, 0]);
  });

  it("de-interleaves stereo, and copies mono to every output channel", () => {
    const stereo = new JitterBuffer(2, 1);
    const out = channels(2, 2);
    stereo.push(Float32Array.from([1, -1, 2, -2]));
    stereo.pull(out, 2);
    expect(out.map((c) => [...c])).toEqual([
      [1, 2],
      [-1, -2],
    ]);
    const mono = new JitterBuffer(1, 1);
    mono.push(Float32Array.from([5, 6]));
    mono.pull(out, 2);
    expect(out.map((c) => [...c])).toEqual([
      [5, 6],
      [5, 6],
    ]);
  });

  it("skipping what is queued counts it as played, so positions stay true", () => {
    const buffer = new JitterBuffer(1, 1);
    const out = channels(1, 2);
    buffer.push(ramp(1, 5));
    buffer.pull(out, 2);
    expect(buffer.skipQueued()).toBe(3);
    buffer.push(ramp(6, 2));
    buffer.pull(out, 2);
    expect([...out[0]]).toEqual([6, 7]);
    expect(buffer.played).toBe(7);
  });
});

describe("LiveClock", () => {
  const rate = 32000; // 16 kHz mono 16-bit

  it("knows nothing before the first edge", () => {
    expect(new LiveClock(rate).behind(0, 0)).toBeNull();
  });

  it("a listener who hears each chunk as it arrives is live, though the edge jumps a chunk ahead", () => {
    const clock = new LiveClock(rate);
    clock.seen(2 * rate, 10); // the recording holds 2 s when first seen
    clock.seen(4 * rate, 10.5); // a 2 s chunk arrives
    expect(clock.behind(2 * rate, 10.5)).toBe(0); // its first sample being heard: live
    expect(clock.behind(2 * rate + rate / 10, 11.5)).toBeCloseTo(0.9); // 0.9 s behind the ideal listener
    expect(clock.behind(4 * rate, 13)).toBe(0); // the ideal listener waits at the edge
  });

  it("a listener who started the lead-in before the edge is behind by its length until it catches up", () => {
    const clock = new LiveClock(rate);
    clock.seen(10 * rate, 0);
    expect(clock.behind(9 * rate, 0)).toBe(1);
    expect(clock.behind(9.5 * rate, 0.5)).toBe(0.5);
  });

  it("a replay far back is as far behind, and falls further behind while the meeting grows", () => {
    const clock = new LiveClock(rate);
    clock.seen(60 * rate, 0);
    expect(clock.behind(10 * rate, 0)).toBe(50);
    clock.seen(62 * rate, 2); // a 2 s chunk: the ideal listener plays it, the replay does not move
    expect(clock.behind(10 * rate, 2)).toBe(50);
    expect(clock.behind(10 * rate, 3)).toBe(51);
    expect(clock.behind(10 * rate, 9)).toBe(52); // and waits at the edge
  });

  it("an edge it already knew (or less) changes nothing", () => {
    const clock = new LiveClock(rate);
    clock.seen(4 * rate, 0);
    clock.seen(2 * rate, 1);
    expect(clock.position(1)).toBe(4 * rate);
  });
});

describe("liveBadge", () => {
  it("says LIVE only within the goal, else how far behind", () => {
    expect(liveBadge(null)).toEqual({ live: false, text: "…" });
    expect(liveBadge(0)).toEqual({ live: true, text: "● LIVE" });
    expect(liveBadge(LIVE_WITHIN_S)).toEqual({ live: true, text: "● LIVE" });
    expect(liveBadge(1.6)).toEqual({ live: false, text: "2 s behind live" });
    expect(liveBadge(21.2)).toEqual({ live: false, text: "21 s behind live" });
    expect(liveBadge(125)).toEqual({ live: false, text: "2:05 behind live" });
  });
});

describe("JitterBuffer.keepNewest", () => {
  it("drops the oldest frames across pieces, keeps the newest, and counts the dropped as played", () => {
    const buffer = new JitterBuffer(2, 1);
    buffer.push(Float32Array.from([1, -1, 2, -2]));
    buffer.push(Float32Array.from([3, -3, 4, -4, 5, -5]));
    expect(buffer.keepNewest(2)).toBe(3);
    expect(buffer.played).toBe(3);
    const out = channels(2, 3);
    expect(buffer.pull(out, 3)).toBe(2);
    expect(out.map((c) => [...c])).toEqual([
      [4, 5, 0],
      [-4, -5, 0],
    ]);
    expect(buffer.keepNewest(10)).toBe(0); // nothing queued: nothing to drop
  });
});
