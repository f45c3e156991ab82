def test_openapi_schema_and_docs_are_public(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/generate" in paths and "post" in paths["/api/generate"]
    assert {"/api/generations", "/api/generations/{generation_id}", "/api/pricing"} <= set(paths)
    assert client.get("/api/docs/interactive/").status_code == 200
