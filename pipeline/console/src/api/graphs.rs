//! `graph/timeseries` and `graph/sankey`.

use super::{bad, body, env, ApiResult, Authed, Base, S};
use crate::ch::{num, text, Rows};
use crate::query::{self, Direction, Table, Unit};
use crate::schema::Field;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// Which table a query may use: `auto` (coarsest that answers) or `raw` (checks, benchmarks).
#[derive(Clone, Copy, Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TableChoice {
    #[default]
    Auto,
    Raw,
}

fn ten() -> u32 {
    10
}
fn two_hundred() -> u32 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TsReq {
    start: u64,
    end: u64,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    unit: Unit,
    #[serde(default)]
    dimension: Option<String>,
    #[serde(default = "ten")]
    limit: u32,
    #[serde(default = "two_hundred")]
    points: u32,
    #[serde(default)]
    previous_period: bool,
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    table: TableChoice,
}

/// Min, max, average and 95th percentile of a series' rates, and its total in the unit.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub p95: f64,
    pub total: f64,
}

/// Stats over the rates; `total` is given (the sum of the unit, not of rates).
pub fn stats(values: &[f64], total: f64) -> Stats {
    if values.is_empty() {
        return Stats {
            min: 0.0,
            max: 0.0,
            avg: 0.0,
            p95: 0.0,
            total,
        };
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Stats {
        min: v[0],
        max: v[v.len() - 1],
        avg: v.iter().sum::<f64>() / v.len() as f64,
        p95: v[rank - 1],
        total,
    }
}

#[derive(Serialize)]
struct Series {
    name: String,
    values: Vec<f64>,
    stats: Stats,
}

/// Rows `(t, s, v)` into series over `n` buckets from `start`, ordered by total, Other last.
fn series(rows: &Rows, start: u32, step: u32, n: usize, shift: u32) -> Vec<Series> {
    let mut sums: HashMap<String, Vec<f64>> = HashMap::new();
    for r in &rows.data {
        let t = num(r.get("t").unwrap_or(&json!(0))) as u32 + shift;
        let Some(i) = t.checked_sub(start).map(|d| (d / step) as usize) else {
            continue;
        };
        if i >= n {
            continue;
        }
        let name = text(r.get("s"));
        sums.entry(name).or_insert_with(|| vec![0.0; n])[i] += num(r.get("v").unwrap_or(&json!(0)));
    }
    let mut out: Vec<Series> = sums
        .into_iter()
        .map(|(name, s)| {
            let total = s.iter().sum();
            let values: Vec<f64> = s.iter().map(|x| x / f64::from(step)).collect();
            let stats = stats(&values, total);
            Series {
                name,
                values,
                stats,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.name == "Other")
            .cmp(&(b.name == "Other"))
            .then(b.stats.total.total_cmp(&a.stats.total))
            .then(a.name.cmp(&b.name))
    });
    out
}

pub async fn timeseries(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: TsReq = body(&b)?;
    let cat = st.catalog();
    let base = Base {
        start: req.start,
        end: req.end,
        filter: req.filter.clone(),
    };
    let (start, end, expr) = base.check(&cat)?;
    let dim: Option<&'static Field> = match &req.dimension {
        Some(d) => Some(
            cat.field(d)
                .ok_or_else(|| bad(format!("unknown dimension {d:?}")))?,
        ),
        None => None,
    };
    if !(1..=50).contains(&req.limit) {
        return Err(bad("limit must be 1..=50"));
    }
    let step = query::step_for(start, end, req.points);
    let (s, e) = query::align(start, end, step);
    let mut fields = query::filter_fields(expr.as_ref());
    fields.extend(dim);
    let t = query::choose(&cat, &fields, step, req.table == TableChoice::Raw);
    let env = env(&st, &cat);
    let m = query::metric(t, req.unit, req.direction);
    let w = query::where_sql(s, e, expr.as_ref(), env.dialect);
    let rows = st
        .ch
        .query(&query::timeseries_sql(
            &env, t, step, &w, &m, dim, req.limit,
        ))
        .await?;
    let n = ((e - s) / step) as usize;
    let list = series(&rows, s, step, n, 0);
    let mut rows_read = rows.rows_read;
    let previous = if req.previous_period {
        let len = e - s;
        let (ps, pe) = (s.saturating_sub(len), e.saturating_sub(len));
        let w = query::where_sql(ps, pe, expr.as_ref(), env.dialect);
        let prev = st
            .ch
            .query(&query::timeseries_sql(&env, t, step, &w, &m, None, 1))
            .await?;
        rows_read += prev.rows_read;
        let mut p = series(&prev, s, step, n, len);
        let mut one = p.pop().unwrap_or_else(|| Series {
            name: String::new(),
            values: vec![0.0; n],
            stats: stats(&vec![0.0; n], 0.0),
        });
        one.name = "previous period".into();
        Some(one)
    } else {
        None
    };
    let time: Vec<u32> = (0..n as u32).map(|i| s + i * step).collect();
    Ok(Json(json!({
        "table": t.name, "step": step, "unit": req.unit, "start": s, "end": e,
        "time": time, "series": list, "previous": previous,
        "rows_read": rows_read, "elapsed_ms": rows.elapsed_ms,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SankeyReq {
    start: u64,
    end: u64,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    unit: Unit,
    dimensions: Vec<String>,
    #[serde(default = "ten")]
    limit: u32,
    #[serde(default)]
    table: TableChoice,
}

/// The table for a query without time buckets: the range is aligned to a step of about
/// 1/24 of it, so the rollup answers with the same rows as the raw table would.
pub fn range_table(
    cat: &crate::schema::Catalog,
    fields: &[&Field],
    start: u32,
    end: u32,
    choice: TableChoice,
) -> (Table, u32, u32) {
    let step = query::step_for(start, end, 24);
    let t = query::choose(cat, fields, step, choice == TableChoice::Raw);
    let (s, e) = if t.is_raw() {
        (start, end)
    } else {
        query::align(start, end, step)
    };
    (t, s, e)
}

pub async fn sankey(State(st): State<S>, _a: Authed, b: Bytes) -> ApiResult {
    let req: SankeyReq = body(&b)?;
    let cat = st.catalog();
    let base = Base {
        start: req.start,
        end: req.end,
        filter: req.filter.clone(),
    };
    let (start, end, expr) = base.check(&cat)?;
    if !(2..=3).contains(&req.dimensions.len()) {
        return Err(bad("a Sankey takes 2 or 3 dimensions"));
    }
    if !(1..=100).contains(&req.limit) {
        return Err(bad("limit must be 1..=100"));
    }
    let mut dims = Vec::new();
    for d in &req.dimensions {
        dims.push(
            cat.field(d)
                .ok_or_else(|| bad(format!("unknown dimension {d:?}")))?,
        );
    }
    let mut fields = query::filter_fields(expr.as_ref());
    fields.extend(dims.iter().copied());
    let (t, s, e) = range_table(&cat, &fields, start, end, req.table);
    let env = env(&st, &cat);
    let m = query::metric(t, req.unit, Direction::Both);
    let w = query::where_sql(s, e, expr.as_ref(), env.dialect);
    let rows = st
        .ch
        .query(&query::sankey_sql(&env, t, &w, &m, &dims, req.limit))
        .await?;
    let (nodes, links) = sankey_graph(&rows, &dims);
    Ok(Json(json!({
        "table": t.name, "start": s, "end": e, "nodes": nodes, "links": links,
        "rows_read": rows.rows_read, "elapsed_ms": rows.elapsed_ms,
    }))
    .into_response())
}

/// Nodes (unique per dimension) and links between consecutive dimensions; what the top
/// combinations leave of the total goes to an `Other` path.
fn sankey_graph(rows: &Rows, dims: &[&Field]) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut combos: Vec<(Vec<String>, f64)> = rows
        .data
        .iter()
        .map(|r| {
            let k = (0..dims.len())
                .map(|i| text(r.get(&format!("d{i}"))))
                .collect();
            (k, num(r.get("v").unwrap_or(&json!(0))))
        })
        .collect();
    let top: f64 = combos.iter().map(|c| c.1).sum();
    let total = rows
        .totals
        .as_ref()
        .and_then(|t| t.get("v"))
        .map_or(top, num);
    if total - top > 0.5 {
        combos.push((vec!["Other".to_string(); dims.len()], total - top));
    }
    let mut index: HashMap<(usize, String), usize> = HashMap::new();
    let mut nodes = Vec::new();
    let mut links: HashMap<(usize, usize), f64> = HashMap::new();
    for (k, v) in &combos {
        let ids: Vec<usize> = k
            .iter()
            .enumerate()
            .map(|(lvl, name)| {
                *index.entry((lvl, name.clone())).or_insert_with(|| {
                    nodes.push(json!({"name": name, "dimension": dims[lvl].name}));
                    nodes.len() - 1
                })
            })
            .collect();
        for w in ids.windows(2) {
            *links.entry((w[0], w[1])).or_default() += v;
        }
    }
    let mut l: Vec<_> = links.into_iter().collect();
    l.sort_by_key(|a| a.0);
    let links = l
        .into_iter()
        .map(|((s, t), v)| json!({"source": s, "target": t, "value": v}))
        .collect();
    (nodes, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank_and_total_is_kept() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = stats(&v, 5050.0);
        assert_eq!(
            (s.min, s.max, s.p95, s.avg, s.total),
            (1.0, 100.0, 95.0, 50.5, 5050.0)
        );
        assert_eq!(stats(&[], 0.0).max, 0.0);
    }
}
