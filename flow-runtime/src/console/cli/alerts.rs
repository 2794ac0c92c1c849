//! `alerts list`: the stored alerts and the delivery state of each notice.
//!
//! It prints only what the store keeps of an alert; a webhook's secret header is never stored,
//! so it cannot be shown.

use super::args::{AlertsCommand, OutputFormat};
use super::commands::{add_row, fail_api, open_operator, print_json, release, table, time};
use super::Exit;
use crate::console::api::open::Access;
use crate::console::settings::FlowSettings;
use crate::store::{AlertFilter, AlertRecord, AlertState, DeliveryState};
use serde_json::json;

pub(super) async fn command(
    settings: &FlowSettings,
    command: AlertsCommand,
    output: OutputFormat,
) -> Exit {
    let AlertsCommand::List {
        pending,
        workflow,
        limit,
    } = command;
    let opened = match open_operator(settings, Access::Read).await {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    let filter = AlertFilter {
        pending,
        workflow,
        limit: Some(limit),
    };
    let exit = match opened.operator.alerts(&filter).await {
        Ok(alerts) => {
            list(&alerts, output);
            Exit::Success
        }
        Err(e) => fail_api(&e),
    };
    release(opened.server).await;
    exit
}

fn state(alert: &AlertRecord) -> &'static str {
    match alert.state {
        AlertState::Open => "open",
        AlertState::Resolved => "resolved",
    }
}

/// Each notice of `alert` per sink and where its delivery stands, in a line.
pub(super) fn deliveries(alert: &AlertRecord) -> String {
    alert
        .deliveries
        .iter()
        .map(|d| {
            format!(
                "{} {}: {} ({} attempts)",
                d.sink,
                d.notice.as_str(),
                delivery_state(d.state),
                d.attempts
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn delivery_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
    }
}

fn list(alerts: &[AlertRecord], output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!(alerts
            .iter()
            .map(|a| json!({
                "alert_id": a.id,
                "workflow": a.workflow,
                "kind": a.kind.as_str(),
                "state": state(a),
                "failures": a.failures,
                "run_ids": a.run_ids,
                "error": a.last_error,
                "trace_id": a.trace_id,
                "created_at": time(a.created_at_ms),
                "resolved_at": a.resolved_at_ms.map(time),
                "resolved_by": a.resolved_by,
                "detail": a.detail,
                "deliveries": a.deliveries.iter().map(|d| json!({
                    "sink": d.sink,
                    "notice": d.notice.as_str(),
                    "state": delivery_state(d.state),
                    "attempts": d.attempts,
                    "next_try_at": (d.state == DeliveryState::Pending).then(|| time(d.next_try_ms)),
                    "delivered_at": d.delivered_at_ms.map(time),
                    "last_error": d.last_error,
                })).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            let mut t = table(&[
                "ALERT ID",
                "WORKFLOW",
                "KIND",
                "STATE",
                "RUNS",
                "CREATED",
                "DELIVERIES",
            ]);
            for a in alerts {
                let deliveries = deliveries(a);
                add_row(
                    &mut t,
                    [
                        a.id.clone(),
                        a.workflow.clone(),
                        a.kind.as_str().to_owned(),
                        state(a).to_owned(),
                        a.run_ids.len().to_string(),
                        time(a.created_at_ms),
                        deliveries,
                    ],
                );
            }
            println!("{t}");
        }
    }
}
