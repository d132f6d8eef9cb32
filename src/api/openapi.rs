//! `GET /openapi.json`: the API described as OpenAPI 3.0. The schemas of requests and
//! answers are generated from the Rust types the handlers take and send (schemars), so
//! they cannot drift from the code; the routes are kept true by a test that compares
//! them with the router, and schemathesis checks real answers against the whole
//! document. (Only the fleet request's schema is still written here by hand: its
//! handler reads the body as a map, to start every database's dump with it.)

use schemars::gen::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Value};

use super::databases::DatabasePage;
use super::error::ErrorBody;
use super::handlers::DumpList;
use crate::service::fleet_views::{FleetAccepted, FleetStatus};
use crate::service::start::StartRequest;
use crate::views::{StartAccepted, StatusView};

/// The generated schemas: a reference to each type's, and every schema they use.
struct Schemas {
    generator: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        Schemas {
            generator: SchemaSettings::openapi3().into_generator(),
        }
    }

    /// A JSON body of type `T` (its schema in the components).
    fn body<T: schemars::JsonSchema>(&mut self) -> Value {
        let schema = self.generator.subschema_for::<T>();
        json!({"application/json": {"schema": schema}})
    }

    fn into_components(self) -> serde_json::Map<String, Value> {
        self.generator
            .definitions()
            .iter()
            .map(|(name, schema)| {
                (
                    name.clone(),
                    serde_json::to_value(schema).unwrap_or_default(),
                )
            })
            .collect()
    }
}

fn error_responses(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|c| (c.to_string(), json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})))
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
    let mut schemas = Schemas::new();
    schemas.body::<ErrorBody>();
    let (start, accepted) = (
        schemas.body::<StartRequest>(),
        schemas.body::<StartAccepted>(),
    );
    let (status, list) = (schemas.body::<StatusView>(), schemas.body::<DumpList>());
    let databases = schemas.body::<DatabasePage>();
    let fleet = (
        schemas.body::<FleetAccepted>(),
        schemas.body::<FleetStatus>(),
    );
    let json_body = |schema: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}});
    let bodies = Bodies {
        start,
        accepted,
        status,
        list,
        databases,
        fleet_accepted: fleet.0,
        fleet: fleet.1,
    };
    let mut document = hand_written(json_body, bodies);
    if let Some(Value::Object(components)) = document.pointer_mut("/components/schemas") {
        components.extend(schemas.into_components());
    }
    document
}

/// What a started dump's id (`progressKey`) leads to: its status, manifest, cancel and
/// resume (so clients and schemathesis follow real ids, not guesses).
fn dump_links() -> Value {
    let by_id = |operation: &str| json!({"operationId": operation, "parameters": {"id": "$response.body#/progressKey"}});
    json!({"status": by_id("dumpStatus"), "manifest": by_id("dumpManifest"),
           "cancel": by_id("cancelDump"), "resume": by_id("resumeDump")})
}

/// The generated request and answer bodies the paths refer to.
struct Bodies {
    start: Value,
    accepted: Value,
    status: Value,
    list: Value,
    databases: Value,
    fleet_accepted: Value,
    fleet: Value,
}

