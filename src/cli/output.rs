//! What `mirrorctl` prints: tables and messages for people, with every
//! string from AWS or the ledger made printable (a tag or an id could hold
//! control characters that would rewrite the terminal), and JSON for scripts.

use std::io::Write;

use serde_json::Value;

use super::Exit;
use crate::contract::ActionResult;
use crate::mirroring::fleet::Coverage;

/// `text` with control characters escaped (`\u{1b}`, `\n`): what a person
/// sees is what the string holds.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

pub fn write_table(out: &mut dyn Write, rows: &[Value]) -> std::io::Result<()> {
    const COLUMNS: [(&str, &str); 13] = [
        ("ACCOUNT", "account"),
        ("SESSION", "sessionId"),
        ("INSTANCE", "instanceId"),
        ("SOURCE", "sourceEni"),
        ("TARGET", "target"),
        ("FILTER", "filterId"),
        ("NUMBER", "sessionNumber"),
        ("RESERVATION", "reservationId"),
        ("AGE", "ageSeconds"),
        ("ENDS", "expiresAt"),
        ("STATUS", "status"),
        ("REQUESTED BY", "requestedBy"),
        ("REASON", "reason"),
    ];
    // The account column only for a deployment that knows accounts.
    let any_account = rows.iter().any(|r| !r["account"].is_null());
    let columns: Vec<(&str, &str)> = COLUMNS
        .iter()
        .copied()
        .filter(|(_, key)| *key != "account" || any_account)
        .collect();
    let cell = |row: &Value, key: &str| match (&row[key], key) {
        (Value::Null, _) => "-".to_owned(),
        (Value::Number(n), "ageSeconds") => age(n.as_u64().unwrap_or_default()),
        (Value::String(s), _) => printable(s),
        (other, _) => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|(title, key)| {
            rows.iter()
                .map(|r| cell(r, key).len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(columns.iter().map(|(t, _)| t.to_string()).collect()))?;
    for row in rows {
        writeln!(out, "{}", line(columns.iter().map(|(_, k)| cell(row, k)).collect()))?;
    }
    writeln!(out, "{} mirror{}", rows.len(), if rows.len() == 1 { "" } else { "s" })
}

/// Mirrors per account, under the table, when there are several accounts.
pub fn write_account_totals(out: &mut dyn Write, rows: &[Value]) -> std::io::Result<()> {
    let mut totals: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for row in rows {
        let account = row["account"].as_str().unwrap_or("-").to_owned();
        *totals.entry(account).or_default() += 1;
    }
    if totals.len() < 2 {
        return Ok(());
    }
    for (account, count) in totals {
        writeln!(
            out,
            "  account {}: {count} mirror{}",
            printable(&account),
            if count == 1 { "" } else { "s" }
        )?;
    }
    Ok(())
}

/// Each account's coverage, from an organization's sweep (`accounts`).
pub fn write_accounts(out: &mut dyn Write, accounts: &Value) -> std::io::Result<()> {
    let Some(accounts) = accounts.as_object() else {
        return Ok(());
    };
    writeln!(out, "ACCOUNT       WANTED  MIRRORED  MISSING  NOT DELIVERING  ERROR")?;
    for (account, entry) in accounts {
        let figure = |name: &str| {
            entry["coverage"][name]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        };
        let error = entry["errorCode"].as_str().unwrap_or("");
        writeln!(
            out,
            "{:<12}  {:>6}  {:>8}  {:>7}  {:>14}  {}",
            printable(account),
            figure("wanted"),
            figure("mirrored"),
            figure("missing"),
            figure("notDelivering"),
            printable(error)
        )?;
    }
    Ok(())
}

pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn report(results: &[ActionResult], as_json: bool, out: &mut dyn Write) -> Exit {
    let failed = results.iter().filter(|r| !r.success).count();
    let written = if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(results).unwrap_or_else(|_| "[]".into())
        )
    } else {
        results.iter().try_for_each(|r| {
            if r.success {
                writeln!(
                    out,
                    "ok      {}: {}",
                    printable(&r.action_id),
                    printable(&r.info_message)
                )
            } else {
                writeln!(
                    out,
                    "failed  {}: {} ({})",
                    printable(&r.action_id),
                    printable(&r.error_message),
                    printable(r.error_code.as_deref().unwrap_or(""))
                )
            }
        })
    };
    match (written, failed) {
        (Err(_), _) => Exit::Unavailable,
        (Ok(()), 0) => Exit::Done,
        (Ok(()), _)
            if results
                .iter()
                .all(|r| r.error_code.as_deref() == Some("ValidationError")) =>
        {
            Exit::BadInput
        }
        (Ok(()), _) => Exit::ActionFailed,
    }
}

pub fn write_coverage(out: &mut dyn Write, coverage: &Coverage) -> std::io::Result<()> {
    for target in &coverage.targets {
        writeln!(
            out,
            "{}: {} wanted, {} mirrored",
            printable(&target.target),
            target.wanted,
            target.mirrored
        )?;
        for (label, list) in [("missing", &target.missing), ("not delivering", &target.not_delivering)] {
            for entry in list {
                writeln!(
                    out,
                    "  {label:<15} {} {}: {}",
                    printable(&entry.instance_id),
                    printable(&entry.eni),
                    printable(&entry.reason)
                )?;
            }
        }
    }
    for unsupported in &coverage.unsupported_instance_type {
        writeln!(
            out,
            "  {:<15} {} ({}): {}",
            "not a source",
            printable(&unsupported.instance_id),
            printable(&unsupported.instance_type),
            printable(&unsupported.why)
        )?;
    }
    for crossing in &coverage.cost.cross_zone_sessions {
        writeln!(
            out,
            "  {:<15} {}: {} -> {}",
            "cross-zone",
            printable(&crossing.session_id),
            printable(&crossing.source_zone),
            printable(&crossing.target_zone)
        )?;
    }
    writeln!(
        out,
        "{} wanted, {} mirrored, {} missing, {} not delivering",
        coverage.wanted, coverage.mirrored, coverage.missing, coverage.not_delivering
    )?;
    write_cost(out, coverage.cost.mirrored_enis, coverage.cost.estimated_hourly_cost)
}

/// What the ENIs with sessions cost an hour, as the bill counts them.
pub fn write_cost(out: &mut dyn Write, mirrored_enis: usize, hourly: f64) -> std::io::Result<()> {
    writeln!(
        out,
        "{mirrored_enis} ENIs with sessions: about {hourly:.3} USD an hour (plus cross-zone transfer)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(printable("tms-1\u{1b}[2J\nrm"), "tms-1\\u{1b}[2J\\nrm");
        assert_eq!(printable("plain: é ok"), "plain: é ok");
    }

    #[test]
    fn a_table_cell_from_the_ledger_is_printable() {
        let mut out = Vec::new();
        let row = serde_json::json!({"sessionId": "tms-1", "reason": "evil\u{1b}]0;title\u{7}"});
        write_table(&mut out, &[row]).expect("written");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            !text.contains('\u{1b}') && text.contains("\\u{1b}]0;title\\u{7}"),
            "{text}"
        );
    }
}
