use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let h = app.raw(reqwest::Method::GET, "/healthz", None, None, None).await;
    assert_eq!(h.status, 200);
    let r = app.raw(reqwest::Method::GET, "/readyz", None, None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["database"], "sqlite");
}

#[tokio::test]
async fn create_read_and_find_a_cardholder() {
    let app = spawn_app().await;
    let c = app
        .post(
            "/v1/cardholders",
            json!({"external_id": "985f38c8-9a33-423b-86be-86a5997feaa9", "name": "Aurora Catarina",
                   "phone": {"country_code": "+55", "number": "11987654321"}, "date_of_birth": "1988-02-29"}),
        )
        .await
        .expect(201, "");
    assert_eq!(c["external_id"], "985f38c8-9a33-423b-86be-86a5997feaa9");
    assert_eq!(c["phone"], json!({"country_code": "55", "number": "11987654321"}));
    assert_eq!(c["date_of_birth"], "1988-02-29");
    assert_eq!(c["email"], serde_json::Value::Null);
    assert!(c["default_account_id"].is_string());
    let id = c["id"].as_str().unwrap();

    let got = app.get(&format!("/v1/cardholders/{id}")).await.ok();
    assert_eq!(got, c);
    let found = app
        .get("/v1/cardholders?external_id=985f38c8-9a33-423b-86be-86a5997feaa9")
        .await
        .ok();
    assert_eq!(found["data"], json!([c]));
    let none = app.get("/v1/cardholders?external_id=nobody").await.ok();
    assert_eq!(none["data"], json!([]));
}

#[tokio::test]
async fn external_id_is_unique_per_tenant_only() {
    let app = spawn_app().await;
    app.create_cardholder("same").await;
    let dup = app
        .post(
            "/v1/cardholders",
            json!({"external_id": "same", "name": "B", "phone": {"country_code": "1", "number": "5550100"}}),
        )
        .await
        .expect(409, "cardholder_exists");
    assert!(dup["detail"].as_str().unwrap().contains("same"));
    let other = app.new_tenant("tenant-b").await;
    app.create_cardholder_as(&other, "same").await;
}

#[tokio::test]
async fn cardholder_fields_are_validated_by_name() {
    let app = spawn_app().await;
    let p = app
        .post(
            "/v1/cardholders",
            json!({"external_id": "has space", "name": "", "phone": {"country_code": "x", "number": "1"},
                   "email": "nope", "date_of_birth": "2999-01-01"}),
        )
        .await
        .expect(422, "validation_error");
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "external_id",
            "name",
            "phone.country_code",
            "phone.number",
            "email",
            "date_of_birth"
        ]
    );
}
