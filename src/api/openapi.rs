//! `GET /openapi.json`: the API described as OpenAPI 3.0 (kept true by tests that
//! compare it with the router and with real answers, and by schemathesis).

use serde_json::{json, Value};

/// The answer of `GET /export/dump` (its own function: one `json!` this deep exceeds
/// the macro's recursion limit).
fn list_schema() -> Value {
    json!({"type": "object", "required": ["dumps", "scheduledRuns"], "properties": {
                    "dumps": {"type": "array", "description": "the 50 newest dumps", "items": {"type": "object", "required": ["dumpId", "status", "format", "createdAt", "bytesWritten"], "properties": {
                        "dumpId": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "processing", "interrupted", "completed", "failed", "cancelled"]},
                        "format": {"type": "string", "enum": ["sql", "csv", "json"]},
                        "createdAt": {"type": "string"}, "bytesWritten": {"type": "integer"}}}},
                    "scheduledRuns": {"type": "array", "description": "recent ticks of the schedules", "items": {"type": "object", "required": ["schedule", "at", "outcome", "pruned"], "properties": {
                        "schedule": {"type": "string"}, "at": {"type": "string"},
                        "outcome": {"type": "string", "enum": ["started", "refused", "failed"]},
                        "dumpId": {"type": "string"}, "fleetId": {"type": "string"},
                        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}},
                        "pruned": {"type": "array", "items": {"type": "string"}},
                        "pruneError": {"type": "string"},
                        "dumpStatus": {"type": "string", "description": "the started dump's status now, or deleted"}}}}}})
}

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|c| (c.to_string(), json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})))
        .collect()
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(m) = extra {
        base.extend(m);
    }
    Value::Object(base)
}

/// A path parameter with the pattern the handlers check (so generated requests are the
/// ones the API can accept, and clients learn the rules from the document).
fn path_param(name: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "pattern": pattern}})
}

/// A dump id: `dump_…`, or in a store of several databases `<database>/dump_…` (sent
/// with its `/` as `%2F`: the id is one path segment).
const ID_PATTERN: &str = "([A-Za-z0-9_%~-]{1,200}/){0,16}[A-Za-z0-9_-]{1,100}";

fn id_param(name: &str) -> Value {
    path_param(name, &format!("^{ID_PATTERN}$"))
}

