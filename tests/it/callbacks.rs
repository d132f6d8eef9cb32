//! Completion callbacks to a real HTTPS receiver (self-signed certificate, allowlisted
//! host): the original request's body, a valid HMAC signature, retries, the outcome in the status;
//! internal and non-HTTPS targets refused.

use crate::common;
use chunkdump::ports::ProgressReader as _;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chunkdump::callback::Notifier;
use chunkdump::lifecycle::deliver_callback;
use common::api_server::{start_server, Server, ADMIN};
use common::*;
use hmac::Mac;
use serde_json::{json, Value};

const SECRET: &str = "callback-secret-for-tests";

/// The callbacks a receiver got: headers and body of each.
type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver {
    got: Received,
    fail_first: Arc<AtomicUsize>,
}

/// An HTTPS server on 127.0.0.1:0 for `localhost`; returns its address and CA PEM.
async fn receiver(fail_first: usize) -> (Receiver, SocketAddr, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert_pem.clone().into_bytes(),
        key_pem.into_bytes(),
    )
    .await
    .unwrap();
    let state = Receiver {
        got: Default::default(),
        fail_first: Arc::new(AtomicUsize::new(fail_first)),
    };
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(r): axum::extract::State<Receiver>,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    r.got.lock().unwrap().push((headers, body.to_vec()));
                    let failing = r.fail_first.load(Ordering::SeqCst) > 0;
                    if failing {
                        r.fail_first.fetch_sub(1, Ordering::SeqCst);
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state(state.clone());
    let handle = axum_server::Handle::new();
    let server =
        axum_server::bind_rustls("127.0.0.1:0".parse().unwrap(), config).handle(handle.clone());
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
    let addr = handle.listening().await.unwrap();
    (state, addr, cert_pem)
}

fn notifier(ca_pem: &str) -> Notifier {
    let mut n = Notifier::new(
        SECRET,
        vec!["localhost".into()],
        Some("https://dumps.example.com".into()),
        Some(ca_pem.as_bytes()),
    )
    .unwrap();
    n.retry_delays = vec![Duration::from_millis(50); 3];
    n
}

async fn wait_callback(server: &Server, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = server
            .json(
                reqwest::Method::GET,
                &format!("/export/dump/status/{id}"),
                Some(ADMIN),
                None,
            )
            .await;
        if v["callback"]["status"] != "pending" && !v["callback"].is_null() {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "callback never finished: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(headers: &HeaderMap, body: &[u8]) {
    let ts = headers["x-chunkdump-timestamp"].to_str().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap()).abs() < 60);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        headers["x-chunkdump-signature"].to_str().unwrap(),
        want,
        "bad signature"
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_callback_is_signed_retried_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (rx, addr, ca) = receiver(1).await;
    let server = start_server(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await;
    let url = format!(
        "https://localhost:{}/hook?token=callback-query-secret",
        addr.port()
    );
    let id = server
        .start(json!({"format": "sql", "callbackUrl": url}))
        .await;
    let done = wait_callback(&server, &id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["callback"]["status"], "delivered", "{done}");
    // The job record keeps the URL sealed: its query token is in no stored byte.
    for entry in std::fs::read_dir(server.out.join(".chunkdump")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(21).any(|w| w == b"callback-query-secret"),
                "{} holds the callback URL's token",
                path.display()
            );
        }
    }
    assert_eq!(
        done["callback"]["attempts"], 2,
        "the first attempt got a 500 and was retried"
    );
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (headers, body) = &got[1];
    verify(headers, body);
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["dumpId"], id.as_str());
    assert_eq!(v["format"], "sql");
    assert_eq!(
        v["downloadUrl"],
        format!("https://dumps.example.com/export/dump/download/{id}.sql")
    );
    assert_eq!(v["size"], done["bytesWritten"]);
    assert!(v["completedAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_callback_carries_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 50_000);
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::ZERO,
        Duration::from_millis(200),
        Some(notifier(&ca)),
    )
    .await;
    let id = server.start(json!({"format": "sql", "chunkSize": 100, "callbackUrl": format!("https://localhost:{}/hook", addr.port())})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::remove_file(&src).unwrap(); // the next chunk cannot open the database
    let done = wait_callback(&server, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["callback"]["status"], "delivered");
    let got = rx.got.lock().unwrap().clone();
    let (headers, body) = got.last().unwrap();
    verify(headers, body);
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["status"], "failed");
    // The status and the callback agree on when the dump ended.
    assert!(v["completedAt"].is_string(), "{v}");
    assert_eq!(done["completedAt"], v["completedAt"], "{done}");
    assert!(v["downloadUrl"].is_null());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot open"),
        "{v}"
    );
}

