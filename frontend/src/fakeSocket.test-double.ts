// Test double for the page's WebSocket clients (events, meeting list, live audio): records every socket
// made, and lets a test open, feed, drop or inspect each one.
export class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  static all: FakeSocket[] = [];
  readyState = FakeSocket.CONNECTING;
  binaryType = "blob";
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: ArrayBuffer | string }) => void) | null = null;
  onerror: (() => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  closedWith: number | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
  }
  /** A text message carrying ``body`` as JSON. */
  text(body: object) {
    this.onmessage?.({ data: JSON.stringify(body) });
  }
  /** A live-audio binary message: the byte offset (8 bytes, little-endian) and the PCM bytes. */
  pcm(offset: number, bytes: number[]) {
    const message = new Uint8Array(8 + bytes.length);
    new DataView(message.buffer).setUint32(0, offset, true);
    message.set(bytes, 8);
    this.onmessage?.({ data: message.buffer });
  }
  drop(code: number, reason = "") {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.({ code, reason });
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = FakeSocket.CLOSED;
  }
}
