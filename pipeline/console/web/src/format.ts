// Number and time formatting for an operator: SI prefixes, bits for byte rates as NOC
// people read them, UTC timestamps everywhere (sensors and ClickHouse store UTC).

const PREFIXES = ["", "k", "M", "G", "T", "P"];

/** 1234567 -> "1.23 M" (decimal prefixes). */
export function si(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return "–";
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1000 && i < PREFIXES.length - 1) {
    x /= 1000;
    i++;
  }
  const s = x.toPrecision(digits);
  return (v < 0 ? "-" : "") + String(Number(s)) + (PREFIXES[i] ? " " + PREFIXES[i] : "");
}

export function bytes(v: number): string {
  const s = si(v);
  return /[kMGTP]$/.test(s) ? s + "B" : s + " B";
}

/** Milliseconds as the API reports them (fractions), rounded for reading. */
export function ms(v: number): string {
  return (v < 10 ? v.toFixed(1) : v.toFixed(0)) + " ms";
}

/** "2026-12-06 08:31:05" in UTC. */
export function utc(t: number | string | Date): string {
  const d = t instanceof Date ? t : new Date(typeof t === "number" ? t : parseTime(t));
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "");
}

/** Parses what the API and ClickHouse return ("2026-12-06 08:31:05", ISO, epoch s). */
export function parseTime(t: string | number): number {
  if (typeof t === "number") return t < 1e11 ? t * 1000 : t;
  if (/^\d+(\.\d+)?$/.test(t)) return parseTime(Number(t));
  const iso = t.includes("T") ? t : t.replace(" ", "T");
  return Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z");
}

export function duration(ms: number): string {
  if (ms < 1000) return ms.toFixed(0) + " ms";
  const s = ms / 1000;
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
