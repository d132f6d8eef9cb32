//! Scheduled starts: a tick (the payload EventBridge Scheduler sends, events/schedule.json)
//! starts a dump through the API's own start path, is refused like an API start while a
//! dump of the database runs (409), applies its retention policy, and every tick is
//! recorded where `GET /export/dump` shows it with the dump's current status.

use crate::common;

use std::time::Duration;

use chunkdump::service::schedule::{run_tick, tick_from_payload, ScheduledStart, TickOutcome};
use common::api_server::{start_server, READER};

fn tick(json: serde_json::Value) -> ScheduledStart {
    tick_from_payload(&serde_json::json!({ "chunkdumpSchedule": json }))
        .expect("a schedule payload")
        .expect("a valid tick")
}

#[tokio::test(flavor = "multi_thread")]
async fn ticks_start_dumps_like_the_api_are_refused_while_one_runs_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    common::build_bulk_db(&db, 2000);
    // One 50-row slice per chunk with a pause between chunks: a dump runs for a while.
    let server = start_server(&db, Duration::ZERO, Duration::from_millis(5), None).await;
    // The sample event of the template's schedule parses as a tick.
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("events/schedule.json").unwrap()).unwrap();
    assert_eq!(tick_from_payload(&sample).unwrap().unwrap().name, "nightly");
    let nightly = tick(
        serde_json::json!({"name": "nightly", "request": {"format": "sql", "compression": "zstd"}, "retention": {"keepLast": 1}}),
    );

    let first = run_tick(&server.state.service(), nightly.clone()).await;
    assert_eq!(first.outcome, TickOutcome::Started, "{first:?}");
    let d1 = first.dump_id.clone().unwrap();
    let busy = run_tick(&server.state.service(), nightly.clone()).await;
    assert_eq!(busy.outcome, TickOutcome::Refused, "{busy:?}");
    assert_eq!(busy.error.as_ref().unwrap()["status"], 409);
    assert!(
        busy.error.as_ref().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains(&d1),
        "names the running dump: {busy:?}"
    );
    let done = server.wait_for(&d1, "completed").await;
    assert!(
        done["downloadUrl"].as_str().unwrap().ends_with(".sql.zst"),
        "{done}"
    );

    let second = run_tick(&server.state.service(), nightly.clone()).await;
    let d2 = second.dump_id.clone().unwrap();
    assert!(
        second.pruned.is_empty(),
        "the newest completed dump is kept: {second:?}"
    );
    server.wait_for(&d2, "completed").await;
    // A dump started by hand is not the schedule's to prune.
    let by_hand = server.start(serde_json::json!({"format": "json"})).await;
    server.wait_for(&by_hand, "completed").await;
    // Dump ids name the second a dump starts in, and a pruned dump's id is free again:
    // start the third dump in a later second than the first, so its id is new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // keepLast 1: the third tick deletes the first dump whole, keeps the second.
    let third = run_tick(&server.state.service(), nightly.clone()).await;
    assert_eq!(third.pruned, vec![d1.clone()], "{third:?}");
    let d3 = third.dump_id.clone().unwrap();
    let (status, body) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/status/{d1}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    server.wait_for(&d3, "completed").await;
    server.wait_for(&by_hand, "completed").await;

    // A malformed tick fails loudly and is recorded too.
    let bad = run_tick(
        &server.state.service(),
        tick(serde_json::json!({"name": "no spaces allowed", "request": {"format": "csv"}})),
    )
    .await;
    assert_eq!(bad.outcome, TickOutcome::Failed);
    assert!(tick_from_payload(
        &serde_json::json!({"chunkdumpSchedule": {"name": "x", "request": {"format": "xml"}}})
    )
    .unwrap()
    .is_err());

    let (status, list) = server
        .json(reqwest::Method::GET, "/export/dump", Some(READER), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let runs = list["scheduledRuns"].as_array().unwrap();
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["failed", "started", "started", "refused", "started"],
        "{list}"
    );
    assert_eq!(runs[1]["dumpId"], d3.as_str());
    assert_eq!(runs[1]["dumpStatus"], "completed");
    assert_eq!(runs[4]["dumpStatus"], "deleted", "the pruned dump: {list}");
    assert_eq!(runs[3]["error"]["status"], 409);
}

