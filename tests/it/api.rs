//! The HTTP API over a real socket (127.0.0.1:0): every format end to end, auth on every
//! route, bad input, cancel.

use crate::common;
use chunkdump::ports::ProgressReader as _;

use std::time::{Duration, Instant};

use common::api_server::{start_server, start_server_limited, ADMIN, READER};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn every_format_end_to_end_matches_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::ZERO, Duration::ZERO, None).await;
    for format in ["sql", "json", "csv"] {
        let id = server
            .start(json!({"format": format, "chunkSize": 3}))
            .await;
        let done = server.wait_for(&id, "completed").await;
        assert_eq!(done["progress"]["percentComplete"], 100);
        assert!(
            done["chunks"].as_u64().unwrap() > 3,
            "tiny chunks expected: {done}"
        );
        let (_, cli) = dump_ok(
            &src,
            &dir.path().join(format!("cli-{format}")),
            &["--format", format],
        );
        let (url, expected, kind) = if format == "json" {
            let url = done["downloadUrl"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .find(|u| u.ends_with(".json"))
                .unwrap()
                .to_string();
            (url, std::fs::read(&cli).unwrap(), "application/json")
        } else if format == "csv" {
            let url = done["downloadUrl"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
                .find(|u| u.ends_with("/texts.csv"))
                .unwrap()
                .to_string();
            (
                url,
                std::fs::read(cli.join("texts.csv")).unwrap(),
                "text/csv; charset=utf-8",
            )
        } else {
            (
                done["downloadUrl"].as_str().unwrap().to_string(),
                std::fs::read(&cli).unwrap(),
                "application/sql",
            )
        };
        let (status, headers, body) = server
            .call(reqwest::Method::GET, &url, Some(READER), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body, expected,
            "{format} download differs from the CLI dump"
        );
        assert_eq!(headers["content-type"], kind);
        assert!(headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename="));
        // Range requests work on downloads.
        let res = server
            .client
            .get(format!("{}{url}", server.base))
            .bearer_auth(ADMIN)
            .header("Range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(res.bytes().await.unwrap().to_vec(), expected[..10].to_vec());
    }
    let (status, list) = server
        .json(reqwest::Method::GET, "/export/dump", Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["dumps"].as_array().unwrap().len(), 3);
}

/// A Parquet dump over the API: zstd inside its files unless asked otherwise, a download
/// URL per file (a table's files under its directory), each served as Parquet, and the
/// one-file route refused with a 400 that names the right URLs.
#[tokio::test(flavor = "multi_thread")]
async fn a_parquet_dump_over_the_api_serves_every_file_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::ZERO, Duration::ZERO, None).await;
    let id = server
        .start(json!({"format": "parquet", "chunkSize": 3}))
        .await;
    let done = server.wait_for(&id, "completed").await;
    assert_eq!(done["compression"], "zstd", "{done}");
    let urls: Vec<String> = done["downloadUrl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    let files = done["files"].as_array().unwrap();
    assert_eq!(urls.len(), files.len());
    assert!(
        urls.iter()
            .any(|u| u.ends_with("/texts%2Fpart-00001.parquet")),
        "{urls:?}"
    );
    for (url, file) in urls.iter().zip(files) {
        let (status, headers, body) = server
            .call(reqwest::Method::GET, url, Some(READER), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{url}");
        let key = file["key"].as_str().unwrap();
        assert_eq!(body, std::fs::read(server.out.join(key)).unwrap(), "{url}");
        if key.ends_with(".parquet") {
            assert_eq!(headers["content-type"], "application/vnd.apache.parquet");
            assert_eq!(&body[..4], b"PAR1");
        }
    }
    // Only the files it lists: no path into another directory.
    for bad in ["..%2Fother%2Fpart-00001.parquet", "texts%2F..%2Fx.parquet"] {
        let (status, _, _) = server
            .call(
                reqwest::Method::GET,
                &format!("/export/dump/download/{id}/{bad}"),
                Some(READER),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, body) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/download/{id}.parquet"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("part-00001.parquet"), "{body}");
}

/// The `Authorization` scheme is case-insensitive (RFC 7235): `BEARER`, `bearer` and
/// `Bearer` carry the same token; another scheme, or the scheme alone, is a 401.
#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    for (header, want) in [
        (format!("BEARER {READER}"), StatusCode::OK),
        (format!("bearer {READER}"), StatusCode::OK),
        (format!("BeArEr  {READER}"), StatusCode::OK),
        (format!("Basic {READER}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer{READER}"), StatusCode::UNAUTHORIZED),
        ("Bearer ".to_string(), StatusCode::UNAUTHORIZED),
    ] {
        let res = server
            .client
            .get(format!("{}/export/dump", server.base))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want, "{header:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_requires_a_token_and_read_only_tokens_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let id = server.start(json!({"format": "sql"})).await;
    server.wait_for(&id, "completed").await;
    let routes = [
        (reqwest::Method::POST, "/export/dump".to_string()),
        (reqwest::Method::GET, "/export/dump".to_string()),
        (reqwest::Method::GET, format!("/export/dump/status/{id}")),
        (
            reqwest::Method::GET,
            format!("/export/dump/download/{id}.sql"),
        ),
        (reqwest::Method::DELETE, format!("/export/dump/{id}")),
        (reqwest::Method::GET, "/export/databases".to_string()),
        (reqwest::Method::POST, "/export/fleet".to_string()),
        (reqwest::Method::GET, "/export/fleet/fleet_x".to_string()),
        (reqwest::Method::GET, "/no/such/route".to_string()),
    ];
    for (method, path) in &routes {
        for token in [
            None,
            Some("wrong-token"),
            Some(""),
            Some("admin-token-for-test"),
        ] {
            let (status, headers, body) = server
                .call(method.clone(), path, token, Some(json!({"format": "sql"})))
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(headers["www-authenticate"], "Bearer realm=\"chunkdump\"");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(READER),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{id}"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(READER),
            Some(json!({"databases": "*.db", "format": "sql"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a fleet starts dumps: admin only"
    );
    let (status, _, _) = server
        .call(
            reqwest::Method::GET,
            &format!("/export/dump/download/{id}.sql"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let post = |body: Value| {
        server.json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(body),
        )
    };
    let cases = [
        (
            json!({"format": "sql", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            Some("colour"),
        ),
        (
            json!({"format": "xml"}),
            StatusCode::BAD_REQUEST,
            Some("format"),
        ),
        (json!({}), StatusCode::BAD_REQUEST, Some("format")),
        (
            json!({"format": "sql", "chunkSize": 0}),
            StatusCode::BAD_REQUEST,
            Some("chunkSize"),
        ),
        (
            json!({"format": "sql", "chunkSize": 1_000_000}),
            StatusCode::BAD_REQUEST,
            Some("chunkSize"),
        ),
        (
            json!({"format": "sql", "chunkSize": "big"}),
            StatusCode::BAD_REQUEST,
            Some("chunkSize"),
        ),
        (
            json!({"format": "sql", "tables": ["texts", "nope"]}),
            StatusCode::BAD_REQUEST,
            Some("tables"),
        ),
        (
            json!({"format": "sql", "tables": []}),
            StatusCode::BAD_REQUEST,
            Some("tables"),
        ),
        (
            json!({"format": "sql", "compression": "zip"}),
            StatusCode::BAD_REQUEST,
            Some("compression"),
        ),
        (
            json!({"format": "sql", "callbackUrl": "https://example.com/hook"}),
            StatusCode::BAD_REQUEST,
            Some("callbackUrl"),
        ),
        (json!(["format", "sql"]), StatusCode::BAD_REQUEST, None),
        (
            json!({"format": "csv", "includeSchema": false}),
            StatusCode::BAD_REQUEST,
            Some("includeSchema"),
        ),
    ];
    // A query string that does not parse names its parameter too.
    for path in [
        "/export/databases?limit=abc",
        "/export/fleet/fleet_x?limit=abc",
    ] {
        let (status, v) = server
            .json(reqwest::Method::GET, path, Some(READER), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} -> {v}");
        assert_eq!(v["error"]["field"], "limit", "{path} -> {v}");
    }
    for (body, want, field) in cases {
        let (status, v) = post(body.clone()).await;
        assert_eq!(status, want, "{body} -> {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{body} -> {v}");
        }
    }
    // Not JSON at all, or too large.
    let res = server
        .client
        .post(format!("{}/export/dump", server.base))
        .bearer_auth(ADMIN)
        .body("format=sql")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_media_type", "{v}");
    // The code the router gives a 413 (docs/api.md), whichever layer refuses the body;
    // a fleet's body the same.
    let huge = json!({"format": "sql", "tables": vec!["x".repeat(100); 500]});
    let (status, v) = post(huge.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(huge),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    // Ids are checked before any store is touched; unknown ids are 404.
    for path in [
        "/export/dump/status/..%2F..%2Fetc",
        "/export/dump/status/a.b",
        "/export/dump/download/..%2Fx.sql",
    ] {
        let (status, v) = server
            .json(reqwest::Method::GET, path, Some(ADMIN), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
    }
    let (status, _) = server
        .json(
            reqwest::Method::GET,
            "/export/dump/status/dump_19990101-000000",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // No file was written by any of this.
    assert!(std::fs::read_dir(&server.out)
        .unwrap()
        .all(|e| e.unwrap().file_name() == ".chunkdump"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_dump_and_removes_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 50_000);
    let server = start_server(&src, Duration::ZERO, Duration::from_millis(100), None).await;
    let id = server
        .start(json!({"format": "csv", "chunkSize": 100}))
        .await;
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
        if v["chunks"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(v["status"], "processing");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, v) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/status/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        v["status"], "cancelled",
        "a cancelled dump must stay cancelled: {v}"
    );
    let (status, _) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = server
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/download/{id}/items.csv"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        !server.out.join(&id).exists(),
        "the cancelled dump's files must be gone"
    );
    assert_eq!(
        std::fs::read_dir(server.out.join(".chunkdump/uploads"))
            .unwrap()
            .count(),
        0,
        "upload left behind"
    );
}

#[test]
fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let o = chunkdump()
        .env_remove("CHUNKDUMP_API_TOKEN")
        .args([
            "serve",
            "--db",
            src.to_str().unwrap(),
            "--out",
            dir.path().join("o").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("CHUNKDUMP_API_TOKEN is not set"));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_active_dump_per_database() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 50_000);
    let server = start_server(&src, Duration::ZERO, Duration::from_millis(100), None).await;
    let first = server
        .start(json!({"format": "sql", "chunkSize": 100}))
        .await;
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "json"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "dump_running");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&first),
        "the 409 names the running dump: {v}"
    );
    // Once it is no longer active (here: cancelled), the database is free again.
    let (status, _) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{first}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = server
        .start(json!({"format": "sql", "tables": ["tags"], "chunkSize": 100000}))
        .await;
    server.wait_for(&second, "completed").await;
    // Back-to-back starts (often in the same second) never collide.
    let third = server
        .start(json!({"format": "sql", "tables": ["tags"], "chunkSize": 100000}))
        .await;
    assert!(second != first && third != second && third != first);
    server.wait_for(&third, "completed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_per_token_are_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server_limited(&src, Duration::from_secs(25), Duration::ZERO, None, 2).await;
    // Refused starts neither count against the limit nor hold the database: a start
    // naming a missing table gets its 400, and the corrected one right after is accepted.
    for _ in 0..3 {
        let (status, v) = server
            .json(
                reqwest::Method::POST,
                "/export/dump",
                Some(ADMIN),
                Some(json!({"format": "json", "tables": ["typo"]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    }
    for _ in 0..2 {
        let id = server.start(json!({"format": "json"})).await;
        server.wait_for(&id, "completed").await;
    }
    let (status, headers, body) = server
        .call(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "json"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0, "{retry}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    // Reading is not limited.
    let (status, _) = server
        .json(reqwest::Method::GET, "/export/dump", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A fleet is one start against its caller's limit (it starts many dumps, so an
/// unlimited fleet route would make the limit meaningless); a refused one gives it back.
#[tokio::test(flavor = "multi_thread")]
async fn fleets_count_against_the_start_limit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    build_edge_db(&root.join("a.db"));
    build_edge_db(&root.join("b.db"));
    let server = start_server_limited(
        &root.join("a.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        None,
        2,
    )
    .await
    .over_root(&root)
    .await;
    let fleet = |body: Value| {
        server.call(
            reqwest::Method::POST,
            "/export/fleet",
            Some(ADMIN),
            Some(body),
        )
    };
    let (status, _, body) = fleet(json!({"databases": "nothing/*.db", "format": "sql"})).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    for _ in 0..2 {
        let (status, _, body) = fleet(json!({"databases": "*.db", "format": "sql"})).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, headers, body) = fleet(json!({"databases": "*.db", "format": "sql"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    // The same window as single dumps.
    let (status, _, _) = server
        .call(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"database": "a.db", "format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_describes_every_route_truthfully() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let csv = server.start(json!({"format": "csv"})).await;
    server.wait_for(&csv, "completed").await;
    let (status, doc) = server
        .json(reqwest::Method::GET, "/openapi.json", Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let mut operations: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    operations.sort();
    let expected = [
        ("DELETE", "/export/dump/{id}"),
        ("GET", "/export/databases"),
        ("GET", "/export/dump"),
        ("GET", "/export/dump/download/{file}"),
        ("GET", "/export/dump/download/{id}/{file}"),
        ("GET", "/export/dump/manifest/{id}"),
        ("GET", "/export/dump/status/{id}"),
        ("GET", "/export/fleet/{id}"),
        ("GET", "/openapi.json"),
        ("POST", "/export/dump"),
        ("POST", "/export/dump/{id}/resume"),
        ("POST", "/export/fleet"),
    ];
    assert_eq!(
        operations,
        expected.map(|(m, p)| (m.to_string(), p.to_string())),
        "every route documented, nothing else"
    );
    // Every documented operation answers with a documented status, for a valid and an
    // invalid call.
    for (method, path) in &operations {
        let calls = [
            path.replace("{id}", &csv).replace(
                "{file}",
                if path.contains("{id}/") {
                    "texts.csv"
                } else {
                    "nope.sql"
                },
            ),
            path.replace("{id}", "no_such_dump")
                .replace("{file}", "x.json"),
        ];
        for concrete in calls {
            let body = (method == "POST").then(|| json!({"format": "json"}));
            let (status, _, _) = server
                .call(method.parse().unwrap(), &concrete, Some(ADMIN), body)
                .await;
            let documented = &doc["paths"][path][method.to_lowercase()]["responses"];
            assert!(
                documented.get(status.as_str()).is_some(),
                "{method} {concrete} answered {status}, not documented in {documented}"
            );
        }
    }
    // Every field the API sends is in the document, at every depth where the document
    // describes an object's properties (a completed dump's status, the list).
    for (path, route) in [
        (
            format!("/export/dump/status/{csv}"),
            "/export/dump/status/{id}",
        ),
        ("/export/dump".to_string(), "/export/dump"),
    ] {
        let (_, answer) = server
            .json(reqwest::Method::GET, &path, Some(READER), None)
            .await;
        let schema = &doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert_described(&doc, schema, &answer, route);
    }
}

/// Every member of `value` is a property `schema` describes, recursively where it
/// describes the member's properties (or an array's items'), naming the path.
fn assert_described(doc: &Value, schema: &Value, value: &Value, at: &str) {
    // Generated schemas refer to each other, and wrap a described reference in `allOf`.
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| {
                panic!("{at}: {reference} is not in the document");
            });
        return assert_described(doc, target, value, at);
    }
    if let Some([only]) = schema["allOf"].as_array().map(Vec::as_slice) {
        return assert_described(doc, only, value, at);
    }
    match value {
        Value::Object(members) => {
            let Some(properties) = schema["properties"].as_object() else {
                return;
            };
            for (key, member) in members {
                let described = properties.get(key);
                assert!(
                    described.is_some(),
                    "{at}.{key} is sent but not in the OpenAPI document: {value}"
                );
                assert_described(doc, described.unwrap(), member, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            for item in items {
                assert_described(doc, &schema["items"], item, &format!("{at}[]"));
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfinished_dump_whose_run_is_gone_is_interrupted_until_resumed() {
    use chunkdump::ports::ProgressStore;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 2000);
    // One chunk, then a breath of an hour: the dump stays `processing`.
    let first =
        start_server_limited(&src, Duration::ZERO, Duration::from_secs(3600), None, 100).await;
    let id = first.start(json!({"format": "sql"})).await;
    // `processing` from the first chunk's start; its commit is what this test changes.
    let started = Instant::now();
    while first.wait_for(&id, "processing").await["chunks"] == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk committed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // As if the last commit were ten minutes ago.
    let progress =
        chunkdump::local::SqliteProgress::open(&first.out.join(".chunkdump/progress.sqlite3"))
            .unwrap();
    let mut job = progress.get(&id).await.unwrap().unwrap();
    let version = job.version;
    job.version += 1;
    job.staged_version = Some(version); // a record-only change keeps the chunk's staging
    job.updated_at -= chrono::Duration::minutes(10);
    progress.commit(&job, version).await.unwrap();
    // Its run is alive in this server: the database stays taken.
    let (status, v) = first
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    // A second server on the same stores sees the run alive too (its run lock), however
    // long the dump has been quiet: it refuses, and the healthy dump goes on.
    let out = first.out.clone();
    let beside = common::api_server::start_server_at(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        None,
        100,
        out.clone(),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let (status, v) = beside
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        progress.get(&id).await.unwrap().unwrap().status.as_str(),
        "processing"
    );
    // The first server goes away (its run with it): a restarted server on the same
    // stores finds no run, so the dump is interrupted. It keeps the database (nothing it
    // wrote is lost) until it is resumed; the resumed dump completes.
    first.state.orchestrator.stop(&id).await.unwrap();
    let restarted = common::api_server::start_server_at(
        &src,
        Duration::from_secs(25),
        Duration::ZERO,
        None,
        100,
        out,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let status_path = format!("/export/dump/status/{id}");
    let (_, old) = restarted
        .json(reqwest::Method::GET, &status_path, Some(READER), None)
        .await;
    let resume = format!("/export/dump/{id}/resume");
    assert_eq!(old["status"], "interrupted", "{old}");
    assert_eq!(old["resumeWith"], format!("POST {resume}"), "{old}");
    assert!(old["progress"]["estimatedCompletion"].is_null(), "{old}");
    let (_, listed) = restarted
        .json(reqwest::Method::GET, "/export/dump", Some(READER), None)
        .await;
    assert_eq!(listed["dumps"][0]["dumpId"], id.as_str(), "{listed}");
    assert_eq!(listed["dumps"][0]["status"], "interrupted", "{listed}");
    // A download says what the status says (not the record's last "processing").
    let (status, early) = restarted
        .json(
            reqwest::Method::GET,
            &format!("/export/dump/download/{id}.sql"),
            Some(READER),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{early}");
    let message = early["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("interrupted") && message.contains(&resume),
        "{message}"
    );
    let (status, refused) = restarted
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains("interrupted") && message.contains(&resume),
        "{message}"
    );
    // Resuming takes the admin token.
    let (status, _) = restarted
        .json(reqwest::Method::POST, &resume, Some(READER), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, resumed) = restarted
        .json(reqwest::Method::POST, &resume, Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resumed}");
    let done = restarted.wait_for(&id, "completed").await;
    assert_eq!(
        done["progress"]["processedRows"], done["progress"]["totalRows"],
        "{done}"
    );
    let (status, again) = restarted
        .json(reqwest::Method::POST, &resume, Some(ADMIN), None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a completed dump does not resume: {again}"
    );
    // The resumed dump is the database, and the database is free again.
    let dumped = restarted.out.join(format!("{id}.sql"));
    let restored = restarted.out.join("restored.db");
    load_with_shell(&dumped, &restored);
    assert_same_db(&src, &restored);
    let second = restarted.start(json!({"format": "sql"})).await;
    restarted.wait_for(&second, "completed").await;
}

/// Every download URL the API gives for a CSV dump works as given, whatever the table's
/// name (`weird "name" / with, chars` among them).
/// `downloadUrl` names every file a restore needs, in every format: the files it lists
/// (beside the manifest from `manifestUrl`), downloaded into a directory by their keys,
/// restore as the source database.
#[tokio::test(flavor = "multi_thread")]
async fn the_download_urls_are_every_file_a_restore_needs() {
    let dir = tempfile::tempdir().unwrap();
    // Rows every format carries exactly (the edge cases are the format tests').
    let src = dir.path().join("bulk.db");
    build_bulk_db(&src, 300);
    let server = start_server(&src, Duration::ZERO, Duration::ZERO, None).await;
    for format in ["sql", "json", "csv", "parquet"] {
        let id = server.start(json!({"format": format})).await;
        let done = server.wait_for(&id, "completed").await;
        let urls: Vec<String> = match &done["downloadUrl"] {
            Value::String(url) => vec![url.clone()],
            Value::Array(urls) => urls.iter().map(|u| u.as_str().unwrap().into()).collect(),
            other => panic!("{format}: downloadUrl {other}"),
        };
        let keys: Vec<&str> = done["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap())
            .collect();
        assert_eq!(urls.len(), keys.len(), "{format}: {done}");
        let downloaded = dir.path().join(format!("downloaded-{format}"));
        for (url, key) in urls.iter().zip(&keys) {
            let (status, _, body) = server
                .call(reqwest::Method::GET, url, Some(READER), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{format}: {url}");
            let path = downloaded.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let (status, _, manifest) = server
            .call(
                reqwest::Method::GET,
                done["manifestUrl"].as_str().unwrap(),
                Some(READER),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{format}");
        let manifest_path = downloaded.join(done["manifest"].as_str().unwrap());
        std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
        std::fs::write(&manifest_path, manifest).unwrap();
        let back = dir.path().join(format!("back-{format}.db"));
        let o = run(&[
            "restore",
            "--manifest",
            manifest_path.to_str().unwrap(),
            "--into",
            back.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_db(&src, &back);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_csv_download_url_works_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::ZERO, Duration::ZERO, None).await;
    let id = server.start(json!({"format": "csv"})).await;
    let done = server.wait_for(&id, "completed").await;
    let urls: Vec<String> = done["downloadUrl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    assert!(urls.iter().any(|u| u.contains("weird")), "{urls:?}");
    for url in &urls {
        let (status, _, body) = server
            .call(reqwest::Method::GET, url, Some(READER), None)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{url}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!body.is_empty(), "{url}");
    }
}

/// Every file a JSON dump's status lists downloads (its schema file too, which a
/// restore needs), byte for byte as stored.
#[tokio::test(flavor = "multi_thread")]
async fn every_file_of_a_json_dump_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::ZERO, Duration::ZERO, None).await;
    let id = server.start(json!({"format": "json"})).await;
    let done = server.wait_for(&id, "completed").await;
    let keys: Vec<String> = done["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap().to_string())
        .collect();
    assert!(keys.iter().any(|k| k.contains("schema.sql")), "{keys:?}");
    for key in &keys {
        let url = format!("/export/dump/download/{key}");
        let (status, _, body) = server
            .call(reqwest::Method::GET, &url, Some(READER), None)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{url}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body, std::fs::read(server.out.join(key)).unwrap(), "{url}");
    }
}

/// Serves `state` with `limits` on a free port; returns its address.
async fn serve_limited(
    state: chunkdump::api::AppState,
    limits: chunkdump::config::ListenerConfig,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chunkdump::serve::listener::serve_with_limits(
        listener,
        chunkdump::api::router(state),
        limits,
        std::future::pending(),
    ));
    addr
}

/// Reads from `conn` until the server closes it (or it errors); panics if it has not
/// within `within` (a long bound: it is a failure, not a measurement).
async fn closed_by_server(conn: &mut tokio::net::TcpStream, within: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

/// Slowloris: half-sent requests are closed after the header timeout, connections past
/// the cap are closed as they arrive, and a real client is served once they are gone.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_cannot_starve_the_server() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let half_sent = b"GET /export/dump HTTP/1.1\r\nHost: x\r\n";

    // A header timeout of 1 s: a half-sent request is closed, unanswered.
    let quick = serve_limited(
        server.state.clone(),
        chunkdump::config::ListenerConfig {
            header_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            max_connections: 64,
            max_connections_per_client: 64,
        },
    )
    .await;
    let mut slow = tokio::net::TcpStream::connect(quick).await.unwrap();
    slow.write_all(half_sent).await.unwrap();
    let answer = closed_by_server(&mut slow, Duration::from_secs(30)).await;
    assert!(
        answer.is_empty() || String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A cap of 8 connections and a long header timeout: the 9th is closed at once.
    let capped = serve_limited(
        server.state.clone(),
        chunkdump::config::ListenerConfig {
            header_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            max_connections: 8,
            max_connections_per_client: 8,
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut c = tokio::net::TcpStream::connect(capped).await.unwrap();
        c.write_all(half_sent).await.unwrap();
        held.push(c);
    }
    let mut ninth = tokio::net::TcpStream::connect(capped).await.unwrap();
    let _ = ninth.write_all(half_sent).await;
    assert!(closed_by_server(&mut ninth, Duration::from_secs(20))
        .await
        .is_empty());
    // Once the idle clients leave, real ones are served.
    drop(held);
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let res = client
            .get(format!("http://{capped}/export/dump"))
            .bearer_auth(READER)
            .send()
            .await;
        if let Ok(res) = res {
            assert_eq!(res.status(), StatusCode::OK);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One client's idle sockets cannot keep the others out: past its own cap its new
/// connections are closed at once, while another client address is served.
#[tokio::test(flavor = "multi_thread")]
async fn one_client_cannot_take_every_connection() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let addr = serve_limited(
        server.state.clone(),
        chunkdump::config::ListenerConfig {
            header_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            max_connections: 64,
            max_connections_per_client: 4,
        },
    )
    .await;
    let half_sent = b"GET /export/dump HTTP/1.1\r\nHost: x\r\n";
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((ip, 0).into()).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = from("127.0.0.1").await;
        c.write_all(half_sent).await.unwrap();
        held.push(c);
    }
    let mut fifth = from("127.0.0.1").await;
    let _ = fifth.write_all(half_sent).await;
    assert!(closed_by_server(&mut fifth, Duration::from_secs(20))
        .await
        .is_empty());
    // Another client (loopback is a /8) is served while the first holds its four.
    let mut other = from("127.0.0.2").await;
    other
        .write_all(
            format!("GET /export/dump HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let answer = closed_by_server(&mut other, Duration::from_secs(20)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
}

/// Every error is the JSON error body, also the ones the router makes itself, and a
/// server error names the database by its file name, never by its path.
#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_the_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let (status, headers, body) = server
        .call(reqwest::Method::PUT, "/export/dump", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(headers.contains_key("allow"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    let (status, body) = server
        .json(
            reqwest::Method::GET,
            "/export/dump/status/%FF%FE",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    // The database is gone: the start fails, naming `edge.db` but not where it was.
    std::fs::remove_file(&src).unwrap();
    let (status, body) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"format": "sql"})),
        )
        .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("edge.db"), "{message}");
    assert!(
        !message.contains(dir.path().to_str().unwrap()),
        "the server's path is shown: {message}"
    );
}

/// A DELETE while a chunk is writing files (a CSV dump of 3,000 tables, one chunk of a
/// 60 s budget) leaves no file of the dump: not the finished tables the chunk never
/// recorded, not its staging, not an open upload.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_during_a_chunk_leaves_no_file_of_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tables.db");
    let c = rusqlite::Connection::open(&src).unwrap();
    let mut sql = String::from("BEGIN;");
    for i in 0..3000 {
        sql.push_str(&format!(
            "CREATE TABLE t{i}(a, b); INSERT INTO t{i} VALUES({i}, 'x');"
        ));
    }
    sql.push_str("COMMIT;");
    c.execute_batch(&sql).unwrap();
    drop(c);
    let server = start_server(&src, Duration::from_secs(60), Duration::from_secs(30), None).await;
    let id = server.start(json!({"format": "csv"})).await;
    // Cancel once the chunk has written some of its files (and has most still to write).
    let folder = server.out.join(&id);
    let started = Instant::now();
    while std::fs::read_dir(&folder).map_or(0, |d| d.count()) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no file was ever written"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (status, v) = server
        .json(
            reqwest::Method::DELETE,
            &format!("/export/dump/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled", "{v}");
    let mut left: Vec<String> = std::fs::read_dir(&server.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&id))
        .collect();
    let staging = server.out.join(".chunkdump/staging").join(&id);
    left.extend(
        std::fs::read_dir(&staging)
            .map(|d| {
                d.map(|e| e.unwrap().path().display().to_string())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    let uploads = std::fs::read_dir(server.out.join(".chunkdump/uploads"))
        .unwrap()
        .count();
    assert_eq!(uploads, 0, "an upload was left open");
}

/// Tokens from a rotatable secret are read again once their time is up: a rotated-out
/// token stops working without a restart, the new one works, and a failed read keeps
/// the tokens that were good (nobody is locked out by a Secrets Manager hiccup).
#[tokio::test(flavor = "multi_thread")]
async fn rotated_tokens_take_effect_without_a_restart() {
    use chunkdump::api::{TokenLoader, Tokens};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("edge.db");
    build_edge_db(&src);
    let server = start_server(&src, Duration::from_secs(25), Duration::ZERO, None).await;
    let (old, new) = ("admin-token-before-rotation", "admin-token-after-rotation");
    // What the secret holds now; None: the secret cannot be read.
    let secret = Arc::new(Mutex::new(Some(old.to_string())));
    let source = secret.clone();
    let loader: TokenLoader = Arc::new(move || {
        let held = source.lock().unwrap().clone();
        Box::pin(async move {
            match held {
                Some(token) => Tokens::new(&token, None),
                None => Err(chunkdump::config::ConfigError::Unusable {
                    what: "secret".into(),
                    reason: "unreachable".into(),
                }),
            }
        })
    });
    let mut state = server.state.clone();
    state.tokens = Tokens::new(old, None)
        .unwrap()
        .refreshing(Duration::ZERO, loader);
    let base = common::api_server::serve(state).await;
    let client = reqwest::Client::new();
    let list = |token: &'static str| {
        let (client, url) = (client.clone(), format!("{base}/export/dump"));
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(list(old).await, StatusCode::OK);
    assert_eq!(list(new).await, StatusCode::UNAUTHORIZED);
    *secret.lock().unwrap() = Some(new.to_string());
    assert_eq!(list(old).await, StatusCode::UNAUTHORIZED, "rotated out");
    assert_eq!(list(new).await, StatusCode::OK);
    *secret.lock().unwrap() = None;
    assert_eq!(
        list(new).await,
        StatusCode::OK,
        "a failed read keeps the tokens"
    );
    assert_eq!(list(old).await, StatusCode::UNAUTHORIZED);
}

/// A tenant's file swapped for a symlink to another tenant's database while its dump
/// breathes: the dump fails (it never dumps the other file under this name), and its
/// status names the database by its file name, never by the server's path.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_swapped_mid_dump_fails_it_and_the_error_names_no_server_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    build_bulk_db(&root.join("tenants/a.db"), 20_000);
    build_bulk_db(&root.join("tenants/b.db"), 30_000);
    let server = start_server(
        &root.join("tenants/a.db"),
        Duration::ZERO,
        Duration::from_millis(200),
        None,
    )
    .await
    .over_root(&root)
    .await;
    let id = server
        .start(json!({"database": "tenants/a.db", "format": "sql", "chunkSize": 100}))
        .await;
    let started = Instant::now();
    loop {
        let (_, v) = server
            .json(
                reqwest::Method::GET,
                &format!(
                    "/export/dump/status/{}",
                    chunkdump::model::path_segment(&id)
                ),
                Some(READER),
                None,
            )
            .await;
        if v["chunks"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(v["status"], "processing", "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let link = root.join("tenants/.swap");
    std::os::unix::fs::symlink("b.db", &link).unwrap();
    std::fs::rename(&link, root.join("tenants/a.db")).unwrap();
    let failed = server.wait_for(&id, "failed").await;
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("a.db") && message.contains("not the file this dump began with"),
        "{message}"
    );
    assert!(
        !message.contains(&*dir.path().to_string_lossy()),
        "a server path in {message}"
    );
    assert!(failed["files"].as_array().unwrap().is_empty(), "{failed}");
}

/// A file under the root that begins like a SQLite database but is garbage after its
/// header: refused at the start with 400 naming the field, as the docs say (not 500).
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_database_is_refused_with_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    build_edge_db(&root.join("good.db"));
    let mut corrupt = b"SQLite format 3\0".to_vec();
    corrupt.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(root.join("corrupt.db"), corrupt).unwrap();
    let server = start_server(
        &root.join("good.db"),
        Duration::from_secs(25),
        Duration::ZERO,
        None,
    )
    .await
    .over_root(&root)
    .await;
    let (status, v) = server
        .json(
            reqwest::Method::POST,
            "/export/dump",
            Some(ADMIN),
            Some(json!({"database": "corrupt.db", "format": "sql"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "database", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("corrupt.db"), "{message}");
    assert!(
        !message.contains(&*dir.path().to_string_lossy()),
        "{message}"
    );
    // The database is free again: the good one starts.
    let id = server
        .start(json!({"database": "good.db", "format": "sql"}))
        .await;
    server.wait_for(&id, "completed").await;
}