/// The document but for the generated schemas.
fn hand_written(json_body: impl Fn(&str) -> Value, bodies: Bodies) -> Value {
    let Bodies {
        start,
        accepted,
        status,
        list,
        databases,
        fleet_accepted,
        fleet,
    } = bodies;
    // The content types the download routes send, by the file's extension.
    let binary = json!({"schema": {"type": "string", "format": "binary"}});
    let file = json!({"description": "the file (or a part of it for a Range request)", "content": {
        "application/sql": binary, "application/json": binary, "text/csv; charset=utf-8": binary,
        "application/gzip": binary, "application/zstd": binary,
        "application/vnd.apache.parquet": binary, "application/octet-stream": binary}});
    let manifest = json!({"description": "the manifest (or a part of it for a Range request)", "content": {
        // An encrypted dump's manifest is sealed: its tables are inside, not beside.
        "application/json": {"schema": {"type": "object", "required": ["dumpId", "format", "files"]}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "chunkdump", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Dump a SQLite database to SQL, CSV, JSON or Parquet in resumable chunks."},
        "security": [{"bearer": []}],
        "paths": {
            "/export/dump": {
                "post": {
                    "summary": "Start a dump",
                    "requestBody": {"required": true, "content": start},
                    "responses": with(error_responses(&["400", "401", "403", "409", "413", "415", "429", "503"]),
                        json!({"202": {"description": "accepted", "content": accepted, "links": dump_links()}})),
                },
                "get": {
                    "summary": "Recent dumps",
                    "responses": with(error_responses(&["401", "503"]), json!({"200": {"description": "recent dumps", "content": list}})),
                },
            },
            "/export/dump/status/{id}": {
                "get": {
                    "summary": "Status of a dump",
                    "operationId": "dumpStatus",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "status", "content": status}})),
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
                    "summary": "Download one table of a CSV dump (`<table>.csv[.gz|.zst]`), one file of a Parquet dump's table (`<table>/part-00001.parquet`, sent as `<table>%2Fpart-00001.parquet`), or the schema file (`schema.sql[.gz|.zst]`)",
                    "parameters": [id_param("id"), path_param("file", "^((([A-Za-z0-9_-]|%[0-9A-F]{2})+\\.csv|schema\\.sql)(\\.gz|\\.zst)?|([A-Za-z0-9_~-]|%[0-9A-F]{2})+/part-[0-9]{5}\\.parquet)(\\.age)?$")],
                    "responses": with(error_responses(&["400", "401", "404", "409", "416", "503"]),
                        json!({"200": file, "206": file, "307": {"description": "redirect to a presigned URL"}})),
                },
            },
            "/export/dump/manifest/{id}": {
                "get": {
                    "operationId": "dumpManifest",
                    "summary": "The completed dump's manifest (files with SHA-256, tables with row counts and content hashes, source, consistency)",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "404", "409", "416", "503"]),
                        json!({"200": manifest, "206": manifest, "307": {"description": "redirect to a presigned URL"}})),
                },
            },
            "/export/dump/{id}": {
                "delete": {
                    "summary": "Cancel a dump",
                    "operationId": "cancelDump",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "403", "404", "409", "503"]), json!({"200": {"description": "cancelled", "content": status}})),
                },
            },
            "/export/dump/{id}/resume": {
                "post": {
                    "summary": "Resume an interrupted dump from its last committed chunk (a new run)",
                    "operationId": "resumeDump",
                    "parameters": [id_param("id")],
                    "responses": with(error_responses(&["400", "401", "403", "404", "409", "503"]), json!({"202": {"description": "resumed", "content": status}})),
                },
            },
            "/export/databases": {
                "get": {
                    "summary": "The SQLite databases under the server's database root, by path (a server of one database has none: 404)",
                    "parameters": [
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}, "description": "the previous page's nextCursor"},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "a page of databases", "content": databases}})),
                },
            },
            "/export/fleet": {
                "post": {
                    "summary": "Dump many databases under the database root: a fleet (a server of one database has none: 404)",
                    "requestBody": {"required": true, "content": json_body("FleetRequest")},
                    "responses": with(error_responses(&["400", "401", "403", "404", "413", "415", "429", "503"]),
                        json!({"202": {"description": "accepted", "content": fleet_accepted}})),
                },
            },
            "/export/fleet/{id}": {
                "get": {
                    "summary": "A fleet's status: its databases counted by status, and a page of them with their dumps",
                    "parameters": [path_param("id", "^fleet_[A-Za-z0-9_-]{1,58}$"),
                        {"name": "cursor", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}},
                        {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                    "responses": with(error_responses(&["400", "401", "404", "503"]), json!({"200": {"description": "the fleet", "content": fleet}})),
                },
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": with(error_responses(&["401"]), json!({"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}))},
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "FleetRequest": {"type": "object", "required": ["databases", "format"], "properties": {
                    "databases": {"oneOf": [{"type": "string", "description": "a pattern of paths under the root: * within a directory, ** across"},
                                            {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                    "format": {"type": "string", "enum": ["sql", "csv", "json", "parquet"]},
                    "callbackUrl": {"type": "string", "format": "uri", "pattern": "^https://", "description": "told once, when every database's dump has ended"},
                    "chunkSize": {"type": "integer", "minimum": 1, "maximum": crate::model::SliceRows::MAX},
                    "includeSchema": {"type": "boolean", "description": "false: rows only, for SQL dumps (400 with field includeSchema for csv and json, whose schema file is what restores their tables)"},
                    "tables": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "compression": {"type": "string", "enum": ["none", "gzip", "zstd"]},
                    "snapshot": {"type": "boolean"},
                    "snapshotMaxBlockMs": {"type": "integer", "minimum": 1, "maximum": 600000},
                    "drill": {"type": "boolean", "description": "drill each database's dump once it completes; the fleet's status counts the drills"},
                    "recipients": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string"},
                                   "description": "age public keys (age1...) every database's dump is encrypted to, instead of the deployment's CHUNKDUMP_RECIPIENTS"}}},
            },
        },
    })
}
