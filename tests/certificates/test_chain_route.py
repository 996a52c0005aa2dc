"""The chain export over HTTP: its body is streamed after the view returned (found by schemathesis)."""
from __future__ import annotations


def test_the_chain_is_served_over_http(client):
    response = client.get("/api/v1/certificates/chain.jsonl")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    assert response.get_data(as_text=True) == ""  # no certificate yet
