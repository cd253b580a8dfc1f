/**
 * What a Node process's `--trace-gc` lines say about its collections: each scavenge's pause and how
 * much the heap grew from one scavenge to the next (what scavenges promote into old space; a
 * mark-compact frees old space, so growth is counted between scavenges without one in between),
 * and each mark-compact's pause.
 */
export interface TraceGc {
  /** Scavenge pauses, ms, in order. */
  scavengePauses: number[];
  /** Heap growth from each scavenge to the next, MB. */
  growthPerScavenge: number[];
  /** Mark-compact pauses, ms, in order. */
  markCompactPauses: number[];
}

const SCAVENGE = /Scavenge [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//;
const MARK_COMPACT =
  /Mark-Compact [\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//;

export function parseTraceGc(text: string): TraceGc {
  const out: TraceGc = { scavengePauses: [], growthPerScavenge: [], markCompactPauses: [] };
  let lastAfter: number | null = null;
  for (const line of text.split("\n")) {
    const mc = MARK_COMPACT.exec(line);
    if (mc) {
      out.markCompactPauses.push(Number(mc[1]));
      lastAfter = null;
      continue;
    }
    const m = SCAVENGE.exec(line);
    if (!m) continue;
    const after = Number(m[1]);
    out.scavengePauses.push(Number(m[2]));
    if (lastAfter !== null) out.growthPerScavenge.push(after - lastAfter);
    lastAfter = after;
  }
  return out;
}
