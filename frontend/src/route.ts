// The open meeting lives in the hash (#/meeting/<id>), so a reload reopens it.

export function meetingFromHash(hash: string = window.location.hash): string | null {
  const match = /^#\/meeting\/(.+)$/.exec(hash);
  return match ? decodeURIComponent(match[1]) : null;
}

export function openMeeting(id: string): void {
  window.location.hash = `#/meeting/${encodeURIComponent(id)}`;
}
