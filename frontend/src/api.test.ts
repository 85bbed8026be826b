import { describe, expect, it } from "vitest";
import { audioUrl, errorOf, eventsUrl, meetingListUrl, takeToken } from "./api";
import { ranges } from "./format";
import { meetingFromHash } from "./route";

class MemoryStorage {
  items = new Map<string, string>();
  getItem(k: string) {
    return this.items.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.items.set(k, v);
  }
}

function fakeLocation(href: string) {
  const replaced: string[] = [];
  const history = { state: null, replaceState: (_s: unknown, _t: string, url: string) => replaced.push(url) };
  return { location: { href } as Location, history: history as unknown as History, replaced };
}

describe("token", () => {
  it("moves ?token= from the address bar into sessionStorage", () => {
    const storage = new MemoryStorage();
    const { location, history, replaced } = fakeLocation("http://h/?token=abc&x=1#/meeting/m1");
    expect(takeToken(location, storage as unknown as Storage, history)).toBe("abc");
    expect(storage.getItem("audioflow.token")).toBe("abc");
    expect(replaced).toEqual(["/?x=1#/meeting/m1"]);
  });

  it("uses the stored token after a reload", () => {
    const storage = new MemoryStorage();
    storage.setItem("audioflow.token", "kept");
    const { location, history, replaced } = fakeLocation("http://h/#/meeting/m1");
    expect(takeToken(location, storage as unknown as Storage, history)).toBe("kept");
    expect(replaced).toEqual([]);
  });
});

describe("urls", () => {
  it("puts the token in the query of audio and WebSocket URLs and escapes the meeting id", () => {
    expect(audioUrl("a b", "live", "t/k")).toBe("/v1/meetings/a%20b/live.wav?token=t%2Fk");
    expect(eventsUrl("https://h/app/", "m.1", "t", "5-1")).toBe("wss://h/v1/meetings/m.1/events?token=t&since=5-1");
    expect(eventsUrl("http://h/", "m.1", "t", null)).toBe("ws://h/v1/meetings/m.1/events?token=t");
    expect(meetingListUrl("https://h/app/#/meeting/x", "t t")).toBe("wss://h/v1/meetings?token=t+t");
  });

  it("reads the open meeting from the hash", () => {
    expect(meetingFromHash("#/meeting/demo-1")).toBe("demo-1");
    expect(meetingFromHash("#/")).toBeNull();
  });
});

describe("errors", () => {
  it("reads the server's error envelope", async () => {
    const response = new Response(JSON.stringify({ error: { code: "not_found", message: "no such meeting" } }), {
      status: 404,
    });
    const error = await errorOf(response);
    expect([error.status, error.code, error.message]).toEqual([404, "not_found", "no such meeting"]);
  });

  it("copes with a body that is not JSON", async () => {
    const error = await errorOf(new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" }));
    expect([error.code, error.message]).toEqual(["http_502", "502 Bad Gateway"]);
  });
});

describe("format", () => {
  it("shows seqs as ranges", () => {
    expect(ranges([7, 1, 2, 3, 9, 10])).toBe("1–3, 7, 9–10");
  });
});
