// The reader API's shapes come from the gateway's OpenAPI document: openapi.gen.ts is generated from it
// by `make frontend` (never edited by hand). The WebSocket's event payloads below are not in that
// document (a WebSocket has no schema there), so they are written by hand after core/events.py.

import type { components } from "./openapi.gen";

type Schemas = components["schemas"];

export type MeetingPublic = Schemas["MeetingPublic"];
export type AudioFormat = Schemas["AudioFormatModel"];
export type Phase = MeetingPublic["phase"];
export type Word = Schemas["WordPublic"];
export type ErrorBody = Schemas["ErrorEnvelope"];

export interface ChunkReceived {
  seq: number;
  bytes: number;
  duration_s: number;
}

export interface ChunkTranscribed {
  seq: number;
  text: string;
  words: Word[]; // times relative to the chunk's start
  duration_s: number;
  start_s: number; // provisional: later starts move while earlier seqs are still missing
}

export interface RecordingExtended {
  concatenated_through: number;
  duration_s: number;
  bytes: number;
  appended: number[];
  gaps: number[];
}

export interface ChunkFailed {
  seq?: number | null;
  stage: string;
  reason: string;
}

export interface LogData {
  level: string;
  component: string;
  message: string;
  seq: number | null;
}

interface EventBase<T extends string, D> {
  id: string;
  meeting_id: string;
  type: T;
  ts: number;
  data: D;
}

export type ServerEvent =
  | EventBase<"chunk.received", ChunkReceived>
  | EventBase<"chunk.transcribed", ChunkTranscribed>
  | EventBase<"recording.extended", RecordingExtended>
  | EventBase<"chunk.failed", ChunkFailed>
  | EventBase<"meeting.phase", { phase: Phase }>
  | EventBase<"log", LogData>;
