//! The deployment secret, read from a real Secrets Manager API (moto): its fields, R2
//! access built from it, and clear errors that never echo the secret's content.

use crate::common;

use chunkdump::cloud::load_secrets;
use common::cloud::{sdk_config, servers, unique};

async fn put_secret(config: &aws_config::SdkConfig, text: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(config);
    client
        .create_secret()
        .name(unique("chunkdump"))
        .secret_string(text)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_secret_is_read_and_checked() {
    if common::cloud::skip_without_servers() {
        return;
    }
    let sv = servers();
    let config = sdk_config(&sv.moto, "moto", "moto").await;
    let arn = put_secret(
        &config,
        r#"{"r2Endpoint":"https://acc.r2.cloudflarestorage.com","r2AccessKeyId":"AKID","r2SecretAccessKey":"very-secret-value","apiToken":"admin-0123456789abcdef","callbackSecret":"cb-0123456789abcdef","signingKey":"sign-0123456789abcdef0123456789abcdef"}"#,
    )
    .await;
    let secrets = load_secrets(&config, std::slice::from_ref(&arn))
        .await
        .unwrap();
    assert_eq!(secrets.api_token.as_deref(), Some("admin-0123456789abcdef"));
    assert_eq!(secrets.api_read_token, None);
    let r2 = secrets.r2().unwrap().expect("R2 access is complete");
    assert_eq!(r2.endpoint, "https://acc.r2.cloudflarestorage.com");
    assert_eq!(
        secrets.signing_key.as_deref(),
        Some("sign-0123456789abcdef0123456789abcdef")
    );
    for shown in [format!("{secrets:?}"), format!("{r2:?}")] {
        assert!(
            !shown.contains("very-secret-value")
                && !shown.contains("admin-0123")
                && !shown.contains("sign-0123"),
            "a secret was printed: {shown}"
        );
    }

    let partial = put_secret(
        &config,
        r#"{"r2Endpoint":"https://acc.r2.cloudflarestorage.com","apiToken":"x"}"#,
    )
    .await;
    let e = load_secrets(&config, std::slice::from_ref(&partial))
        .await
        .unwrap()
        .r2()
        .unwrap_err();
    assert!(e.to_string().contains("R2 needs all of"), "{e}");

    let plain_http = put_secret(
        &config,
        r#"{"r2Endpoint":"http://r2.example","r2AccessKeyId":"a","r2SecretAccessKey":"b"}"#,
    )
    .await;
    let e = load_secrets(&config, std::slice::from_ref(&plain_http))
        .await
        .unwrap()
        .r2()
        .unwrap_err();
    assert!(e.to_string().contains("must be an https:// URL"), "{e}");

    let unknown = put_secret(
        &config,
        r#"{"apiToken":"hunter2-hunter2","r2SecretKey":"typo"}"#,
    )
    .await;
    let e = load_secrets(&config, std::slice::from_ref(&unknown))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("must be a JSON object of")
            && e.contains("unknown field `r2SecretKey`")
            && !e.contains("hunter2"),
        "{e}"
    );
    let wrong_type = put_secret(&config, r#"{"apiToken": ["hunter2-hunter2"]}"#).await;
    let e = load_secrets(&config, std::slice::from_ref(&wrong_type))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");

    let e = load_secrets(
        &config,
        &["arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf".to_string()],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("read the deployment secret"), "{e}");

    // A split secret (the template's store and API secrets): merged, each field once.
    let store = put_secret(
        &config,
        r#"{"r2Endpoint":"https://acc.r2.cloudflarestorage.com","r2AccessKeyId":"AKID","r2SecretAccessKey":"k","callbackSecret":"cb-0123456789abcdef"}"#,
    )
    .await;
    let api = put_secret(
        &config,
        r#"{"apiToken":"admin-0123456789abcdef","apiReadToken":"read-0123456789abcdef"}"#,
    )
    .await;
    let both = load_secrets(&config, &[store.clone(), api.clone()])
        .await
        .unwrap();
    assert_eq!(
        both.api_read_token.as_deref(),
        Some("read-0123456789abcdef")
    );
    assert!(both.r2().unwrap().is_some() && both.callback_secret.is_some());
    let only_store = load_secrets(&config, std::slice::from_ref(&store))
        .await
        .unwrap();
    assert!(
        only_store.api_token.is_none(),
        "the chunk function's secret holds no API token"
    );
    let e = load_secrets(&config, &[store.clone(), arn.clone()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("r2Endpoint is set in secret") && !e.contains("AKID"),
        "{e}"
    );
}