/// A cancelled dump's callback is never sent, and its status says so (`skipped`), with
/// when the dump ended, instead of `pending` forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_dumps_callback_is_skipped_not_pending_forever() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 50_000);
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::ZERO,
        Duration::from_millis(200),
        Some(notifier(&ca)),
    )
    .await;
    let hook = format!("https://localhost:{}/hook", addr.port());
    let id = server
        .start(json!({"format": "sql", "chunkSize": 100, "callbackUrl": hook}))
        .await;
    let (status, cancelled) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let done = server.wait_for(&id, "cancelled").await;
    assert_eq!(done["callback"]["status"], "skipped", "{done}");
    assert!(done["completedAt"].is_string(), "{done}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.got.lock().unwrap().is_empty(), "a callback was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_and_insecure_callback_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await;
    let port = addr.port();
    let targets = [
        format!("http://localhost:{port}/hook"),
        format!("https://127.0.0.1:{port}/hook"),
        "https://10.0.0.1/hook".to_string(),
        "https://192.168.0.10/hook".to_string(),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        "https://[::1]/hook".to_string(),
        "https://[fd00:ec2::254]/".to_string(),
        "https://0.0.0.0/".to_string(),
        format!("https://user:secret@localhost:{port}/hook"),
        "not a url".to_string(),
        "ftp://example.com/x".to_string(),
    ];
    for target in &targets {
        let (status, v) = server
            .json(
                reqwest::Method::POST,
                "/export/dump",
                Some(ADMIN),
                Some(json!({"format": "sql", "callbackUrl": target})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target} -> {v}");
        assert_eq!(v["error"]["field"], "callbackUrl", "{target}");
    }
    assert!(
        rx.got.lock().unwrap().is_empty(),
        "nothing may be sent to refused targets"
    );
    // A server without a signing secret refuses callbacks instead of ignoring them.
    let plain = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let (status, v) = plain
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql", "callbackUrl": format!("https://localhost:{port}/hook")})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("CHUNKDUMP_CALLBACK_SECRET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn warnings_reach_the_status_and_the_callback() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hidden.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("CREATE TABLE ok(a); INSERT INTO ok VALUES (1); CREATE TABLE hidden(rowid, oid, _rowid_); INSERT INTO hidden VALUES (1, 2, 3);")
        .unwrap();
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await;
    let id = server.start(json!({"format": "sql", "callbackUrl": format!("https://localhost:{}/hook", addr.port())})).await;
    let done = wait_callback(&server, &id).await;
    assert_eq!(
        done["status"], "completed",
        "one table's corner case does not fail the dump: {done}"
    );
    let warnings = done["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{done}");
    assert!(
        warnings[0].as_str().unwrap().contains("\"hidden\""),
        "the warning names the table: {done}"
    );
    let got = rx.got.lock().unwrap().clone();
    let v: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
    assert_eq!(v["warnings"], done["warnings"]);
}

/// A job in a local progress store that failed and has a callback to `url`.
async fn failed_job_with_callback(
    dir: &std::path::Path,
    url: &str,
) -> Arc<chunkdump::local::SqliteProgress> {
    use chunkdump::model::{CallbackState, Compression, DumpSpec, Format, JobStatus};
    use chunkdump::ports::ProgressStore;
    let progress =
        Arc::new(chunkdump::local::SqliteProgress::open(&dir.join("progress.sqlite3")).unwrap());
    let spec = DumpSpec {
        database: "/nowhere.db".into(),
        format: Format::Sql,
        compression: Compression::None,
        tables: None,
        include_schema: true,
        slice_rows: chunkdump::model::SliceRows::new(1000).unwrap(),
        part_size: 5 << 20,
        snapshot: false,
        snapshot_max_block_ms: None,
        frame_size: None,
        shown_as: None,
        drill: false,
        recipients: Vec::new(),
    };
    // A record alone: the callback needs no database.
    progress
        .create(&chunkdump::model::JobRecord::new(
            "d1".into(),
            spec,
            chrono::Utc::now(),
        ))
        .await
        .unwrap();
    progress
        .update("d1", &mut |job| {
            let mut next = job.clone();
            next.status = JobStatus::Failed;
            next.callback = Some(CallbackState::pending(url.to_string()));
            Ok(Some(next))
        })
        .await
        .unwrap();
    progress
}

/// Every attempt is recorded as it happens (not only the outcome), and the error names
/// the receiver's origin, never the URL's path or query (which hold its token).
#[tokio::test(flavor = "multi_thread")]
async fn each_attempt_is_recorded_and_errors_show_only_the_origin() {
    use chunkdump::model::CallbackStatus;
    let dir = tempfile::tempdir().unwrap();
    let (_rx, addr, ca) = receiver(usize::MAX).await;
    let url = format!("https://localhost:{}/hook?token=s3cret-token", addr.port());
    let progress = failed_job_with_callback(dir.path(), &url).await;
    let mut n = notifier(&ca);
    // A pause far longer than the test: the state during it is what is checked.
    n.retry_delays = vec![Duration::from_secs(3600)];
    let notifying = {
        let progress = progress.clone();
        tokio::spawn(async move { deliver_callback(&n, progress.as_ref(), "d1", None).await })
    };
    let started = Instant::now();
    let state = loop {
        let job = progress.get("d1").await.unwrap().unwrap();
        let state = job.callback.unwrap();
        if state.attempts == 1 {
            break state;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    notifying.abort();
    assert_eq!(state.status, CallbackStatus::Pending, "{state:?}");
    let error = state.last_error.unwrap();
    assert!(
        error.contains(&format!("https://localhost:{}", addr.port())),
        "{error}"
    );
    assert!(error.contains("500"), "{error}");
    assert!(
        !error.contains("s3cret") && !error.contains("/hook"),
        "{error}"
    );

    // A refused connection (nothing listens there) names the origin and the cause only.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}/hook?token=s3cret-token");
    let progress = failed_job_with_callback(dir.path(), &url).await;
    let mut n = notifier(&ca);
    n.retry_delays = vec![];
    deliver_callback(&n, progress.as_ref(), "d1", None).await;
    let state = progress.get("d1").await.unwrap().unwrap().callback.unwrap();
    assert_eq!(state.status, CallbackStatus::Failed);
    let error = state.last_error.unwrap();
    assert!(
        error.contains(&format!("https://localhost:{port}")),
        "{error}"
    );
    assert!(
        !error.contains("s3cret") && !error.contains("/hook"),
        "{error}"
    );
}

/// Retries stop in time to record the outcome before the function running them ends.
#[tokio::test(flavor = "multi_thread")]
async fn retries_fit_inside_the_function_that_runs_them() {
    use chunkdump::model::CallbackStatus;
    let dir = tempfile::tempdir().unwrap();
    let (rx, addr, ca) = receiver(usize::MAX).await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let progress = failed_job_with_callback(dir.path(), &url).await;
    let mut n = notifier(&ca);
    n.retry_delays = vec![Duration::from_secs(30), Duration::from_secs(120)];
    // 20 s left: one 15 s attempt and the 5 s kept to record fit, a 30 s pause does not.
    let deadline = Instant::now() + Duration::from_secs(20);
    deliver_callback(&n, progress.as_ref(), "d1", Some(deadline)).await;
    assert!(Instant::now() < deadline);
    let state = progress.get("d1").await.unwrap().unwrap().callback.unwrap();
    assert_eq!((state.status, state.attempts), (CallbackStatus::Failed, 1));
    assert!(state.last_error.unwrap().contains("no time left"));
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}

/// A fleet (many databases under a root, issue 22) runs to its end through the local
/// interpreter of `fleet-statemachine.json`: every matching database is dumped, a broken
/// one is counted and named without stopping the others, and one signed callback
/// carries the summary.
#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_dumps_every_matching_database_and_sends_one_signed_callback() {
    let (got, addr, ca) = receiver(1).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    std::fs::create_dir_all(root.join("other")).unwrap();
    build_bulk_db(&root.join("tenants/a.db"), 700);
    build_edge_db(&root.join("tenants/b.db"));
    build_bulk_db(&root.join("tenants/c.db"), 40);
    build_bulk_db(&root.join("other/x.db"), 10);
    // A SQLite header over garbage: listed as a database, refused when its dump starts.
    let mut corrupt = b"SQLite format 3\0".to_vec();
    corrupt.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(root.join("tenants/corrupt.db"), corrupt).unwrap();
    let server = start_server(
        &root.join("tenants/a.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await
    .over_root(&root)
    .await;
    let hook = format!("https://localhost:{}/hook", addr.port());
    // A list naming a database that is not there is refused whole, naming it.
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(json!({"databases": ["tenants/a.db", "tenants/nobody.db"], "format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenants/nobody.db"),
        "{v}"
    );
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(json!({"databases": "tenants/*.db", "format": "sql", "callbackUrl": hook})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["databases"], 4);
    let fleet = v["fleetId"].as_str().unwrap().to_string();
    let started = Instant::now();
    let done = loop {
        let (status, v) = server
            .json(
                reqwest::Method::GET,
                &format!("/export/fleet/{fleet}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        if v["status"] == "completed" {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "fleet never ended: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done["counts"],
        json!({"completed": 3, "notStarted": 1}),
        "{done}"
    );
    let items = done["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["database"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tenants/a.db",
            "tenants/b.db",
            "tenants/c.db",
            "tenants/corrupt.db"
        ]
    );
    for item in items {
        let database = item["database"].as_str().unwrap();
        if database == "tenants/corrupt.db" {
            assert_eq!(item["status"], "notStarted");
            assert!(
                item["dumpId"].is_null() && item["error"]["message"].is_string(),
                "{item}"
            );
            continue;
        }
        assert_eq!(item["status"], "completed", "{item}");
        let id = item["dumpId"].as_str().unwrap();
        let stem = database.trim_end_matches(".db");
        assert!(id.starts_with(&format!("{stem}/dump_")), "{id}");
        // Each dump holds its own database, as the real sqlite3 shell loads it.
        let back = dir.path().join(format!("{}.db", stem.replace('/', "-")));
        load_with_shell(&server.out.join(format!("{id}.sql")), &back);
        assert_same_db(&root.join(database), &back);
    }
    // Paged: two at a time.
    let (_, page) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/fleet/{fleet}?limit=2"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (page["items"].as_array().unwrap().len(), &page["nextCursor"]),
        (2, &json!(2))
    );
    // One callback for the fleet (its first attempt failed and was retried), signed.
    let started = Instant::now();
    while got.got.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no fleet callback"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = got.got.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one failed attempt, then the delivery");
    let (headers, body) = &calls[1];
    verify(headers, body);
    let summary: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (summary["fleetId"].as_str(), &summary["counts"]),
        (
            Some(fleet.as_str()),
            &json!({"completed": 3, "notStarted": 1})
        )
    );
    assert_eq!(summary["notCompleted"][0]["database"], "tenants/corrupt.db");
    // Absolute under the public URL, as a dump's callback URLs are.
    assert_eq!(
        summary["statusUrl"],
        format!("https://dumps.example.com/export/fleet/{fleet}")
    );
    let (status, _) = server
        .json(
            reqwest::Method::GET,
            "/export/fleet/fleet_nope",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Waits until the receiver has had `n` calls (`what`: the failure's message).
async fn wait_calls(rx: &Receiver, n: usize, what: &str) {
    let started = Instant::now();
    while rx.got.lock().unwrap().len() < n {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls dump `id`'s status until it shows a drill.
async fn wait_drill(server: &Server, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = server
            .json(
                reqwest::Method::GET,
                &format!("/export/dump/status/{id}"),
                Some(ADMIN),
                None,
            )
            .await;
        if !v["lastDrill"].is_null() {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never drilled: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A schedule with `"drill": true`: each dump it starts is drilled by the state
/// machine's `Drill` step once it completes. A passed drill calls nobody; a failed one
/// (here a foreign key the source breaks, which the restored copy breaks too) calls the
/// dump's callback URL back, signed, with `"event": "drill.failed"` naming the table.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_drilled_on_completion_calls_back_when_its_drill_fails() {
    use chunkdump::service::schedule::{run_tick, tick_from_payload};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 500);
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let tick = tick_from_payload(&json!({"chunkdumpSchedule": {
        "name": "nightly", "request": {"format": "sql", "callbackUrl": url}, "drill": true}}))
    .unwrap()
    .unwrap();
    let good = run_tick(&server.state.service(), tick.clone())
        .await
        .dump_id
        .unwrap();
    let status = wait_drill(&server, &good).await;
    assert_eq!(status["lastDrill"]["passed"], true, "{status}");
    assert!(server.out.join(format!("{good}.drill.json")).exists());
    assert_eq!(
        rx.got.lock().unwrap().len(),
        1,
        "only the completion callback"
    );
    // The source now breaks a foreign key (written with enforcement off, as the sqlite3
    // shell has it by default).
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "PRAGMA foreign_keys = OFF; CREATE TABLE orders(item INTEGER REFERENCES items(id)); INSERT INTO orders VALUES (999999);",
        )
        .unwrap();
    let bad = run_tick(&server.state.service(), tick)
        .await
        .dump_id
        .unwrap();
    let status = wait_drill(&server, &bad).await;
    assert_eq!(status["lastDrill"]["passed"], false, "{status}");
    wait_calls(&rx, 3, "no drill.failed callback").await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two completions and one failed drill");
    let (headers, body) = &got[2];
    verify(headers, body);
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "drill.failed", "{v}");
    assert_eq!(v["dumpId"], bad.as_str());
    assert_eq!(v["report"], format!("{bad}.drill.json"));
    let problem = v["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("\"orders\"") && problem.contains("foreign key"),
        "{v}"
    );
}

/// `"drillLatestEveryHours"`: a tick drills the latest completed dump of the schedule's
/// database when its last drill is that old (or it has none), and no other; a failed
/// one calls back.
#[tokio::test(flavor = "multi_thread")]
async fn the_latest_dump_is_drilled_when_due_and_a_failure_calls_back() {
    use chunkdump::serve::scheduler::drill_latest_of;
    use chunkdump::service::schedule::{run_tick, tick_from_payload};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 500);
    let (rx, addr, ca) = receiver(0).await;
    let server = start_server(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        Some(notifier(&ca)),
    )
    .await;
    let url = format!("https://localhost:{}/hook", addr.port());
    let tick = tick_from_payload(&json!({"chunkdumpSchedule": {
        "name": "nightly", "request": {"format": "sql", "callbackUrl": url},
        "drillLatestEveryHours": 24}}))
    .unwrap()
    .unwrap();
    let every = tick.drill_latest_every().unwrap();
    assert_eq!(every, Duration::from_secs(24 * 3600));
    let settings = chunkdump::drill::DrillSettings {
        signing: None,
        scratch_dir: dir.path().to_path_buf(),
        ahead: 4,
        skip_too_large_for: Some("a test drill".into()),
    };
    let older = run_tick(&server.state.service(), tick.clone())
        .await
        .dump_id
        .unwrap();
    wait_callback(&server, &older).await;
    let latest = run_tick(&server.state.service(), tick.clone())
        .await
        .dump_id
        .unwrap();
    wait_callback(&server, &latest).await;
    let file = server.out.join(format!("{latest}.sql"));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let reports = drill_latest_of(&server.state.service(), "nightly", every, &settings).await;
    assert_eq!(reports.len(), 1, "only the latest dump");
    assert_eq!(reports[0].dump_id, latest);
    assert!(!reports[0].passed);
    assert!(
        !server.out.join(format!("{older}.drill.json")).exists(),
        "the older dump is not drilled"
    );
    wait_calls(&rx, 3, "no drill.failed callback").await;
    let (headers, body) = &rx.got.lock().unwrap()[2].clone();
    verify(headers, body);
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (v["event"].as_str(), v["dumpId"].as_str()),
        (Some("drill.failed"), Some(latest.as_str()))
    );
    assert!(
        v["problems"][0].as_str().unwrap().contains(".sql"),
        "names the file: {v}"
    );
    // Drilled just now: not due again within the day, due at once with no interval.
    assert!(
        drill_latest_of(&server.state.service(), "nightly", every, &settings)
            .await
            .is_empty()
    );
    let again = drill_latest_of(
        &server.state.service(),
        "nightly",
        Duration::ZERO,
        &settings,
    )
    .await;
    assert_eq!(again.len(), 1);
}
