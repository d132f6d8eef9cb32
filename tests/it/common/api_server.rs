//! The API served in-process on 127.0.0.1:0, and a client for it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkdump::api::{router, ApiSettings, AppState, Tokens};
use chunkdump::callback::Notifier;
use chunkdump::chunk::ChunkOptions;
use chunkdump::local::{DirStore, SqliteProgress};
use chunkdump::runner::LocalRunner;
use reqwest::StatusCode;
use serde_json::Value;

pub const ADMIN: &str = "admin-token-for-tests";
pub const READER: &str = "read-only-token-for-tests";

pub struct Server {
    pub base: String,
    /// The runner behind the served state (fleets run through it).
    pub runner: Arc<LocalRunner>,
    /// The served state (for what runs beside HTTP, such as scheduled ticks).
    pub state: AppState,
    pub out: PathBuf,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Starts the API on a free port, dumping `db` into a fresh directory.
pub async fn start_server(
    db: &Path,
    budget: Duration,
    breathe: Duration,
    notifier: Option<Notifier>,
) -> Server {
    start_server_limited(db, budget, breathe, notifier, 1000).await
}

/// As [`start_server`], allowing `starts` dump starts per token per hour.
pub async fn start_server_limited(
    db: &Path,
    budget: Duration,
    breathe: Duration,
    notifier: Option<Notifier>,
    starts: u64,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    start_server_at(db, budget, breathe, notifier, starts, out, dir).await
}

/// As [`start_server_limited`], on the stores in `out` (a restarted server).
pub async fn start_server_at(
    db: &Path,
    budget: Duration,
    breathe: Duration,
    notifier: Option<Notifier>,
    starts: u64,
    out: PathBuf,
    dir: tempfile::TempDir,
) -> Server {
    let objects = Arc::new(DirStore::open(&out).unwrap());
    let progress =
        Arc::new(SqliteProgress::open(&out.join(".chunkdump/progress.sqlite3")).unwrap());
    let tasks = chunkdump::tasks::Tasks {
        objects: objects.clone(),
        progress: progress.clone(),
        notifier: notifier
            .clone()
            .map(|n| Arc::new(n) as Arc<dyn chunkdump::ports::CallbackSender>),
        chunk: ChunkOptions {
            budget,
            snapshot_dir: Some(out.join(".chunkdump/snapshots")),
            ..Default::default()
        },
        breathe,
        whole_seconds: false,
        chunks_per_execution: 1000,
        drills: crate::common::test_drills(),
        drill_metrics: None,
    };
    // Run locks in the store, as `chunkdump serve` holds them.
    let runner = Arc::new(
        LocalRunner::new(tasks)
            .unwrap()
            .with_run_locks(out.join(".chunkdump/locks")),
    );
    let state = AppState {
        objects,
        progress: progress.clone(),
        guard: progress.clone(),
        rates: progress,
        orchestrator: runner.clone(),
        tokens: Tokens::new(ADMIN, Some(READER)).unwrap(),
        settings: ApiSettings {
            database: Some(db.display().to_string()),
            database_root: None,
            slice_rows: chunkdump::model::SliceRows::new(50).unwrap(),
            snapshot: false,
            part_size: 8 << 20,
            download_expiry: Duration::from_secs(60),
            notifier,
            rate_limit: chunkdump::api::RateLimit {
                starts,
                window: Duration::from_secs(100 * 365 * 24 * 3600),
            },
            fleet_concurrency: 3,
            fleet_poll: Duration::from_millis(20),
            recipients: Vec::new(),
            // The progress store is a local file beside the dumps, as `serve --out` has it.
            custody: chunkdump::lifecycle::KeyCustody::Local,
        },
    };
    runner.run_fleets_with(Arc::new(chunkdump::service::fleet_tasks::FleetTasks {
        service: state.service(),
    }));
    Server {
        base: serve(state.clone()).await,
        runner,
        state,
        out,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

/// Serves the API of `state` on a free port of 127.0.0.1; returns its base URL.
pub async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    base
}

/// Settings for dumping `db` in parts of `part_size`: no callbacks, 100 starts per
/// window. The window is a century (windows are fixed, aligned to the epoch): a test
/// counting starts never sees its window end halfway.
pub fn settings(db: &Path, part_size: u64) -> ApiSettings {
    ApiSettings {
        database: Some(db.display().to_string()),
        database_root: None,
        slice_rows: chunkdump::model::SliceRows::new(1000).unwrap(),
        snapshot: false,
        part_size,
        download_expiry: Duration::from_secs(300),
        notifier: None,
        rate_limit: chunkdump::api::RateLimit {
            starts: 100,
            window: Duration::from_secs(100 * 365 * 24 * 3600),
        },
        fleet_concurrency: 3,
        fleet_poll: Duration::from_millis(20),
        recipients: Vec::new(),
        custody: chunkdump::lifecycle::KeyCustody::Local,
    }
}

impl Server {
    /// The same stores and runner served again, on a new port, with changed settings
    /// (a server with a database root, say).
    pub async fn with_settings(self, change: impl FnOnce(&mut ApiSettings)) -> Server {
        let mut state = self.state.clone();
        change(&mut state.settings);
        self.runner
            .run_fleets_with(Arc::new(chunkdump::service::fleet_tasks::FleetTasks {
                service: state.service(),
            }));
        Server {
            base: serve(state.clone()).await,
            state,
            ..self
        }
    }

    /// This server's state serving the databases under `root` (and no single database).
    pub async fn over_root(self, root: &Path) -> Server {
        let root = chunkdump::local::DatabaseRoot::open(root).unwrap();
        self.with_settings(|s| {
            s.database = None;
            s.database_root = Some(root);
        })
        .await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.bytes().await.unwrap().to_vec())
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call(method, path, token, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn start(&self, body: Value) -> String {
        let (status, v) = self
            .json(
                reqwest::Method::POST,
                "/export/dump",
                Some(ADMIN),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["status"], "accepted");
        v["progressKey"].as_str().unwrap().to_string()
    }

    pub async fn wait_for(&self, id: &str, want: &str) -> Value {
        let started = Instant::now();
        loop {
            let (status, v) = self
                .json(
                    reqwest::Method::GET,
                    &format!("/export/dump/status/{}", chunkdump::model::path_segment(id)),
                    Some(READER),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["status"] == want {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dump {id} never became {want}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
