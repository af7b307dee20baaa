"""Who is calling: bearer JWTs from the configured OIDC issuer, API keys, and the scopes they grant."""
