//! `sync_records`: the flagship example.
//!
//! It starts a flaky records API on 127.0.0.1, then runs the `sync_records` workflow against it
//! under a fixed run id. Run it twice: the second run executes nothing. Kill it mid-run and run
//! it again: it resumes where it stopped. The API's ledger shows every effect that happened.

use flow_examples::api::{self, ApiConfig};
use flow_examples::sync::{self, SyncInput};
use flow_runtime as flow;
use std::path::PathBuf;
use std::process::ExitCode;

const HELP: &str = "\
sync_records: push records to a flaky API with a durable, resumable flow workflow

USAGE:
    sync_records [OPTIONS]

OPTIONS:
    --records N        records to sync (default 50)
    --run-id ID        run id; the same id resumes or returns the stored outcome (default sync-demo)
    --dir PATH         where the store and the API ledger live (default .flow-demo)
    --delay-ms MS      pause inside each push, to leave time to kill the process (default 0)
    --concurrency N    pushes in flight at once (default 8)
    --failure-rate F   share of API requests that fail with 503 (default 0.3)
    --dry-run          show what would be pushed; change nothing
    --fresh            delete the store and the ledger first
    -h, --help         print this help

EXIT CODES:
    0 the run succeeded    1 the run failed    2 usage error    3 store error
";

struct Args {
    records: u32,
    run_id: String,
    dir: PathBuf,
    delay_ms: u64,
    concurrency: usize,
    failure_rate: f64,
    dry_run: bool,
    fresh: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        records: 50,
        run_id: "sync-demo".into(),
        dir: PathBuf::from(".flow-demo"),
        delay_ms: 0,
        concurrency: 8,
        failure_rate: 0.3,
        dry_run: false,
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--records" => args.records = parse(&value("--records")?, "--records")?,
            "--run-id" => args.run_id = value("--run-id")?,
            "--dir" => args.dir = PathBuf::from(value("--dir")?),
            "--delay-ms" => args.delay_ms = parse(&value("--delay-ms")?, "--delay-ms")?,
            "--concurrency" => args.concurrency = parse(&value("--concurrency")?, "--concurrency")?,
            "--failure-rate" => {
                args.failure_rate = parse(&value("--failure-rate")?, "--failure-rate")?
            }
            "--dry-run" => args.dry_run = true,
            "--fresh" => args.fresh = true,
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(args)
}

fn parse<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{name}: `{s}` is not a valid value"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,flow_runtime=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if args.fresh {
        let _ = std::fs::remove_dir_all(&args.dir);
    }
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("error: cannot create {}: {e}", args.dir.display());
        return ExitCode::from(3);
    }
    let ledger = args.dir.join("api-ledger.jsonl");
    let base = match api::serve(ApiConfig {
        failure_rate: args.failure_rate,
        invalid_every: 17,
        ledger: ledger.clone(),
    })
    .await
    {
        Ok(base) => base,
        Err(e) => {
            eprintln!("error: cannot start the example API: {e}");
            return ExitCode::from(3);
        }
    };
    sync::set_api(base.clone());
    println!("records API listening on {base}");

    let flow = match flow::Flow::open(args.dir.join("flow.redb")) {
        Ok(flow) => flow,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let input = SyncInput {
        count: args.records,
        concurrency: args.concurrency,
        delay_ms: args.delay_ms,
    };

    if args.dry_run {
        return match sync::sync_records::dry_run(&flow, input).await {
            Ok(dry) => {
                println!("dry run: {} steps would change something:", dry.plan.len());
                for planned in dry.plan.iter().take(10) {
                    println!("  {} {}", planned.action, planned.args);
                }
                if dry.plan.len() > 10 {
                    println!("  ... and {} more", dry.plan.len() - 10);
                }
                println!("nothing was written to the store or pushed to the API");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(3)
            }
        };
    }

    let before = api::read_ledger(&ledger).map(|l| l.len()).unwrap_or(0);
    let options = flow::RunOptions::new().id(args.run_id.as_str());
    let handle = match sync::sync_records::start_with(&flow, options, input).await {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    println!("run {} (trace {})", handle.run_id(), handle.trace_id());
    let outcome = handle.outcome().await;
    let entries = api::read_ledger(&ledger).unwrap_or_default();
    let created = entries.iter().filter(|e| e.outcome == "created").count();
    let duplicates = entries.len() - created;
    println!(
        "API ledger: {created} records created in total, {duplicates} repeated pushes answered from the idempotency cache, {} pushes reached the API in this process",
        entries.len() - before
    );
    match outcome {
        Ok(report) => {
            println!(
                "run succeeded: {} records pushed, {} rejected (validation errors are never retried)",
                report.pushed,
                report.rejected.len()
            );
            for line in &report.rejected {
                println!("  rejected {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("run did not succeed: {e}");
            ExitCode::from(1)
        }
    }
}
