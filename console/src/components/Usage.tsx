// Usage per backend type and model for a period: a bar chart of credits spent (SVG drawn here)
// and the table it is drawn from.
import { useEffect, useState } from "react";
import { call, formatCredits, type Session, type Usage as UsageData } from "../api/client";
import { backendInfo } from "../backends";
import { describe } from "../store";
import { BackendIcon } from "./BackendIndicator";

const PERIODS = [
  { id: "1d", label: "Last 24 hours", seconds: 86_400 },
  { id: "7d", label: "Last 7 days", seconds: 7 * 86_400 },
  { id: "30d", label: "Last 30 days", seconds: 30 * 86_400 },
  { id: "all", label: "All time", seconds: 0 },
] as const;

export function Usage({ session }: { session: Session }) {
  const [period, setPeriod] = useState<(typeof PERIODS)[number]["id"]>("30d");
  const [usage, setUsage] = useState<UsageData | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    const seconds = PERIODS.find((p) => p.id === period)!.seconds;
    const from = seconds ? new Date(Date.now() - seconds * 1000).toISOString() : undefined;
    setUsage(null);
    setError(null);
    call(session, "get", "/api/usage", { query: { from } })
      .then(({ data }) => !cancelled && setUsage(data))
      .catch((err: unknown) => !cancelled && setError(describe(err)));
    return () => {
      cancelled = true;
    };
  }, [session, period]);

  const rows = usage?.totals ?? [];
  const totalCost = rows.reduce((sum, row) => sum + row.cost_micros, 0);
  const requests = rows.reduce((sum, row) => sum + row.requests, 0);
  return (
    <section className="usage" aria-labelledby="usage-title">
      <div className="usage-head">
        <h1 id="usage-title">Usage</h1>
        <label>
          Period{" "}
          <select value={period} onChange={(event) => setPeriod(event.target.value as typeof period)}>
            {PERIODS.map((p) => (
              <option key={p.id} value={p.id}>
                {p.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && <p className="form-error" role="alert">{error}</p>}
      {!usage && !error && <p aria-busy="true">Loading usage…</p>}
      {usage && (
        <>
          <p>
            <strong>{formatCredits(totalCost)}</strong> credits spent in {requests} request{requests === 1 ? "" : "s"}.
          </p>
          <UsageChart rows={rows} />
          <table className="usage-table">
            <caption className="visually-hidden">Usage per backend type, provider, model and mode</caption>
            <thead>
              <tr>
                <th scope="col">Backend type</th>
                <th scope="col">Provider</th>
                <th scope="col">Model</th>
                <th scope="col">Mode</th>
                <th scope="col" className="num">Requests</th>
                <th scope="col" className="num">Tokens in</th>
                <th scope="col" className="num">Tokens out</th>
                <th scope="col" className="num">Images</th>
                <th scope="col" className="num">Credits</th>
              </tr>
            </thead>
            <tbody>
              {rows.length === 0 && (
                <tr>
                  <td colSpan={9}>No usage in this period.</td>
                </tr>
              )}
              {rows.map((row) => (
                <tr key={`${row.backend_type}/${row.provider}/${row.model}/${row.mode}`}>
                  <td>
                    <BackendIcon type={row.backend_type} size={14} /> {backendInfo(row.backend_type).label}
                  </td>
                  <td>{row.provider}</td>
                  <td>{row.model}</td>
                  <td>{row.mode === "byok" ? "BYOK" : row.mode === "member" ? "Member" : "—"}</td>
                  <td className="num">{row.requests}</td>
                  <td className="num">{row.input_tokens}</td>
                  <td className="num">{row.output_tokens}</td>
                  <td className="num">{row.images}</td>
                  <td className="num">{formatCredits(row.cost_micros)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

/** Horizontal bars of requests (and credits) per backend type and model. */
function UsageChart({ rows }: { rows: UsageData["totals"] }) {
  const bars = new Map<string, { type: UsageData["totals"][number]["backend_type"]; model: string; requests: number; cost: number }>();
  for (const row of rows) {
    const key = `${row.backend_type}/${row.model}`;
    const bar = bars.get(key) ?? { type: row.backend_type, model: row.model, requests: 0, cost: 0 };
    bar.requests += row.requests;
    bar.cost += row.cost_micros;
    bars.set(key, bar);
  }
  const list = [...bars.values()];
  if (!list.length) return null;
  // Credits when any were spent (member mode), else requests (BYOK spends none).
  const byCost = list.some((bar) => bar.cost > 0);
  const value = (bar: (typeof list)[number]) => (byCost ? bar.cost : bar.requests);
  const max = Math.max(...list.map(value), 1);
  const rowHeight = 30;
  const labelWidth = 230;
  const width = 720;
  const height = list.length * rowHeight + 10;
  const summary = list
    .map((bar) => `${backendInfo(bar.type).short} ${bar.model}: ${byCost ? `${formatCredits(bar.cost)} credits` : `${bar.requests} requests`}`)
    .join("; ");
  return (
    <figure className="usage-chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${byCost ? "Credits" : "Requests"} per model: ${summary}`}>
        {list.map((bar, index) => {
          const y = index * rowHeight + 5;
          const length = ((width - labelWidth - 110) * value(bar)) / max;
          return (
            <g key={`${bar.type}/${bar.model}`} className={`backend-${bar.type}`}>
              <text x={labelWidth - 8} y={y + 17} textAnchor="end" className="chart-label">
                {backendInfo(bar.type).short} · {bar.model}
              </text>
              <rect x={labelWidth} y={y + 3} width={Math.max(length, 2)} height={rowHeight - 10} rx={3} className="chart-bar" />
              <text x={labelWidth + Math.max(length, 2) + 6} y={y + 17} className="chart-value">
                {byCost ? formatCredits(bar.cost) : `${bar.requests} req`}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption className="hint">{byCost ? "Credits spent" : "Requests (BYOK spends no credits)"} per backend type and model</figcaption>
    </figure>
  );
}