/// The OpenAPI document.
pub fn document() -> Value {
    let json_body = |schema: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    // The content types the download routes send, by the file's extension.
    let binary = json!({"schema": {"type": "string", "format": "binary"}});
    let file = json!({"description": "the file (or a part of it for a Range request)", "content": {
        "application/sql": binary, "application/json": binary, "text/csv; charset=utf-8": binary,
        "application/gzip": binary, "application/zstd": binary}});
    let manifest = json!({"description": "the manifest (or a part of it for a Range request)", "content": {
        "application/json": {"schema": {"type": "object", "required": ["dumpId", "format", "files", "tables"]}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "chunkdump", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Dump a SQLite database to SQL, CSV or JSON in resumable chunks."},
        "security": [{"bearer": []}],
        "paths": {
            "/export/dump": {
                "post": {
                    "summary": "Start a dump",
                    "requestBody": {"required": true, "content": json_body("StartRequest")},
                    "responses": with(error_responses(&["400", "401", "403", "409", "413", "415", "429", "503"]),
                        json!({"202": {"description": "accepted", "content": json_body("Accepted")}})),
                },
                "get": {
                    "summary": "Recent dumps",
                    "responses": with(error_responses(&["401", "503"]), json!({"200": {"description": "recent dumps", "content": json_body("List")}})),
                },
            },
            "/export/dump/status/{id}": {
                "get": {
                    "summary": "Status of a dump",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "status", "content": json_body("Status")}})),
                },
            },
            "/export/dump/download/{file}": {
                "get": {
                    "summary": "Download a SQL or JSON dump (`<id>.<ext>[.gz|.zst]`), or a JSON dump's schema file (`<id>.schema.sql[.gz|.zst]`)",
                    "parameters": [path_param("file", &format!("^{ID_PATTERN}(\\.schema)?\\.(sql|json)(\\.gz|\\.zst)?$"))],
                    "responses": with(error_responses(&["400", "401", "404", "409", "416", "503"]),
                        json!({"200": file, "206": file, "307": {"description": "redirect to a presigned URL"}})),
                },
            },
            "/export/dump/download/{id}/{file}": {
                "get": {
                    "summary": "Download one table of a CSV dump (`<table>.csv[.gz|.zst]`) or its schema file (`schema.sql[.gz|.zst]`)",
                    "parameters": [id_param("id"), path_param("file", "^(([A-Za-z0-9_-]|%[0-9A-F]{2})+\\.csv|schema\\.sql)(\\.gz|\\.zst)?$")],
                    "responses": with(error_responses(&["400", "401", "404", "409", "416", "503"]),
                        json!({"200": file, "206": file, "307": {"description": "redirect to a presigned URL"}})),
                },
            },
            "/export/dump/manifest/{id}": {
                "get": {
                    "summary": "The completed dump's manifest (files with SHA-256, tables with row counts and content hashes, source, consistency)",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "404", "409", "416", "503"]),
                        json!({"200": manifest, "206": manifest, "307": {"description": "redirect to a presigned URL"}})),
                },
            },
            "/export/dump/{id}": {
                "delete": {
                    "summary": "Cancel a dump",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "403", "404", "409", "503"]), json!({"200": {"description": "cancelled", "content": json_body("Status")}})),
                },
            },
            "/export/dump/{id}/resume": {
                "post": {
                    "summary": "Resume an interrupted dump from its last committed chunk (a new run)",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "403", "404", "409", "503"]), json!({"202": {"description": "resumed", "content": json_body("Status")}})),
                },
            },
            "/export/databases": {
                "get": {
                    "summary": "The SQLite databases under the server's database root, by path (a server of one database has none: 404)",
                    "parameters": [
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}, "description": "the previous page's nextCursor"},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "a page of databases", "content": json_body("Databases")}})),
                },
            },
            "/export/fleet": {
                "post": {
                    "summary": "Dump many databases under the database root: a fleet (a server of one database has none: 404)",
                    "requestBody": {"required": true, "content": json_body("FleetRequest")},
                    "responses": with(error_responses(&["400", "401", "403", "404", "413", "415", "429", "503"]),
                        json!({"202": {"description": "accepted", "content": json_body("FleetAccepted")}})),
                },
            },
            "/export/fleet/{id}": {
                "get": {
                    "summary": "A fleet's status: its databases counted by status, and a page of them with their dumps",
                    "parameters": [path_param("id", "^fleet_[A-Za-z0-9_-]{1,58}$"),
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "the fleet", "content": json_body("Fleet")}})),
                },
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": with(error_responses(&["401"]), json!({"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}))},
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
                "StartRequest": {"type": "object", "additionalProperties": false, "required": ["format"], "properties": {
                    "format": {"type": "string", "enum": ["sql", "csv", "json"]},
                    "database": {"type": "string", "description": "with a database root: the database to dump, its path under the root (its dumps are named <database>/dump_…)"},
                    "callbackUrl": {"type": "string", "format": "uri", "pattern": "^https://", "description": "https URL of a public host"},
                    "chunkSize": {"type": "integer", "minimum": 1, "maximum": 100000},
                    "includeSchema": {"type": "boolean", "description": "false: rows only, for SQL dumps (400 with field includeSchema for csv and json, whose schema file is what restores their tables)"},
                    "tables": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "compression": {"type": "string", "enum": ["none", "gzip", "zstd"]},
                    "snapshot": {"type": "boolean", "description": "dump a point-in-time copy (default DUMP_SNAPSHOT)"},
                    "snapshotMaxBlockMs": {"type": "integer", "minimum": 1, "maximum": 600000, "description": "longest a rollback-journal snapshot may hold writers off"}}},
                "Accepted": {"type": "object", "required": ["status", "progressKey", "message", "statusUrl"], "properties": {
                    "status": {"type": "string", "enum": ["accepted"]}, "progressKey": {"type": "string"},
                    "message": {"type": "string"}, "statusUrl": {"type": "string"}}},
                "Status": {"type": "object", "required": ["dumpId", "status", "format", "compression", "progress", "bytesWritten", "chunks", "createdAt", "files", "warnings", "consistency"], "properties": {
                    "dumpId": {"type": "string"},
                    "status": {"type": "string", "enum": ["pending", "processing", "interrupted", "completed", "failed", "cancelled"]},
                    "format": {"type": "string", "enum": ["sql", "csv", "json"]},
                    "compression": {"type": "string", "enum": ["none", "gzip", "zstd"]},
                    "createdAt": {"type": "string"},
                    "completedAt": {"type": "string", "nullable": true, "description": "when the dump ended (completed, failed or cancelled)"},
                    "files": {"type": "array", "items": {"type": "object", "required": ["key", "size"], "properties": {
                        "key": {"type": "string"}, "size": {"type": "integer"},
                        "sha256": {"type": "string", "description": "SHA-256 over the SHA-256 digests of the file's part-size pieces"}}}},
                    "progress": {"type": "object", "properties": {
                        "totalRows": {"type": "integer", "nullable": true}, "processedRows": {"type": "integer"},
                        "percentComplete": {"type": "integer"}, "startedAt": {"type": "string", "nullable": true},
                        "estimatedCompletion": {"type": "string", "nullable": true}}},
                    "bytesWritten": {"type": "integer"}, "chunks": {"type": "integer"},
                    "downloadUrl": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                    "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                    "callback": {"type": "object", "properties": {
                        "status": {"type": "string", "enum": ["pending", "delivered", "failed", "skipped"]},
                        "attempts": {"type": "integer"}, "lastError": {"type": "string", "nullable": true}}},
                    "warnings": {"type": "array", "items": {"type": "string"}, "description": "per-table corner cases, each naming its table"},
                    "consistency": {"type": "object", "properties": {"snapshot": {"type": "boolean"}, "changedDuringDump": {"type": "boolean"}}},
                    "manifest": {"type": "string"}, "manifestUrl": {"type": "string"},
                    "resumeWith": {"type": "string", "description": "for an interrupted dump: the call that resumes it"}}},
                "FleetRequest": {"type": "object", "required": ["databases", "format"], "properties": {
                    "databases": {"oneOf": [{"type": "string", "description": "a pattern of paths under the root: * within a directory, ** across"},
                                            {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                    "format": {"type": "string", "enum": ["sql", "csv", "json"]},
                    "callbackUrl": {"type": "string", "format": "uri", "pattern": "^https://", "description": "told once, when every database's dump has ended"},
                    "chunkSize": {"type": "integer", "minimum": 1, "maximum": 100000},
                    "includeSchema": {"type": "boolean", "description": "false: rows only, for SQL dumps (400 with field includeSchema for csv and json, whose schema file is what restores their tables)"},
                    "tables": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "compression": {"type": "string", "enum": ["none", "gzip", "zstd"]},
                    "snapshot": {"type": "boolean"},
                    "snapshotMaxBlockMs": {"type": "integer", "minimum": 1, "maximum": 600000}}},
                "FleetAccepted": {"type": "object", "required": ["fleetId", "databases", "statusUrl"], "properties": {
                    "fleetId": {"type": "string"}, "databases": {"type": "integer"}, "statusUrl": {"type": "string"}}},
                "Fleet": {"type": "object", "required": ["fleetId", "status", "databases", "counts", "items"], "properties": {
                    "fleetId": {"type": "string"}, "status": {"type": "string", "enum": ["running", "completed"]},
                    "createdAt": {"type": "string"}, "endedAt": {"type": "string", "nullable": true},
                    "databases": {"type": "integer"}, "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "items": {"type": "array", "items": {"type": "object"}}, "nextCursor": {"type": "integer"}}},
                "Databases": {"type": "object", "required": ["databases"], "properties": {
                    "databases": {"type": "array", "items": {"type": "object", "required": ["database", "name", "size"], "properties": {
                        "database": {"type": "string", "description": "its path under the root, as a start names it"},
                        "name": {"type": "string", "description": "its name in the store: its dumps are <name>/dump_…"},
                        "size": {"type": "integer"}}}},
                    "nextCursor": {"type": "string"}}},
                "List": list_schema(),
            },
        },
    })
}
