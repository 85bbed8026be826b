// Shapes of the gateway's reader API (see /openapi.json).

export type Phase = "pending" | "live" | "finalizing" | "completed" | "failed";

export interface AudioFormat {
  sample_rate: number;
  channels: number;
  bits: number;
}

export interface MeetingPublic {
  id: string;
  phase: Phase;
  format: AudioFormat;
  chunks_received: number;
  chunks_transcribed: number;
  chunks_failed: number;
  chunks_concatenated: number;
  concatenated_through: number;
  highest_seq: number;
  gaps: number[];
  recording_duration_s: number;
  recording_bytes: number;
  failed_reason: string | null;
  created_at: string;
  ended_at: string | null;
  updated_at: string | null;
}

export interface Word {
  text: string;
  start_s: number;
  end_s: number;
}

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

export interface ErrorBody {
  error: { code: string; message: string };
}
