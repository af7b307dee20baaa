"""Security figure runs: schemathesis against the live OpenAPI document (make api-fuzz)."""