/// The schedule's Input in the SAM template, rendered with the parameters' defaults (and
/// with a table list and a callback), is a tick the function accepts.
#[test]
fn the_templates_schedule_input_is_a_valid_tick() {
    let template = std::fs::read_to_string("infra/template.yaml").unwrap();
    let input = template.find("Input: !If").expect("the schedule's Input");
    // Two bodies: a fleet over BackupDatabases, and one database.
    let bodies: Vec<String> = template[input..]
        .split("- !Sub |")
        .skip(1)
        .take(2)
        .map(|part| {
            part.lines()
                .skip(1)
                .take_while(|l| l.starts_with("            "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert_eq!(bodies.len(), 2, "two schedule bodies");
    for (n, body) in bodies.iter().enumerate() {
        let render = |tables: &str, callback: &str, keep_days: &str, drill: &str| {
            body.replace("${AWS::StackName}", "chunkdump")
                .replace("${BackupDrill}", drill)
                .replace("${BackupFormat}", "sql")
                .replace("${BackupCompression}", "zstd")
                .replace("${BackupTables}", tables)
                .replace("${BackupSnapshot}", "true")
                .replace("${BackupCallbackUrl}", callback)
                .replace("${BackupKeepLast}", "7")
                .replace("${BackupKeepDays}", keep_days)
                .replace("${BackupDatabases}", "tenants/*.db")
        };
        for (tables, callback, days, drill) in [
            ("null", "", "0", "false"),
            (
                r#"["orders","users"]"#,
                "https://example.com/hook",
                "14",
                "true",
            ),
        ] {
            let text = render(tables, callback, days, drill);
            assert!(!text.contains("${"), "unrendered parameter: {text}");
            let payload: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let tick = tick_from_payload(&payload)
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(tick.name, "chunkdump");
            assert_eq!(
                serde_json::to_value(&tick.request).unwrap()["compression"],
                "zstd"
            );
            let fleet = tick.databases.as_ref().and_then(|d| d.as_str());
            assert_eq!(fleet, (n == 0).then_some("tenants/*.db"), "{text}");
            assert_eq!(tick.drill, drill == "true", "{text}");
        }
    }
}

/// The drill schedule's input (and its sample event) is the drill function's payload.
#[test]
fn the_templates_drill_schedule_input_is_the_drill_functions_payload() {
    use chunkdump::tasks::{DrillLatest, DRILL_LATEST_KEY};
    let template = std::fs::read_to_string("infra/template.yaml").unwrap();
    let entry = template
        .find("DrillScheduleEntry:")
        .expect("the drill schedule");
    let line = template[entry..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("Input: !Sub '"))
        .expect("its Input");
    let text = line
        .trim_end_matches('\'')
        .replace("${DrillLatestEveryHours}", "24");
    let sample = std::fs::read_to_string("events/drill-latest.json").unwrap();
    for text in [text, sample] {
        let payload: serde_json::Value = serde_json::from_str(&text).unwrap();
        let latest: DrillLatest =
            serde_json::from_value(payload[DRILL_LATEST_KEY].clone()).unwrap();
        assert_eq!(latest.every_hours, 24.0, "{text}");
    }
}

/// Waits for fleet `id` to end; returns its dump ids, by database.
async fn fleet_dumps(server: &common::api_server::Server, id: &str) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let (status, v) = server
            .json(
                reqwest::Method::GET,
                &format!("/export/fleet/{id}"),
                Some(READER),
                None,
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{v}");
        if v["status"] == "completed" {
            assert_eq!(v["counts"]["completed"], v["databases"], "{v}");
            return v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["dumpId"].as_str().unwrap().to_string())
                .collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fleet never ended: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_over_several_databases_starts_a_fleet_and_keeps_each_databases_newest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    common::build_bulk_db(&root.join("acme.db"), 300);
    common::build_edge_db(&root.join("beta.db"));
    let server = start_server(
        &root.join("acme.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        None,
    )
    .await
    .over_root(&root)
    .await;
    let tenants = tick(serde_json::json!({"name": "tenants", "databases": "*.db",
        "request": {"format": "sql", "callbackUrl": ""}, "retention": {"keepLast": 1}}));
    let mut fleets = Vec::new();
    for n in 0..3 {
        if n > 0 {
            // Dump ids name the second a dump starts in.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let run = run_tick(&server.state.service(), tenants.clone()).await;
        assert_eq!(run.outcome, TickOutcome::Started, "{run:?}");
        assert!(run.dump_id.is_none());
        if n < 2 {
            assert!(
                run.pruned.is_empty(),
                "each database keeps its newest: {run:?}"
            );
        } else {
            // keepLast 1, per database: the first fleet's two dumps go, one of each.
            let mut pruned = run.pruned.clone();
            pruned.sort();
            assert_eq!(pruned, fleets[0], "{run:?}");
        }
        let dumps = fleet_dumps(&server, run.fleet_id.as_ref().unwrap()).await;
        assert!(
            dumps[0].starts_with("acme/dump_") && dumps[1].starts_with("beta/dump_"),
            "{dumps:?}"
        );
        fleets.push(dumps);
        if n == 0 {
            // A dump started by hand is not the schedule's to prune.
            let by_hand = server
                .start(serde_json::json!({"format": "json", "database": "acme.db"}))
                .await;
            server.wait_for(&by_hand, "completed").await;
            fleets.push(vec![by_hand]);
        }
    }
    let (status, _) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/status/{}", fleets[1][0].replace('/', "%2F")),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "the hand-started dump stays"
    );
}

/// `serve` killed (SIGKILL) in the middle of a fleet, then started again on the same
/// directory: the fleet goes on where it was and ends. The dump the killed server was
/// running counts as interrupted (resumable), the databases not yet started are dumped,
/// and the status says `completed` with counts from the dumps, not `running` forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_survives_its_server_being_killed_and_ends() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["a.db", "b.db", "c.db"] {
        common::build_bulk_db(&root.join(name), 3000);
    }
    let out = dir.path().join("out");
    let token = "fleet-restart-token-0123456789";
    // One dump at a time, each many short chunks with pauses: the kill finds one running.
    let serve = || {
        let mut child = common::chunkdump()
            .args(["serve", "--database-root", root.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .env("CHUNKDUMP_API_TOKEN", token)
            .env("DUMP_CHUNK_SIZE", "100")
            .env("MAX_EXECUTION_TIME", "0")
            .env("DUMP_BREATHING_INTERVAL", "100")
            .env("CHUNKDUMP_FLEET_CONCURRENCY", "1")
            .env("CHUNKDUMP_FLEET_POLL_MS", "50")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        (child, base)
    };
    let client = reqwest::Client::new();
    let get = |url: String| {
        let request = client.get(url).bearer_auth(token);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let (mut first, base) = serve();
    let accepted: serde_json::Value = client
        .post(format!("{base}/export/fleet"))
        .bearer_auth(token)
        .json(&serde_json::json!({"databases": "*.db", "format": "sql"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/export/fleet/{}", accepted["fleetId"].as_str().unwrap());
    let started = std::time::Instant::now();
    loop {
        let fleet = get(format!("{base}{path}")).await;
        if fleet["items"][0]["status"] == "processing" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{fleet}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut second, base) = serve();
    let started = std::time::Instant::now();
    let fleet = loop {
        let fleet = get(format!("{base}{path}")).await;
        if fleet["status"] == "completed" {
            break fleet;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{fleet}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(
        fleet["counts"],
        serde_json::json!({"completed": 2, "interrupted": 1}),
        "{fleet}"
    );
    assert_eq!(fleet["items"][0]["status"], "interrupted", "{fleet}");
}

/// Each scheduled run is a record of its own: two ticks at once both show (one started,
/// one refused), a corrupt record is named in `unreadableScheduledRuns` rather than
/// emptying the history, the one-file history of earlier versions is still listed, and
/// only the newest 20 are kept.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_runs_are_never_lost_and_a_corrupt_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    common::build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let tick = |name: &str| {
        tick_from_payload(&serde_json::json!({"chunkdumpSchedule": {
            "name": name, "request": {"format": "sql"}}}))
        .unwrap()
        .unwrap()
    };
    // The one-file history of an earlier version.
    let legacy = serde_json::json!([{"schedule": "old", "at": "2026-01-01T00:00:00Z", "outcome": "started", "dumpId": "dump_20260101-000000", "pruned": []}]);
    let runs_dir = server.out.join(".chunkdump");
    std::fs::create_dir_all(&runs_dir).unwrap();
    std::fs::write(runs_dir.join("schedule-runs.json"), legacy.to_string()).unwrap();
    let service = server.state.service();
    let (a, b) = tokio::join!(
        run_tick(&service, tick("first")),
        run_tick(&service, tick("second"))
    );
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [TickOutcome::Refused, TickOutcome::Started]);
    let corrupt = ".chunkdump/schedule-runs/20991231T000000.000000Z-x-0000.json";
    std::fs::write(server.out.join(corrupt), b"{\"schedule\": ").unwrap();
    let (status, list) = server
        .json(reqwest::Method::GET, "/export/dump", Some(READER), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let mut names: Vec<&str> = list["scheduledRuns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["schedule"].as_str().unwrap())
        .collect();
    assert_eq!(names.pop(), Some("old"), "the legacy run, oldest: {list}");
    names.sort();
    assert_eq!(names, ["first", "second"], "{list}");
    let unreadable = list["unreadableScheduledRuns"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{list}");
    assert!(
        unreadable[0].as_str().unwrap().starts_with(corrupt),
        "{list}"
    );
    // Past 20 runs, the oldest records go.
    std::fs::remove_file(server.out.join(corrupt)).unwrap();
    for _ in 0..20 {
        run_tick(&server.state.service(), tick("many")).await;
    }
    let kept = std::fs::read_dir(server.out.join(".chunkdump/schedule-runs"))
        .unwrap()
        .count();
    assert_eq!(kept, 20);
}
